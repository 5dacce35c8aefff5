"""Composing a query with a frozen image-text model: pseudo-words, adapters, injection.

A pseudo-word is a vector of the text transformer's token-embedding space that stands for an
image: the placeholder ``$`` of a prompt ("a photo of $ that {text}") is tokenized as usual,
then its embedding is replaced by the mapping network's output for the reference image
(:meth:`OpenClipEncoder.encode_text` with ``embeddings``), so the frozen text tower reads the
image as a word among the modification text's words (Pic2Word, SEARLE, LinCIR).

:class:`Composer` holds the trained parts of a method: the :class:`MappingNet` (every trained
method), the composing :class:`Adapter` s (stage 2 of the two-stage recipe: bottleneck MLPs
added residually after the last text blocks, zero-initialised so they start as the identity)
and the visual semantic injection gain ``g`` (stage 2: the composed feature is
``normalize(t + g * v)`` for the prompt's text feature ``t`` and the reference's image feature
``v``). Everything is saved as safetensors with the architecture in the metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import nn

from matchbench.errors import MatchbenchError
from matchbench.models import OpenClipEncoder
from matchbench.models.backbones import save_state

PLACEHOLDER = "$"
# Words LinCIR-style masking keeps (function words, relations, numbers); every other run of
# words is a keyword span replaced by the pseudo-word.
STOPWORDS = frozenset(
    """a an the of to in on at and or is are it its this that there with without from by as
    left right above below top bottom centre center one two three four five image photo
    picture scene which while than then has have his her their into onto""".split()  # noqa: SIM905
)


class MappingNet(nn.Module):
    """Pic2Word's mapping (``IM2TEXT``): a 3-layer MLP from a feature (``dim``) to a token
    embedding (``width``), ReLU and dropout between the layers."""

    def __init__(self, dim: int, width: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Adapter(nn.Module):
    """``x + up(gelu(down(x)))`` per token; ``up`` starts at zero (the identity)."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(F.gelu(self.down(x)))


class Composer(nn.Module):
    """The trained parts of a method (see the module docstring)."""

    def __init__(
        self,
        dim: int,
        width: int,
        hidden: int,
        dropout: float = 0.0,
        adapter_layers: int = 0,
        adapter_rank: int = 1,
        gain: float | None = None,
    ) -> None:
        super().__init__()
        self.arch = {
            "dim": dim,
            "width": width,
            "hidden": hidden,
            "adapter_layers": adapter_layers,
            "adapter_rank": adapter_rank,
            "gain": gain is not None,
        }
        self.mapping = MappingNet(dim, width, hidden, dropout)
        self.adapters = nn.ModuleList(Adapter(width, adapter_rank) for _ in range(adapter_layers))
        self.gain = nn.Parameter(torch.tensor(float(gain))) if gain is not None else None

    @contextmanager
    def installed(self, encoder: OpenClipEncoder) -> Iterator[None]:
        """The adapters run after the text tower's last blocks while inside the block."""
        if not len(self.adapters):
            yield
            return
        blocks = encoder._builtin_text().transformer.resblocks
        if len(self.adapters) > len(blocks):
            raise MatchbenchError(
                f"tracks.cir.two_stage.adapter_layers: {len(self.adapters)}, but backbone "
                f"{encoder.name!r} has {len(blocks)} text blocks"
            )
        handles = []
        for adapter, blk in zip(self.adapters, list(blocks)[-len(self.adapters) :], strict=True):
            handles.append(blk.register_forward_hook(lambda _m, _a, out, ad=adapter: ad(out)))
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def compose(
        self,
        encoder: OpenClipEncoder,
        image: torch.Tensor,
        tokens: torch.Tensor,
        slots: torch.Tensor,
    ) -> torch.Tensor:
        """L2-normalised composed features (N, D) of L2-normalised reference features ``image``
        (N, D) and prompts ``tokens`` (N, L) whose placeholder positions are ``slots``."""
        word = self.mapping(image)
        tokens, slots = trim(tokens, slots)
        emb = encoder.token_embeddings(tokens)
        emb = torch.where(slots[..., None], word[:, None, :].to(emb.dtype), emb)
        with self.installed(encoder):
            text = F.normalize(encoder.encode_text(tokens, emb).float(), dim=1)
        if self.gain is None:
            return text
        return F.normalize(text + self.gain * image, dim=1)

    def save(self, path: Path, metadata: dict[str, str]) -> None:
        save_state(self, path, {**metadata, **{k: str(v) for k, v in self.arch.items()}})

    @classmethod
    def load(cls, path: str | Path) -> Composer:
        """A composer saved by :meth:`save` (safetensors: tensors only, nothing that runs)."""
        path = Path(path)
        if not path.is_file():
            raise MatchbenchError(f"{path}: checkpoint not found; train its recipe first")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
            arch = {
                k: meta[k]
                for k in ("dim", "width", "hidden", "adapter_layers", "adapter_rank", "gain")
            }
        except (SafetensorError, KeyError, OSError) as e:
            raise MatchbenchError(f"{path}: not a cir method checkpoint ({e})") from None
        composer = cls(
            int(arch["dim"]),
            int(arch["width"]),
            int(arch["hidden"]),
            adapter_layers=int(arch["adapter_layers"]),
            adapter_rank=int(arch["adapter_rank"]),
            gain=0.0 if arch["gain"] == "True" else None,
        )
        try:
            composer.load_state_dict(state)
        except RuntimeError as e:
            reason = (str(e).strip().splitlines() or [""])[-1].strip()[:160]
            raise MatchbenchError(
                f"{path}: its tensors do not fit its metadata ({reason})"
            ) from None
        return composer.eval()


