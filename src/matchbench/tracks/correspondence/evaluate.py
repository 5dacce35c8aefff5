"""Evaluate semantic correspondence: transfer each pair's keypoints, PCK@alpha in the original frame.

As the unified benchmark's ``test.py`` and ``utils/evaluator.py`` (``Visual-AI/Semantic-
Correspondence``): every image resized to a square, one dense map per image, each pair's source
keypoints transferred with every matching variant (``matchbench.tracks.correspondence.match``), and a
keypoint correct when ``||pred - gt|| <= alpha * T`` (``matchbench.metrics.pck_per_pair``).
Predictions are mapped back to the target's original frame first (``dense.from_grid``): PCK is
computed there, with the pair table's ``threshold`` as T.

Aggregation (``matchbench.metrics.pck_metrics``, the one shared with ``matchbench score``;
docs/metrics.md): ``pck@alpha`` per image (the mean over pairs of each pair's fraction of
correct keypoints, ``EVALUATOR.BY = 'image'``) and ``pck_point@alpha`` per point (all keypoints
pooled, ``BY = 'point'``). Both intervals are 95% percentile bootstraps over *pairs*
(``evaluate.bootstrap`` resamples, ``seed``): a keypoint's correctness is not independent of
its pair's, so resampling points alone would give too narrow an interval. The per-point
interval resamples pairs and pools their points (the ratio of correct to total keypoints of
each resample), with the same draws as the per-image one, so the two coincide when every pair
has the same number of keypoints.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from matchbench import per_query
from matchbench.config import backbone_spec, dataset_spec, split_model
from matchbench.errors import MatchbenchError
from matchbench.images import read_index
from matchbench.io import read_json_object, write_parquet
from matchbench.layout import Layout
from matchbench.metrics import (
    PckScores,
    bootstrap_ratio_ci,
    pck_key,
    pck_metrics,
    pck_scores,
)
from matchbench.per_query import PerQuery
from matchbench.progress import bar as progress_bar
from matchbench.runtime import autocast_dtype, loader_workers, start
from matchbench.tracks.correspondence.dense import from_grid, load_square, to_grid
from matchbench.tracks.correspondence.match import VARIANTS, transfer_variants
from matchbench.tracks.correspondence.pairs import FLAGS, keypoints, read_pairs_table
from matchbench.tracks.correspondence.store import (
    compute_maps,
    model_resolution,
    open_backbone,
    read_dense,
    track_config,
)

CURVE_ALPHAS = tuple(round(0.01 * i, 2) for i in range(1, 21))
PREDICTION_COLUMNS = [
    "pair", "category", "src", "trg", "src_kps", "trg_kps", "pred_kps", "threshold", "correct",
]  # fmt: skip
_CACHE_REUSE = 8  # maps kept in memory when read from the cache (consecutive pairs share images)


# The PCK aggregation is the metrics module's, shared with `matchbench score` (these names are
# kept for the track's callers).
metric_key = pck_key
Scored = PckScores
score_points = pck_scores
__all__ = [
    "CURVE_ALPHAS", "PREDICTION_COLUMNS", "Scored", "bootstrap_ratio_ci", "evaluate", "metric_key",
    "score_points", "summarise", "task",
]  # fmt: skip


# --------------------------------------------------------------------------- where maps come from


class _ChunkImages(Dataset):
    """The images each chunk of pairs needs and the previous chunk did not load, as one stack."""

    def __init__(self, root: Path, paths: dict[str, str], plan: list[list[str]], res: int) -> None:
        self.root, self.paths, self.plan, self.res = root, paths, plan, res

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, k: int) -> tuple[list[str], torch.Tensor]:
        ids = self.plan[k]
        if not ids:
            return ids, torch.zeros((0, 3, self.res, self.res), dtype=torch.uint8)
        return ids, torch.stack([load_square(self.root / self.paths[i], self.res)[0] for i in ids])


def _live_maps(
    cfg: dict[str, Any],
    dataset: str,
    model: str,
    pairs: pd.DataFrame,
    paths: dict[str, str],
    device: torch.device,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Each pair's two maps computed on the fly: pairs in chunks of ``batch_size // 2``, each
    chunk's new images in one forward, maps kept only until the next chunk (nothing stored).
    The backbone is built here, before the first pair is asked for."""
    fcfg, ecfg = track_config(cfg)["features"], cfg["extract"]
    dtype = autocast_dtype(ecfg["precision"], device)  # the cache's, so both give the same maps
    backbone, _ = open_backbone(cfg, model, dataset, device)
    size = max(1, fcfg["batch_size"] // 2)
    chunks = [range(s, min(s + size, len(pairs))) for s in range(0, len(pairs), size)]
    src, trg = pairs["src"].tolist(), pairs["trg"].tolist()
    needed = [list(dict.fromkeys(x for i in c for x in (src[i], trg[i]))) for c in chunks]
    plan = [[x for x in need if k == 0 or x not in needed[k - 1]] for k, need in enumerate(needed)]
    loader = DataLoader(
        _ChunkImages(
            Path(Layout.of(cfg).dataset(dataset)), paths, plan, model_resolution(cfg, model)
        ),
        batch_size=None,
        num_workers=loader_workers(cfg),
        pin_memory=device.type == "cuda",
    )
    bs, layer = fcfg["batch_size"], fcfg["layer"]

    def pair_maps() -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        kept: dict[str, torch.Tensor] = {}
        for chunk, need, (new_ids, images) in zip(chunks, needed, loader, strict=True):
            maps = {x: kept[x] for x in need if x in kept}
            for b in range(0, len(new_ids), bs):
                out = compute_maps(backbone, images[b : b + bs], device, dtype, layer)
                maps.update(zip(new_ids[b : b + bs], out, strict=True))
            for i in chunk:
                yield i, maps[src[i]], maps[trg[i]]
            kept = maps

    return pair_maps()


def _cached_maps(
    cfg: dict[str, Any], model: str, folder: Path, pairs: pd.DataFrame, device: torch.device
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Each pair's two maps read from the dense-map cache (memory-mapped)."""
    maps, ids, meta = read_dense(folder)
    fcfg = track_config(cfg)["features"]
    for key, want in (
        ("model", model),
        ("resolution", model_resolution(cfg, model)),
        ("layer", fcfg["layer"]),
    ):
        if meta.get(key) != want:
            raise MatchbenchError(
                f"{folder / 'meta.json'}: the cache has {key} {meta.get(key)!r} but the evaluation "
                f"wants {want!r}; re-run `matchbench extract --dense`"
            )
    pos = {x: i for i, x in enumerate(ids)}
    used = list(dict.fromkeys([*pairs["src"], *pairs["trg"]]))
    missing = [x for x in used if x not in pos]
    if missing:
        raise MatchbenchError(
            f"{folder / 'ids.txt'}: the cache lacks {len(missing)} images of the evaluated pairs "
            f"(first: {missing[:3]}); re-run `matchbench extract --dense`"
        )
    recent: OrderedDict[str, torch.Tensor] = OrderedDict()

    def get(x: str) -> torch.Tensor:
        if x in recent:
            recent.move_to_end(x)
            return recent[x]
        m = torch.from_numpy(np.array(maps[pos[x]])).to(device)
        recent[x] = m
        if len(recent) > _CACHE_REUSE:
            recent.popitem(last=False)
        return m

    def pair_maps() -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        for i, (s, t) in enumerate(zip(pairs["src"], pairs["trg"], strict=True)):
            yield i, get(s), get(t)

    return pair_maps()


# --------------------------------------------------------------------------- the evaluation


def _check_pairs(pairs: pd.DataFrame, path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    kps = [keypoints(row) for _, row in pairs.iterrows()]
    bad = [n for n, (s, t) in zip(pairs["pair"], kps, strict=True) if len(s) != len(t)]
    if bad:
        raise MatchbenchError(f"{path}: src_kps and trg_kps differ in length in pairs {bad[:3]}")
    empty = [n for n, (s, _) in zip(pairs["pair"], kps, strict=True) if len(s) == 0]
    if empty:
        raise MatchbenchError(f"{path}: pairs without keypoints: {empty[:3]} ({len(empty)} in all)")
    t = pairs["threshold"].to_numpy(dtype=np.float64)
    bad_t = pairs["pair"][~np.isfinite(t) | (t <= 0)].tolist()
    if bad_t:
        raise MatchbenchError(f"{path}: threshold must be positive in pairs {bad_t[:3]}")
    return kps


def evaluate(
    cfg: dict[str, Any],
    dataset: str,
    model: str,
    features_dir: Path | None = None,
    progress: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame, float]:
    """Metrics document, predictions table and pairs/s of ``model`` on the evaluated split of ``dataset``.

    With ``features.cache`` true the maps are read from the dense-map cache ``features_dir``;
    otherwise the backbone runs here and nothing is stored. Deterministic on the CPU, and the
    same numbers either way (both match float16 maps). The speed is returned, not stored in the
    document, so a rerun writes the same bytes; it counts the pair loop (maps read or computed,
    keypoints transferred), not building the model, reading the tables or the bootstraps.
    """
    track = track_config(cfg)
    fcfg, mcfg, ecfg = track["features"], track["match"], track["evaluate"]
    dataset_spec(cfg, dataset)
    backbone_spec(cfg, split_model(model)[0])
    cache = bool(fcfg["cache"])
    if cache and features_dir is None:
        raise MatchbenchError(
            "tracks.correspondence.features.cache is true: give --features, the dense-map cache "
            f"folder (results/dense/{dataset}/{model})"
        )
    device = start(cfg).device

    data_dir = Path(Layout.of(cfg).dataset(dataset))
    pairs_path = data_dir / "pairs.parquet"
    pairs = read_pairs_table(pairs_path, ecfg["split"])
    index = read_index(data_dir / "images.parquet").set_index("id")
    absent = sorted(set(pairs["src"]).union(pairs["trg"]) - set(index.index))
    if absent:
        raise MatchbenchError(
            f"{pairs_path}: {len(absent)} image ids are not in images.parquet (first: {absent[:3]})"
        )
    kps = _check_pairs(pairs, pairs_path)
    size = {x: (float(r["width"]), float(r["height"])) for x, r in index.iterrows()}
    variants = list(dict.fromkeys([*mcfg["variants"], mcfg["primary"]]))
    variants.sort(key=VARIANTS.index)

    if cache:
        source = _cached_maps(cfg, model, Path(features_dir), pairs, device)
    else:
        paths = index["path"].to_dict()
        source = _live_maps(cfg, dataset, model, pairs, paths, device)
    preds: dict[str, list[np.ndarray]] = {v: [] for v in variants}
    grid: list[int] = []
    bar = progress_bar(
        total=len(pairs),
        desc=f"correspondence {model} on {dataset}",
        unit="pair",
        disable=not progress,
    )
    src_ids, trg_ids = pairs["src"].tolist(), pairs["trg"].tolist()
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i, src_map, trg_map in source:
            src_kps, _ = kps[i]
            s_wh, t_wh = size[src_ids[i]], size[trg_ids[i]]
            s_grid, t_grid = (
                (src_map.shape[2], src_map.shape[1]),
                (trg_map.shape[2], trg_map.shape[1]),
            )
            uv = torch.from_numpy(to_grid(src_kps, s_wh, s_grid)).float()
            out = transfer_variants(
                src_map, trg_map, uv, variants, mcfg["temperature"], mcfg["window_sigma"]
            )
            for v in variants:
                preds[v].append(from_grid(out[v].cpu().double().numpy(), t_wh, t_grid))
            grid = [int(t_grid[0]), int(t_grid[1])]
            bar.update(1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    bar.close()

    doc, correct = summarise(cfg, pairs, kps, preds)
    skipped_path = data_dir / "skipped.json"
    doc |= {"task": "correspondence", "dataset": dataset, "model": model, "split": ecfg["split"]}
    doc["extra"] |= {
        "resolution": model_resolution(cfg, model),
        "grid": grid,
        "cache": cache,
        "skipped": read_json_object(skipped_path, "skipped pairs")
        if skipped_path.is_file()
        else {},
    }
    primary = preds[mcfg["primary"]]
    predictions = pd.DataFrame(
        {
            "pair": pairs["pair"],
            "category": pairs["category"],
            "src": pairs["src"],
            "trg": pairs["trg"],
            "src_kps": pairs["src_kps"],
            "trg_kps": pairs["trg_kps"],
            "pred_kps": [p.reshape(-1).tolist() for p in primary],
            "threshold": pairs["threshold"].astype(np.float64),
            "correct": correct,
        },
        columns=PREDICTION_COLUMNS,
    )
    return doc, predictions, (len(pairs) / seconds if seconds else float("nan"))


def summarise(
    cfg: dict[str, Any],
    pairs: pd.DataFrame,
    kps: list[tuple[np.ndarray, np.ndarray]],
    preds: dict[str, list[np.ndarray]],
) -> tuple[dict[str, Any], list[list[bool]]]:
    """The metrics document (without task/dataset/model/timing) from every variant's predictions
    (original target frame), and each pair's keypoint correctness at the primary alpha."""
    track = track_config(cfg)
    mcfg, ecfg = track["match"], track["evaluate"]
    n_boot, seed = ecfg["bootstrap"], cfg["seed"]
    primary, primary_alpha = mcfg["primary"], float(ecfg["primary_alpha"])
    alphas = [float(a) for a in ecfg["alphas"]]
    counts = np.array([len(t) for _, t in kps], dtype=np.int64)
    gt = np.concatenate([t for _, t in kps])
    thr = pairs["threshold"].to_numpy(dtype=np.float64)
    categories = pairs["category"].to_numpy()

    def scored(variant: str, alpha: float) -> Scored:
        return score_points(np.concatenate(preds[variant]), gt, thr, counts, alpha)

    by_variant: dict[str, dict[str, Any]] = {}
    primary_scores: dict[float, Scored] = {}
    per_category: dict[str, dict[str, float]] = {}
    for v in preds:
        scores = {a: scored(v, a) for a in alphas}
        if v == primary:
            primary_scores = scores
            by_variant[v], per_category = pck_metrics(scores, n_boot, seed, categories)
        else:
            by_variant[v], _ = pck_metrics(scores, n_boot, seed)

    at_primary = primary_scores.get(primary_alpha) or scored(primary, primary_alpha)
    flags: dict[str, dict[str, dict[str, Any]]] = {}
    for f in FLAGS:
        values = pairs[f].to_numpy()
        known = sorted(set(values[values >= 0].tolist()))
        if known:  # -1 = the dataset has no such flag (or not for this pair)
            flags[f] = {
                str(int(x)): {
                    "value": at_primary.value("image", values == x),
                    "n": int((values == x).sum()),
                }
                for x in known
            }

    curve_scores = [scored(primary, a) for a in CURVE_ALPHAS]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    correct = [at_primary.correct[offsets[i] : offsets[i + 1]].tolist() for i in range(counts.size)]
    doc = {
        "metrics": by_variant[primary],
        "per_category": per_category,
        "extra": {
            "variant": primary,
            "primary_alpha": primary_alpha,
            "variants": by_variant,
            "flags": flags,
            "curve": {
                "alpha": list(CURVE_ALPHAS),
                "pck": [s.value("image") for s in curve_scores],
                "pck_point": [s.value("point") for s in curve_scores],
            },
            "n_pairs": int(counts.size),
            "n_points": int(counts.sum()),
        },
    }
    return doc, correct


def task(cfg: dict[str, Any], args: Any) -> dict[str, Any]:
    """``matchbench evaluate --task correspondence``: the metrics document, and the predictions
    table written beside it (``<model>.predictions.parquet``, named in ``artifacts``)."""
    cache = track_config(cfg)["features"]["cache"]
    features = args.features
    if cache and features is None:
        features = Path(Layout.of(cfg).dense(args.dataset, args.model))
    if features is not None and not cache:
        raise MatchbenchError(
            "--features was given but tracks.correspondence.features.cache is false (maps are "
            "computed on the fly); drop --features or set the cache to true"
        )
    doc, predictions, pairs_per_s = evaluate(cfg, args.dataset, args.model, features)
    out = Path(args.out)
    side = out.with_name(out.name.removesuffix(".json") + ".predictions.parquet")
    write_parquet(side, predictions)
    # Per pair, the fraction of its keypoints correct at the primary alpha: the values whose
    # mean is the primary pck@<alpha>, for the report's paired tests between models.
    pq = PerQuery()
    pq.add(
        f"pck@{doc['extra']['primary_alpha']}",
        predictions["pair"],
        [float(np.mean(c)) for c in predictions["correct"]],
    )
    doc["artifacts"] = {"predictions": str(side), per_query.ROLE: pq.write(out)}
    # Speed goes to the log, not into the metrics file: reruns must write the same bytes.
    print(f"evaluate: {pairs_per_s:.1f} pairs/s", file=sys.stderr)
    return doc
