"""Task ``cir``: composed image retrieval on CIRR, CIRCO and FashionIQ, with bootstrap CIs.

A model is ``<frozen model>@<method>`` (:mod:`.methods`). Gallery and reference features
come from the feature store of the frozen model (``matchbench extract``); a method composes
each query's reference and modification text into one L2-normalised feature (:func:`queries`)
and the gallery is ranked by cosine similarity. The protocols (``miccunifi/SEARLE``
``src/validate.py``, ``miccunifi/CIRCO`` ``src/evaluation.py``):

- **CIRR**: Recall@{1,5,10,50} over the split's gallery with the reference removed;
  Recall_subset@{1,2,3} over ``img_set.members`` minus the reference. Ties go against the
  target (:func:`matchbench.metrics.target_rank`).
- **CIRCO**: mAP@{5,10,25,50}, ``AP@K = sum_{i<=K} P(i) rel(i) / min(|GT|, K)`` over the whole
  gallery (the reference is not removed); mAP@10 per semantic aspect.
- **FashionIQ**: Recall@{10,50} per category over that category's gallery (the reference not
  removed), and their plain mean across categories (its interval: a bootstrap that resamples
  the queries within each category, :func:`matchbench.metrics.macro_summary`).

A split whose ground truth an evaluation server keeps (CIRR test1, CIRCO test) is ranked
too, and written in the server's format into ``<model>.submission/`` (named in
``artifacts``): CIRR's ``recall`` (50 names, reference excluded) and ``recall_subset`` (3
members) files, CIRCO's ``{id: [50 ids]}``. ``matchbench score`` reads the same files.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from matchbench import per_query
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json
from matchbench.layout import Layout
from matchbench.metrics import average_precision_at_k, subset_target_rank, target_rank
from matchbench.per_query import PerQuery
from matchbench.runtime import Runtime, start
from matchbench.tracks.cir.composer import Composer, clean, fill, placeholder_id, prompt_tokens
from matchbench.tracks.cir.methods import CHECKPOINT, block, method_checkpoint, split_method
from matchbench.tracks.cir.recipe import encode_plain, frozen_model, store
from matchbench.tracks.cir.tables import (
    CIRCO_KS,
    CIRR_KS,
    CIRR_SUBSET_KS,
    FASHIONIQ_KS,
    GALLERY,
    QUERIES,
    read_gallery,
    read_queries,
)

TASK = "cir"
SUBMISSION_DEPTH = 50


# --------------------------------------------------------------------------- queries


@torch.no_grad()
def queries(
    cfg: dict[str, Any],
    model: str,
    dataset: str,
    refs: np.ndarray,
    texts: list[str],
    rt: Runtime,
) -> np.ndarray:
    """Composed query features (N, D), float32, L2-normalised, of reference features ``refs``
    (N, D) and modification texts, by ``<frozen>@<method>``."""
    frozen, method = split_method(model)
    r = torch.from_numpy(np.ascontiguousarray(refs, dtype=np.float32)).to(rt.device)
    if method == "image":
        return F.normalize(r, dim=1).cpu().numpy()
    blk = block(cfg)
    bs = blk["evaluate"]["batch_size"]
    encoder = frozen_model(cfg, frozen, dataset, rt)
    if method in ("text", "sum"):
        t = encode_plain(encoder, [clean(x) for x in texts], rt, bs)
        q = t if method == "text" else F.normalize(F.normalize(r, dim=1) + t, dim=1)
        return q.cpu().numpy()
    path = method_checkpoint(cfg, frozen, method)
    assert path is not None and method in CHECKPOINT
    composer = Composer.load(path).to(rt.device)
    pid = placeholder_id(encoder)
    out = []
    for s in range(0, len(texts), bs):
        sentences = [fill(blk["prompt"], x) for x in texts[s : s + bs]]
        tokens, slots = prompt_tokens(encoder, sentences, pid)
        out.append(
            composer.compose(encoder, r[s : s + bs], tokens.to(rt.device), slots.to(rt.device))
        )
    return torch.cat(out).float().cpu().numpy()


# --------------------------------------------------------------------------- rankings


class Gallery:
    """One gallery's rows of the feature matrix and the position of each image in it."""

    def __init__(self, name: str, images: list[str], row: dict[str, int]) -> None:
        self.name = name
        self.images = images
        self.rows = np.array([row[i] for i in images], dtype=np.int64)
        self.pos = {x: i for i, x in enumerate(images)}


