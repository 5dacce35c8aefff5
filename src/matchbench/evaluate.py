"""The `evaluate` stage: metrics JSON per (task, dataset, model), with bootstrap CIs.

Tasks are registered by name, each with the command-line options it needs; a task receives the
resolved config and the parsed arguments, writes any output besides the metrics JSON itself (the
correspondence predictions), and returns the metrics document of docs/contracts.md. Metric
definitions live in `matchbench.metrics`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.config import add_config_argument, load_config
from matchbench.errors import MatchbenchError
from matchbench.extract import read_features
from matchbench.images import read_index
from matchbench.io import write_json, write_parquet
from matchbench.metrics import bootstrap_ci, knn_classify, linear_probe_predict

TaskFn = Callable[[dict[str, Any], argparse.Namespace], dict[str, Any]]


@dataclass(frozen=True)
class Task:
    run: TaskFn
    required: tuple[str, ...]  # argparse dests the task cannot run without


TASKS: dict[str, Task] = {}


def register_task(name: str, required: tuple[str, ...] = ()) -> Callable[[TaskFn], TaskFn]:
    def wrap(fn: TaskFn) -> TaskFn:
        TASKS[name] = Task(fn, required)
        return fn

    return wrap


def summarise(correct: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean of per-query values with its 95% percentile-bootstrap interval."""
    low, high = bootstrap_ci(correct.astype(np.float64), n_boot=n_boot, seed=seed)
    return {"value": float(correct.mean()), "ci_low": low, "ci_high": high, "n": int(correct.size)}


def per_category(correct: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    return {str(c): float(correct[classes == c].mean()) for c in sorted(set(classes.tolist()))}


def _split(
    feats: np.ndarray, ids: list[str], index: Any, split: str, path: Path
) -> tuple[np.ndarray, Any]:
    rows = index[index["split"] == split]
    if rows.empty:
        raise MatchbenchError(f"{path}: no images in split {split!r}")
    if (rows["label"] < 0).any():
        raise MatchbenchError(
            f"{path}: split {split!r} has unlabelled images; kNN/linear accuracy need labels"
        )
    pos = {x: i for i, x in enumerate(ids)}
    missing = [x for x in rows["id"] if x not in pos]
    if missing:
        raise MatchbenchError(
            f"features lack {len(missing)} ids of split {split!r} (first: {missing[:3]}); re-extract"
        )
    return feats[[pos[x] for x in rows["id"]]], rows


@register_task("ssl", required=("features", "index"))
def ssl_task(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    return evaluate_ssl(cfg, args.features, args.index)


@register_task("correspondence", required=("dataset", "model", "predictions"))
def correspondence_task(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """PCK of dense-feature keypoint transfer; also writes the predictions table."""
    from matchbench.correspondence.evaluate import evaluate as evaluate_correspondence

    cache = cfg.get("tracks", {}).get("correspondence", {}).get("features", {}).get("cache")
    if args.features is not None and cache is False:
        raise MatchbenchError(
            "--features was given but tracks.correspondence.features.cache is false (maps are "
            "computed on the fly); drop --features or set the cache to true"
        )
    doc, predictions, pairs_per_s = evaluate_correspondence(
        cfg, args.dataset, args.model, args.features
    )
    write_parquet(args.predictions, predictions)
    # Speed goes to the log, not into the metrics file: reruns must write the same bytes.
    print(f"evaluate: {pairs_per_s:.1f} pairs/s", file=sys.stderr)
    return doc


def evaluate_ssl(cfg: dict[str, Any], features: Path, index_path: Path) -> dict[str, Any]:
    """kNN (weighted vote, k and T from config) and linear-probe accuracy on frozen features."""
    ecfg = cfg["tracks"]["ssl"]["evaluate"]
    feats, ids, meta = read_features(features)
    index = read_index(index_path)
    train_x, train_rows = _split(feats, ids, index, ecfg["train_split"], index_path)
    test_x, test_rows = _split(feats, ids, index, ecfg["test_split"], index_path)
    y_train, y_test = train_rows["label"].to_numpy(), test_rows["label"].to_numpy()
    classes = test_rows["class"].to_numpy()

    knn = (
        knn_classify(train_x, y_train, test_x, k=ecfg["knn_k"], temperature=ecfg["knn_temperature"])
        == y_test
    )
    probe = (
        linear_probe_predict(train_x, y_train, test_x, c=ecfg["probe_c"], seed=cfg["seed"])
        == y_test
    )
    n_boot, seed = ecfg["bootstrap"], cfg["seed"]
    return {
        "task": "ssl",
        "dataset": meta["dataset"],
        "model": meta["model"],
        "split": ecfg["test_split"],
        "metrics": {
            "knn_acc": summarise(knn, n_boot, seed),
            "linear_acc": summarise(probe, n_boot, seed),
        },
        "per_category": {
            "knn_acc": per_category(knn, classes),
            "linear_acc": per_category(probe, classes),
        },
        "extra": {
            "chance": 1.0 / len(np.unique(y_train)),
            "n_train": len(y_train),
            "knn_k": ecfg["knn_k"],
            "knn_temperature": ecfg["knn_temperature"],
        },
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--task", required=True, choices=sorted(TASKS))
    parser.add_argument(
        "--features",
        type=Path,
        help="feature store folder (ssl); dense-map cache folder (correspondence, when "
        "features.cache is true)",
    )
    parser.add_argument("--index", type=Path, help="images.parquet of the dataset (ssl)")
    parser.add_argument("--dataset", help="dataset name of the config (correspondence)")
    parser.add_argument("--model", help="model name, <backbone>[+<recipe>] (correspondence)")
    parser.add_argument("--out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument(
        "--predictions", type=Path, help="predictions parquet to write (correspondence)"
    )


def run(args: argparse.Namespace) -> int:
    task = TASKS[args.task]
    missing = [f"--{name}" for name in task.required if getattr(args, name, None) is None]
    if missing:
        raise MatchbenchError(f"--task {args.task} needs {', '.join(missing)}")
    cfg = load_config(args.config)
    doc = task.run(cfg, args)
    write_json(args.out, doc)
    summary = ", ".join(
        f"{k} {v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
        for k, v in doc["metrics"].items()
    )
    print(f"evaluate: {args.task} {doc['model']} on {doc['dataset']}: {summary} -> {args.out}")
    return 0
