"""Task ``compose``: SugarCrepe, ARO and DOCCI-style long-caption retrieval, with bootstrap CIs.

Scores are cosine similarities of L2-normalised image and text features (``encode_image``,
``encode_text``), as the official scripts' ``normalize=True`` features.

- **SugarCrepe** (``RAIVNLab/sugar-crepe`` ``main_eval.py``, ``text_retrieval``): an item is
  correct only when ``score(image, caption) > score(image, negative_caption)``; a tie is wrong.
  Accuracy per file (``add_obj, add_att, replace_obj, replace_att, replace_rel, swap_obj,
  swap_att``: the ``category`` of ``caption_pairs.parquet``), and their plain mean
  (``sugarcrepe_avg``), as the paper's tables average the seven accuracies.
- **ARO** (``mertyg/vision-language-models-are-bows``, ``dataset_zoo/aro_datasets.py``
  ``evaluate_scores``, and the notebook ``Replicate ARO! VG-Relation, VG-Attribution.ipynb``):
  ``preds = argmax([score(false), score(true)])``, correct when ``preds == 1``; ``np.argmax``
  returns the first of equal scores, so a tie is wrong (the same strict rule). VG-Relation:
  accuracy per ``relation_name`` (every relation, no minimum count), then the relations of the
  notebook's ``symmetric`` list (:data:`ARO_SYMMETRIC`) are dropped and the rest averaged
  (macro). VG-Attribution: items grouped by the ordered attribute pair
  (``f"{attributes[0]}_{attributes[1]}"``; here the ``category`` column), pairs with fewer than
  25 items dropped (``attr_mask.sum() < 25``), the rest averaged (macro).
- **DOCCI-style retrieval** (``google/docci``: one long description per image): over the
  images of the evaluation split with a rich caption, text-to-image and image-to-text
  Recall@k. Ties go against the target (``rank = 1 + #others scoring >= it``,
  :func:`matchbench.metrics.target_rank`).

Intervals: per-category accuracies and recalls take :func:`matchbench.metrics.summarise` (a
percentile bootstrap over items / queries). A macro average (SugarCrepe's, ARO's) takes
:func:`macro_summary`: each bootstrap draw resamples the items within every category (each
category keeps its size), then averages the category accuracies, so the interval is that of
the published statistic and categories keep equal weight.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy.typing import ArrayLike
from torch.utils.data import DataLoader

from matchbench import per_query
from matchbench.data.formats import aro
from matchbench.errors import MatchbenchError
from matchbench.images import IndexedImages, read_index
from matchbench.layout import Layout, split_model
from matchbench.metrics import per_category, target_rank
from matchbench.models.backbones import load_model
from matchbench.per_query import PerQuery
from matchbench.runtime import Runtime, embed, loader_workers, start
from matchbench.tracks.compose.text import (
    CAPTION_COLUMNS,
    PAIR_COLUMNS,
    count_truncated,
    read_table,
    warn_truncated,
)
from matchbench.tracks.compose.variants import block

TASK = "compose"
SUGARCREPE = (
    "add_obj",
    "add_att",
    "replace_obj",
    "replace_att",
    "replace_rel",
    "swap_obj",
    "swap_att",
)
BENCHMARKS = ("sugarcrepe", "aro_relation", "aro_attribution")

# The official notebook's `symmetric` list (dropped before VG-Relation's macro accuracy) lives
# with the ARO reader, kept verbatim there.
ARO_SYMMETRIC = aro.SYMMETRIC_RELATIONS


# --------------------------------------------------------------------------- pure metrics


def pair_correct(pos: ArrayLike, neg: ArrayLike) -> np.ndarray:
    """Per item: the positive scores strictly above the negative (a tie is wrong).

    The per-item form of :func:`matchbench.metrics.pair_accuracy` (SugarCrepe's
    ``pos_score > neg_score``; ARO's ``argmax([neg, pos]) == 1``, first index on ties).
    """
    p, n = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    if p.shape != n.shape or p.ndim != 1:
        raise MatchbenchError(f"pair scores: expected two equal vectors, got {p.shape}, {n.shape}")
    if np.isnan(p).any() or np.isnan(n).any():
        raise MatchbenchError("pair scores: NaN among the scores")
    return p > n


def aro_relation_groups(
    correct: ArrayLike, relations: ArrayLike, drop_symmetric: bool = True
) -> tuple[np.ndarray, dict[str, float]]:
    """VG-Relation: which items count (relation not in :data:`ARO_SYMMETRIC`) and the
    accuracy of every dropped relation (for the record)."""
    c, r = np.asarray(correct, dtype=bool), np.asarray(relations).astype(str)
    drop = np.isin(r, sorted(ARO_SYMMETRIC)) if drop_symmetric else np.zeros(r.size, bool)
    dropped = per_category(c[drop], r[drop]) if drop.any() else {}
    return ~drop, dropped


def aro_attribution_groups(
    groups: ArrayLike, min_count: int = 25
) -> tuple[np.ndarray, dict[str, int]]:
    """VG-Attribution: which items count (their attribute pair has ``>= min_count`` items, as
    ``evaluate_scores`` skips ``attr_mask.sum() < 25``) and the sizes of the dropped pairs."""
    g = np.asarray(groups).astype(str)
    names, counts = np.unique(g, return_counts=True)
    small = {str(n): int(c) for n, c in zip(names, counts, strict=True) if c < min_count}
    return ~np.isin(g, list(small)), small


def retrieval_hits(scores: ArrayLike, ks: list[int]) -> dict[str, dict[int, np.ndarray]]:
    """Per-query hits at each k of text-to-image and image-to-text retrieval.

    ``scores`` (T, I) with T == I: text t describes image t. Ranks put ties against the target.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or s.shape[0] == 0:
        raise MatchbenchError(f"retrieval: expected a square (texts, images) matrix, got {s.shape}")
    target = np.arange(s.shape[0])
    ranks = {"t2i": target_rank(s, target), "i2t": target_rank(s.T, target)}
    return {d: {k: r <= k for k in ks} for d, r in ranks.items()}


# --------------------------------------------------------------------------- tables


def _check_pairs(pairs: pd.DataFrame, path: Path) -> None:
    unknown = sorted(set(pairs["benchmark"]) - set(BENCHMARKS))
    if unknown:
        raise MatchbenchError(
            f"{path}: unknown benchmark {unknown[0]!r} (expected one of {', '.join(BENCHMARKS)})"
        )
    for col in ("positive", "negative", "category"):
        empty = pairs["id"][pairs[col].fillna("").str.strip() == ""]
        if len(empty):
            raise MatchbenchError(f"{path}: empty {col} in item {empty.iloc[0]!r}")
    if pairs["id"].duplicated().any():
        raise MatchbenchError(
            f"{path}: repeated id {pairs['id'][pairs['id'].duplicated()].iloc[0]!r}"
        )


def retrieval_rows(captions: pd.DataFrame, split: str, path: Path) -> pd.DataFrame:
    """The split's images with a rich caption, one caption each."""
    rows = captions[(captions["split"] == split) & (captions["rich"].fillna("").str.strip() != "")]
    dup = rows["image"][rows["image"].duplicated()]
    if len(dup):
        raise MatchbenchError(
            f"{path}: image {dup.iloc[0]!r} has several rich captions in split {split!r}; "
            "retrieval takes one caption per image"
        )
    return rows.reset_index(drop=True)


# --------------------------------------------------------------------------- encoding


@torch.inference_mode()
def encode_texts(
    encoder: Any, texts: list[str], rt: Runtime, batch_size: int
) -> tuple[np.ndarray, int]:
    """L2-normalised text features (N, D) float32, and how many texts were truncated."""
    out, truncated = [], 0
    for s in range(0, len(texts), batch_size):
        chunk = texts[s : s + batch_size]
        tokens = encoder.tokenize(chunk)
        truncated += count_truncated(encoder, chunk, tokens)
        with rt.autocast():
            f = encoder.encode_text(tokens.to(rt.device))
        out.append(F.normalize(f.float(), dim=1).cpu().numpy())
    return (np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)), truncated


