"""Per-query values of a metrics document: the side file ``<model>.per_query.parquet``.

A metric with per-query values is summarised (value, bootstrap interval) in the document and
its values are kept here, one row per query, so that two models evaluated on the same queries
can be compared by a paired bootstrap (``matchbench.metrics.paired_bootstrap``, drawn by the
report). Columns (docs/contracts.md): ``metric`` (the document's key), ``query`` (an id that
names the query in the dataset: an image id, a pair name, a CIRR pair id), ``group`` (the
category a macro average is taken over, ``""`` for a plain mean) and ``value`` (float64), sorted
by metric then query, so reruns write the same bytes.

A track records a metric as it summarises it::

    pq = PerQuery()
    metrics["knn_acc"] = pq.summarise("knn_acc", ids, correct, n_boot, seed)
    doc["artifacts"]["per_query"] = pq.write(args.out)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from matchbench.errors import MatchbenchError
from matchbench.io import write_parquet
from matchbench.layout import PER_QUERY
from matchbench.metrics import macro_summary, summarise

COLUMNS = ["metric", "query", "group", "value"]
SUFFIX = PER_QUERY  # the side file's name after "<model>."
ROLE = "per_query"  # its role in the document's artifacts


class PerQuery:
    """Collects the per-query values of a document's metrics; :meth:`write` saves them."""

    def __init__(self) -> None:
        self._frames: dict[str, pd.DataFrame] = {}

    def add(
        self, metric: str, queries: ArrayLike, values: ArrayLike, groups: ArrayLike | None = None
    ) -> None:
        q = np.asarray(queries).astype(str).ravel()
        v = np.asarray(values, dtype=np.float64).ravel()
        g = np.full(q.shape, "", dtype=object) if groups is None else np.asarray(groups)
        g = g.astype(str).ravel()
        if not (q.shape == v.shape == g.shape) or q.size == 0:
            raise MatchbenchError(
                f"per-query values of {metric!r}: expected equal non-empty vectors of queries, "
                f"values and groups, got {q.shape}, {v.shape}, {g.shape}"
            )
        if len(set(q.tolist())) != q.size:
            raise MatchbenchError(f"per-query values of {metric!r}: a query id is repeated")
        if metric in self._frames:
            raise MatchbenchError(f"per-query values of {metric!r} recorded twice")
        self._frames[metric] = pd.DataFrame({"metric": metric, "query": q, "group": g, "value": v})

    def summarise(
        self, metric: str, queries: ArrayLike, values: ArrayLike, n_boot: int, seed: int
    ) -> dict[str, Any]:
        """:func:`matchbench.metrics.summarise` of ``values``, recorded under ``metric``."""
        self.add(metric, queries, values)
        return summarise(values, n_boot, seed)

    def macro(
        self,
        metric: str,
        queries: ArrayLike,
        values: ArrayLike,
        groups: ArrayLike,
        n_boot: int,
        seed: int,
    ) -> dict[str, Any]:
        """:func:`matchbench.metrics.macro_summary` of ``values`` by ``groups``, recorded."""
        self.add(metric, queries, values, groups)
        return macro_summary(values, groups, n_boot, seed)

    def extend(self, other: PerQuery, prefix: str = "") -> None:
        """Take ``other``'s metrics, each renamed ``<prefix><metric>``."""
        for metric, df in other._frames.items():
            name = prefix + metric
            if name in self._frames:
                raise MatchbenchError(f"per-query values of {name!r} recorded twice")
            self._frames[name] = df.assign(metric=name)

    def frame(self) -> pd.DataFrame:
        if not self._frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}).astype(
                {"value": "float64"}
            )
        df = pd.concat([self._frames[m] for m in sorted(self._frames)], ignore_index=True)
        return df.sort_values(["metric", "query"], kind="mergesort", ignore_index=True)

    def write(self, document: str | os.PathLike[str]) -> str:
        """Write the side file beside ``document`` (``<model>.json``); returns its path."""
        path = side_file(document)
        write_parquet(path, self.frame())
        return str(path)


def side_file(document: str | os.PathLike[str]) -> Path:
    """``<model>.per_query.parquet`` beside the metrics document ``<model>.json``."""
    p = Path(document)
    return p.with_name(f"{p.name.removesuffix('.json')}.{SUFFIX}")


def read(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A per-query side file, checked: its columns, no repeated (metric, query), finite values."""
    p = Path(path)
    if not p.is_file():
        raise MatchbenchError(f"{p}: per-query values not found (evaluate writes them)")
    try:
        df = pd.read_parquet(p)
    except Exception as e:  # pyarrow's own errors name no file
        raise MatchbenchError(f"{p}: not a readable Parquet file ({e})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{p}: missing column(s) {', '.join(missing)} (expected {COLUMNS})")
    values = pd.to_numeric(df["value"], errors="coerce")
    if not np.isfinite(values.to_numpy(dtype=np.float64)).all():
        raise MatchbenchError(f"{p}: column 'value': expected finite numbers")
    if df.duplicated(["metric", "query"]).any():
        raise MatchbenchError(f"{p}: a (metric, query) pair appears twice")
    out = df[COLUMNS].astype({"metric": str, "query": str, "group": str})
    return out.assign(value=values.astype("float64"))
