"""PF-PASCAL pairs (as ``Visual-AI/Semantic-Correspondence`` ``dataset/pfpascal.py`` reads them).

Layout: ``<split>_pairs.csv`` (``source_image``, ``target_image``, ``class`` 1-based, optional
``flip``; GeoAware-SC names it ``<split>_pairs_pf_pascal.csv``),
``PF-dataset-PASCAL/JPEGImages/<image>.jpg`` and
``PF-dataset-PASCAL/Annotations/<class>/<image>.mat`` (``kps``: K x 2 with NaN rows for
missing keypoints, ``bbox``). As in the unified benchmark the keypoints are floored to whole
pixels and only those finite in both images count. A pair is named
``<row:06d>-<source>-<target>:<class>`` (row 1-based, as SPair-71k's layout names).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError

SPLITS = ("trn", "val", "test")
_ALIASES = {"train": "trn"}
CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def pairs_csv(root: str | Path, split: str) -> Path:
    root = Path(root)
    split = _ALIASES.get(split, split)
    for name in (f"{split}_pairs.csv", f"{split}_pairs_pf_pascal.csv"):
        if (root / name).is_file():
            return root / name
    raise MatchbenchError(f"{root / f'{split}_pairs.csv'}: PF-PASCAL pair list not found")


def read_annotation(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """``kps`` (K x 2, floored; NaN rows stay NaN) and ``bbox`` (x1, y1, x2, y2, or None when
    absent) of one ``.mat`` annotation."""
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path))
    except FileNotFoundError:
        raise MatchbenchError(f"{path}: PF-PASCAL annotation not found") from None
    except Exception as e:  # scipy raises several types for a corrupt file
        raise MatchbenchError(f"{path}: cannot read .mat annotation ({e})") from None
    if "kps" not in mat:
        raise MatchbenchError(f"{path}: no 'kps' variable (expected a K x 2 keypoint array)")
    try:
        kps = np.asarray(mat["kps"], dtype=np.float64)
    except (TypeError, ValueError):
        kps = np.empty((0, 0))
    if kps.ndim != 2 or kps.shape[1] != 2:
        raise MatchbenchError(f"{path}: 'kps' must be a K x 2 array, got shape {kps.shape}")
    bbox = None
    if "bbox" in mat:
        try:
            bbox = np.asarray(mat["bbox"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            bbox = np.empty(0)
        if bbox.shape != (4,) or not np.isfinite(bbox).all():
            raise MatchbenchError(f"{path}: 'bbox' must be four numbers (x1, y1, x2, y2)")
    return np.floor(kps), bbox


def read_keypoints(path: Path) -> np.ndarray:
    """``kps`` of one ``.mat`` annotation, (K, 2), floored; NaN rows stay NaN."""
    return read_annotation(path)[0]


def image_hw(path: Path) -> tuple[int, int]:
    """(height, width) from the image header, without decoding the pixels."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise MatchbenchError(f"{path}: PF-PASCAL image not found") from None
    except OSError as e:
        raise MatchbenchError(f"{path}: cannot read image header ({e})") from None
    return h, w


def read_pairs(
    root: str | Path, split: str, *, lists: str | Path | None = None, image_sizes: bool = True
) -> list[dict[str, Any]]:
    """Every pair of the split's CSV (found in ``lists``, default ``root``): ``name``,
    ``category``, ``src``/``trg`` (image stems), ``src_kps``/``trg_kps`` (keypoints finite in
    both, floored, K x 2), ``src_bbox``/``trg_bbox``, ``flip``, ``source`` (the CSV and row)
    and, with ``image_sizes``, ``trg_hw`` (target image height, width)."""
    root = Path(root)
    csv_path = pairs_csv(lists if lists is not None else root, split)
    images = root / "PF-dataset-PASCAL" / "JPEGImages"
    annotations = root / "PF-dataset-PASCAL" / "Annotations"
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pairs = []
    for row_no, row in enumerate(rows, start=1):
        where = f"{csv_path}: row {row_no}"
        try:
            src = Path(row["source_image"]).stem
            trg = Path(row["target_image"]).stem
            cls = CLASSES[int(row["class"]) - 1]
            flip = int(float(row.get("flip") or 0))
        except (KeyError, TypeError, ValueError, IndexError):
            raise MatchbenchError(
                f"{where}: expected source_image, target_image and class (1-{len(CLASSES)})"
            ) from None
        src_kps, src_bbox = read_annotation(annotations / cls / f"{src}.mat")
        trg_kps, trg_bbox = read_annotation(annotations / cls / f"{trg}.mat")
        if src_kps.shape != trg_kps.shape:
            raise MatchbenchError(
                f"{where}: {src}.mat and {trg}.mat have different keypoint counts "
                f"({len(src_kps)} and {len(trg_kps)})"
            )
        both = np.isfinite(src_kps).all(axis=1) & np.isfinite(trg_kps).all(axis=1)
        pair = {
            "name": f"{row_no:06d}-{src}-{trg}:{cls}",
            "category": cls,
            "src": src,
            "trg": trg,
            "src_kps": src_kps[both],
            "trg_kps": trg_kps[both],
            "src_bbox": src_bbox,
            "trg_bbox": trg_bbox,
            "flip": flip,
            "source": where,
        }
        if image_sizes:
            pair["trg_hw"] = image_hw(images / f"{trg}.jpg")
        pairs.append(pair)
    if not pairs:
        raise MatchbenchError(f"{csv_path}: no pairs")
    return pairs
