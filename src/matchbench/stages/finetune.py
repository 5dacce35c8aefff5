"""The `finetune` stage: recipes by name, each declared by its track (``matchbench.tracks``).

A recipe reads the config, the prepared dataset and (when it takes them) mined pairs, and
writes ``model.safetensors`` (the whole encoder: a fine-tuned model is a model like any
other), ``train_log.csv`` (the recipe's declared log columns) and ``config.json`` into
``<results>/models/<recipe>/<dataset>/<backbone>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matchbench.config import add_config_argument, load_config
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.tracks import get_recipe, load_object, recipes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument(
        "--recipe",
        required=True,
        help="a recipe of a track: "
        + ", ".join(f"{n}<variant>" if r.prefix else n for n, (_, r) in sorted(recipes().items())),
    )
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
    recipe = get_recipe(args.recipe)
    if recipe.takes_pairs and args.pairs is None:
        raise MatchbenchError(
            f"--recipe {args.recipe} needs --pairs (a pairs.parquet from `matchbench mine`)"
        )
    if not recipe.takes_pairs and args.pairs is not None:
        takers = sorted(name for name, (_, r) in recipes().items() if r.takes_pairs)  # noqa: SIM118
        raise MatchbenchError(
            f"--recipe {args.recipe} takes no --pairs; recipes that do: {', '.join(takers)}"
        )
    out = args.out or Path(Layout.of(cfg).model(args.recipe, args.dataset, args.backbone))
    train = load_object(recipe.train)
    # A recipe family (clip-<variant>) learns which member it runs from its name.
    named = {"recipe": args.recipe} if recipe.prefix else {}
    summary = train(cfg, args.dataset, args.backbone, out, pairs=args.pairs, **named)
    print(f"finetune: {args.recipe} {args.backbone} on {args.dataset}: {summary} -> {out}")
    return 0
