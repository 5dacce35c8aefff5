"""SPair-71k pair annotations (as ``Visual-AI/Semantic-Correspondence`` ``dataset/spair.py`` reads them).

Layout: ``PairAnnotation/{trn,val,test}/<pair>.json`` where ``<pair>`` is a
``Layout/large/<split>.txt`` line such as ``000001-2008_001546-2008_004704:aeroplane``; each
file has ``src_imname``, ``trg_imname``, ``src_kps``, ``trg_kps`` (K x 2, only keypoints
visible in both images, in the same order), ``src_bndbox``, ``trg_bndbox`` (x1, y1, x2, y2),
``category`` and difficulty flags. Coordinates are in the original image frame.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError
from matchbench.io import read_json_object

SPLITS = ("trn", "val", "test")
_ALIASES = {"train": "trn"}
FLAGS = ("viewpoint_variation", "scale_variation", "truncation", "occlusion", "mirror")


def split_dir(root: str | Path, split: str) -> Path:
    root = Path(root)
    if not (root / "PairAnnotation").is_dir() and (root / "SPair-71k" / "PairAnnotation").is_dir():
        root = root / "SPair-71k"
    path = root / "PairAnnotation" / _ALIASES.get(split, split)
    if not path.is_dir():
        raise MatchbenchError(
            f"{path}: SPair-71k pair folder not found (splits: {', '.join(SPLITS)})"
        )
    return path


def points(value: Any, path: Path, key: str) -> np.ndarray:
    """A (K, 2) float array from a JSON list of [x, y], or an error naming file and key."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if (
        arr is None
        or (arr.size and (arr.ndim != 2 or arr.shape[1] != 2))
        or not np.isfinite(arr).all()
    ):
        raise MatchbenchError(f"{path}: {key!r} must be a list of [x, y] numbers")
    return arr.reshape(-1, 2)


def box(value: Any, path: Path, key: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (4,) or not np.isfinite(arr).all():
        raise MatchbenchError(f"{path}: {key!r} must be four numbers (x1, y1, x2, y2)")
    return arr


def read_pair(path: str | Path) -> dict[str, Any]:
    """One pair file: ``name`` (file stem), ``category``, image names, ``src_kps``/``trg_kps``
    (K, 2), ``src_bbox``/``trg_bbox`` (x1, y1, x2, y2) and the difficulty flags present."""
    path = Path(path)
    data = read_json_object(path, "SPair-71k pair")
    for key in (
        "src_imname",
        "trg_imname",
        "src_kps",
        "trg_kps",
        "src_bndbox",
        "trg_bndbox",
        "category",
    ):
        if key not in data:
            raise MatchbenchError(f"{path}: missing key {key!r}")
    src, trg = points(data["src_kps"], path, "src_kps"), points(data["trg_kps"], path, "trg_kps")
    if src.shape != trg.shape:
        raise MatchbenchError(
            f"{path}: 'src_kps' has {len(src)} points but 'trg_kps' has {len(trg)}"
        )
    return {
        "name": path.stem,
        "category": str(data["category"]),
        "src_imname": str(data["src_imname"]),
        "trg_imname": str(data["trg_imname"]),
        "src_kps": src,
        "trg_kps": trg,
        "src_bbox": box(data["src_bndbox"], path, "src_bndbox"),
        "trg_bbox": box(data["trg_bndbox"], path, "trg_bndbox"),
        "flags": {k: data[k] for k in FLAGS if k in data},
    }


def read_layout(root: str | Path, split: str) -> list[tuple[str, str, str, str, str]]:
    """The pairs of ``Layout/large/<split>.txt``, as the official loader reads them: each line
    ``000001-<src>-<trg>:<category>`` gives ``(where, name, src, trg, category)``, ``where``
    naming the file and line for error messages."""
    path = Path(root) / "Layout" / "large" / f"{_ALIASES.get(split, split)}.txt"
    if not path.is_file():
        raise MatchbenchError(f"{path}: SPair-71k layout file not found")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        parts = re.split("[-:]", name)
        if len(parts) != 4 or not all(parts):
            raise MatchbenchError(
                f"{path}: line {n} {name!r} is not <number>-<source>-<target>:<category>"
            )
        out.append((f"{path}: line {n}", name, parts[1], parts[2], parts[3]))
    return out


def read_pairs(root: str | Path, split: str) -> list[dict[str, Any]]:
    """Every pair of ``split``, sorted by name (see :func:`read_pair`)."""
    folder = split_dir(root, split)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise MatchbenchError(f"{folder}: no pair annotation (*.json) found")
    return [read_pair(f) for f in files]
