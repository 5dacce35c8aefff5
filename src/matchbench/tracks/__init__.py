"""The track registry: the only place in matchbench that lists the tracks.

A track is one folder here (``tracks/<name>/``), one rules file (``workflow/rules/tracks/<name>.smk``)
and one config block (``tracks.<name>``). Its package defines ``TRACK``, a :class:`Track`: its
config schema fragment, the dataset families it brings, its recipes (with their log columns), its
evaluation task, its ``score`` formats, its reference checks, the final files it asks of the DAG
and its report section. The shared stages (config, extract, finetune, evaluate, score, report,
dvc-export, the Snakefile) dispatch through :func:`get_track` / :func:`tracks` and never name
a track.

Track packages import nothing heavy at module level: the config loader reads every track's
schema, and ``matchbench --help`` must not pay for torch. The parts that need torch are named
by import path (``"module:function"``) and imported when used.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.layout import PER_QUERY

# The registry. Adding a track is one folder, one rules file, and one name here.
NAMES: tuple[str, ...] = ("ssl", "correspondence", "compose", "cir", "retrieval")


def load_object(ref: str) -> Any:
    """``"matchbench.tracks.ssl.recipe:train"`` → the function it names (imported now)."""
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


# What a track's targets list per evaluated model: its metrics document (side None) and the
# per-query values beside it (docs/contracts.md).
SIDES: tuple[str | None, ...] = (None, PER_QUERY)


@dataclass(frozen=True)
class Recipe:
    """A fine-tuning recipe: ``matchbench finetune --recipe <name>``.

    ``train`` names ``train(cfg, dataset, backbone, out, *, pairs) -> str`` (a one-line summary),
    which writes ``model.safetensors``, ``train_log.csv`` (exactly ``log_columns``) and
    ``config.json`` into ``out``. ``plot_columns`` are the log columns drawn as learning curves
    (by the report, whose figures are also `dvc plots`), against ``epoch``.
    """

    name: str
    train: str
    log_columns: tuple[str, ...]
    plot_columns: tuple[str, ...]
    takes_pairs: bool = False
    # A family of recipes named by the config: ``clip-`` stands for ``clip-<variant>`` for
    # every variant the track's block defines; its ``train`` gets ``recipe=<name>``.
    prefix: bool = False

    def matches(self, name: str) -> bool:
        return (
            name.startswith(self.name) and len(name) > len(self.name)
            if self.prefix
            else name == self.name
        )


@dataclass(frozen=True)
class Track:
    """One line of research under the common protocol (see the module docstring)."""

    name: str
    title: str
    package: str
    # The evaluation task (``matchbench evaluate --task <name>``): ``evaluate(cfg, args) -> doc``.
    evaluate: str
    # A search stage before evaluation (``matchbench retrieve --task <name>``):
    # ``retrieve(cfg, args) -> str`` (a one-line summary) writes the ranked lists of
    # ``Layout.ranked`` that the track's ``evaluate`` reads.
    retrieve: str | None = None
    recipes: tuple[Recipe, ...] = ()
    # Modules whose import registers the track's own dataset families.
    families: tuple[str, ...] = ()
    # ``check(cfg, block, source)``: reference checks beyond the schema (names that must exist).
    check: str | None = None
    # ``targets(cfg, layout) -> list[str]``: the files of this track the report reads (metrics
    # documents and the artifacts they name); the DAG builds whatever they need.
    targets: str | None = None
    # ``reads(cfg, stage, opts) -> [dotted config keys]``: what the track's jobs read besides
    # the shared keys (matchbench.reruns); they become the jobs' rerun params and DVC params.
    reads: str | None = None
    # ``section(docs, ctx) -> Section`` (matchbench.report.section): the track's part of the
    # report, from its own metrics documents.
    report: str | None = None
    # Feature kinds beyond global descriptors (``matchbench extract --<kind>``): kind ->
    # ``extract(cfg, dataset, model, out, weights) -> exit code``, printing its own summary.
    features: tuple[tuple[str, str], ...] = ()
    # Stage modules whose code decides this track's outputs besides the shared ones
    # (dvc deps and Snakemake code-version params).
    code: tuple[str, ...] = field(default_factory=tuple)
    # Official prediction formats ``matchbench score --benchmark <name>`` reads: (name,
    # ``score(predictions, annotations, split, n_boot, seed) -> dict``), the function returning
    # the document's ``task``, ``split`` (its default when ``split`` is None), ``metrics``,
    # ``per_category`` and ``extra`` (see matchbench.stages.score).
    score_formats: tuple[tuple[str, str], ...] = ()
    # ``checkpoint(cfg, model, dataset) -> path``: the checkpoint a model of one of this track's
    # recipes loads when it is used on ``dataset``. Default: the one trained on ``dataset``; a
    # track whose models train on one dataset and serve others (compose) says which.
    checkpoint: str | None = None
    # The metrics of this task's documents that ``evaluate`` also writes, flat, to
    # ``<results>/summary/`` (DVC's metrics files: the columns of ``dvc metrics show`` and
    # ``dvc exp show``); the full documents are the report's.
    headline: tuple[str, ...] = ()

    @property
    def schema(self) -> dict[str, Any]:
        return _schema(self.package)

    def fn(self, attr: str) -> Callable[..., Any]:
        ref = getattr(self, attr)
        if ref is None:
            raise MatchbenchError(f"track {self.name!r} has no {attr}")
        return load_object(ref)


@cache
def _schema(package: str) -> dict[str, Any]:
    text = resources.files(package).joinpath("schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def filled_block(cfg: dict[str, Any], name: str) -> dict[str, Any]:
    """``tracks.<name>`` of ``cfg`` with every default of the track's schema filled in (the
    loader already does so for a loaded config; a config built by hand gets the same values)."""
    from matchbench.config import fill_defaults

    raw = cfg.get("tracks", {}).get(name)
    if raw is None:
        raise MatchbenchError(f"the {name} track reads tracks.{name}, which the config lacks")
    return fill_defaults(copy.deepcopy(raw), _schema(f"{__name__}.{name}"))


# ``<model>@<method>``: how the tracks that evaluate one model under several methods (cir,
# retrieval) name each pair in the DAG, the metrics documents and the report.
METHOD_SEP = "@"


def split_method(name: str, methods: tuple[str, ...], task: str, verb: str) -> tuple[str, str]:
    """``"<model>@<method>"`` → ``(model, method)``; a name without one of ``methods`` is
    refused with an error saying what the ``task`` does with such names (its ``verb``)."""
    model, sep, method = name.rpartition(METHOD_SEP)
    if not sep or not model:
        raise MatchbenchError(
            f"model {name!r}: the {task} task {verb} `<model>{METHOD_SEP}<method>` "
            f"(methods: {', '.join(methods)})"
        )
    if method not in methods:
        raise MatchbenchError(
            f"model {name!r}: unknown {task} method {method!r} (known: {', '.join(methods)})"
            f"{did_you_mean(method, methods)}"
        )
    return model, method


@cache
def get_track(name: str) -> Track:
    if name not in NAMES:
        raise MatchbenchError(
            f"unknown track {name!r} (known: {', '.join(NAMES)}){did_you_mean(name, NAMES)}"
        )
    track = importlib.import_module(f"{__name__}.{name}").TRACK
    if track.name != name:
        raise MatchbenchError(f"track package {name!r} defines TRACK named {track.name!r}")
    return track


def tracks() -> Iterator[Track]:
    for name in NAMES:
        yield get_track(name)


def enabled(cfg: dict[str, Any]) -> list[Track]:
    """The tracks a resolved config runs (present in ``tracks:`` and not ``enabled: false``)."""
    return [t for t in tracks() if cfg["tracks"].get(t.name, {}).get("enabled", False)]


def recipes() -> dict[str, tuple[Track, Recipe]]:
    """Every recipe of every track, by name."""
    found: dict[str, tuple[Track, Recipe]] = {}
    for track in tracks():
        for recipe in track.recipes:
            if recipe.name in found:
                raise MatchbenchError(
                    f"recipe {recipe.name!r} is declared by tracks {found[recipe.name][0].name!r} "
                    f"and {track.name!r}"
                )
            found[recipe.name] = (track, recipe)
    return found


def find_recipe(name: str) -> tuple[Track, Recipe]:
    """The track and recipe of ``name``: a recipe of that name, or of a prefix family
    (``clip-<variant>``)."""
    known = recipes()
    if name in known and not known[name][1].prefix:
        return known[name]
    for track, recipe in known.values():
        if recipe.prefix and recipe.matches(name):
            return track, recipe
    shown = [f"{n}<variant>" if r.prefix else n for n, (_, r) in sorted(known.items())]
    raise MatchbenchError(
        f"unknown recipe {name!r} (known: {', '.join(shown)}){did_you_mean(name, known)}"
    )


def get_recipe(name: str) -> Recipe:
    return find_recipe(name)[1]


def feature_kinds() -> dict[str, str]:
    """Every track's extra feature kind (``dense``, ...) -> its extraction function."""
    return {kind: ref for t in tracks() for kind, ref in t.features}


def score_formats() -> dict[str, str]:
    """Every track's ``matchbench score`` format: benchmark name -> ``"module:function"``."""
    found: dict[str, str] = {}
    owner: dict[str, str] = {}
    for track in tracks():
        for name, ref in track.score_formats:
            if name in found:
                raise MatchbenchError(
                    f"score format {name!r} is declared by tracks {owner[name]!r} and {track.name!r}"
                )
            found[name], owner[name] = ref, track.name
    return found


def tasks() -> dict[str, Track]:
    """Evaluation tasks by name: each track evaluates under its own name."""
    return {t.name: t for t in tracks()}
