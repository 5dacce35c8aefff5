"""CIRR annotations (``Cuberick-Orion/CIRR``): composed queries and image sets.

Layout: ``captions/cap.rc2.<split>.json`` (a list of ``pairid``, ``reference``,
``target_hard``, ``target_soft``, ``caption``, ``img_set`` {``id``, ``members``}) and
``image_splits/split.rc2.<split>.json`` (image name -> relative path). Splits: train, val,
test1; test1 has no ``target_hard`` (its ground truth stays on the evaluation server).
SEARLE's layout puts the same files under ``<root>/cirr/``; both are accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.io import read_json

SPLITS = ("train", "val", "test1")


def _base(root: Path) -> Path:
    return root / "cirr" if not (root / "captions").is_dir() and (root / "cirr").is_dir() else root


def captions_path(root: str | Path, split: str) -> Path:
    """The caption file of ``split`` under a CIRR root, or ``root`` itself when it is a file."""
    root = Path(root)
    if root.is_file():
        return root
    path = _base(root) / "captions" / f"cap.rc2.{split}.json"
    if not path.is_file():
        raise MatchbenchError(f"{path}: CIRR caption file not found (splits: {', '.join(SPLITS)})")
    return path


def read_queries(path: str | Path) -> list[dict[str, Any]]:
    """Read ``cap.rc2.<split>.json`` into dicts with ``pairid`` (str), ``reference``,
    ``target`` (``target_hard``, None on test1), ``caption`` and ``members`` (list of names)."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise MatchbenchError(f"{path}: expected a list of CIRR queries, got {type(data).__name__}")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict):
            raise MatchbenchError(f"{where}: expected an object, got {type(entry).__name__}")
        for key in ("pairid", "reference", "img_set"):
            if key not in entry:
                raise MatchbenchError(f"{where}: missing key {key!r}")
        pairid = str(entry["pairid"])
        if pairid in seen:
            raise MatchbenchError(f"{where}: pairid {pairid} appears twice")
        seen.add(pairid)
        img_set = entry["img_set"]
        members = img_set.get("members") if isinstance(img_set, dict) else None
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise MatchbenchError(
                f"{where} (pairid {pairid}): 'img_set.members' must be a list of image names"
            )
        target = entry.get("target_hard")
        if target is not None and not isinstance(target, str):
            raise MatchbenchError(f"{where} (pairid {pairid}): 'target_hard' must be an image name")
        out.append(
            {
                "pairid": pairid,
                "reference": str(entry["reference"]),
                "target": target,
                "caption": str(entry.get("caption", "")),
                "members": list(members),
            }
        )
    return out


def read_gallery(root: str | Path, split: str) -> list[str] | None:
    """Image names of ``split`` from ``image_splits/split.rc2.<split>.json``; None if absent."""
    root = Path(root)
    if root.is_file():
        return None
    path = _base(root) / "image_splits" / f"split.rc2.{split}.json"
    if not path.is_file():
        return None
    data = read_json(path)
    if not isinstance(data, dict):
        raise MatchbenchError(f"{path}: expected an object mapping image names to paths")
    return sorted(data)
