"""The common pair table of correspondence datasets: ``data/<dataset>/pairs.parquet``.

One row per image pair. Keypoints are those visible in both images, in the original image
frame, stored flat (``[x0, y0, x1, y1, ...]``) so the table stays a plain Parquet file.
``threshold`` is the PCK normaliser T of the pair, decided by the dataset's convention (the
target box's longer side for SPair-71k and AP-10K, the target image's longer side for
PF-PASCAL), so evaluation needs no per-dataset code.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench.errors import MatchbenchError
from matchbench.io import write_parquet

FLAGS = ("viewpoint_variation", "scale_variation", "truncation", "occlusion", "mirror")
PAIR_COLUMNS = [
    "pair",  # unique name, e.g. 000001-2008_001546-2008_004704:aeroplane
    "split",  # train / val / test
    "category",
    "src",  # image ids of images.parquet
    "trg",
    "src_kps",  # flat [x0, y0, x1, y1, ...], float64, K points visible in both
    "trg_kps",
    "src_bbox",  # [x1, y1, x2, y2], float64 (NaN x4 when the dataset has none)
    "trg_bbox",
    "threshold",  # PCK normaliser T, pixels of the target's original frame
    *FLAGS,  # int64 difficulty flags, -1 when the dataset has none
]


def _flat(points: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(points, dtype=np.float64).reshape(-1)]


def make_row(
    *,
    pair: str,
    split: str,
    category: str,
    src: str,
    trg: str,
    src_kps: np.ndarray,
    trg_kps: np.ndarray,
    src_bbox: Iterable[float] | None,
    trg_bbox: Iterable[float] | None,
    threshold: float,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of the pair table; ``flags`` maps flag names to ints (absent = -1)."""
    flags = flags or {}
    nan4 = [float("nan")] * 4
    return {
        "pair": pair,
        "split": split,
        "category": category,
        "src": src,
        "trg": trg,
        "src_kps": _flat(src_kps),
        "trg_kps": _flat(trg_kps),
        "src_bbox": _flat(src_bbox) if src_bbox is not None else nan4,
        "trg_bbox": _flat(trg_bbox) if trg_bbox is not None else nan4,
        "threshold": float(threshold),
        **{f: int(flags[f]) if f in flags and flags[f] is not None else -1 for f in FLAGS},
    }


def write_pairs_table(path: str | Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        raise MatchbenchError(f"{path}: no pairs to write")
    df = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    if df["pair"].duplicated().any():
        dup = df.loc[df["pair"].duplicated(), "pair"].iloc[0]
        raise MatchbenchError(f"{path}: pair name {dup!r} appears twice")
    write_parquet(path, df.astype({f: "int64" for f in FLAGS} | {"threshold": "float64"}))


def read_pairs_table(path: str | Path, split: str | None = None) -> pd.DataFrame:
    """The pair table (optionally one split), checked against the contract."""
    p = Path(path)
    if not p.is_file():
        raise MatchbenchError(f"{p}: pair table not found (run the prepare stage first)")
    df = pd.read_parquet(p)
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{p}: pair table lacks columns {missing}")
    if split is not None:
        df = df[df["split"] == split].reset_index(drop=True)
        if df.empty:
            raise MatchbenchError(f"{p}: no pairs in split {split!r}")
    return df


def keypoints(row: Any) -> tuple[np.ndarray, np.ndarray]:
    """(src, trg) keypoints of one pair-table row, each (K, 2) float64."""
    src = np.asarray(row["src_kps"], dtype=np.float64).reshape(-1, 2)
    trg = np.asarray(row["trg_kps"], dtype=np.float64).reshape(-1, 2)
    return src, trg
