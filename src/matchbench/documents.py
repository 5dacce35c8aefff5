"""Metrics documents: the one schema (``schemas/metrics.schema.yaml``) and its validator.

``matchbench evaluate`` and ``matchbench score`` validate a document before writing it, and the
report validates each one it reads, so a hand-edited or foreign file is refused with the key at
fault rather than drawn wrong.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import yaml

from matchbench.errors import MatchbenchError


@cache
def schema() -> dict[str, Any]:
    text = resources.files("matchbench").joinpath("schemas/metrics.schema.yaml").read_text()
    return yaml.safe_load(text)


def validate_document(doc: Any, source: str) -> None:
    """Raise a one-line :class:`MatchbenchError` naming ``source`` and the first bad key."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise MatchbenchError(f"{source}: not a metrics document: {where}: {e.message}")
