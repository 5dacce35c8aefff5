"""Task ``ssl``: kNN and linear-probe accuracy of frozen global features, with bootstrap CIs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from matchbench import per_query
from matchbench.errors import MatchbenchError
from matchbench.features import read_features
from matchbench.images import read_index
from matchbench.layout import Layout, split_model
from matchbench.metrics import knn_classify, linear_probe_predict, per_category
from matchbench.per_query import PerQuery
from matchbench.tracks.ssl import sampler_model


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


def evaluate(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    layout = Layout.of(cfg)
    features = args.features or Path(layout.features(args.dataset, args.model))
    pq = PerQuery()
    doc = evaluate_ssl(cfg, features, Path(layout.index(args.dataset)), pq)
    doc["artifacts"] = {per_query.ROLE: pq.write(args.out)}
    backbone, recipe = split_model(args.model)
    if recipe == "ssl-spp":  # the mined pairs it trained with, and their statistics
        mined = sampler_model(cfg["tracks"]["ssl"], backbone)
        doc["artifacts"] |= {
            "pairs": layout.mined(args.dataset, mined, "pairs.parquet"),
            "mining_stats": layout.mined(args.dataset, mined, "stats.json"),
        }
    return doc


def evaluate_ssl(
    cfg: dict[str, Any], features: Path, index_path: Path, pq: PerQuery | None = None
) -> dict[str, Any]:
    """kNN (weighted vote, k and T from config) and linear-probe accuracy on frozen features;
    the per-image values go to ``pq`` (keyed by image id) when given."""
    pq = pq or PerQuery()
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
            "knn_acc": pq.summarise("knn_acc", test_rows["id"], knn, n_boot, seed),
            "linear_acc": pq.summarise("linear_acc", test_rows["id"], probe, n_boot, seed),
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