def encode_images(
    encoder: Any, data_dir: Path, paths: list[str], rt: Runtime, batch_size: int, workers: int
) -> np.ndarray:
    loader = DataLoader(
        IndexedImages(data_dir, paths, encoder.image_size),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=rt.device.type == "cuda",
    )
    return embed(encoder, loader, rt.device, rt.dtype)


def text_model(cfg: dict[str, Any], model: str, dataset: str) -> Any:
    """The model with its weights (a compose checkpoint comes from ``train_dataset``), refused in
    one line when it cannot encode text."""
    encoder = load_model(cfg, model, dataset)
    if not encoder.has_text:
        why = getattr(encoder, "text_unavailable", None) or (
            f"{encoder.source} {encoder.arch} is an image-only architecture"
        )
        raise MatchbenchError(
            f"model {model!r} has no text tower ({why}); the compose task scores captions, "
            "so it needs an image-text model such as an open_clip backbone"
        )
    return encoder


# --------------------------------------------------------------------------- the task


def evaluate(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    blk = block(cfg)
    ecfg = blk["evaluate"]
    n_boot, seed = ecfg["bootstrap"], cfg["seed"]
    layout = Layout.of(cfg)
    data_dir = Path(layout.dataset(args.dataset))
    index = read_index(layout.index(args.dataset))
    cap_path = Path(layout.table(args.dataset, "captions"))
    pair_path = Path(layout.table(args.dataset, "caption_pairs"))
    if not cap_path.is_file() and not pair_path.is_file():
        raise MatchbenchError(
            f"{data_dir}: dataset {args.dataset!r} has neither captions.parquet nor "
            "caption_pairs.parquet; the compose task evaluates a compose family's dataset"
        )
    pairs = read_table(pair_path, PAIR_COLUMNS) if pair_path.is_file() else None
    if pairs is not None:
        _check_pairs(pairs, pair_path)
    docci = None
    if cap_path.is_file():
        docci = retrieval_rows(read_table(cap_path, CAPTION_COLUMNS), ecfg["split"], cap_path)
        if docci.empty:
            docci = None

    path_of = dict(zip(index["id"], index["path"], strict=True))
    needed = list(
        dict.fromkeys(
            [*([] if pairs is None else pairs["image"]), *([] if docci is None else docci["image"])]
        )
    )
    missing = [i for i in needed if i not in path_of]
    if missing:
        where = pair_path if pairs is not None and missing[0] in set(pairs["image"]) else cap_path
        raise MatchbenchError(
            f"{where}: image {missing[0]!r} is not in images.parquet ({len(missing)} missing)"
        )

    rt = start(cfg)
    encoder = text_model(cfg, args.model, args.dataset)
    encoder.module.to(rt.device).eval()
    paths = [path_of[i] for i in needed]
    workers = loader_workers(cfg)
    images = encode_images(encoder, data_dir, paths, rt, ecfg["batch_size"], workers)
    row_of = {x: i for i, x in enumerate(needed)}
    texts = list(
        dict.fromkeys(
            [
                *([] if pairs is None else [*pairs["positive"], *pairs["negative"]]),
                *([] if docci is None else docci["rich"]),
            ]
        )
    )
    feats, truncated = encode_texts(encoder, texts, rt, ecfg["batch_size"])
    context = encoder.context_length
    warn_truncated(truncated, len(texts), context, "captions")
    text_of = {t: i for i, t in enumerate(texts)}

    metrics: dict[str, Any] = {}
    cats: dict[str, Any] = {}
    pq = PerQuery()
    extra: dict[str, Any] = {
        "text": {"context_length": context, "n_texts": len(texts), "truncated": truncated},
        "bootstrap": n_boot,
    }
    if pairs is not None:
        img = images[pairs["image"].map(row_of).to_numpy()]
        pos = (img * feats[pairs["positive"].map(text_of).to_numpy()]).sum(1)
        neg = (img * feats[pairs["negative"].map(text_of).to_numpy()]).sum(1)
        correct = pair_correct(pos, neg)
        bench = pairs["benchmark"].to_numpy()
        category = pairs["category"].astype(str).to_numpy()
        ids = pairs["id"].astype(str).to_numpy()
        for name, fn in (
            ("sugarcrepe", _sugarcrepe),
            ("aro_relation", _aro_relation),
            ("aro_attribution", _aro_attribution),
        ):
            rows = bench == name
            if rows.any():
                fn(correct[rows], category[rows], ids[rows], ecfg, seed, pq, metrics, cats, extra)
    if docci is not None:
        t = feats[docci["rich"].map(text_of).to_numpy()]
        i = images[docci["image"].map(row_of).to_numpy()]
        hits = retrieval_hits(t @ i.T, ecfg["ks"])
        for direction, by_k in hits.items():
            for k, h in by_k.items():
                key = f"{direction}_r@{k}"
                metrics[key] = pq.summarise(key, docci["image"], h, n_boot, seed)
        extra["retrieval"] = {"split": ecfg["split"], "caption": "rich", "n_images": len(docci)}
    extra["chance"] = _chance(metrics, docci)
    doc = {
        "task": TASK,
        "dataset": args.dataset,
        "model": args.model,
        "split": ecfg["split"],
        "metrics": metrics,
        "per_category": cats,
        "extra": extra,
    }
    doc["artifacts"] = {per_query.ROLE: pq.write(args.out)}
    weights = Layout.of(cfg).model_weights(cfg, args.model, args.dataset)
    if split_model(args.model)[1] is not None and weights is not None:
        # Trained on train_dataset: its log lies beside the checkpoint it was evaluated with.
        doc["artifacts"]["train_log"] = str(Path(weights).with_name("train_log.csv"))
    return doc


def _chance(metrics: dict[str, Any], docci: pd.DataFrame | None) -> dict[str, float]:
    out = {m: 0.5 for m in metrics if m.startswith(("sugarcrepe", "aro_"))}
    if docci is not None:
        n = len(docci)
        out |= {m: min(1.0, int(m.split("@")[1]) / n) for m in metrics if "_r@" in m}
    return out


def _sugarcrepe(
    correct: np.ndarray,
    category: np.ndarray,
    ids: np.ndarray,
    ecfg: dict[str, Any],
    seed: int,
    pq: PerQuery,
    metrics: dict[str, Any],
    cats: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    unknown = sorted(set(category) - set(SUGARCREPE))
    if unknown:
        raise MatchbenchError(
            f"caption_pairs.parquet: SugarCrepe category {unknown[0]!r} is not one of "
            f"{', '.join(SUGARCREPE)}"
        )
    present = [c for c in SUGARCREPE if c in set(category)]
    n_boot = ecfg["bootstrap"]
    metrics["sugarcrepe_avg"] = pq.macro("sugarcrepe_avg", ids, correct, category, n_boot, seed)
    for c in present:
        rows = category == c
        metrics[f"sugarcrepe_{c}"] = pq.summarise(
            f"sugarcrepe_{c}", ids[rows], correct[rows], n_boot, seed
        )
    cats["sugarcrepe"] = per_category(correct, category)
    extra["sugarcrepe"] = {
        "categories": present,
        "counts": {c: int((category == c).sum()) for c in present},
        "pooled": float(correct.mean()),
    }


def _aro_relation(
    correct: np.ndarray,
    category: np.ndarray,
    ids: np.ndarray,
    ecfg: dict[str, Any],
    seed: int,
    pq: PerQuery,
    metrics: dict[str, Any],
    cats: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    keep, dropped = aro_relation_groups(correct, category, ecfg["aro_drop_symmetric"])
    if not keep.any():
        raise MatchbenchError(
            "tracks.compose.evaluate.aro_drop_symmetric: every VG-Relation item has a relation "
            "of the official symmetric list; nothing is left to average"
        )
    metrics["aro_relation"] = pq.macro(
        "aro_relation", ids[keep], correct[keep], category[keep], ecfg["bootstrap"], seed
    )
    cats["aro_relation"] = per_category(correct[keep], category[keep])
    extra["aro_relation"] = {
        "relations": int(len(set(category[keep]))),
        "dropped_symmetric": dropped,
        "n_dropped": int((~keep).sum()),
    }


def _aro_attribution(
    correct: np.ndarray,
    category: np.ndarray,
    ids: np.ndarray,
    ecfg: dict[str, Any],
    seed: int,
    pq: PerQuery,
    metrics: dict[str, Any],
    cats: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    keep, small = aro_attribution_groups(category, ecfg["aro_min_count"])
    if not keep.any():
        raise MatchbenchError(
            f"tracks.compose.evaluate.aro_min_count: {ecfg['aro_min_count']}, but no "
            f"VG-Attribution attribute pair has that many items (largest: "
            f"{max(small.values())}); lower it for this dataset"
        )
    metrics["aro_attribution"] = pq.macro(
        "aro_attribution", ids[keep], correct[keep], category[keep], ecfg["bootstrap"], seed
    )
    cats["aro_attribution"] = per_category(correct[keep], category[keep])
    extra["aro_attribution"] = {
        "pairs": int(len(set(category[keep]))),
        "min_count": ecfg["aro_min_count"],
        "dropped_pairs": len(small),
        "n_dropped": int((~keep).sum()),
    }
