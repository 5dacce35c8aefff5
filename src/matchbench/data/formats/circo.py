"""CIRCO annotations (``miccunifi/CIRCO``): composed queries with several ground truths.

Layout: ``annotations/{val,test}.json``, a list of ``id``, ``reference_img_id``,
``target_img_id``, ``relative_caption``, ``shared_concept``, ``gt_img_ids`` (the first is the
target) and ``semantic_aspects``. Image ids are COCO 2017 unlabeled ids (integers). The test
split has no ``gt_img_ids``: its ground truth stays on the evaluation server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.io import read_json

SPLITS = ("val", "test")


def annotations_path(root: str | Path, split: str) -> Path:
    """``<root>/annotations/<split>.json``, or ``root`` itself when it is a file."""
    root = Path(root)
    if root.is_file():
        return root
    path = root / "annotations" / f"{split}.json"
    if not path.is_file():
        raise MatchbenchError(
            f"{path}: CIRCO annotation file not found (splits: {', '.join(SPLITS)})"
        )
    return path


def image_id(value: Any) -> int | None:
    """An image id as CIRCO's evaluation reads it (``np.array(..., dtype=int)``), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def read_queries(path: str | Path) -> list[dict[str, Any]]:
    """Read a CIRCO annotation file into dicts with ``id`` (str), ``reference`` (int),
    ``target`` (int or None), ``caption``, ``gt`` (list of int, None on the test split) and ``aspects``."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise MatchbenchError(
            f"{path}: expected a list of CIRCO queries, got {type(data).__name__}"
        )
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise MatchbenchError(f"{where}: expected an object with key 'id'")
        qid = str(entry["id"])
        if qid in seen:
            raise MatchbenchError(f"{where}: query id {qid} appears twice")
        seen.add(qid)
        gt = entry.get("gt_img_ids")
        if gt is not None:
            ids = [image_id(g) for g in gt] if isinstance(gt, list) else [None]
            if not ids or any(g is None for g in ids):
                raise MatchbenchError(
                    f"{where} (id {qid}): 'gt_img_ids' must be a non-empty list of image ids"
                )
            gt = ids
        aspects = entry.get("semantic_aspects", [])
        if not isinstance(aspects, list) or not all(isinstance(a, str) for a in aspects):
            raise MatchbenchError(
                f"{where} (id {qid}): 'semantic_aspects' must be a list of strings"
            )
        out.append(
            {
                "id": qid,
                "reference": image_id(entry.get("reference_img_id")),
                "target": image_id(entry.get("target_img_id")),
                "caption": str(entry.get("relative_caption", "")),
                "gt": gt,
                "aspects": aspects,
            }
        )
    return out
