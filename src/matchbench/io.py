"""Atomic writes and small readers shared by every stage.

Every output is written to a temporary path beside its destination and renamed into place,
so an interrupted run never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f"{suffix}.tmp", dir=path.parent)
    os.close(fd)
    # mkstemp makes 0600 files; outputs should be as readable as any file the user creates.
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path; on success rename it to ``path``, on failure delete it.

    The temporary path keeps the destination's suffix so that writers which infer the
    format from the name (pandas, matplotlib, numpy) still work.
    """
    dest = Path(path)
    tmp = _tmp_sibling(dest, suffix=dest.suffix)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` whole."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps_json(obj: Any, compact: bool = False) -> str:
    """Canonical JSON: sorted keys, fixed indent, so equal content gives equal bytes.

    ``compact``: no indent and no spaces, for files read by programs (a ranked list of a
    million entries), which Python's C encoder writes (it cannot indent)."""
    if compact:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    else:
        text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    return text + "\n"


def write_json(path: str | os.PathLike[str], obj: Any, compact: bool = False) -> None:
    write_text(path, dumps_json(obj, compact))


def read_json(path: str | os.PathLike[str], what: str = "") -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is a MatchbenchError naming it."""
    from matchbench.errors import MatchbenchError

    p = Path(path)
    label = f" {what}" if what else ""
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MatchbenchError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MatchbenchError(f"{p}: cannot read{label} ({e})") from None
    except json.JSONDecodeError as e:
        raise MatchbenchError(f"{p}: not valid JSON{label} ({e.msg} at line {e.lineno})") from None


def read_json_object(path: str | os.PathLike[str], what: str = "") -> dict[str, Any]:
    """``read_json`` for files whose top level must be an object."""
    from matchbench.errors import MatchbenchError

    data = read_json(path, what)
    if not isinstance(data, dict):
        raise MatchbenchError(f"{path}: expected a JSON object{' (' + what + ')' if what else ''}")
    return data


def write_parquet(path: str | os.PathLike[str], df: Any) -> None:
    """Write a DataFrame deterministically (no pandas index, no timestamps in metadata)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False, engine="pyarrow")


def write_npy(path: str | os.PathLike[str], arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_log(path: str | Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """A training log: CSV with exactly ``columns`` (a value a row lacks is written empty)."""
    import csv
    import io as _io

    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())
