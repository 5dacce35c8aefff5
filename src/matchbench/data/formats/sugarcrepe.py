"""SugarCrepe annotations (``RAIVNLab/sugar-crepe``): captions with hard negatives.

Layout: ``data/<file>.json`` for seven files; each maps an item id to ``filename`` (a COCO
2017 val image), ``caption`` and ``negative_caption``. Accuracy is reported per file
(``main_eval.py``: correct when the caption scores strictly above the negative).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.io import read_json

FILES = ("add_obj", "add_att", "replace_obj", "replace_att", "replace_rel", "swap_obj", "swap_att")


def data_dir(root: str | Path) -> Path:
    """The folder holding the seven files: ``<root>/data`` or ``root`` itself."""
    root = Path(root)
    base = root / "data" if (root / "data").is_dir() else root
    if not any((base / f"{name}.json").is_file() for name in FILES):
        raise MatchbenchError(
            f"{base}: no SugarCrepe file found (expected {', '.join(FILES)} .json)"
        )
    return base


def read_file(path: str | Path) -> dict[str, dict[str, str]]:
    """Read one SugarCrepe file: {item id: {filename, caption, negative_caption}}."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict):
        raise MatchbenchError(f"{path}: expected an object mapping item ids to items")
    out: dict[str, dict[str, str]] = {}
    for item_id, item in data.items():
        if not isinstance(item, dict):
            raise MatchbenchError(f"{path}: item {item_id!r}: expected an object")
        for key in ("filename", "caption", "negative_caption"):
            if not isinstance(item.get(key), str):
                raise MatchbenchError(f"{path}: item {item_id!r}: missing string {key!r}")
            if not item[key].strip():
                raise MatchbenchError(f"{path}: item {item_id!r}: empty {key!r}")
        out[str(item_id)] = {k: item[k] for k in ("filename", "caption", "negative_caption")}
    return out


def read_items(root: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """Every SugarCrepe file present under ``root``: {file name: {item id: item}}."""
    base = data_dir(root)
    return {
        name: read_file(base / f"{name}.json")
        for name in FILES
        if (base / f"{name}.json").is_file()
    }


def image_path(
    image_root: str | Path, item: dict[str, str], source: str | Path, item_id: str
) -> Path:
    """The item's COCO val2017 image under ``image_root``; absent is an error naming it."""
    p = Path(image_root) / item["filename"]
    if not p.is_file():
        raise MatchbenchError(f"{source}: item {item_id!r}: image {p} not found")
    return p
