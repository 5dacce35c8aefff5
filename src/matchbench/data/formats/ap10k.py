"""AP-10K correspondence pairs, as prepared by ``Junyi42/GeoAware-SC`` ``data/prepare_ap10k.sh``.

Layout: ``ImageAnnotation/<family>/<species>/<id>.json`` (``keypoints``: 17 x (x, y, v),
visible when v == 2; ``bbox``: x, y, w, h; ``name``: the species; ``width``, ``height``),
``JPEGImages/...`` and ``PairAnnotation/<split>/<pair>:<species>.json`` holding
``src_json_path`` and ``trg_json_path``. Those paths are written relative to wherever the
preparation ran (``data/ap-10k/ImageAnnotation/...``); they are resolved from their
``ImageAnnotation/`` part under the dataset root. A keypoint counts when visible in both
images, as ``Visual-AI/Semantic-Correspondence`` ``dataset/ap10k.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError
from matchbench.io import read_json_object

SPLITS = ("trn", "val", "test")
_ALIASES = {"train": "trn"}


def split_dir(root: str | Path, split: str) -> Path:
    path = Path(root) / "PairAnnotation" / _ALIASES.get(split, split)
    if not path.is_dir():
        raise MatchbenchError(
            f"{path}: AP-10K pair folder not found (splits: {', '.join(SPLITS)}, and the "
            "*_cross_species / *_cross_family variants)"
        )
    return path


def _load(path: Path, what: str) -> dict[str, Any]:
    return read_json_object(path, f"AP-10K {what}")


def resolve(root: Path, written: str, pair_path: Path, key: str) -> Path:
    """Map a path written by the preparation script onto ``root``."""
    parts = Path(written).parts
    if "ImageAnnotation" not in parts:
        raise MatchbenchError(
            f"{pair_path}: {key!r} = {written!r} does not point into ImageAnnotation/"
        )
    return root.joinpath(*parts[parts.index("ImageAnnotation") :])


def read_image(path: str | Path) -> dict[str, Any]:
    """One image annotation: ``kps`` (17, 2), ``visible`` (17,) bool (v == 2), ``bbox_xyxy``,
    ``species`` and ``image`` (the JPEG beside it: ``ImageAnnotation`` -> ``JPEGImages``, as
    the official loader maps it)."""
    path = Path(path)
    data = _load(path, "image annotation")
    try:
        kps = np.asarray(data["keypoints"], dtype=np.float64).reshape(-1, 3)
        x, y, w, h = (float(v) for v in data["bbox"])
    except (KeyError, TypeError, ValueError):
        raise MatchbenchError(
            f"{path}: expected 'keypoints' as a flat list of (x, y, v) and 'bbox' as (x, y, w, h)"
        ) from None
    return {
        "kps": kps[:, :2],
        "visible": kps[:, 2] == 2,
        "bbox_xyxy": np.array([x, y, x + w, y + h]),
        "species": str(data.get("name", "")),
        "image": _image_path(path),
    }


def _image_path(annotation: Path) -> Path:
    parts = list(annotation.parts)
    if "ImageAnnotation" in parts:
        i = len(parts) - 1 - parts[::-1].index("ImageAnnotation")
        parts[i] = "JPEGImages"
    return Path(*parts).with_suffix(".jpg")


def read_pairs(root: str | Path, split: str) -> list[dict[str, Any]]:
    """Every pair of ``split``, sorted by name: ``name`` (file stem), ``category`` (species),
    ``src_kps``/``trg_kps`` (keypoints visible in both, K x 2), ``src_bbox``/``trg_bbox``
    (x1, y1, x2, y2), ``src_image``/``trg_image`` (JPEG paths) and ``source`` (the pair file)."""
    root = Path(root)
    folder = split_dir(root, split)
    files = sorted(folder.glob("*.json"))
    if not files:
        raise MatchbenchError(f"{folder}: no pair annotation (*.json) found")
    pairs = []
    for f in files:
        data = _load(f, "pair annotation")
        images = {}
        for side in ("src", "trg"):
            key = f"{side}_json_path"
            if not isinstance(data.get(key), str):
                raise MatchbenchError(f"{f}: missing string {key!r}")
            images[side] = read_image(resolve(root, data[key], f, key))
        src, trg = images["src"], images["trg"]
        if src["kps"].shape != trg["kps"].shape:
            raise MatchbenchError(
                f"{f}: source and target images have different keypoint counts "
                f"({len(src['kps'])} and {len(trg['kps'])})"
            )
        both = src["visible"] & trg["visible"]
        category = f.stem.split(":")[-1] if ":" in f.stem else trg["species"]
        pairs.append(
            {
                "name": f.stem,
                "category": category,
                "src_kps": src["kps"][both],
                "trg_kps": trg["kps"][both],
                "src_bbox": src["bbox_xyxy"],
                "trg_bbox": trg["bbox_xyxy"],
                "src_image": src["image"],
                "trg_image": trg["image"],
                "source": f,
            }
        )
    return pairs
