"""The `check` command: is a config file valid, before Snakemake or DVC runs it?

It reads the file as every stage does (YAML syntax with the line and column of a mistake, the
schema with each track's block, every backbone built on the meta device with its kwargs) and
prints what the config runs. Snakemake parses ``--configfile`` itself first and reports a YAML
syntax error without its line; this command gives it.
"""

from __future__ import annotations

import argparse

from matchbench.config import add_config_argument, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)


def run(args: argparse.Namespace) -> int:
    from matchbench.models import check_backbones
    from matchbench.tracks import enabled

    cfg = load_config(args.config)
    check_backbones(cfg)
    tracks = ", ".join(t.name for t in enabled(cfg)) or "none"
    print(
        f"{args.config}: valid (run {cfg['run']!r}; {len(cfg['datasets'])} datasets, "
        f"{len(cfg['backbones'])} backbones; tracks: {tracks})"
    )
    return 0