def _check(
    q: pd.DataFrame, galleries: dict[str, Gallery], qpath: Path, exclude_reference: bool
) -> None:
    for _, r in q.iterrows():
        where = f"{qpath}: query {r['id']!r}"
        g = galleries.get(r["gallery"])
        if g is None:
            raise MatchbenchError(f"{where}: gallery {r['gallery']!r} is not in {GALLERY}.parquet")
        for t in r["targets"]:
            if t not in g.pos:
                raise MatchbenchError(f"{where}: target {t!r} is not in gallery {g.name!r}")
        if exclude_reference and r["reference"] not in g.pos:
            raise MatchbenchError(
                f"{where}: reference {r['reference']!r} is not in gallery {g.name!r}"
            )


def _scores(qf: np.ndarray, feats: np.ndarray, g: Gallery) -> np.ndarray:
    return qf @ feats[g.rows].T


def by_gallery(
    q: pd.DataFrame, qf: np.ndarray, feats: np.ndarray, galleries: dict[str, Gallery]
) -> Iterator[tuple[np.ndarray, pd.DataFrame, Gallery, np.ndarray]]:
    """Per gallery: the queries' rows, those queries, the gallery, and their scores over it."""
    for name, rows in q.groupby("gallery").indices.items():
        g = galleries[name]
        yield rows, q.iloc[rows], g, _scores(qf[rows], feats, g)


def cirr_metrics(
    q: pd.DataFrame,
    qf: np.ndarray,
    feats: np.ndarray,
    galleries: dict[str, Gallery],
    n_boot: int,
    seed: int,
    pq: PerQuery | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """CIRR's recalls, and each query's rank (for the record); per-query hits go to ``pq``."""
    pq = pq or PerQuery()
    ranks = np.zeros(len(q), dtype=np.int64)
    sub = np.zeros(len(q), dtype=np.int64)
    for rows, part, g, s in by_gallery(q, qf, feats, galleries):
        t = np.array([g.pos[x[0]] for x in part["targets"]])
        ref = np.array([g.pos[x] for x in part["reference"]])
        ranks[rows] = target_rank(s, t, exclude=ref)
        for size in sorted({len(m) for m in part["members"]}):
            keep = np.array([len(m) == size for m in part["members"]])
            mem = np.array([[g.pos[x] for x in m] for m in part["members"][keep]])
            sub[rows[keep]] = subset_target_rank(s[keep], t[keep], mem, ref[keep])
    ids = q["id"]
    out = {
        f"recall@{k}": pq.summarise(f"recall@{k}", ids, ranks <= k, n_boot, seed) for k in CIRR_KS
    }
    out |= {
        f"recall_subset@{k}": pq.summarise(f"recall_subset@{k}", ids, sub <= k, n_boot, seed)
        for k in CIRR_SUBSET_KS
    }
    return out, ranks


def circo_metrics(
    q: pd.DataFrame,
    qf: np.ndarray,
    feats: np.ndarray,
    galleries: dict[str, Gallery],
    n_boot: int,
    seed: int,
    pq: PerQuery | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], np.ndarray]:
    pq = pq or PerQuery()
    ap = {k: np.zeros(len(q)) for k in CIRCO_KS}
    for rows, part, g, s in by_gallery(q, qf, feats, galleries):
        rel = np.zeros(s.shape, dtype=bool)
        for i, gt in enumerate(part["targets"]):
            rel[i, [g.pos[x] for x in gt]] = True
        n_gt = np.array([len(set(gt)) for gt in part["targets"]])
        for k in CIRCO_KS:
            ap[k][rows] = average_precision_at_k(s, rel, k, n_relevant=n_gt)
    out = {f"map@{k}": pq.summarise(f"map@{k}", q["id"], ap[k], n_boot, seed) for k in CIRCO_KS}
    aspects: dict[str, list[float]] = {}
    for a, v in zip(q["aspects"], ap[10], strict=True):
        for name in a:
            aspects.setdefault(name, []).append(float(v))
    cats = {"map@10": {a: float(np.mean(v)) for a, v in sorted(aspects.items())}} if aspects else {}
    return out, cats, ap[10]


