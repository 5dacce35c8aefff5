"""Progress a person sees (``matchbench.progress``): a bar on a terminal, and in a log file
(a stage under Snakemake or SLURM) whole lines with a timestamp, no carriage returns."""

from __future__ import annotations

import io
import re

import pytest

from matchbench.errors import MatchbenchError
from matchbench.progress import INTERVAL_ENV, bar

LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d \S.*")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_timestamped_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    log = io.StringIO()
    with bar(total=5, desc="finetune ssl resnet-mini", unit="step", file=log) as b:
        for _ in range(5):
            b.update(1)
            b.set_postfix(loss=1.5)
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert all(LINE.fullmatch(line) for line in lines), lines
    assert "0/5" in lines[0] and "5/5" in lines[-1] and "loss=1.5" in lines[-1]
    assert len(lines) >= 6  # the start, each step (interval 0), the end


def test_lines_are_throttled_by_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "3600")
    log = io.StringIO()
    for _ in bar(range(1000), desc="extract", file=log):
        pass
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "0/1000" in lines[0] and "1000/1000" in lines[1], lines


def test_a_terminal_gets_tqdms_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "0")
    tty = Terminal()
    for _ in bar(range(3), desc="extract", file=tty, mininterval=0):
        pass
    assert "\r" in tty.getvalue() and not LINE.match(tty.getvalue().lstrip("\r"))


def test_a_bad_interval_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    with pytest.raises(MatchbenchError, match=f"{INTERVAL_ENV}='soon'"):
        bar(total=1, file=io.StringIO())
