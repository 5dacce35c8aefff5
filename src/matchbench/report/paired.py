"""Paired bootstrap tests between models evaluated on the same queries.

Each metrics document names its per-query values (``artifacts.per_query``,
:mod:`matchbench.per_query`). For every (task, dataset, metric), the model with the highest
value is the column's best; every other model whose values cover exactly the same queries
(and, for a macro average, the same groups) is compared with it by
:func:`matchbench.metrics.paired_bootstrap` (``report.paired_bootstrap`` draws, the run's
seed). A result whose difference to the best has ``p >= ALPHA`` cannot be told apart from the
best on these queries: the tables mark it with ``tables.MARK``. Models evaluated on other queries
(another split, a different filter) are not compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

from matchbench import metrics, per_query
from matchbench.report.gather import MetricsDoc

ALPHA = 0.05  # tables.MARK_CAPTION and the 'Paired tests' table say p >= 0.05
COLUMNS = ["task", "dataset", "metric", "model", "best", "delta", "ci_low", "ci_high", "p", "n"]
Key = tuple[str, str, str, str]  # task, dataset, model, metric


def read_values(docs: Iterable[MetricsDoc]) -> pd.DataFrame:
    """Every document's per-query values: ``task, dataset, model`` + the side file's columns."""
    frames = []
    for d in docs:
        path = d.artifact(per_query.ROLE)
        if path is None:
            continue
        df = per_query.read(path)
        frames.append(df.assign(task=d.task, dataset=d.dataset, model=d.model))
    if not frames:
        return pd.DataFrame(columns=["task", "dataset", "model", *per_query.COLUMNS])
    return pd.concat(frames, ignore_index=True)


def versus_best(
    results: pd.DataFrame, values: pd.DataFrame, n_boot: int, seed: int
) -> pd.DataFrame:
    """One row per (task, dataset, metric, model) compared with that column's best model:
    ``delta`` (model minus best, fractions), its paired 95% interval, ``p`` and ``n`` queries.
    Sorted by task, dataset, metric, model."""
    rows: list[dict[str, Any]] = []
    if n_boot > 0 and not values.empty:
        by_key = {k: g for k, g in values.groupby(["task", "dataset", "metric"], sort=True)}
        for (task, dataset, metric), group in by_key.items():
            models = sorted(group["model"].unique())
            if len(models) < 2:
                continue
            shown = results[
                (results["task"] == task)
                & (results["dataset"] == dataset)
                & (results["metric"] == metric)
                & results["model"].isin(models)
            ].sort_values(["value", "model"], ascending=[False, True], kind="mergesort")
            if len(shown) < 2:
                continue
            best = str(shown["model"].iloc[0])
            ref = group[group["model"] == best].sort_values("query", kind="mergesort")
            for model in models:
                if model == best:
                    continue
                other = group[group["model"] == model].sort_values("query", kind="mergesort")
                same = other["query"].tolist() == ref["query"].tolist() and (
                    other["group"].tolist() == ref["group"].tolist()
                )
                if not same:
                    continue
                grouped = (ref["group"] != "").any()
                test = metrics.paired_bootstrap(
                    other["value"].to_numpy(),
                    ref["value"].to_numpy(),
                    ref["group"].to_numpy() if grouped else None,
                    n_boot=n_boot,
                    seed=seed,
                )
                rows.append(
                    {"task": task, "dataset": dataset, "metric": metric, "model": model}
                    | {"best": best}
                    | {k: test[k] for k in ("delta", "ci_low", "ci_high", "p", "n")}
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def tied_with_best(tests: pd.DataFrame) -> frozenset[Key]:
    """(task, dataset, model, metric) of the results the tests cannot separate from the best."""
    tied = tests[tests["p"] >= ALPHA]
    return frozenset(
        (str(r.task), str(r.dataset), str(r.model), str(r.metric)) for r in tied.itertuples()
    )


def compare(
    a: MetricsDoc, b: MetricsDoc, metric: str, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """The paired test of ``a`` minus ``b`` on ``metric`` (:func:`metrics.paired_bootstrap`), or
    None where either lacks per-query values of it or their queries (or groups) differ."""
    values = []
    for d in (a, b):
        path = d.artifact(per_query.ROLE)
        if path is None or n_boot < 1:
            return None
        df = per_query.read(path)
        values.append(df[df["metric"] == metric].sort_values("query", kind="mergesort"))
    x, y = values
    if (
        x.empty
        or x[["query", "group"]].to_numpy().tolist() != y[["query", "group"]].to_numpy().tolist()
    ):
        return None
    grouped = (x["group"] != "").any()
    return metrics.paired_bootstrap(
        x["value"].to_numpy(),
        y["value"].to_numpy(),
        x["group"].to_numpy() if grouped else None,
        n_boot=n_boot,
        seed=seed,
    )