def fashioniq_metrics(
    q: pd.DataFrame,
    qf: np.ndarray,
    feats: np.ndarray,
    galleries: dict[str, Gallery],
    n_boot: int,
    seed: int,
    pq: PerQuery | None = None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], np.ndarray]:
    pq = pq or PerQuery()
    ranks = np.zeros(len(q), dtype=np.int64)
    for rows, part, g, s in by_gallery(q, qf, feats, galleries):
        t = np.array([g.pos[x[0]] for x in part["targets"]])
        ranks[rows] = target_rank(s, t)
    cat = q["category"].to_numpy().astype(str)
    out: dict[str, Any] = {}
    cats: dict[str, dict[str, float]] = {}
    for k in FASHIONIQ_KS:
        hit = ranks <= k
        out[f"recall@{k}"] = pq.macro(f"recall@{k}", q["id"], hit, cat, n_boot, seed)
        cats[f"recall@{k}"] = {}
        for c in sorted(set(cat)):
            rows = cat == c
            key = f"{c}_recall@{k}"
            out[key] = pq.summarise(key, q["id"][rows], hit[rows], n_boot, seed)
            cats[f"recall@{k}"][c] = out[f"{c}_recall@{k}"]["value"]
    return out, cats, ranks


def chance(bench: str, q: pd.DataFrame, galleries: dict[str, Gallery]) -> dict[str, float]:
    """What a random ranking scores in expectation (the report's floor)."""
    sizes = np.array([len(galleries[g].images) for g in q["gallery"]], dtype=np.float64)
    if bench == "cirr":
        n = sizes - 1
        out = {f"recall@{k}": float(np.mean(np.minimum(1, k / n))) for k in CIRR_KS}
        m = np.array([len(x) - 1 for x in q["members"]], dtype=np.float64)
        return out | {
            f"recall_subset@{k}": float(np.mean(np.minimum(1, k / m))) for k in CIRR_SUBSET_KS
        }
    if bench == "fashioniq":
        return {f"recall@{k}": float(np.mean(np.minimum(1, k / sizes))) for k in FASHIONIQ_KS}
    # CIRCO: E[AP@K] of a random ranking is about the fraction of relevant items.
    frac = np.array([len(t) for t in q["targets"]]) / sizes
    return {f"map@{k}": float(np.mean(frac)) for k in CIRCO_KS}


# --------------------------------------------------------------------------- submissions


def submissions(
    bench: str,
    q: pd.DataFrame,
    qf: np.ndarray,
    feats: np.ndarray,
    galleries: dict[str, Gallery],
) -> dict[str, dict[str, Any]]:
    """The server files of a hidden-ground-truth split: file name -> JSON object."""
    split = str(q["split"].iloc[0])
    files: dict[str, dict[str, Any]] = {}
    if bench == "cirr":
        recall: dict[str, Any] = {"version": "rc2", "metric": "recall"}
        subset: dict[str, Any] = {"version": "rc2", "metric": "recall_subset"}
        for i, (_, r) in enumerate(q.iterrows()):
            g = galleries[r["gallery"]]
            s = _scores(qf[i : i + 1], feats, g)[0]
            order = [
                g.images[j] for j in np.argsort(-s, kind="stable") if g.images[j] != r["reference"]
            ]
            recall[r["submission"]] = order[:SUBMISSION_DEPTH]
            members = set(r["members"]) - {r["reference"]}
            subset[r["submission"]] = [x for x in order if x in members][: CIRR_SUBSET_KS[-1]]
        name = "test1" if split == "test" else split
        files[f"cirr_{name}_recall.json"] = recall
        files[f"cirr_{name}_recall_subset.json"] = subset
    elif bench == "circo":
        out: dict[str, Any] = {}
        for i, (_, r) in enumerate(q.iterrows()):
            g = galleries[r["gallery"]]
            s = _scores(qf[i : i + 1], feats, g)[0]
            top = np.argsort(-s, kind="stable")[:SUBMISSION_DEPTH]
            out[r["submission"]] = [
                int(g.images[j]) if g.images[j].isdigit() else g.images[j] for j in top
            ]
        files[f"circo_{split}.json"] = out
    return files


def examples(
    q: pd.DataFrame, qf: np.ndarray, feats: np.ndarray, galleries: dict[str, Gallery], n: int
) -> list[dict[str, Any]]:
    """``n`` evenly spaced queries with their top 5 (the reference excluded), targets marked."""
    if n == 0 or q.empty:
        return []
    picks = np.unique(np.linspace(0, len(q) - 1, min(n, len(q))).round().astype(int))
    out = []
    for i in picks:
        r = q.iloc[i]
        g = galleries[r["gallery"]]
        s = _scores(qf[i : i + 1], feats, g)[0]
        top = [g.images[j] for j in np.argsort(-s, kind="stable") if g.images[j] != r["reference"]][
            :5
        ]
        out.append(
            {
                "id": r["id"],
                "reference": r["reference"],
                "caption": r["caption"],
                "top": top,
                "hit": [x in set(r["targets"]) for x in top],
            }
        )
    return out


# --------------------------------------------------------------------------- the task


