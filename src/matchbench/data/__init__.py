"""Dataset families, registered by name.

A family knows how to get a dataset's raw files (download them, or generate them) and how to
turn its native layout into the common index ``images.parquet`` (see docs/contracts.md), and
declares the JSON schema of its ``options`` (``options_schema``, with their defaults): the
config loader checks ``datasets.<name>.options`` against it and fills the defaults in, and the
family reads its options through :func:`resolve_options`, so a family called directly sees the
same checks and defaults. Adding a dataset is one module with one ``@register_family`` class
and its name in ``BUILTIN`` (or, for a track's own datasets, in the track's ``families``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from matchbench.errors import MatchbenchError, did_you_mean

INDEX_COLUMNS = ["id", "path", "split", "class", "label", "instance", "width", "height"]


class DatasetFamily(Protocol):
    """A dataset family. ``tables`` (optional): files ``prepare`` writes besides
    ``images.parquet`` (a track's task tables, such as ``pairs.parquet``); a family with
    tables is prepared by its track's rule, the others by the shared ``prepare`` rule."""

    name: str
    # JSON schema of ``options``: an object of known keys, each with its type, range and
    # (where it has one) default; see :func:`options_object`.
    options_schema: dict[str, Any]

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        """Fetch or generate the raw files into ``raw_dir`` (written whole, atomically)."""

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        """Parse ``raw_dir`` and write ``out_dir/images.parquet`` (+ decoded images)."""

    # Optional: ``check_options(options, where)`` checks what ``options_schema`` cannot say
    # (min <= max, enough images for the pairs) on resolved options, raising a one-line
    # MatchbenchError that names ``where``; config loading calls it (:func:`check_options`),
    # so a bad combination fails at ``snakemake -n``, not in the download job.


def check_options(family: DatasetFamily, options: Mapping[str, Any], where: str) -> None:
    """The family's own check of its resolved ``options`` (its ``check_options``), if it has one."""
    check = getattr(family, "check_options", None)
    if check is not None:
        check(copy.deepcopy(dict(options)), where)


def options_object(**properties: dict[str, Any]) -> dict[str, Any]:
    """A family's ``options_schema``: an object of exactly these keys (each a JSON schema)."""
    return {"type": "object", "additionalProperties": False, "properties": properties}


def resolve_options(family: DatasetFamily, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` checked against ``family.options_schema``, with its defaults filled in (a
    new dict). Errors are one line naming the family and the option."""
    from matchbench.config import fill_defaults, schema_errors

    opts = copy.deepcopy(dict(options or {}))
    errors = schema_errors(family.options_schema, opts, "options")
    if errors:
        raise MatchbenchError(f"dataset {family.name}: {'; '.join(errors)}")
    return fill_defaults(opts, family.options_schema)


_FAMILIES: dict[str, Callable[[], DatasetFamily]] = {}
BUILTIN = ("matchbench.data.cifar", "matchbench.data.imagefolder", "matchbench.data.miniworld")


def register_family(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        cls.name = name
        _FAMILIES[name] = cls
        return cls

    return wrap


def get_family(name: str) -> DatasetFamily:
    _load_builtin()
    if name not in _FAMILIES:
        raise MatchbenchError(
            f"unknown dataset family {name!r} (known: {', '.join(sorted(_FAMILIES))})"
            f"{did_you_mean(name, _FAMILIES)}"
        )
    return _FAMILIES[name]()


def families() -> list[str]:
    _load_builtin()
    return sorted(_FAMILIES)


def _load_builtin() -> None:
    # Imported by name, on first use, so `import matchbench.data` stays light (and a job's code
    # version, matchbench.reruns, counts only the family it uses). Tracks bring their own.
    import importlib

    from matchbench.tracks import tracks

    for module in BUILTIN:
        importlib.import_module(module)
    for track in tracks():
        for module in track.families:
            importlib.import_module(module)
