"""SPair-71k pair annotations (as ``Visual-AI/Semantic-Correspondence`` ``dataset/spair.py`` reads them).

The pairs of a split are the lines of ``Layout/large/<split>.txt``, such as
``000001-2008_001546-2008_004704:aeroplane``, each naming ``PairAnnotation/<split>/<line>.json``;
a pair file no layout line names is not part of the benchmark (the official loader never reads
it). :func:`read_pairs` is the one reader of that list, for the ``spair71k`` family's
``prepare`` and for ``matchbench score`` alike. Each pair file has ``src_imname``, ``trg_imname``, ``src_kps``, ``trg_kps`` (K x 2, only keypoints
visible in both images, in the same order), ``src_bndbox``, ``trg_bndbox`` (x1, y1, x2, y2),
``category`` and difficulty flags. Coordinates are in the original image frame.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError
from matchbench.io import read_json_object

SPLITS = ("trn", "val", "test")
_ALIASES = {"train": "trn"}
FLAGS = ("viewpoint_variation", "scale_variation", "truncation", "occlusion", "mirror")


def release_root(path: str | Path) -> Path:
    """The folder holding ``Layout/``: ``path`` itself, or ``SPair-71k/`` or
    ``SPair-71k/SPair-71k/`` under it (the tarball extracts to the latter)."""
    path = Path(path)
    for root in (path, path / "SPair-71k", path / "SPair-71k" / "SPair-71k"):
        if (root / "Layout" / "large").is_dir():
            return root
    raise MatchbenchError(
        f"{path}: SPair-71k not found (expected Layout/large/{{{','.join(SPLITS)}}}.txt in it or in "
        "SPair-71k/ under it)"
    )


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


def categories(root: str | Path) -> list[str]:
    """The categories of the release: the folders of ``JPEGImages/``, sorted."""
    images = Path(root) / "JPEGImages"
    if not images.is_dir():
        raise MatchbenchError(f"{images}: SPair-71k image folder not found")
    return sorted(d.name for d in images.iterdir() if d.is_dir())


def read_pairs(
    root: str | Path, split: str, known: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Every pair of ``Layout/large/<split>.txt``, in its order (see :func:`read_pair`), plus
    ``where`` (the layout file and line) and ``path`` (the pair file). The annotation a line names must exist, and its
    category and image names must agree with the line; with ``known`` (:func:`categories`),
    a line's category must be one of them. ``root`` is the release folder or a folder above
    it (:func:`release_root`)."""
    root = release_root(root)
    folder = root / "PairAnnotation" / _ALIASES.get(split, split)
    pairs = []
    for where, name, src, trg, category in read_layout(root, split):
        if known is not None and category not in known:
            raise MatchbenchError(
                f"{where}: category {category!r} has no folder in {root / 'JPEGImages'} "
                f"(categories: {', '.join(known)})"
            )
        path = folder / f"{name}.json"
        if not path.is_file():
            raise MatchbenchError(f"{where}: pair annotation {path} not found")
        pair = read_pair(path)
        if pair["category"] != category:
            raise MatchbenchError(
                f"{path}: category {pair['category']!r} disagrees with the layout line "
                f"{name!r} ({where})"
            )
        for side, stem in (("src", src), ("trg", trg)):
            if Path(pair[f"{side}_imname"]).stem != stem:
                raise MatchbenchError(
                    f"{path}: {side}_imname {pair[f'{side}_imname']!r} disagrees with the "
                    f"layout line {name!r} ({where})"
                )
        pairs.append({**pair, "where": where, "path": path})
    return pairs