# --------------------------------------------------------------------------- prompts


def trim(tokens: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Tokens (and aligned tensors) cut after the batch's last end-of-text token (the largest
    id, CLIP's pooled position): the padding after it changes no output and costs most of the
    text tower's time on short prompts."""
    length = int(tokens.argmax(-1).max()) + 1
    return tuple(t[:, :length] for t in (tokens, *others))


def placeholder_id(encoder: OpenClipEncoder) -> int:
    """The token id of :data:`PLACEHOLDER` (one token in CLIP's vocabulary)."""
    tokens = encoder.tokenize([PLACEHOLDER])[0]
    inner = tokens[1 : int(tokens.argmax())]  # between start- and end-of-text
    if inner.numel() != 1:
        raise MatchbenchError(
            f"backbone {encoder.name!r}: its tokenizer splits {PLACEHOLDER!r} into "
            f"{inner.numel()} tokens; a pseudo-word needs one"
        )
    return int(inner[0])


def clean(text: str) -> str:
    """A modification text with the placeholder character removed (it marks the pseudo-word)."""
    return " ".join(text.replace(PLACEHOLDER, " ").split())


def fill(prompt: str, text: str) -> str:
    """The prompt with ``text`` in place of ``{}`` and its ``$`` standing alone (CLIP's
    tokenizer reads ``$,`` or ``$.`` as other tokens than the placeholder)."""
    before, _, after = prompt.replace(PLACEHOLDER, f" {PLACEHOLDER} ").partition("{}")
    return " ".join(f"{before}{clean(text)}{after}".split())


def prompt_tokens(
    encoder: OpenClipEncoder, sentences: list[str], pid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens of sentences with pseudo-word placeholders, and where the placeholders are."""
    tokens = encoder.tokenize(sentences)
    slots = tokens == pid
    lost = (~slots.any(1)).nonzero().flatten().tolist()
    if lost:
        raise MatchbenchError(
            f"prompt {sentences[lost[0]]!r}: its pseudo-word {PLACEHOLDER!r} was cut by the "
            f"{encoder.context_length}-token context; put {PLACEHOLDER!r} early in tracks.cir.prompt"
        )
    return tokens, slots


def mask_keywords(caption: str) -> str:
    """LinCIR's self-masking: every run of content words (not :data:`STOPWORDS`) becomes one
    pseudo-word ``$``; a caption of stopwords only has its last word masked."""
    words = re.findall(r"[A-Za-z0-9'-]+|[^\sA-Za-z0-9'-]", clean(caption))
    out: list[str] = []
    for w in words:
        if w.lower() in STOPWORDS or not w[0].isalnum():
            out.append(w)
        elif not out or out[-1] != PLACEHOLDER:
            out.append(PLACEHOLDER)
    if PLACEHOLDER not in out and out:
        out[-1] = PLACEHOLDER
    return " ".join(out) if out else PLACEHOLDER


def read_composer_meta(path: str | Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})
