"""Progress a person sees: tqdm's bar on a terminal, timestamped lines in a log file.

Under Snakemake or SLURM a stage's stderr is a log file, where a bar redrawn with carriage
returns becomes one line of soup. :func:`bar` is tqdm's bar when stderr is a terminal; when it
is not, the same bar writes whole lines, each starting with the local time, at most every
``MATCHBENCH_PROGRESS_SECONDS`` seconds (default 10), plus one when it starts and one when it
ends::

    2026-12-02T05:12:03 finetune ssl resnet-mini:  40%|####      | 256/640 [00:21<00:32, 12.0step/s, loss=4.1]
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterable
from typing import IO, Any

from tqdm import tqdm

from matchbench.errors import MatchbenchError

INTERVAL_ENV = "MATCHBENCH_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 10.0


def stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


class LineWriter(io.TextIOBase):
    """A text stream that turns tqdm's carriage-return redraws into timestamped lines."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, s: str) -> int:
        for part in s.replace("\r", "\n").split("\n"):
            part = part.rstrip()
            if part:
                self.stream.write(f"{stamp()} {part}\n")
        self.stream.flush()
        return len(s)

    def flush(self) -> None:
        self.stream.flush()


def interval() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise MatchbenchError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds >= 0")
    return value


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, written as timestamped lines when the stream is no terminal."""
    stream = kwargs.pop("file", None) or sys.stderr
    if not kwargs.get("disable") and not _is_terminal(stream):
        seconds = interval()
        kwargs.setdefault("mininterval", seconds)
        kwargs.setdefault("maxinterval", max(seconds, 10.0))
        kwargs.setdefault("ascii", True)
        kwargs.setdefault("ncols", 100)
        stream = LineWriter(stream)
    return tqdm(iterable, file=stream, **kwargs)
