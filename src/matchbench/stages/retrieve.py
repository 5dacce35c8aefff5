"""The `retrieve` stage: search a database of stored descriptors, write ranked lists.

A track with a search step (``Track.retrieve``; the retrieval track's: exact sharded search or
a faiss index over the positives and the distractor shards) writes its ranked lists into
``Layout.ranked(dataset, model)``, which its ``evaluate`` reads. Separate from evaluation so
that a change of metric never reruns a search over millions of vectors.
"""

from __future__ import annotations

import argparse

from matchbench.config import add_config_argument, load_config
from matchbench.tracks import tasks


def _searching() -> list[str]:
    return sorted(name for name, t in tasks().items() if t.retrieve)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--task", required=True, choices=_searching(), help="a track's name")
    parser.add_argument("--dataset", required=True, help="dataset name of the config")
    parser.add_argument("--model", required=True, help="<model>@<method>")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    print(f"retrieve: {tasks()[args.task].fn('retrieve')(cfg, args)}")
    return 0
