"""``matchbench score`` for CIRR, CIRCO and FashionIQ: the test-server formats.

The same files the track's evaluation writes for a hidden split (``<model>.submission/``), read
against annotations that hold the ground truth (a split's own files, or the mini-world's
``server/`` copy of its hidden splits), with the metric code of :mod:`.evaluate`'s protocols
(docs/metrics.md). Light on purpose (no torch): ``score`` runs without a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matchbench import metrics
from matchbench.data.formats import circo, cirr, fashioniq
from matchbench.data.formats.predictions import (
    as_object,
    check_keys,
    examples,
    image_name,
    ranked,
    read_predictions,
    single,
)
from matchbench.errors import MatchbenchError
from matchbench.stages.score import _mean, _result, plain
from matchbench.tracks.cir.tables import CIRCO_KS, CIRR_KS, CIRR_SUBSET_KS, FASHIONIQ_KS


def score_cirr(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """CIRR test-server files: ``{"version": "rc2", "metric": "recall" | "recall_subset",
    "<pairid>": [ranked image names], ...}``. The reference image is dropped from a list
    where present (CIRR ranks the gallery without it)."""
    split = split or "val"
    cap = cirr.captions_path(root, split)
    queries = cirr.read_queries(cap)
    if any(q["target"] is None for q in queries):
        raise MatchbenchError(
            f"{cap}: no 'target_hard': the ground truth of this split is kept by the CIRR "
            "evaluation server; score val here"
        )
    gallery = cirr.read_gallery(root, split)
    gallery_set = set(gallery) if gallery is not None else None
    out = _result("cir", split, {}, extra={"queries": len(queries)})
    seen: dict[str, Path] = {}
    for path in paths:
        data = as_object(read_predictions(path), path, "top level")
        if data.get("version") != "rc2":
            raise MatchbenchError(f'{path}: expected "version": "rc2", got {data.get("version")!r}')
        kind = data.get("metric")
        if kind not in ("recall", "recall_subset"):
            raise MatchbenchError(
                f'{path}: expected "metric": "recall" or "recall_subset", got {kind!r}'
            )
        if kind in seen:
            raise MatchbenchError(f"{path}: a second {kind!r} file (the first was {seen[kind]})")
        seen[kind] = path
        entries = {k: v for k, v in data.items() if k not in ("version", "metric")}
        check_keys(entries, [q["pairid"] for q in queries], path, "pairid")
        ranks = []
        for q in queries:
            pid, ref = q["pairid"], q["reference"]
            names = [
                n for n in ranked(entries[pid], path, pid, image_name, "image name") if n != ref
            ]
            if kind == "recall":
                allowed, need = gallery_set, CIRR_KS[-1]
            else:
                allowed, need = set(q["members"]) - {ref}, CIRR_SUBSET_KS[-1]
            if allowed is not None:
                stray = [n for n in names if n not in allowed]
                if stray:
                    where = (
                        "the split's gallery" if kind == "recall" else "the query's img_set.members"
                    )
                    raise MatchbenchError(
                        f"{path}: entry {pid!r}: {examples(stray)} not in {where}"
                    )
            if len(names) < need:
                raise MatchbenchError(
                    f"{path}: entry {pid!r}: expected at least {need} ranked images "
                    f"(reference excluded), got {len(names)}"
                )
            ranks.append(names.index(q["target"]) + 1 if q["target"] in names else np.inf)
        r = np.asarray(ranks)
        for k in CIRR_KS if kind == "recall" else CIRR_SUBSET_KS:
            out["metrics"][f"{kind}@{k}"] = metrics.summarise(r <= k, n_boot, seed)
    return out


def score_circo(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """CIRCO submission: ``{"<query id>": [ranked image ids, at least 50], ...}``."""
    path = single(paths, "circo")
    split = split or "val"
    ann = circo.annotations_path(root, split)
    queries = circo.read_queries(ann)
    if any(q["gt"] is None for q in queries):
        raise MatchbenchError(
            f"{ann}: no 'gt_img_ids': the ground truth of this split is kept by the CIRCO "
            "evaluation server; score val here"
        )
    data = as_object(read_predictions(path), path, "top level")
    check_keys(data, [q["id"] for q in queries], path, "query id")
    depth = CIRCO_KS[-1]
    relevant = np.zeros((len(queries), depth), dtype=bool)
    for i, q in enumerate(queries):
        ids = ranked(data[q["id"]], path, q["id"], circo.image_id, "image id")
        if len(ids) < depth:
            raise MatchbenchError(
                f"{path}: entry {q['id']!r}: expected at least {depth} ranked image ids, got {len(ids)}"
            )
        relevant[i] = np.isin(ids[:depth], q["gt"])
    n_gt = np.array([len(q["gt"]) for q in queries])
    order = np.tile(-np.arange(depth, dtype=np.float64), (len(queries), 1))
    out = _result("cir", split, {}, extra={"queries": len(queries)})
    for k in CIRCO_KS:
        ap = metrics.average_precision_at_k(order, relevant, k, n_relevant=n_gt)
        out["metrics"][f"map@{k}"] = metrics.summarise(ap, n_boot, seed)
        if k == 10:
            # CIRCO's evaluation also reports mAP@10 per semantic aspect.
            aspects: dict[str, list[float]] = {}
            for q, a in zip(queries, ap, strict=True):
                for aspect in q["aspects"]:
                    aspects.setdefault(aspect, []).append(float(a))
            if aspects:
                out["per_category"]["map@10"] = {a: _mean(v) for a, v in sorted(aspects.items())}
    return out


def score_fashioniq(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """FashionIQ: ``{"<category>": {"<triplet index>": [ranked image names, at least 50]}}``,
    the index being the 0-based position in ``cap.<category>.<split>.json``."""
    path = single(paths, "fashioniq")
    split = split or "val"
    data = as_object(read_predictions(path), path, "top level")
    unknown = [c for c in data if c not in fashioniq.CATEGORIES]
    if unknown or not data:
        raise MatchbenchError(
            f"{path}: top-level keys must be FashionIQ categories ({', '.join(fashioniq.CATEGORIES)}); "
            f"got {examples(unknown or ['nothing'])}"
        )
    out = _result("cir", split, {})
    per_k: dict[int, dict[str, float]] = {k: {} for k in FASHIONIQ_KS}
    total = 0
    depth = FASHIONIQ_KS[-1]
    for cat in (c for c in fashioniq.CATEGORIES if c in data):
        cap = fashioniq.captions_path(root, cat, split)
        queries = fashioniq.read_queries(cap)
        if any(q["target"] is None for q in queries):
            raise MatchbenchError(f"{cap}: some triplets have no 'target'; cannot score this split")
        gallery = fashioniq.read_gallery(root, cat, split)
        gallery_set = set(gallery) if gallery is not None else None
        entries = as_object(data[cat], path, f"category {cat!r}")
        check_keys(entries, [q["index"] for q in queries], path, f"{cat} triplet index")
        ranks = []
        for q in queries:
            entry = f"{cat}/{q['index']}"
            names = ranked(entries[q["index"]], path, entry, image_name, "image name")
            if gallery_set is not None and (stray := [n for n in names if n not in gallery_set]):
                raise MatchbenchError(
                    f"{path}: entry {entry!r}: {examples(stray)} not in the {cat} gallery"
                )
            if len(names) < depth:
                raise MatchbenchError(
                    f"{path}: entry {entry!r}: expected at least {depth} ranked images, got {len(names)}"
                )
            ranks.append(names.index(q["target"]) + 1 if q["target"] in names else np.inf)
        recalls = metrics.recall_from_ranks(ranks, FASHIONIQ_KS)
        for k in FASHIONIQ_KS:
            per_k[k][cat] = recalls[k]
        total += len(queries)
    for k in FASHIONIQ_KS:
        # The benchmark's figure is the plain mean of the categories, not a pooled recall.
        out["metrics"][f"recall@{k}"] = plain(_mean(per_k[k].values()), total)
        out["per_category"][f"recall@{k}"] = per_k[k]
    out["extra"] = {"categories": list(per_k[FASHIONIQ_KS[0]]), "queries": total}
    return out
