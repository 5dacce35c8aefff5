"""The `evaluate` stage: one metrics document per (task, dataset, model), with bootstrap CIs.

Each track evaluates under its own name (``--task <track>``, the registry in
``matchbench.tracks``). A task receives the resolved config and the parsed arguments, writes
any side file next to ``--out`` (``<model>.<side>``, named in the document's ``artifacts``) and
returns the metrics document of docs/contracts.md, which is validated against
``schemas/metrics.schema.yaml`` before it is written. Metric definitions live in
``matchbench.metrics``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from matchbench.config import add_config_argument, load_config
from matchbench.documents import validate_document
from matchbench.errors import MatchbenchError
from matchbench.io import write_json
from matchbench.layout import Layout, split_model
from matchbench.tracks import Track, find_recipe, tasks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--task", required=True, choices=sorted(tasks()), help="a track's name")
    parser.add_argument("--dataset", required=True, help="dataset name of the config")
    parser.add_argument("--model", required=True, help="<backbone>[+<recipe>]")
    parser.add_argument(
        "--features",
        type=Path,
        help="the task's feature folder (default: the one the track reads in the layout)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="metrics JSON (default: <results>/metrics/<task>/<dataset>/<model>.json)",
    )
    parser.add_argument(
        "--summary",
        type=Path,
        help="JSON of the task's headline metrics, {dataset: {model: {metric: value}}}, for DVC "
        "(default: <results>/summary/<task>/<dataset>/<model>.json; none when --out is given alone)",
    )


def headline(doc: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``{dataset: {model: {metric: value}}}`` of the track's headline metrics the document has
    (all its metrics when it has none of them). DVC names a column by its flattened key alone
    when no other metrics file has that key (by ``<file>:<key>`` otherwise), so a key unique to
    the file, ``<dataset>.<model>.<metric>``, keeps `dvc exp show` narrow."""
    picked = [n for n in names if n in doc["metrics"]] or list(doc["metrics"])
    values = {n: doc["metrics"][n]["value"] for n in picked}
    return {doc["dataset"]: {doc["model"]: values}}


def own_recipe(track: Track, name: str) -> bool:
    """Whether ``name`` is a recipe of ``track`` (a task evaluates models of its own recipes;
    the cir task's ``<model>@<method>`` names another track's model, whose log is not this
    evaluation's)."""
    try:
        return find_recipe(name)[0] is track
    except MatchbenchError:
        return False


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    layout = Layout.of(cfg)
    summary_path = args.summary
    if args.out is None and summary_path is None:
        summary_path = Path(layout.summary(args.task, args.dataset, args.model))
    out = args.out or Path(layout.metrics(args.task, args.dataset, args.model))
    args.out = out
    track = tasks()[args.task]
    doc = track.fn("evaluate")(cfg, args)
    backbone, recipe = split_model(args.model)
    artifacts = doc.get("artifacts", {})
    if recipe is not None and "train_log" not in artifacts and own_recipe(track, recipe):
        # The training log of a fine-tuned model, for its learning curves (a task whose models
        # train on another dataset names it itself).
        log = layout.model(recipe, args.dataset, backbone, "train_log.csv")
        doc["artifacts"] = {**artifacts, "train_log": log}
    validate_document(doc, str(out))
    write_json(out, doc)
    if summary_path is not None:
        write_json(summary_path, headline(doc, track.headline))
    summary = ", ".join(
        f"{k} {v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
        for k, v in doc["metrics"].items()
    )
    print(f"evaluate: {args.task} {doc['model']} on {doc['dataset']}: {summary} -> {out}")
    return 0
