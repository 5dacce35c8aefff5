"""Checked reading for the report and the tracks' sections: JSON fields, tables, images.

Every check raises :class:`MatchbenchError` naming the file and the key (or column) at fault
and what was expected, so a bad input stops the report with one line a user can act on.
``where`` is the dotted prefix of ``key`` inside the file (``"extra."``), for the message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench.errors import MatchbenchError

_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def show(value: Any) -> str:
    """A value as a message shows it: its JSON type, then the value, cut short."""
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    if len(text) > 60:
        text = text[:57] + "..."
    return kind if value is None else f"{kind} {text}"


def expected(path: Path, key: str, what: str, got: Any) -> MatchbenchError:
    return MatchbenchError(f"{path}: key {key!r}: expected {what}, got {show(got)}")


def field(path: Path, obj: dict[str, Any], key: str, where: str, what: str) -> Any:
    if key not in obj:
        raise MatchbenchError(f"{path}: missing key {where + key!r} (expected {what})")
    return obj[key]


def mapping(path: Path, value: Any, key: str, what: str) -> dict[str, Any]:
    """``value`` (at ``key``; ``""`` for the top level) must be a JSON object."""
    if not isinstance(value, dict):
        if not key:
            raise MatchbenchError(f"{path}: expected {what} at the top level, got {show(value)}")
        raise expected(path, key, what, value)
    return value


def string(path: Path, obj: dict[str, Any], key: str, where: str = "") -> str:
    value = field(path, obj, key, where, "a non-empty string")
    if not isinstance(value, str) or not value.strip():
        raise expected(path, where + key, "a non-empty string", value)
    return value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(
    path: Path,
    obj: dict[str, Any],
    key: str,
    where: str = "",
    *,
    fraction: bool = False,
    nullable: bool = False,
    required: bool = True,
) -> float:
    """A finite number (``fraction``: in [0, 1]); null (``nullable``) or absent is NaN."""
    what = "a number in [0, 1] (a fraction, not a percent)" if fraction else "a finite number"
    if nullable:
        what += " or null"
    if not required and key not in obj:
        return math.nan
    value = field(path, obj, key, where, what)
    if value is None and nullable:
        return math.nan
    if not is_number(value) or not math.isfinite(value) or (fraction and not 0 <= value <= 1):
        raise expected(path, where + key, what, value)
    return float(value)


def positive(path: Path, obj: dict[str, Any], key: str, where: str = "") -> float:
    what = "a positive number"
    value = field(path, obj, key, where, what)
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise expected(path, where + key, what, value)
    return float(value)


def count(path: Path, obj: dict[str, Any], key: str, where: str = "") -> int:
    what = "a non-negative integer"
    value = field(path, obj, key, where, what)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise expected(path, where + key, what, value)
    return value


def boolean(path: Path, obj: dict[str, Any], key: str, where: str = "") -> bool:
    value = field(path, obj, key, where, "true or false")
    if not isinstance(value, bool):
        raise expected(path, where + key, "true or false", value)
    return value


def numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MatchbenchError(f"{path}: file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MatchbenchError(f"{path}: not a readable CSV file ({e})") from None


def read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """A parquet table that must have ``columns`` (others are kept)."""
    if not path.is_file():
        raise MatchbenchError(f"{path}: file not found")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise MatchbenchError(f"{path}: not a readable parquet file ({e})") from None
    for column in columns:
        if column not in df.columns:
            raise MatchbenchError(
                f"{path}: missing column {column!r} (expected {', '.join(columns)})"
            )
    return df


def read_image(path: Path, image_id: str, px: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image fit into ``px`` x ``px`` as RGB, and its original (width, height)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as e:
        raise MatchbenchError(f"{path}: cannot read the image of id {image_id!r} ({e})") from None
    return np.asarray(ImageOps.contain(rgb, (px, px))), rgb.size
