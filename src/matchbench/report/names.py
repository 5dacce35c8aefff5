"""Names in the report: file names of outputs, titles of datasets, the order of models."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# How the papers spell the datasets the config names by short keys (config/*.yaml), in the
# order of the unified benchmark's tables.
DATASET_TITLES = {
    "spair71k": "SPair-71k",
    "pfpascal": "PF-PASCAL",
    "ap10k": "AP-10K",
    "miniworld-spair": "mini-world (SPair-71k layout)",
}


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


def dataset_title(name: str) -> str:
    """``spair71k`` -> ``SPair-71k``; a name the report does not know is shown as it is."""
    return DATASET_TITLES.get(name, name)


def is_finetuned(model: str) -> bool:
    """``<backbone>+<recipe>`` is a fine-tuned model (docs/contracts.md, "Model names")."""
    return "+" in model


def ordered_models(models: Iterable[str]) -> list[str]:
    """Frozen backbones first, then fine-tuned models, each by name (the papers' row order)."""
    return sorted(set(models), key=lambda m: (is_finetuned(m), m))


def ordered_datasets(datasets: Iterable[str]) -> list[str]:
    """The datasets the report knows in the papers' column order, then the others by name."""
    rank = {name: i for i, name in enumerate(DATASET_TITLES)}
    return sorted(set(datasets), key=lambda d: (rank.get(d, len(rank)), d))
