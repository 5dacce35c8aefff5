"""The retrieval track's prepared tables (docs/contracts.md), read with clear errors.

- ``retrieval_queries.parquet``: ``query`` (the ILIAS id: ``<instance>/query/Q….jpg`` or
  ``<instance>/query/T….txt``), ``kind`` (``image`` | ``text``), ``instance``, ``text`` (the
  text query, ``""`` for an image query), ``n_positives``;
- ``retrieval_positives.parquet``: ``id``, ``instance``, ``scale`` (the object's box area over
  the image's), ``clutter`` (other objects in the image).

An image query's id is also its row in ``images.parquet`` (the crop by its box), a positive's
id its row there (the full image). A query's positives are every positive of its instance, as
ILIAS's ground truth.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from matchbench.errors import MatchbenchError

QUERIES = "retrieval_queries"
POSITIVES = "retrieval_positives"
QUERY_COLUMNS = ["query", "kind", "instance", "text", "n_positives"]
POSITIVE_COLUMNS = ["id", "instance", "scale", "clutter"]


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise MatchbenchError(f"{path}: not found (run the prepare stage of the dataset first)")
    df = pd.read_parquet(path)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{path}: lacks columns {missing} (expected {columns})")
    return df


def read_queries(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    df = _read(p, QUERY_COLUMNS)
    bad = df[~df["kind"].isin(["image", "text"])]
    if len(bad):
        raise MatchbenchError(
            f"{p}: query {bad['query'].iloc[0]!r} has kind {bad['kind'].iloc[0]!r} "
            "(expected image or text)"
        )
    return df.sort_values("query", kind="stable").reset_index(drop=True)


def read_positives(path: str | Path) -> pd.DataFrame:
    return (
        _read(Path(path), POSITIVE_COLUMNS).sort_values("id", kind="stable").reset_index(drop=True)
    )


def ground_truth(positives: pd.DataFrame) -> dict[str, set[str]]:
    """``{instance: set of positive ids}``."""
    gt: dict[str, set[str]] = {}
    for pid, inst in zip(positives["id"], positives["instance"], strict=True):
        gt.setdefault(str(inst), set()).add(str(pid))
    return gt
