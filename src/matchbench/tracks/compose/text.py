"""Caption text: the tables that hold it, sentences, sentence sampling, truncation counts.

The tables (docs: ``matchbench.tracks.compose``): ``captions.parquet`` (:data:`CAPTION_COLUMNS`)
and ``caption_pairs.parquet`` (:data:`PAIR_COLUMNS`), read by :func:`read_table`.

Sentence sampling (arXiv 2412.15396, after DreamLIP / Long-CLIP practice): a rich caption of
several sentences is cut to a random subset of them at every step, so a short-context text
tower sees every part of a long description over training. Every draw comes from the
run's generator.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from matchbench.errors import MatchbenchError

CAPTION_COLUMNS = ("image", "split", "alt", "rich")
PAIR_COLUMNS = ("id", "benchmark", "category", "image", "positive", "negative")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (split after ``.``, ``!`` or ``?`` followed by a space)."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text.strip())) if s]


def sample_sentences(text: str, setting: int | float | None, gen: torch.Generator) -> str:
    """A random subset of ``text``'s sentences, in their order.

    ``setting``: an integer k keeps k sentences (all when fewer), a float p keeps each with
    probability p (at least one), None keeps the text. One ``torch.rand`` draw per sentence of
    a caption with more than one sentence, so the draws do not depend on the setting's kind.
    """
    if setting is None:
        return text
    parts = sentences(text)
    if len(parts) <= 1:
        return text
    u = torch.rand(len(parts), generator=gen)
    if isinstance(setting, int):
        if setting >= len(parts):
            return text
        keep = torch.zeros(len(parts), dtype=torch.bool)
        keep[torch.argsort(u)[:setting]] = True
    else:
        keep = u < setting
        if not keep.any():
            keep[int(u.argmin())] = True
    return " ".join(p for p, k in zip(parts, keep.tolist(), strict=True) if k)


def count_truncated(encoder: Any, texts: list[str], tokens: torch.Tensor) -> int:
    """How many ``texts`` the tokenizer cut to its context: those filling every slot whose BPE
    tokens (open_clip's ``SimpleTokenizer.encode``) do not fit between start and end of text.
    Without such a tokenizer, every text that fills the context is counted."""
    full = (tokens[:, -1] != 0).nonzero().flatten().tolist()
    tok = getattr(encoder, "_tokenizer", None)
    if not full or not hasattr(tok, "encode"):
        return len(full)
    room = tokens.shape[1] - 2
    return sum(len(tok.encode(texts[i])) > room for i in full)


def warn_truncated(n: int, total: int, context: int, what: str) -> None:
    """The one log line about truncated texts (never an error: long captions are expected)."""
    if n:
        print(
            f"warning: {n} of {total} {what} are longer than the text context ({context} tokens) "
            "and were truncated",
            file=sys.stderr,
        )


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise MatchbenchError(f"{path}: not a readable parquet table ({e})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{path}: lacks columns {missing} (expected {list(columns)})")
    return df
