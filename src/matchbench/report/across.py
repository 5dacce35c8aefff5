"""The cross-task view: every model on every task it was evaluated on.

A *column* is one headline metric of a track on one dataset (``Track.headline``:
``ssl · miniworld · knn_acc``); a task that is no track (a ``matchbench score`` benchmark)
has no headline and stays out. A model's normalised score in a column is its value divided
by the column's best value (1 = the best model of that column), so columns of different
scales sit side by side; its mean over the columns it has is the overview's last column.
Between two columns that share at least :data:`MIN_SHARED` models, Spearman's rank
correlation over those models says whether the two orders agree. The paired tests
(:mod:`matchbench.report.paired`) close the section.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from matchbench.report.section import Context, Section
from matchbench.report.tables import MISSING, Cell, Table, paired_table

MIN_SHARED = 3  # models two columns must share for a rank correlation


def headline_results(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``results`` that are a track's headline metrics, with a ``column`` label."""
    from matchbench.tracks import tasks

    known = tasks()
    keep = results.apply(
        lambda r: r["task"] in known and r["metric"] in known[r["task"]].headline, axis=1
    )
    rows = results[keep.astype(bool)] if len(results) else results
    return rows.assign(
        column=rows["task"] + " · " + rows["dataset"] + " · " + rows["metric"]
    ).reset_index(drop=True)


def normalised(rows: pd.DataFrame) -> pd.DataFrame:
    """Models × columns of value / best value of the column (NaN where not evaluated; 1 in a
    column where every model scores 0); columns in (task, dataset, metric) order, models by
    name."""
    grid = rows.pivot_table(index="model", columns="column", values="value", aggfunc="first")
    order = rows.drop_duplicates("column").sort_values(["task", "dataset", "metric"])["column"]
    grid = grid[list(order)].sort_index()
    out = grid.copy()
    for column in grid.columns:
        best = grid[column].max()
        # A column where every model scores 0 has them all at its best.
        out[column] = (
            grid[column] / best if best > 0 else grid[column].where(grid[column].isna(), 1.0)
        )
    return out


def rank_correlations(grid: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho between every two columns over the models both have (at least
    :data:`MIN_SHARED`; NaN where fewer, or where one column is constant on them)."""
    cols = list(grid.columns)
    out = pd.DataFrame(np.nan, index=cols, columns=cols)
    shared = pd.DataFrame(0, index=cols, columns=cols)
    for i, a in enumerate(cols):
        have = grid[a].dropna()
        shared.loc[a, a] = len(have)
        if len(have) >= MIN_SHARED and have.std() > 0:
            out.loc[a, a] = 1.0
        for b in cols[i + 1 :]:
            both = grid[[a, b]].dropna()
            shared.loc[a, b] = shared.loc[b, a] = len(both)
            if len(both) < MIN_SHARED:
                continue
            ra, rb = both[a].rank(), both[b].rank()
            rho = ra.corr(rb) if ra.std() > 0 and rb.std() > 0 else math.nan
            out.loc[a, b] = out.loc[b, a] = rho
    out.attrs["shared"] = shared
    return out


def overview_table(grid: pd.DataFrame) -> Table:
    rows = []
    for model, values in grid.iterrows():
        have = values.dropna()
        cells = [
            Cell(MISSING if math.isnan(v) else f"{v:.2f}", bold=not math.isnan(v) and v >= 1.0)
            for v in values
        ]
        mean = f"{have.mean():.2f} ({len(have)})" if len(have) else MISSING
        rows.append((Cell(str(model)), *cells, Cell(mean)))
    return Table(
        name="across_tasks",
        title="Every model on every task",
        caption=(
            "Normalised score per task, dataset and headline metric: the model's value divided "
            "by the best value of the column (1.00, bold, is the column's best; "
            f"{MISSING}: not evaluated there). The last column is the mean over the columns "
            "the model has, with their number."
        ),
        header=("model", *grid.columns, "mean (n)"),
        rows=tuple(rows),
        numeric=(False, *[True] * (len(grid.columns) + 1)),
    )


def correlation_table(rho: pd.DataFrame) -> Table:
    shared = rho.attrs["shared"]
    cols = list(rho.columns)
    rows = []
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            n = int(shared.loc[a, b])
            if n < MIN_SHARED:
                continue
            value = rho.loc[a, b]
            rows.append(
                (
                    Cell(a),
                    Cell(b),
                    Cell(str(n)),
                    Cell(MISSING if math.isnan(value) else f"{value:+.2f}"),
                )
            )
    return Table(
        name="across_tasks_rank_correlation",
        title="Rank correlation between tasks",
        caption=(
            "Spearman's rank correlation between two columns over the models evaluated on both "
            f"(pairs sharing fewer than {MIN_SHARED} models are left out; {MISSING}: one "
            "column is constant on the shared models)."
        ),
        header=("column A", "column B", "models", "Spearman ρ"),
        rows=tuple(rows),
        numeric=(False, False, True, True),
    )


def section(results: pd.DataFrame, tests: pd.DataFrame, ctx: Context) -> Section | None:
    """The 'Across tasks' part of the page; None when no track's headline metric is present."""
    rows = headline_results(results)
    if rows.empty:
        return None
    from matchbench.report import figures

    grid = normalised(rows)
    rho = rank_correlations(grid)
    tables = [overview_table(grid)]
    notes = []
    correlations = correlation_table(rho)
    if correlations.rows:
        tables.append(correlations)
    else:
        notes.append(
            f"No two columns share {MIN_SHARED} or more models: no rank correlation is shown."
        )
    if not tests.empty:
        tables.append(paired_table(tests))
    else:
        notes.append(
            "No paired tests: no two models were evaluated on the same queries with per-query "
            "values (or report.paired_bootstrap is 0)."
        )
    plot = figures.across_tasks(grid, rho, ctx.figures)
    return Section(
        anchor="across-tasks",
        title="Across tasks",
        notes=tuple(notes),
        tables=tuple(tables),
        plots=(plot,),
        in_main_results=True,
    )
