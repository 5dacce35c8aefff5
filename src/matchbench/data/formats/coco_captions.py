"""COCO captions (``annotations/captions_<split>2017.json``, cocodataset.org format).

``images``: ``[{id, file_name, width, height, ...}]``; ``annotations``:
``[{id, image_id, caption}]``, several captions per image in COCO (one in the mini-world).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.io import read_json_object


def read_captions(path: str | Path) -> tuple[dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """({image id: image record}, [annotation]), checked: keys present, captions non-empty,
    ids unique, every annotation's ``image_id`` among the images."""
    path = Path(path)
    data = read_json_object(path, "COCO captions")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise MatchbenchError(f"{path}: missing list {key!r}")
    images: dict[int, dict[str, Any]] = {}
    for n, im in enumerate(data["images"]):
        if not isinstance(im, dict):
            raise MatchbenchError(f"{path}: images[{n}]: expected an object")
        if isinstance(im.get("id"), bool) or not isinstance(im.get("id"), int):
            raise MatchbenchError(f"{path}: images[{n}]: missing integer 'id'")
        if not isinstance(im.get("file_name"), str) or not im["file_name"].strip():
            raise MatchbenchError(f"{path}: images[{n}] (id {im['id']}): missing 'file_name'")
        if im["id"] in images:
            raise MatchbenchError(f"{path}: images[{n}]: image id {im['id']} repeated")
        images[im["id"]] = im
    anns = []
    seen: set[int] = set()
    for n, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise MatchbenchError(f"{path}: annotations[{n}]: expected an object")
        for key in ("id", "image_id"):
            if isinstance(ann.get(key), bool) or not isinstance(ann.get(key), int):
                raise MatchbenchError(f"{path}: annotations[{n}]: missing integer {key!r}")
        if not isinstance(ann.get("caption"), str):
            raise MatchbenchError(f"{path}: annotations[{n}] (id {ann['id']}): missing 'caption'")
        if not ann["caption"].strip():
            raise MatchbenchError(f"{path}: annotations[{n}] (id {ann['id']}): empty 'caption'")
        if ann["image_id"] not in images:
            raise MatchbenchError(
                f"{path}: annotations[{n}] (id {ann['id']}): image_id {ann['image_id']} "
                "is not in 'images'"
            )
        if ann["id"] in seen:
            raise MatchbenchError(f"{path}: annotations[{n}]: annotation id {ann['id']} repeated")
        seen.add(ann["id"])
        anns.append({"id": ann["id"], "image_id": ann["image_id"], "caption": ann["caption"]})
    return images, anns


def image_path(folder: Path, image: dict[str, Any], source: str | Path) -> Path:
    """The image's file under ``folder`` (``train2017/``...); absent is an error."""
    p = Path(folder) / image["file_name"]
    if not p.is_file():
        raise MatchbenchError(f"{source}: image id {image['id']}: {p} not found")
    return p
