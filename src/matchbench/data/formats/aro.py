"""ARO's VG-Relation and VG-Attribution (``mertyg/vision-language-models-are-bows``).

Files: ``visual_genome_relation.json`` and ``visual_genome_attribution.json``, each a list of
items with ``image_path`` (relative to the ``images/`` folder of the release zip
``vgr_vga_images.zip``), ``bbox_x``, ``bbox_y``, ``bbox_w``, ``bbox_h`` (pixels),
``true_caption``, ``false_caption``, and ``relation_name`` (VG-Relation) or ``attributes``
(VG-Attribution: the two attributes, in the order the true caption names them). The official
loader (``dataset_zoo/aro_datasets.py``) crops each image to
``(bbox_x, bbox_y, bbox_x + bbox_w, bbox_y + bbox_h)`` with PIL before scoring, and an item is
correct when the true caption scores above the false one (``argmax`` over [false, true], so a
tie counts as wrong).

Reported numbers, as the official code computes them:

- **VG-Relation**: ``VG_Relation.evaluate_scores`` gives the accuracy of each
  ``relation_name``; the repository's notebook ``notebooks/Replicate ARO! VG-Relation,
  VG-Attribution.ipynb`` then drops the relations of its ``symmetric`` list
  (:data:`SYMMETRIC_RELATIONS`, copied as data) and reports the plain mean of the others
  (macro accuracy). No minimum count applies to relations.
- **VG-Attribution**: ``VG_Attribution.evaluate_scores`` groups items by
  ``f"{attributes[0]}_{attributes[1]}"`` (an ordered pair: ``white_black`` and ``black_white``
  are two groups) and keeps a group only with **at least 25 items** (``if attr_mask.sum() <
  25: continue``); the notebook reports the plain mean over the kept groups.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.io import read_json

RELATION_FILE = "visual_genome_relation.json"
ATTRIBUTION_FILE = "visual_genome_attribution.json"
FILES = {"aro_relation": RELATION_FILE, "aro_attribution": ATTRIBUTION_FILE}
MIN_ATTRIBUTE_PAIR_COUNT = 25
BOX_KEYS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")

# The `symmetric` list of the official notebook (relations left out of the VG-Relation macro
# accuracy, because their swapped caption can be true as well).
SYMMETRIC_RELATIONS = frozenset(
    [
        "adjusting", "attached to", "between", "bigger than", "biting", "boarding", "brushing",
        "chewing", "cleaning", "climbing", "close to", "coming from", "coming out of",
        "contain", "crossing", "dragging", "draped over", "drinking", "drinking from",
        "driving", "driving down", "driving on", "eating from", "eating in", "enclosing",
        "exiting", "facing", "filled with", "floating in", "floating on", "flying",
        "flying above", "flying in", "flying over", "flying through", "full of", "going down",
        "going into", "going through", "grazing in", "growing in", "growing on", "guiding",
        "hanging from", "hanging in", "hanging off", "hanging over", "higher than",
        "holding onto", "hugging", "in between", "jumping off", "jumping on", "jumping over",
        "kept in", "larger than", "leading", "leaning over", "leaving", "licking",
        "longer than", "looking in", "looking into", "looking out", "looking over",
        "looking through", "lying next to", "lying on top of", "making", "mixed with",
        "mounted on", "moving", "on the back of", "on the edge of", "on the front of",
        "on the other side of", "opening", "painted on", "parked at", "parked beside",
        "parked by", "parked in", "parked in front of", "parked near", "parked next to",
        "perched on", "petting", "piled on", "playing", "playing in", "playing on",
        "playing with", "pouring", "reaching for", "reading", "reflected on", "riding on",
        "running in", "running on", "running through", "seen through", "sitting behind",
        "sitting beside", "sitting by", "sitting in front of", "sitting near",
        "sitting next to", "sitting under", "skiing down", "skiing on", "sleeping in",
        "sleeping on", "smiling at", "sniffing", "splashing", "sprinkled on", "stacked on",
        "standing against", "standing around", "standing behind", "standing beside",
        "standing in front of", "standing near", "standing next to", "staring at",
        "stuck in", "surrounding", "swimming in", "swinging", "talking to", "topped with",
        "touching", "traveling down", "traveling on", "tying", "typing on", "underneath",
        "wading in", "waiting for", "walking across", "walking by", "walking down",
        "walking next to", "walking through", "working in", "working on", "worn on",
        "wrapped around", "wrapped in", "by", "of", "near", "next to", "with", "beside",
        "on the side of", "around",
    ]
)  # fmt: skip


def _string(path: Path, index: int, item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise MatchbenchError(f"{path}: item {index}: missing string {key!r}")
    if not value.strip():
        raise MatchbenchError(f"{path}: item {index}: empty {key!r}")
    return value


def read_file(path: str | Path, benchmark: str) -> list[dict[str, Any]]:
    """Read one ARO file (``benchmark``: ``aro_relation`` or ``aro_attribution``).

    Each item comes back with the official keys plus ``index`` (its place in the list) and
    ``category`` (the relation, or the attribute pair ``a_b``).
    """
    path = Path(path)
    if benchmark not in FILES:
        raise ValueError(benchmark)
    data = read_json(path)
    if not isinstance(data, list):
        raise MatchbenchError(f"{path}: expected a JSON list of items")
    out = []
    for index, item in enumerate(data):
        if not isinstance(item, dict):
            raise MatchbenchError(f"{path}: item {index}: expected an object")
        row: dict[str, Any] = {"index": index}
        for key in ("image_path", "true_caption", "false_caption"):
            row[key] = _string(path, index, item, key)
        for key in BOX_KEYS:
            v = item.get(key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise MatchbenchError(f"{path}: item {index}: missing number {key!r}")
            row[key] = v
        if row["bbox_w"] <= 0 or row["bbox_h"] <= 0:
            raise MatchbenchError(
                f"{path}: item {index}: empty box (bbox_w = {row['bbox_w']}, "
                f"bbox_h = {row['bbox_h']})"
            )
        if benchmark == "aro_relation":
            row["relation_name"] = _string(path, index, item, "relation_name")
            row["category"] = row["relation_name"]
        else:
            attrs = item.get("attributes")
            if (
                not isinstance(attrs, list)
                or len(attrs) != 2
                or not all(isinstance(a, str) and a.strip() for a in attrs)
            ):
                raise MatchbenchError(
                    f"{path}: item {index}: 'attributes' must be a list of two non-empty strings"
                )
            row["attributes"] = list(attrs)
            row["category"] = f"{attrs[0]}_{attrs[1]}"
        out.append(row)
    if not out:
        raise MatchbenchError(f"{path}: no item")
    return out


def images_dir(root: str | Path) -> Path:
    """The folder ``image_path`` is relative to: ``<root>/images``, or one level below."""
    root = Path(root)
    for cand in (root / "images", *sorted(p / "images" for p in root.glob("*") if p.is_dir())):
        if cand.is_dir():
            return cand
    raise MatchbenchError(f"{root}: no images/ folder (ARO's vgr_vga_images.zip unpacks into one)")


def crop_box(
    item: dict[str, Any], size: tuple[int, int], source: str | Path, tolerance: float = 0.0
) -> tuple[float, float, float, float]:
    """The item's crop ``(x1, y1, x2, y2)`` as the official loader passes it to PIL, after
    checking it lies in the ``size`` = (width, height) image (within ``tolerance`` pixels)."""
    x, y, w, h = (item[k] for k in BOX_KEYS)
    width, height = size
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        raise MatchbenchError(
            f"{source}: item {item['index']}: box x={x:g} y={y:g} w={w:g} h={h:g} lies outside "
            f"the {width}x{height} image {item['image_path']} (tolerance {tolerance:g} px)"
        )
    return (x, y, x + w, y + h)
