"""Prediction files in the benchmarks' official formats, as ``matchbench score`` reads them.

One set of rules for every format (docs/metrics.md): a prediction file is JSON (pickles are
refused, by suffix or content: unpickling runs code from the file); a key repeated inside one
object is an error (JSON parsers silently keep the last one); every query of the split has a
prediction and no unknown query appears (a partial file would silently change the mean); a
ranked list repeats no item. Errors name the file, the entry and what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from matchbench.errors import MatchbenchError

PICKLE_SUFFIXES = {".pkl", ".pickle", ".pk"}


def read_predictions(path: Path) -> Any:
    """Parse a prediction file as JSON; refuse pickles and duplicate keys."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise MatchbenchError(
            f"{path}: refusing to read a pickle: unpickling runs code from the file; "
            "write the predictions as JSON (for ILIAS: knn_search/search.py --save_as json)"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MatchbenchError(f"{path}: file not found") from None
    if raw[:1] == b"\x80":
        raise MatchbenchError(
            f"{path}: this looks like a pickle; refusing to unpickle it (unpickling runs code); "
            "write the predictions as JSON"
        )

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise MatchbenchError(f"{path}: key {key!r} appears twice in one object")
            out[key] = value
        return out

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise MatchbenchError(f"{path}: not a UTF-8 JSON file") from None
    except json.JSONDecodeError as e:
        raise MatchbenchError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def single(paths: Sequence[Path], benchmark: str) -> Path:
    """The one prediction file of a benchmark that takes one."""
    if len(paths) != 1:
        raise MatchbenchError(f"--predictions: {benchmark} takes one file, got {len(paths)}")
    return paths[0]


def as_object(value: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatchbenchError(f"{path}: {what}: expected a JSON object, got {type(value).__name__}")
    return value


def examples(keys: Iterable[str], limit: int = 3) -> str:
    """``'a', 'b', 'c' ... (7 in all)``: the first few keys of a list, for error messages."""
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_keys(entries: dict[str, Any], expected: Sequence[str], path: Path, what: str) -> None:
    """Every expected key present and no other: a partial file would shift the mean."""
    expected_set = set(expected)
    unknown = [k for k in entries if k not in expected_set]
    if unknown:
        raise MatchbenchError(
            f"{path}: unknown {what} {examples(unknown)} (not in the annotations)"
        )
    missing = [k for k in expected if k not in entries]
    if missing:
        raise MatchbenchError(f"{path}: no prediction for {what} {examples(missing)}")


def ranked(value: Any, path: Path, entry: str, item: Callable[[Any], Any], noun: str) -> list[Any]:
    """A ranked list of distinct items (``item`` parses one, None when malformed)."""
    if not isinstance(value, list):
        raise MatchbenchError(f"{path}: entry {entry!r}: expected a ranked list of {noun}s")
    out = []
    for v in value:
        x = item(v)
        if x is None:
            raise MatchbenchError(f"{path}: entry {entry!r}: {v!r} is not an {noun}")
        out.append(x)
    if len(set(out)) != len(out):
        dup = next(x for i, x in enumerate(out) if x in out[:i])
        raise MatchbenchError(f"{path}: entry {entry!r}: {dup!r} appears twice in the ranked list")
    return out


def image_name(v: Any) -> str | None:
    """An image name in a ranked list: a string."""
    return v if isinstance(v, str) else None


def number(value: Any, path: Path, entry: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MatchbenchError(
            f"{path}: entry {entry!r}: {what} must be a finite number, got {value!r}"
        )
    return float(value)
