"""Load, validate and resolve a matchbench config: the one config loader of the project.

The schema (`schemas/config.schema.yaml`, linked from `workflow/schemas/`) documents every key;
each track brings its block, and each dataset family the schema of its ``options``
(``options_schema``), checked here with the rest. Errors name the file and the key path:
``config/x.yaml: tracks.<track>.train.epochs: 'ten' is not of type 'integer'``; an unknown key
suggests the close ones.
"""

from __future__ import annotations

import copy
import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.layout import split_model

__all__ = [
    "Config", "fill_defaults", "load_config", "resolve", "schema", "schema_errors", "split_model",
    "validate",
]  # fmt: skip

Config = dict[str, Any]


@cache
def schema() -> dict[str, Any]:
    """The config schema: the shared keys, with each registered track's block merged in."""
    from matchbench.tracks import tracks

    text = resources.files("matchbench").joinpath("schemas/config.schema.yaml").read_text()
    full = yaml.safe_load(text)
    full["properties"]["tracks"]["properties"] = {t.name: t.schema for t in tracks()}
    return full


def _path(error: jsonschema.ValidationError, prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in error.absolute_path]
    return ".".join(parts) or "(top level)"


def _allowed_keys(sub: dict[str, Any]) -> list[str]:
    return sorted(sub.get("properties", {}))


def _message(error: jsonschema.ValidationError, prefix: str = "") -> str:
    where = _path(error, prefix)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = _allowed_keys(error.schema)
        extra = sorted(set(error.instance) - set(allowed))
        parts = []
        for key in extra:
            close = difflib.get_close_matches(key, allowed, n=2)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            parts.append(f"unknown key {key!r}{hint}")
        return f"{where}: {'; '.join(parts)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum" and isinstance(error.instance, str):
        known = [str(v) for v in error.validator_value]
        return f"{where}: {error.message}{did_you_mean(error.instance, known)}"
    return f"{where}: {error.message}"


def schema_errors(sub: dict[str, Any], instance: Any, prefix: str = "") -> list[str]:
    """Every error of ``instance`` against the schema ``sub``, one line each, sorted by key
    path; paths start with ``prefix`` (``datasets.mini.options``)."""
    validator = jsonschema.Draft202012Validator(sub)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    return [_message(e, prefix) for e in errors]


def _with_family_options(raw: Any) -> tuple[dict[str, Any], list[tuple[list[str], str]]]:
    """The config schema with each dataset's ``options`` schema taken from its family
    (``options_schema``), and the errors of datasets naming an unknown family."""
    from matchbench.data import families, get_family

    full = schema()
    datasets = raw.get("datasets") if isinstance(raw, dict) else None
    if not isinstance(datasets, dict):
        return full, []
    base = full["properties"]["datasets"]["additionalProperties"]
    known = families()
    named: dict[str, Any] = {}
    errors: list[tuple[list[str], str]] = []
    for name, spec in datasets.items():
        family = spec.get("family") if isinstance(spec, dict) else None
        if not isinstance(family, str):
            continue  # the schema names what is wrong
        if family not in known:
            errors.append(
                (
                    ["datasets", str(name), "family"],
                    f"datasets.{name}.family: unknown dataset family {family!r}"
                    f"{did_you_mean(family, known)}; known: {', '.join(known)}",
                )
            )
            continue
        options = {**get_family(family).options_schema, "default": {}}
        named[name] = {**base, "properties": {**base["properties"], "options": options}}
    if not named:
        return full, errors
    block = {**full["properties"]["datasets"], "properties": named}
    return {**full, "properties": {**full["properties"], "datasets": block}}, errors


def validate(cfg: Config, source: str = "config") -> None:
    """Check ``cfg`` against the schema, each dataset's ``options`` against its family's."""
    full, family_errors = _with_family_options(cfg)
    validator = jsonschema.Draft202012Validator(full)
    found = [(list(map(str, e.absolute_path)), _message(e)) for e in validator.iter_errors(cfg)]
    found = sorted(found + family_errors, key=lambda e: e[0])
    if found:
        lines = "\n  ".join(message for _, message in found[:10])
        raise MatchbenchError(f"{source}: invalid config:\n  {lines}")


