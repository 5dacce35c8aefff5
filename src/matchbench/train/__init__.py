"""The `finetune` stage: recipes by name, each one module of this package.

A recipe reads the config, the prepared dataset and (optionally) mined pairs, and writes
``model.safetensors`` (the backbone's weights: a fine-tuned model is a model like any other),
``train_log.csv`` and ``config.json`` into its output folder.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from matchbench.config import add_config_argument, load_config
from matchbench.errors import MatchbenchError

# recipe name -> (module, whether it takes mined pairs)
RECIPES: dict[str, tuple[str, bool]] = {
    "ssl": ("matchbench.train.ssl", False),
    "ssl-spp": ("matchbench.train.ssl", True),
    "correspondence": ("matchbench.train.correspondence", False),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--backbone", required=True)
    parser.add_argument(
        "--pairs", type=Path, help="pairs.parquet of mined positives (recipes that take them)"
    )
    parser.add_argument(
        "--out", type=Path, help="default: <results>/models/<recipe>/<dataset>/<backbone>"
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    module, takes_pairs = RECIPES[args.recipe]
    if takes_pairs and args.pairs is None:
        raise MatchbenchError(
            f"--recipe {args.recipe} needs --pairs (a pairs.parquet from `matchbench mine`)"
        )
    if not takes_pairs and args.pairs is not None:
        raise MatchbenchError(
            f"--recipe {args.recipe} takes no --pairs"
            + ("; use ssl-spp for mined positives" if args.recipe == "ssl" else "")
        )
    out = (
        args.out
        or Path(cfg["paths"]["results"]) / "models" / args.recipe / args.dataset / args.backbone
    )
    summary = importlib.import_module(module).train(
        cfg, args.dataset, args.backbone, out, pairs=args.pairs
    )
    print(f"finetune: {args.recipe} {args.backbone} on {args.dataset}: {summary} -> {out}")
    return 0
