"""The `matchbench` command: one subcommand per stage, each a thin door into one module.

A subcommand's module is imported only when that subcommand runs, so `matchbench --help`
and light stages (report, score) do not pay for importing torch.
Each module exposes ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
from pathlib import Path

from matchbench import __version__
from matchbench.errors import MatchbenchError, user_message
from matchbench.warm import ENV, run_in_server

COMMANDS: dict[str, tuple[str, str]] = {
    "download": (
        "matchbench.stages.data",
        "fetch a dataset (or generate the mini-world) into data/raw/",
    ),
    "prepare": (
        "matchbench.stages.data",
        "turn a dataset's native layout into data/<dataset>/images.parquet",
    ),
    "weights": (
        "matchbench.models.weights",
        "fetch pretrained backbone weights into data/weights/",
    ),
    "extract": (
        "matchbench.stages.extract",
        "extract L2-normalised global features into the feature store (--dense: dense maps)",
    ),
    "mine": ("matchbench.stages.mine", "mine semantic positive pairs with faiss kNN"),
    "finetune": ("matchbench.stages.finetune", "fine-tune a backbone with a recipe"),
    "retrieve": (
        "matchbench.stages.retrieve",
        "search a database of stored descriptors with faiss; write ranked lists",
    ),
    "evaluate": ("matchbench.stages.evaluate", "evaluate features and write a metrics JSON"),
    "report": (
        "matchbench.stages.report",
        "gather metrics into tables, figures and an HTML report",
    ),
    "score": ("matchbench.stages.score", "score predictions in an official benchmark format"),
    "dvc-export": ("matchbench.dvc_export", "write dvc.yaml from the Snakemake DAG"),
    "check": ("matchbench.stages.check", "validate a config file (YAML, schema, backbones)"),
    "warm": (
        "matchbench.warm",
        "run a command (e.g. dvc repro) whose matchbench jobs fork from one warm process",
    ),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="matchbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"matchbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            mod = importlib.import_module(module)
            # A module serving several stages names its per-stage hooks add_<stage>_arguments.
            stage = name.replace("-", "_")
            getattr(mod, f"add_{stage}_arguments", getattr(mod, "add_arguments", None))(p)
            p.set_defaults(_run=getattr(mod, f"run_{stage}", getattr(mod, "run", None)))
    return parser


_OS_HINTS = {
    errno.EACCES: "permission denied; make the folder writable, or point the config's paths elsewhere",
    errno.EPERM: "not permitted; make the folder writable, or point the config's paths elsewhere",
    errno.EROFS: "read-only file system; point the config's paths (data, results, reports) at a writable folder",
    errno.ENOSPC: "no space left on the device; free some, or point the config's paths at a bigger disk",
    errno.EDQUOT: "disk quota exceeded; free some, or point the config's paths at another disk",
}


def os_error_message(e: OSError) -> str | None:
    """One line for an OSError a user can act on (permissions, a full disk), else None."""
    hint = _OS_HINTS.get(e.errno or -1)
    if hint is None:
        return None
    where = Path(e.filename) if e.filename else None
    if where is not None and where.name.startswith(".") and where.name.endswith(".tmp"):
        where = where.parent  # an atomic write's temporary file: name the folder
    return f"{where}: {hint}" if where is not None else hint


def main(argv: list[str] | None = None) -> int:
    if argv is None and os.environ.get(ENV):
        # A job of a local Snakemake run: the warm server runs it in a child forked from a
        # process that has imported torch already (matchbench.warm); None = no server here.
        code = run_in_server(sys.argv[1:])
        if code is not None:
            return code
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except MatchbenchError as e:
        print(f"matchbench {args.command}: error: {user_message(e)}", file=sys.stderr)
        return 2
    except OSError as e:  # a folder that cannot be written, a full disk: one line, not a traceback
        message = os_error_message(e)
        if message is None:
            raise
        print(f"matchbench {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"matchbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
