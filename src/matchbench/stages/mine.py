"""The `mine` stage: semantic positive pairs by exact inner-product kNN with faiss.

Each anchor keeps up to ``k`` nearest neighbours (itself excluded) whose cosine similarity is
at least ``threshold``, as in semantic-positive-pair mining for instance discrimination
(Alkhalefi et al., 2023): the sampler's embedding decides which images are "the same thing".
faiss-gpu is used when it is importable and a GPU is visible; faiss-cpu otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench.config import add_config_argument, load_config
from matchbench.errors import MatchbenchError
from matchbench.features import read_features
from matchbench.images import read_index
from matchbench.io import write_json, write_parquet
from matchbench.layout import Layout


def knn_search(feats: np.ndarray, k: int, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product kNN of every row against all rows: (similarities, indices), (N, k)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    x = np.ascontiguousarray(feats, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(x)
    return index.search(x, min(k, x.shape[0]))


def mine_pairs(
    feats: np.ndarray, ids: list[str], k: int, threshold: float, threads: int = 1
) -> pd.DataFrame:
    """Pairs (anchor, positive, similarity, rank) with rank 1 the nearest non-self neighbour."""
    sims, idx = knn_search(feats, k + 1, threads)
    rows_a, rows_p, rows_s, rows_r = [], [], [], []
    for a in range(len(ids)):
        rank = 0
        for s, j in zip(sims[a], idx[a], strict=True):
            if j < 0 or j == a:
                continue
            rank += 1
            if rank > k:
                break
            if s >= threshold:
                rows_a.append(ids[a])
                rows_p.append(ids[j])
                rows_s.append(float(s))
                rows_r.append(rank)
    return pd.DataFrame(
        {
            "anchor": pd.Series(rows_a, dtype=str),
            "positive": pd.Series(rows_p, dtype=str),
            "similarity": np.asarray(rows_s, dtype=np.float32),
            "rank": np.asarray(rows_r, dtype=np.int64),
        }
    )


def pair_precision(pairs: pd.DataFrame, labels: dict[str, int]) -> float | None:
    """Fraction of pairs whose images share a class; None without labels or pairs."""
    if pairs.empty or not labels or min(labels.values()) < 0:
        return None
    a = pairs["anchor"].map(labels).to_numpy()
    p = pairs["positive"].map(labels).to_numpy()
    return float(np.mean(a == p))


def mining_stats(
    all_pairs: pd.DataFrame,
    labels: dict[str, int],
    n_anchors: int,
    k: int,
    threshold: float,
    thresholds: list[float],
) -> dict[str, Any]:
    """Statistics at the chosen threshold and at each of ``thresholds`` (from the same kNN)."""

    def at(t: float) -> dict[str, Any]:
        kept = all_pairs[all_pairs["similarity"] >= t]
        return {
            "threshold": float(t),
            "n_pairs": int(len(kept)),
            "anchors_with_pairs": int(kept["anchor"].nunique()),
            "precision": pair_precision(kept, labels),
        }

    chosen = at(threshold)
    return {
        "k": k,
        "threshold": float(threshold),
        "n_anchors": n_anchors,
        "n_pairs": chosen["n_pairs"],
        "anchors_with_pairs": chosen["anchors_with_pairs"],
        "precision": chosen["precision"],
        "by_threshold": [at(t) for t in sorted(set(thresholds) | {threshold})],
    }


def mine(
    cfg: dict[str, Any], track: str, features: Path, index_path: Path, out: Path
) -> dict[str, Any]:
    """Mine with the options of ``tracks.<track>.mine`` (split, k, threshold, thresholds)."""
    block = cfg["tracks"].get(track, {})
    if "mine" not in block:
        raise MatchbenchError(f"--track {track}: the config has no tracks.{track}.mine block")
    mcfg = block["mine"]
    feats, ids, _ = read_features(features)
    index = read_index(index_path)
    split_ids = set(index.loc[index["split"] == mcfg["split"], "id"])
    if not split_ids:
        raise MatchbenchError(
            f"{index_path}: no images in split {mcfg['split']!r} (tracks.{track}.mine.split)"
        )
    keep = [i for i, x in enumerate(ids) if x in split_ids]
    feats, ids = feats[keep], [ids[i] for i in keep]
    labels = dict(zip(index["id"], index["label"].astype(int), strict=True))

    lowest = min([mcfg["threshold"], *mcfg["thresholds"]])
    all_pairs = mine_pairs(feats, ids, mcfg["k"], lowest, cfg["threads"])
    pairs = all_pairs[all_pairs["similarity"] >= mcfg["threshold"]].reset_index(drop=True)
    stats = mining_stats(
        all_pairs, labels, len(ids), mcfg["k"], mcfg["threshold"], mcfg["thresholds"]
    )
    write_parquet(out / "pairs.parquet", pairs)
    write_json(out / "stats.json", stats)
    return stats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--track", required=True, help="the track whose `mine` block to use")
    parser.add_argument("--dataset", required=True, help="dataset name of the config")
    parser.add_argument("--model", required=True, help="the sampler model, <backbone>[+<recipe>]")
    parser.add_argument(
        "--features", type=Path, help="feature store folder (default: the sampler's in the layout)"
    )
    parser.add_argument(
        "--out", type=Path, help="folder for pairs.parquet and stats.json (default: the layout's)"
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    layout = Layout.of(cfg)
    args.out = args.out or Path(layout.mined(args.dataset, args.model))
    features = args.features or Path(layout.features(args.dataset, args.model))
    s = mine(cfg, args.track, features, Path(layout.index(args.dataset)), args.out)
    prec = "n/a" if s["precision"] is None else f"{s['precision']:.3f}"
    print(
        f"mine: {s['n_pairs']} pairs over {s['anchors_with_pairs']}/{s['n_anchors']} anchors "
        f"(k={s['k']}, threshold={s['threshold']}), class precision {prec} -> {args.out}"
    )
    return 0
