"""DOCCI descriptions (``google/docci``, https://google.github.io/docci).

``docci_descriptions.jsonlines``: one JSON object per line with ``example_id``
(``<split>_<index>``), ``split`` (``train``, ``test``, ``qual_dev``, ``qual_test``),
``image_file`` (a JPEG in the ``images/`` folder of ``docci_images.tar.gz``) and
``description``. The paper's retrieval numbers use ``test`` (5,000 images); ``train`` has
9,647.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError

DESCRIPTIONS = "docci_descriptions.jsonlines"
KEYS = ("example_id", "split", "image_file", "description")


def read_descriptions(path: str | Path) -> list[dict[str, str]]:
    """Every record of a DOCCI-format ``.jsonlines`` file, checked: the four keys as
    non-empty strings, ``example_id`` unique."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MatchbenchError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MatchbenchError(f"{path}: cannot read ({e})") from None
    out: list[dict[str, str]] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec: Any = json.loads(line)
        except json.JSONDecodeError as e:
            raise MatchbenchError(f"{path}: line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise MatchbenchError(f"{path}: line {n}: expected a JSON object")
        for key in KEYS:
            v = rec.get(key)
            if not isinstance(v, str):
                raise MatchbenchError(f"{path}: line {n}: missing string {key!r}")
            if not v.strip():
                raise MatchbenchError(f"{path}: line {n}: empty {key!r}")
        if rec["example_id"] in seen:
            raise MatchbenchError(f"{path}: line {n}: example_id {rec['example_id']!r} repeated")
        seen.add(rec["example_id"])
        out.append({k: rec[k] for k in KEYS})
    if not out:
        raise MatchbenchError(f"{path}: no description")
    return out


def image_path(images: Path, rec: dict[str, str], source: str | Path) -> Path:
    """The record's image under ``images``; absent is an error naming the file and record."""
    p = Path(images) / rec["image_file"]
    if not p.is_file():
        raise MatchbenchError(f"{source}: {rec['example_id']}: image {p} not found")
    return p
