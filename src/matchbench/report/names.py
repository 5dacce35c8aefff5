"""Names in the report: file names of outputs and the order of models."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def slug(name: str) -> str:
    """A file-name-safe form of ``name``; distinct names give distinct slugs.

    Names that are already safe are kept as they are (readable file names); others get a
    short hash of the original appended, so ``a/b`` and ``a-b`` cannot overwrite each other.
    """
    safe = _UNSAFE.sub("-", name).strip("-.") or "x"
    if safe == name:
        return name
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"{safe}-{digest}"


def stem(*names: str) -> str:
    """``slug(a)_slug(b)...``: the stem of a table or figure about (task, dataset, ...)."""
    return "_".join(slug(n) for n in names)


def is_finetuned(model: str) -> bool:
    """``<backbone>+<recipe>`` is a fine-tuned model (docs/contracts.md, "Model names")."""
    return "+" in model


def ordered_models(models: Iterable[str]) -> list[str]:
    """Frozen backbones first, then fine-tuned models, each by name (the papers' row order)."""
    return sorted(set(models), key=lambda m: (is_finetuned(m), m))
