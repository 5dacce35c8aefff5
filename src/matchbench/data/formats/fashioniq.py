"""FashionIQ annotations: relative captions per garment category.

Layout (as ``miccunifi/SEARLE`` ``src/datasets.py`` reads it): ``captions/cap.<category>.<split>.json``
(a list of ``candidate``, ``target``, ``captions`` [2]) and
``image_splits/split.<category>.<split>.json`` (the category's gallery, a list of names).
A query is one triplet, identified by its 0-based position in the caption file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.io import read_json

CATEGORIES = ("dress", "shirt", "toptee")


def captions_path(root: str | Path, category: str, split: str) -> Path:
    path = Path(root) / "captions" / f"cap.{category}.{split}.json"
    if not path.is_file():
        raise MatchbenchError(f"{path}: FashionIQ caption file not found")
    return path


def read_queries(path: str | Path) -> list[dict[str, Any]]:
    """Read ``cap.<category>.<split>.json`` into dicts with ``index`` (str), ``candidate``,
    ``target`` (None where the file has none) and ``captions``."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise MatchbenchError(
            f"{path}: expected a list of FashionIQ triplets, got {type(data).__name__}"
        )
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not isinstance(entry.get("candidate"), str):
            raise MatchbenchError(
                f"{path}: entry {i}: expected an object with a 'candidate' image name"
            )
        target = entry.get("target")
        if target is not None and not isinstance(target, str):
            raise MatchbenchError(f"{path}: entry {i}: 'target' must be an image name")
        captions = entry.get("captions", [])
        if not isinstance(captions, list):
            raise MatchbenchError(f"{path}: entry {i}: 'captions' must be a list of strings")
        out.append(
            {
                "index": str(i),
                "candidate": entry["candidate"],
                "target": target,
                "captions": [str(c) for c in captions],
            }
        )
    return out


def read_gallery(root: str | Path, category: str, split: str) -> list[str] | None:
    """Image names of one category's gallery, or None when the split file is absent."""
    path = Path(root) / "image_splits" / f"split.{category}.{split}.json"
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        raise MatchbenchError(f"{path}: expected a list of image names")
    return list(data)
