"""What a job reads: the config values and the code that decide its outputs.

Snakemake and DVC must rerun a job exactly when something it reads changes, and nothing else.
One function, :func:`job_reads`, answers for a ``matchbench`` command: the dotted config keys
its stage reads (the shared ones here, a track's own from the track's ``reads``) and the
package modules it runs (the stage module, the track's module for the task, recipe or feature
kind, and everything they import from ``matchbench``). The rules put both into their
``params`` (the ``params`` rerun trigger: the values, and a hash of the modules' source), and
``matchbench dvc-export`` turns them into each stage's ``params:`` and ``deps:``.

The config file's *path* is never among them: a copy of an unchanged config under another
name reruns nothing.
"""

from __future__ import annotations

import ast
import hashlib
import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from matchbench.cli import COMMANDS
from matchbench.layout import backbone_of

PACKAGE_ROOT = Path(__file__).resolve().parent  # src/matchbench
SOURCE_ROOT = PACKAGE_ROOT.parent  # src/

# Keys every job that runs a network reads (runtime.start).
RUNTIME_KEYS = ("seed", "threads", "device", "extract.precision")
# The extract block's keys an extraction's features depend on (batches never cross shards).
EXTRACT_KEYS = ("extract.batch_size", "extract.shard_size")


def module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "matchbench":
        return None
    base = SOURCE_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _direct_imports(module: str) -> tuple[str, ...]:
    """``matchbench`` modules ``module`` imports anywhere in its source (lazy imports too)."""
    path = module_file(module)
    if path is None:
        return ()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("matchbench"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("matchbench"):
                continue
            found.add(node.module)
            for alias in node.names:  # `from matchbench.data import cifar` imports a module
                if module_file(f"{node.module}.{alias.name}") is not None:
                    found.add(f"{node.module}.{alias.name}")
    # A package's __init__ runs before any of its modules.
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return tuple(sorted(m for m in found if module_file(m) is not None))


def closure(modules: Iterable[str]) -> list[str]:
    """``modules`` and every ``matchbench`` module they import, transitively, sorted."""
    seen: set[str] = set()
    todo = [m for m in modules if module_file(m) is not None]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(_direct_imports(m))
    return sorted(seen)


def source_files(modules: Iterable[str]) -> list[Path]:
    files = {module_file(m) for m in closure(modules)}
    return sorted(f for f in files if f is not None)


def code_version(files: Iterable[Path]) -> str:
    """sha256 over source files (their paths below src/ and their contents)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(SOURCE_ROOT).as_posix().encode() + b"\0")
        h.update(f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def schema_files(track: Any | None) -> list[Path]:
    """The config schema a job's defaults come from: the shared part and its track's block."""
    files = [PACKAGE_ROOT / "schemas" / "config.schema.yaml"]
    if track is not None:
        files.append(PACKAGE_ROOT / "tracks" / track.name / "schema.yaml")
    return files


def _module_of(ref: str) -> str:
    return ref.partition(":")[0]


def job_reads(
    cfg: dict[str, Any], stage: str, opts: dict[str, Any]
) -> tuple[list[str], list[Path]]:
    """The config keys (dotted) and source files a ``matchbench <stage>`` job with ``opts`` reads.

    The files are the modules it runs and everything they import from ``matchbench``, and the
    config schema its defaults come from (the shared part and its track's block).

    ``opts`` are the command's options by name (``dataset``, ``model``, ``task``, ``recipe``,
    ``backbone``, ``track``, ``dense``); a track adds its own keys through its ``reads``.
    """
    from matchbench.data import get_family
    from matchbench.tracks import feature_kinds, find_recipe, load_object, tasks

    modules = [COMMANDS[stage][0]]  # the module the subcommand runs
    keys: list[str] = []
    track = None
    if stage in ("download", "prepare"):
        keys.append(f"datasets.{opts['dataset']}")
        modules.append(type(get_family(cfg["datasets"][opts["dataset"]]["family"])).__module__)
    elif stage == "weights":
        keys.append(f"backbones.{opts['backbone']}")
    elif stage == "extract":
        # Not extract.workers: the processes that decode images do not change the features.
        keys += [f"backbones.{backbone_of(opts['model'])}", *EXTRACT_KEYS, *RUNTIME_KEYS]
        if opts.get("shard"):  # a distractor shard: read by its dataset's family
            keys.append(f"datasets.{opts['dataset']}")
            modules.append(type(get_family(cfg["datasets"][opts["dataset"]]["family"])).__module__)
        if opts.get("dense"):
            modules.append(_module_of(feature_kinds()["dense"]))
            track = next(t for t in tasks().values() if dict(t.features).get("dense"))
    elif stage == "mine":
        keys += [f"tracks.{opts['track']}.mine", "threads"]
    elif stage == "finetune":
        track, recipe = find_recipe(opts["recipe"])
        modules.append(_module_of(recipe.train))
        # A recipe may train on a trained model (cir's mappings on `<backbone>+<recipe>`).
        keys += [f"backbones.{backbone_of(opts['backbone'])}", *RUNTIME_KEYS]
    elif stage in ("evaluate", "retrieve"):
        track = tasks()[opts["task"]]
        modules.append(_module_of(getattr(track, stage)))
        keys += [f"backbones.{backbone_of(opts['model'])}", *RUNTIME_KEYS]
    elif stage == "report":
        from matchbench.tracks import enabled

        keys += ["report", "run"]
        for t in enabled(cfg):
            if t.report:
                modules.append(_module_of(t.report))
            if t.reads:
                keys += load_object(t.reads)(cfg, stage, opts)
    if track is None and stage == "mine":
        track = tasks().get(opts["track"])
    if track is not None and track.reads is not None:
        keys += load_object(track.reads)(cfg, stage, opts)
    files = source_files(modules) + schema_files(track)
    return sorted(dict.fromkeys(keys)), sorted(files)


def lookup(cfg: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of the resolved config.

    A name may itself contain dots (``backbones.vit.b16``): at each level the longest run of
    parts that is a key wins.
    """
    node: Any = cfg
    parts = key.split(".")
    while parts:
        for n in range(len(parts), 0, -1):
            name = ".".join(parts[:n])
            if isinstance(node, dict) and name in node:
                node, parts = node[name], parts[n:]
                break
        else:
            raise KeyError(key)
    return node


def job_params(cfg: dict[str, Any], stage: str, opts: dict[str, Any]) -> str:
    """A rule's rerun param: the values of the keys the job reads and its code's version."""
    keys, files = job_reads(cfg, stage, opts)
    values = {k: lookup(cfg, k) for k in keys}
    return json.dumps({"config": values, "code": code_version(files)}, sort_keys=True)


def parse_command(shellcmd: str) -> tuple[str, dict[str, Any]]:
    """``matchbench <stage> --opt value --flag ... 2> log`` → (stage, {opt: value, flag: True}).

    The inverse of the rules' shell lines, for ``dvc-export``: it asks :func:`job_reads` the
    same question the rule's params did.
    """
    import shlex

    argv = shlex.split(shellcmd)
    if len(argv) < 2 or argv[0] != "matchbench":
        raise ValueError(f"not a matchbench command: {shellcmd!r}")
    stage, rest = argv[1], argv[2:]
    opts: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        word = rest[i]
        if not word.startswith("--"):  # a redirection (2> log) ends the options
            break
        name = word[2:].replace("-", "_")
        values = []
        while i + 1 < len(rest) and not rest[i + 1].startswith("--") and rest[i + 1] != "2>":
            values.append(rest[i + 1])
            i += 1
        opts[name] = True if not values else values[0] if len(values) == 1 else values
        i += 1
    return stage, opts
