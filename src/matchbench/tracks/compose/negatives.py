"""Hard negatives generated from a caption's text, NegCLIP-style (Yuksekgonul et al., 2023).

Edits of the kinds SugarCrepe tests: swap two attribute words of one kind (colour, size,
texture/material) or two object words; replace an attribute with another of its kind, an
object with another object, a spatial relation with another. The words come from a small
vocabulary read from the training captions (:meth:`Vocabulary.from_captions`): attributes are
the words of fixed lexicons that occur there, objects are the head words of noun phrases (the
first word after a determiner and its attributes) seen at least twice, relations the phrases of
a fixed list that occur. No parser is needed, so it works on any English caption; an edit that
cannot apply to a caption (no two different colours to swap) is skipped for it.

Every draw comes from the generator passed in.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


def _set(words: str) -> frozenset[str]:
    return frozenset(words.split())


KINDS = ("swap_att", "swap_obj", "replace_att", "replace_obj", "replace_rel")

ATTRIBUTES: dict[str, frozenset[str]] = {
    "colour": _set(
        "red orange yellow green blue purple violet pink brown black white grey gray "
        "cyan magenta teal gold golden silver beige navy maroon olive"
    ),
    "size": _set("small large big tiny huge little medium tall short long wide"),
    "texture": _set(
        "striped dotted spotted plain checkered checked wooden metal metallic glass plastic "
        "stone furry fluffy shiny matte rough smooth dark light bright"
    ),
}
# Longest first, so "to the left of" wins over "left of".
RELATIONS = (
    "to the left of",
    "to the right of",
    "in front of",
    "on top of",
    "left of",
    "right of",
    "next to",
    "behind",
    "above",
    "below",
    "under",
    "beneath",
    "over",
    "beside",
    "near",
    "inside",
)
DETERMINERS = _set("a an the one two three four another each every some this that")
STOP = _set(
    "a an the and or of to in on at with is are was be it its it's there their this that "
    "is which who while both each other others than then"
) | frozenset(w for r in RELATIONS for w in r.split())
_WORD = re.compile(r"[A-Za-z]+")


def _words(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]


def _attribute_kind(word: str) -> str | None:
    return next((k for k, ws in ATTRIBUTES.items() if word in ws), None)


def _heads(words: list[str]) -> list[int]:
    """Positions of noun-phrase heads: the word after a determiner and its attribute words."""
    out = []
    for i, w in enumerate(words):
        if w not in DETERMINERS:
            continue
        j = i + 1
        while j < len(words) and _attribute_kind(words[j]):
            j += 1
        if j < len(words) and words[j] not in STOP and not _attribute_kind(words[j]):
            out.append(j)
    return out


def _relation_spans(text: str, known: Iterable[str]) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    lower = text.lower()
    for rel in sorted(known, key=len, reverse=True):
        for m in re.finditer(rf"\b{re.escape(rel)}\b", lower):
            if not any(m.start() < e and s < m.end() for s, e, _ in spans):
                spans.append((m.start(), m.end(), rel))
    return sorted(spans)


@dataclass(frozen=True)
class Vocabulary:
    """Words that edits may use, read from a corpus (sorted, so draws are reproducible)."""

    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    objects: tuple[str, ...] = ()
    relations: tuple[str, ...] = ()

    @classmethod
    def from_captions(cls, texts: Iterable[str], min_count: int = 2) -> Vocabulary:
        attrs: dict[str, set[str]] = {k: set() for k in ATTRIBUTES}
        heads: Counter[str] = Counter()
        rels: set[str] = set()
        for text in texts:
            words = [w for _, _, w in _words(text)]
            for w in words:
                kind = _attribute_kind(w)
                if kind:
                    attrs[kind].add(w)
            heads.update(words[j] for j in _heads(words))
            rels.update(r for _, _, r in _relation_spans(text, RELATIONS))
        return cls(
            attributes={k: tuple(sorted(v)) for k, v in attrs.items() if v},
            objects=tuple(sorted(w for w, c in heads.items() if c >= min_count)),
            relations=tuple(sorted(rels)),
        )


def _pick(n: int, gen: torch.Generator) -> int:
    return int(torch.randint(n, (1,), generator=gen))


def _match_case(new: str, old: str) -> str:
    return new[:1].upper() + new[1:] if old[:1].isupper() else new


def _replace(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, new) span replaced (spans do not overlap)."""
    out, at = [], 0
    for s, e, new in sorted(spans):
        out += [text[at:s], _match_case(new, text[s:e])]
        at = e
    return "".join([*out, text[at:]])


def _candidates(text: str, vocab: Vocabulary, kind: str) -> list[list[tuple[int, int, str]]]:
    """Every edit of ``kind`` that changes ``text``: lists of (start, end, new) spans."""
    spans = _words(text)
    words = [w for _, _, w in spans]
    out: list[list[tuple[int, int, str]]] = []
    if kind in ("swap_att", "replace_att"):
        by_kind: dict[str, list[int]] = {}
        for i, w in enumerate(words):
            k = _attribute_kind(w)
            if k:
                by_kind.setdefault(k, []).append(i)
        for k, pos in sorted(by_kind.items()):
            if kind == "swap_att":
                out += _swaps(spans, pos)
            else:
                for i in pos:
                    out += [
                        [(*spans[i][:2], w)] for w in vocab.attributes.get(k, ()) if w != words[i]
                    ]
    elif kind in ("swap_obj", "replace_obj"):
        pos = [j for j in _heads(words) if words[j] in vocab.objects]
        if kind == "swap_obj":
            out += _swaps(spans, pos)
        else:
            for i in pos:
                out += [[(*spans[i][:2], w)] for w in vocab.objects if w != words[i]]
    elif kind == "replace_rel":
        for s, e, rel in _relation_spans(text, vocab.relations):
            out += [[(s, e, r)] for r in vocab.relations if r != rel]
    else:
        raise ValueError(f"unknown negative kind {kind!r} (known: {', '.join(KINDS)})")
    return out


def _swaps(spans: list[tuple[int, int, str]], pos: list[int]) -> list[list[tuple[int, int, str]]]:
    return [
        [(*spans[i][:2], spans[j][2]), (*spans[j][:2], spans[i][2])]
        for a, i in enumerate(pos)
        for j in pos[a + 1 :]
        if spans[i][2] != spans[j][2]
    ]


def negatives(
    text: str, vocab: Vocabulary, gen: torch.Generator, kinds: Iterable[str] = KINDS, n: int = 1
) -> list[str]:
    """Up to ``n`` distinct negatives of ``text``: each a random kind among those that apply,
    then a random edit of that kind. Fewer (or none) when the caption allows fewer."""
    options = {k: _candidates(text, vocab, k) for k in kinds}
    options = {k: v for k, v in options.items() if v}
    out: list[str] = []
    while options and len(out) < n:
        kind = sorted(options)[_pick(len(options), gen)]
        edits = options[kind]
        neg = _replace(text, edits.pop(_pick(len(edits), gen)))
        if not edits:
            del options[kind]
        if neg.lower() != text.lower() and neg not in out:
            out.append(neg)
    return out
