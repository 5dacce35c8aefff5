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
from matchbench.report.tables import ALPHA, ResultKey

COLUMNS = ["task", "dataset", "metric", "model", "best", "delta", "ci_low", "ci_high", "p", "n"]


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
    if n_boot < 1 or values.empty:
        return pd.DataFrame(rows, columns=COLUMNS)
    for (task, dataset, metric), group in values.groupby(["task", "dataset", "metric"]):
        models = sorted(group["model"].unique())
        shown = results[
            (results["task"] == task)
            & (results["dataset"] == dataset)
            & (results["metric"] == metric)
            & results["model"].isin(models)
        ].sort_values(["value", "model"], ascending=[False, True], kind="mergesort")
        if len(shown) < 2:
            continue
        best = str(shown["model"].iloc[0])
        for model in models:
            if model == best:
                continue
            test = _paired(_of(group, model), _of(group, best), n_boot, seed)
            if test is not None:
                rows.append(
                    {"task": task, "dataset": dataset, "metric": metric, "model": model}
                    | {"best": best}
                    | {k: test[k] for k in ("delta", "ci_low", "ci_high", "p", "n")}
                )
    return pd.DataFrame(rows, columns=COLUMNS)


def tied_with_best(tests: pd.DataFrame) -> frozenset[ResultKey]:
    """(task, dataset, model, metric) of the results the tests cannot separate from the best."""
    tied = tests[tests["p"] >= ALPHA]
    return frozenset(
        (str(r.task), str(r.dataset), str(r.model), str(r.metric)) for r in tied.itertuples()
    )


def compare(
    values: pd.DataFrame, a: ResultKey, b: ResultKey, n_boot: int, seed: int
) -> dict[str, Any] | None:
    """The paired test of result ``a`` minus result ``b`` (:func:`metrics.paired_bootstrap`),
    from :func:`read_values`; None where either has no per-query values or their queries (or
    groups) differ, or with no draws."""
    if n_boot < 1:
        return None
    x, y = (_of(values, model, task, dataset, metric) for task, dataset, model, metric in (a, b))
    return _paired(x, y, n_boot, seed)


def _of(values: pd.DataFrame, model: str, *where: str) -> pd.DataFrame:
    """One model's rows of ``values`` (and of one task, dataset and metric), by query."""
    keep = values["model"] == model
    for column, value in zip(("task", "dataset", "metric"), where, strict=False):
        keep &= values[column] == value
    return values[keep].sort_values("query", kind="mergesort")


def _paired(x: pd.DataFrame, y: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any] | None:
    same = x["query"].tolist() == y["query"].tolist() and x["group"].tolist() == y["group"].tolist()
    if x.empty or not same:
        return None
    grouped = (x["group"] != "").any()
    return metrics.paired_bootstrap(
        x["value"].to_numpy(),
        y["value"].to_numpy(),
        x["group"].to_numpy() if grouped else None,
        n_boot=n_boot,
        seed=seed,
    )
