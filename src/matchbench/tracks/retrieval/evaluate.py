"""Task ``retrieval``: mAP@1k of ILIAS's image and text queries, with bootstrap CIs.

Reads the ranked lists of the retrieve stage (``Layout.ranked``) and the prepared tables.
A query's ground truth is every positive of its instance (``ilias-vrg/ilias``
``evaluation/src/dataset.py``); AP@k is :func:`matchbench.metrics.average_precision_at_k`
(ILIAS's: precision at each relevant rank within the top k, over ``min(k, |GT|)``). Metrics:

- ``image_map@1k``, ``text_map@1k`` (the second only for a model with a text tower): the full
  database, each with a bootstrap interval over queries (per-query values in the side file);
- per category: mAP@1k by the positives' scale (tertiles of the box's share of the image) and
  clutter (other objects in the image): AP with only that group's positives relevant and the
  other positives removed from the list (neither relevant nor counted);
- ``extra.curve``: mAP@1k at every number of distractors the search measured;
- ``extra.ann``: recall@k of approximate indexes against exact search (the retrieve stage's);
- ``extra.examples``: a few queries with their top 10, positives marked.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench import per_query
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.metrics import average_precision_at_k
from matchbench.per_query import PerQuery
from matchbench.tracks.retrieval.methods import (
    KINDS,
    LINEAR,
    TASK,
    block,
    method_checkpoint,
    split_method,
)
from matchbench.tracks.retrieval.retrieve import read_ranks
from matchbench.tracks.retrieval.tables import (
    POSITIVES,
    QUERIES,
    ground_truth,
    read_positives,
    read_queries,
)


def metric_key(kind: str, k: int) -> str:
    return f"{kind}_map@{k // 1000}k" if k % 1000 == 0 else f"{kind}_map@{k}"


def average_precisions(
    ranks: pd.DataFrame,
    queries: list[str],
    instance: dict[str, str],
    gt: dict[str, set[str]],
    k: int,
    ignore: dict[str, set[str]] | None = None,
) -> np.ndarray:
    """AP@k of each query from its ranked list; ``ignore``: per instance, positives removed
    from the list (another group's, in a breakdown)."""
    groups = {q: part for q, part in ranks.groupby("query", sort=False)}
    width = k
    scores = np.full((len(queries), width), -np.inf)
    relevant = np.zeros((len(queries), width), dtype=bool)
    n_rel = np.zeros(len(queries), dtype=np.int64)
    for r, q in enumerate(queries):
        inst = instance[q]
        pos = gt.get(inst, set())
        n_rel[r] = len(pos)
        part = groups.get(q)
        if part is None:
            continue
        ids = part["id"].to_numpy()
        s = part["score"].to_numpy(dtype=np.float64)
        if ignore is not None and ignore.get(inst):
            keep = ~np.isin(ids, list(ignore[inst]))
            ids, s = ids[keep], s[keep]
        ids, s = ids[:width], s[:width]
        scores[r, : len(s)] = s
        relevant[r, : len(s)] = np.isin(ids, list(pos))
    # Padding (-inf, not relevant) ties only with itself, below every real item.
    return average_precision_at_k(scores, relevant, k, n_relevant=n_rel)


def breakdown_groups(positives: pd.DataFrame) -> dict[str, pd.Series]:
    """Group of each positive by scale (tertiles) and by clutter."""
    scale = positives["scale"].to_numpy(dtype=np.float64)
    lo, hi = np.quantile(scale, [1 / 3, 2 / 3]) if len(scale) else (0.0, 0.0)
    by_scale = np.where(scale <= lo, "small", np.where(scale <= hi, "medium", "large"))
    clutter = positives["clutter"].to_numpy()
    by_clutter = np.where(clutter == 0, "none", np.where(clutter <= 2, "1-2", "3+"))
    return {
        "scale": pd.Series(by_scale, index=positives["id"]),
        "clutter": pd.Series(by_clutter, index=positives["id"]),
    }


def evaluate(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    blk = block(cfg)
    ecfg = blk["evaluate"]
    n_boot, seed, k = ecfg["bootstrap"], cfg["seed"], blk["k"]
    model, method = split_method(args.model)
    layout = Layout.of(cfg)
    table = read_queries(layout.table(args.dataset, QUERIES))
    positives = read_positives(layout.table(args.dataset, POSITIVES))
    ranks, info = read_ranks(layout.ranked(args.dataset, args.model))
    gt = ground_truth(positives)
    instance = dict(zip(table["query"], table["instance"], strict=True))
    no_gt = [q for q in table["query"] if not gt.get(instance[q])]
    if no_gt:
        raise MatchbenchError(
            f"{layout.table(args.dataset, QUERIES)}: query {no_gt[0]!r} has no positive "
            f"(instance {instance[no_gt[0]]!r} is not in {POSITIVES}.parquet)"
        )
    full = ranks[ranks["distractors"] == ranks["distractors"].max()]
    ran = set(full["query"])
    metrics: dict[str, Any] = {}
    cats: dict[str, Any] = {}
    pq = PerQuery()
    curve: list[dict[str, Any]] = []
    groups = breakdown_groups(positives)
    per_kind: dict[str, list[str]] = {}
    for kind in KINDS:
        qs = [q for q in table.loc[table["kind"] == kind, "query"] if q in ran]
        if not qs:
            continue
        per_kind[kind] = qs
        key = metric_key(kind, k)
        ap = average_precisions(full, qs, instance, gt, k)
        metrics[key] = pq.summarise(key, qs, ap, n_boot, seed)
        cats[key] = {}
        for name, series in groups.items():
            for g in sorted(set(series)):
                keep = {i for i, v in series.items() if v == g}
                sub_gt = {inst: pos & keep for inst, pos in gt.items()}
                other = {inst: pos - keep for inst, pos in gt.items()}
                sel = [q for q in qs if sub_gt.get(instance[q])]
                if sel:
                    cats[key][f"{name}: {g}"] = float(
                        average_precisions(full, sel, instance, sub_gt, k, ignore=other).mean()
                    )
    if not metrics:
        raise MatchbenchError(f"{layout.ranked(args.dataset, args.model)}: no query was ranked")
    for n in sorted(set(ranks["distractors"])):
        point: dict[str, Any] = {"distractors": int(n)}
        part = ranks[ranks["distractors"] == n]
        for kind, qs in per_kind.items():
            point[metric_key(kind, k)] = float(average_precisions(part, qs, instance, gt, k).mean())
        curve.append(point)
    examples = []
    for kind, qs in per_kind.items():
        for q in qs[: ecfg["examples"]]:
            top = full[full["query"] == q].sort_values("rank").head(10)
            row = table[table["query"] == q].iloc[0]
            examples.append(
                {
                    "query": q,
                    "kind": kind,
                    "text": str(row["text"]),
                    "top": top["id"].tolist(),
                    "hit": [x in gt[instance[q]] for x in top["id"]],
                }
            )
    extra = {
        "method": method,
        "model_of": model,
        "bootstrap": n_boot,
        "k": k,
        "database": info["database"],
        "distractors": int(full["distractors"].iloc[0]) if len(full) else 0,
        "queries": {kind: len(qs) for kind, qs in per_kind.items()},
        "curve": curve,
        "ann": info["ann"],
        "examples": examples,
        "factory": info["factory"],
    }
    doc: dict[str, Any] = {
        "task": TASK,
        "dataset": args.dataset,
        "model": args.model,
        "split": "test",
        "metrics": metrics,
        "per_category": cats,
        "extra": extra,
        "artifacts": {
            "ranked": str(layout.ranked(args.dataset, args.model)),
            per_query.ROLE: pq.write(args.out),
        },
    }
    ckpt = method_checkpoint(cfg, model, method)
    if ckpt is not None:  # the linear adaptation's log, for its learning curves
        doc["artifacts"]["train_log"] = str(Path(ckpt).with_name("train_log.csv"))
        extra["recipe"] = LINEAR
    return doc
