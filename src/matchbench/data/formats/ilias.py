"""ILIAS id lists (``ilias-vrg/ilias`` ``evaluation/src/dataset.py``): queries and positives.

Layout: ``image_ids/image_query_ids.txt`` (comma-separated, the id first),
``image_ids/text_query_ids.txt`` (one id a line) and ``image_ids/positive_ids.txt``
(``id,scale,clutter``). Ids are paths such as ``<instance>/pos/P1.jpg``; the text before the
first ``/`` names the instance, and a query's ground truth is every positive of its
instance, exactly as the official ``ILIAS.gt``. Distractor ids are not needed to score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError

FILES = ("image_query_ids.txt", "text_query_ids.txt", "positive_ids.txt")


def ids_dir(root: str | Path) -> Path:
    """The folder holding the id lists: ``<root>/image_ids`` or ``root`` itself."""
    root = Path(root)
    base = root / "image_ids" if (root / "image_ids").is_dir() else root
    for name in FILES:
        if not (base / name).is_file():
            raise MatchbenchError(
                f"{base / name}: ILIAS id list not found (need {', '.join(FILES)})"
            )
    return base


def instance_of(item_id: str) -> str:
    return item_id.split("/")[0]


def _rows(path: Path, min_fields: int) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MatchbenchError(f"{path}: cannot read ({e.strerror})") from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < min_fields or not fields[0]:
            raise MatchbenchError(
                f"{path}:{lineno}: expected {min_fields} comma-separated fields, got {line!r}"
            )
        rows.append(fields)
    return rows


def read_ids(root: str | Path) -> dict[str, Any]:
    """Read the id lists into ``image_queries``, ``text_queries`` (sorted lists of ids),
    ``positives`` ({id: (scale, clutter)}) and ``gt`` ({instance: set of positive ids})."""
    base = ids_dir(root)
    image_queries = sorted(r[0] for r in _rows(base / "image_query_ids.txt", 1))
    text_queries = sorted(r[0] for r in _rows(base / "text_query_ids.txt", 1))
    positives: dict[str, tuple[float, int]] = {}
    pos_path = base / "positive_ids.txt"
    for row in _rows(pos_path, 3):
        try:
            positives[row[0]] = (float(row[1]), int(row[2]))
        except ValueError:
            raise MatchbenchError(
                f"{pos_path}: positive {row[0]!r}: expected numeric scale and integer clutter, got {row[1:3]}"
            ) from None
    gt: dict[str, set[str]] = {instance_of(q): set() for q in image_queries + text_queries}
    for pid in positives:
        gt.setdefault(instance_of(pid), set()).add(pid)
    return {
        "image_queries": image_queries,
        "text_queries": text_queries,
        "positives": positives,
        "gt": gt,
    }