def fill_defaults(node: Any, sub: dict[str, Any]) -> Any:
    """Fill the schema ``sub``'s defaults into ``node`` (in place), at every level of fixed
    properties and of ``additionalProperties`` schemas; returns ``node``."""
    if not isinstance(node, dict):
        return node
    props = sub.get("properties", {})
    for key, prop in props.items():
        if key not in node and "default" in prop:
            node[key] = copy.deepcopy(prop["default"])
        if key in node:
            node[key] = fill_defaults(node[key], prop)
    extra = sub.get("additionalProperties")
    if isinstance(extra, dict):
        for key in node:
            if key not in props:
                node[key] = fill_defaults(node[key], extra)
    return node


def _check_references(cfg: Config, source: str) -> None:
    """Names a config uses must exist in it: each track checks its own block."""
    from matchbench.tracks import get_track

    for name in cfg["tracks"]:
        track = get_track(name)
        if track.check is not None:
            track.fn("check")(cfg, cfg["tracks"][track.name], source)


def check_names(
    source: str, key: str, names: list[str], known: dict[str, Any] | list[str], what: str
) -> None:
    """Every name in ``names`` (the value of config key ``key``) must be one of ``known``."""
    for name in names:
        if name not in known:
            raise MatchbenchError(
                f"{source}: {key}: {name!r} is not in {what} ({', '.join(known)})"
                f"{did_you_mean(name, known)}"
            )


def resolve(raw: Config, source: str = "config") -> Config:
    """Validate ``raw`` and return a new config with every default filled in."""
    if not isinstance(raw, dict):
        raise MatchbenchError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    validate(raw, source)
    cfg = fill_defaults(copy.deepcopy(raw), _with_family_options(raw)[0])
    _check_family_options(cfg, source)
    _check_references(cfg, source)
    return cfg


def _check_family_options(cfg: Config, source: str) -> None:
    """Each dataset's options, checked by its family where a schema cannot (min <= max)."""
    from matchbench.data import check_options, get_family

    for name, ds in cfg["datasets"].items():
        try:
            check_options(get_family(ds["family"]), ds.get("options") or {}, name)
        except MatchbenchError as e:
            raise MatchbenchError(f"{source}: {e}") from None


def load_config(path: str | Path) -> Config:
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MatchbenchError(f"{p}: config file not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MatchbenchError(f"{p}: not valid YAML{at}: {problem}") from None
    return resolve(raw, str(p))


def backbone_spec(cfg: Config, name: str) -> dict[str, Any]:
    backbones = cfg["backbones"]
    if name not in backbones:
        raise MatchbenchError(
            f"unknown backbone {name!r} (config backbones: {', '.join(backbones)})"
            f"{did_you_mean(name, backbones)}"
        )
    return backbones[name]


def dataset_spec(cfg: Config, name: str) -> dict[str, Any]:
    if name not in cfg["datasets"]:
        raise MatchbenchError(
            f"unknown dataset {name!r} (config datasets: {', '.join(cfg['datasets'])})"
        )
    return cfg["datasets"][name]


def add_config_argument(parser: Any) -> None:
    parser.add_argument(
        "--config", "-c", default="config/default.yaml", help="config file (default: %(default)s)"
    )


def gpu_wanted(device: str) -> bool:
    """Whether jobs of config ``device: <device>`` should be given a GPU (the Snakefile's ``gpu``
    resource): ``cuda``, or ``auto`` when this machine sees one; never for ``cpu``. torch is
    imported only for ``auto``: the Snakefile runs this in every cluster job, and importing torch
    takes seconds."""
    if device == "cpu":
        return False
    if device == "auto":
        import torch

        return torch.cuda.is_available()
    return True
