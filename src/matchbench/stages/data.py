"""The `download` and `prepare` stages: thin doors into the dataset families."""

from __future__ import annotations

import argparse
from pathlib import Path

from matchbench.config import add_config_argument, dataset_spec, load_config
from matchbench.data import get_family
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout


def _common(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--dataset", required=True, help="dataset name from the config")


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--out", type=Path, help="raw folder (default: <data>/raw/<dataset>)")
    parser.add_argument(
        "--shard",
        help="fetch (or generate) one distractor shard of a sharded dataset (ILIAS) into "
        "<data>/raw/<dataset>.shards/<shard>.tar instead of the dataset's core files",
    )


def run_download(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    spec = dataset_spec(cfg, args.dataset)
    layout = Layout.of(cfg)
    family = get_family(spec["family"])
    if args.shard:
        if not hasattr(family, "download_shard"):
            raise MatchbenchError(
                f"--shard: dataset {args.dataset!r} (family {spec['family']}) has no distractor shards"
            )
        dest = args.out or Path(layout.shard(args.dataset, args.shard))
        family.download_shard(Path(layout.raw(args.dataset)), spec["options"], args.shard, dest)
        print(f"download: {args.dataset} shard {args.shard} -> {dest}")
        return 0
    out = args.out or Path(layout.raw(args.dataset))
    family.download(out, spec["options"])
    print(f"download: {args.dataset} -> {out}")
    return 0


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--raw", type=Path, help="raw folder (default: <data>/raw/<dataset>)")
    parser.add_argument("--out", type=Path, help="index folder (default: <data>/<dataset>)")


def run_prepare(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    spec = dataset_spec(cfg, args.dataset)
    layout = Layout.of(cfg)
    raw = args.raw or Path(layout.raw(args.dataset))
    out = args.out or Path(layout.dataset(args.dataset))
    family = get_family(spec["family"])
    family.prepare(raw, out, spec["options"])
    tables = ["images.parquet", *getattr(family, "tables", ())]
    print(f"prepare: {args.dataset} -> {', '.join(str(out / t) for t in tables)}")
    return 0
