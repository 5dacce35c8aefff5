"""``matchbench score`` for SPair-71k, PF-PASCAL and AP-10K keypoint predictions.

Format (all three): ``{"<pair name>": [[x, y], ...]}``, one point per keypoint visible in both
images, in annotation order, in the target's original pixels (docs/metrics.md). The pairs are
read by the readers the track's families use (``matchbench.data.formats``; SPair-71k: the
``Layout/large/<split>.txt`` list, as the official loader), and PCK is aggregated by
``matchbench.metrics.pck_metrics``, as in the pipeline's evaluation: the same values, the same
intervals (``--bootstrap`` resamples of pairs, ``--seed``) for the same predictions.

Light on purpose (no torch): ``score`` runs without a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matchbench import metrics
from matchbench.data.formats import ap10k, pfpascal, spair
from matchbench.data.formats.predictions import (
    as_object,
    check_keys,
    examples,
    read_predictions,
    single,
)
from matchbench.errors import MatchbenchError

TASK = "correspondence"
DEFAULT_SPLIT = "test"


def alphas() -> tuple[float, ...]:
    """The alphas scored: the pipeline's default ``tracks.correspondence.evaluate.alphas``."""
    from matchbench.tracks import get_track

    schema = get_track(TASK).schema["properties"]["evaluate"]["properties"]["alphas"]
    return tuple(float(a) for a in schema["default"])


def score_pairs(
    path: Path,
    pairs: list[dict[str, Any]],
    threshold: np.ndarray,
    split: str,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Check the prediction file ``path`` against ``pairs`` (each with ``name``, ``category``,
    ``trg_kps``) and score it; ``threshold`` is each pair's PCK normaliser T."""
    data = as_object(read_predictions(path), path, "top level")
    check_keys(data, [p["name"] for p in pairs], path, "pair")
    empty = [p["name"] for p in pairs if len(p["trg_kps"]) == 0]
    if empty:
        raise MatchbenchError(
            f"annotations: pair {examples(empty)} has no keypoint visible in both images"
        )
    preds = []
    for p in pairs:
        want = len(p["trg_kps"])
        value = data[p["name"]]
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (want, 2) or not np.isfinite(arr).all():
            if arr is None:
                got = repr(value)[:60]
            elif arr.shape != (want, 2):
                got = f"shape {arr.shape}"
            else:  # the right shape, with NaN, inf or null in it
                bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
                got = f"a non-finite value (NaN, inf or null) in point {examples(bad.tolist())}"
            raise MatchbenchError(
                f"{path}: entry {p['name']!r}: expected {want} finite [x, y] points (one per "
                f"keypoint visible in both images, in annotation order), got {got}"
            )
        preds.append(arr)
    pred = np.concatenate(preds)
    gt = np.concatenate([np.asarray(p["trg_kps"], dtype=np.float64) for p in pairs])
    counts = np.array([len(p["trg_kps"]) for p in pairs], dtype=np.int64)
    scores = {a: metrics.pck_scores(pred, gt, threshold, counts, a) for a in alphas()}
    categories = np.array([p["category"] for p in pairs])
    values, per_category = metrics.pck_metrics(scores, n_boot, seed, categories)
    return {
        "task": TASK,
        "split": split,
        "metrics": values,
        "per_category": per_category,
        "extra": {"pairs": len(pairs), "keypoints": int(counts.sum())},
    }


def score_spair(
    predictions: list[Path], annotations: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """SPair-71k: the pairs of ``Layout/large/<split>.txt``; T = longer side of the target box."""
    split = split or DEFAULT_SPLIT
    pairs = spair.read_pairs(annotations, split)
    if not pairs:
        raise MatchbenchError(f"{annotations}: the {split} layout list names no pair")
    threshold = metrics.pck_threshold(bbox_xyxy=np.stack([p["trg_bbox"] for p in pairs]))
    return score_pairs(single(predictions, "spair"), pairs, threshold, split, n_boot, seed)


def score_ap10k(
    predictions: list[Path], annotations: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """AP-10K: ``PairAnnotation/<split>/*.json``; T = longer side of the target box."""
    split = split or DEFAULT_SPLIT
    pairs = ap10k.read_pairs(annotations, split)
    threshold = metrics.pck_threshold(bbox_xyxy=np.stack([p["trg_bbox"] for p in pairs]))
    return score_pairs(single(predictions, "ap10k"), pairs, threshold, split, n_boot, seed)


def score_pfpascal(
    predictions: list[Path], annotations: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """PF-PASCAL: the rows of ``<split>_pairs.csv``; T = longer side of the target image."""
    split = split or DEFAULT_SPLIT
    pairs = pfpascal.read_pairs(annotations, split)
    flipped = [p["name"] for p in pairs if p["flip"]]
    if flipped:
        raise MatchbenchError(
            f"{annotations}: pair {examples(flipped)} is flipped (training augmentation); "
            "score val or test"
        )
    threshold = metrics.pck_threshold(image_hw=np.array([p["trg_hw"] for p in pairs]))
    return score_pairs(single(predictions, "pfpascal"), pairs, threshold, split, n_boot, seed)