def evaluate(cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    blk = block(cfg)
    ecfg = blk["evaluate"]
    n_boot, seed = ecfg["bootstrap"], cfg["seed"]
    frozen, method = split_method(args.model)
    layout = Layout.of(cfg)
    qpath = Path(layout.table(args.dataset, QUERIES))
    gpath = Path(layout.table(args.dataset, GALLERY))
    table = read_queries(qpath)
    gal = read_gallery(gpath)
    feats, row, folder = store(cfg, args.dataset, frozen)
    missing = sorted(set(gal["image"]) - set(row))
    if missing:
        raise MatchbenchError(
            f"{gpath}: image {missing[0]!r} has no feature in {folder}; extract again"
        )
    galleries = {
        name: Gallery(name, part["image"].tolist(), row) for name, part in gal.groupby("gallery")
    }
    todo = table[table["split"].isin([ecfg["split"], *ecfg["submission"]])].reset_index(drop=True)
    todo = todo[todo["benchmark"] != "triplets"].reset_index(drop=True)
    scored = todo[(todo["split"] == ecfg["split"]) & (todo["targets"].map(len) > 0)]
    if scored.empty:
        raise MatchbenchError(
            f"{qpath}: no query of split {ecfg['split']!r} with a ground truth "
            f"(tracks.cir.evaluate.split; splits here: {', '.join(sorted(set(table['split'])))})"
        )
    for bench, part in todo.groupby("benchmark"):
        _check(part, galleries, qpath, exclude_reference=bench == "cirr")
    empty = todo["id"][todo["caption"].str.strip() == ""]
    if len(empty) and method != "image":
        raise MatchbenchError(f"{qpath}: query {empty.iloc[0]!r} has an empty modification text")
    missing = [x for x in todo["reference"] if x not in row]
    if missing:
        raise MatchbenchError(f"{qpath}: reference {missing[0]!r} has no feature in {folder}")

    rt = start(cfg)
    qf = queries(
        cfg,
        args.model,
        args.dataset,
        feats[[row[x] for x in todo["reference"]]],
        todo["caption"].tolist(),
        rt,
    )
    metrics: dict[str, Any] = {}
    cats: dict[str, Any] = {}
    extra: dict[str, Any] = {"method": method, "frozen": frozen, "bootstrap": n_boot, "chance": {}}
    benches = sorted(set(scored["benchmark"]))
    files: dict[str, dict[str, Any]] = {}
    pq = PerQuery()
    for bench in benches:
        rows = np.flatnonzero((todo["benchmark"] == bench) & todo.index.isin(scored.index))
        part = todo.iloc[rows].reset_index(drop=True)
        fn = {"cirr": cirr_metrics, "circo": circo_metrics, "fashioniq": fashioniq_metrics}[bench]
        found_pq = PerQuery()
        res = fn(part, qf[rows], feats, galleries, n_boot, seed, found_pq)
        found, found_cats = res[0], (res[1] if len(res) == 3 else {})
        prefix = f"{bench}_" if len(benches) > 1 else ""
        pq.extend(found_pq, prefix)
        metrics |= {prefix + k: v for k, v in found.items()}
        cats |= {prefix + k: v for k, v in found_cats.items()}
        extra["chance"] |= {prefix + k: v for k, v in chance(bench, part, galleries).items()}
        extra.setdefault("queries", {})[bench] = len(part)
        extra.setdefault("examples", []).extend(
            examples(part, qf[rows], feats, galleries, ecfg["examples"])
        )
    for (bench, split), part in todo.groupby(["benchmark", "split"]):
        if split in ecfg["submission"]:
            rows = part.index.to_numpy()
            files |= submissions(
                str(bench), part.reset_index(drop=True), qf[rows], feats, galleries
            )
    side = Path(args.out).with_name(Path(args.out).name.removesuffix(".json") + ".submission")
    with atomic_dir(side) as tmp:
        for name, data in files.items():
            write_json(tmp / name, data)
        write_json(tmp / "index.json", {"files": sorted(files), "model": args.model})
    extra["submission"] = sorted(files)
    doc: dict[str, Any] = {
        "task": TASK,
        "dataset": args.dataset,
        "model": args.model,
        "split": ecfg["split"],
        "metrics": metrics,
        "per_category": cats,
        "extra": extra,
        "artifacts": {"submission": str(side), per_query.ROLE: pq.write(args.out)},
    }
    path = method_checkpoint(cfg, frozen, method)
    if path is not None:  # the log of the last recipe the method trains, for its curves
        doc["artifacts"]["train_log"] = str(Path(path).with_name("train_log.csv"))
        extra["recipe"] = CHECKPOINT[method]
    return doc
