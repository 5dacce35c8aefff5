"""The retrieval track's search stage: ranked lists over positives and distractor shards.

The database is the dataset's positives (the core feature store) followed by the distractor
shards in order (one feature store each, written by ``extract --shard``), read one shard at a
time, memory-mapped: never all in memory. With the ``Flat`` index the search is exact, shard
by shard, each shard's top-k merged exactly into the running top-k
(:func:`matchbench.search.exact_search`, :func:`matchbench.search.merge_topk`); because a
prefix of shards is a smaller database, the same pass gives the exact ranking at every point
of the mAP-vs-distractors curve. Any other factory string builds that faiss index (trained on
a seeded sample, filled shard by shard, on a GPU where faiss has one): its lists are the
ranked lists, and its recall@k against the exact lists of the same queries is recorded.

Outputs, in ``Layout.ranked(dataset, model)`` (written whole, atomically):

- ``ranks.parquet``: ``distractors`` (distractor images in the database), ``query``, ``kind``,
  ``rank`` (1-based), ``id``, ``score``: the top ``k`` of every query at every curve point;
- ``predictions.json``: the full database's lists in ILIAS's similarity format
  (``{query: {image id: similarity}}``, ``knn_search/search.py --save_as json``), which
  ``matchbench score --benchmark ilias`` reads;
- ``search.json``: what was searched (index, database size, shards, ANN recall).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench.errors import MatchbenchError
from matchbench.features import read_features
from matchbench.io import atomic_dir, read_json, write_json, write_parquet
from matchbench.layout import Layout
from matchbench.progress import bar as progress_bar
from matchbench.search import (
    build_index,
    check_k,
    exact_search,
    merge_topk,
    recall_at_k,
    search_index,
)
from matchbench.tracks.retrieval.methods import (
    EXPANDED,
    LOCAL,
    block,
    curve_points,
    method_checkpoint,
    shard_names,
    split_method,
)
from matchbench.tracks.retrieval.tables import POSITIVES, QUERIES, read_positives, read_queries

Transform = Callable[[np.ndarray], np.ndarray]
CHUNK = 65536  # rows converted to float32 (and adapted) at a time


def _normalise(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


def load_adapter(path: str | Path) -> Transform:
    """The linear adaptation of ``adapt.train``: ``x -> normalise(x W^T + b)``."""
    from safetensors.numpy import load_file

    p = Path(path)
    if not p.is_file():
        raise MatchbenchError(
            f"{p}: no linear adaptation; train it (matchbench finetune --recipe ilias-linear)"
        )
    tensors = load_file(str(p))
    if "weight" not in tensors or "bias" not in tensors:
        raise MatchbenchError(f"{p}: expected tensors 'weight' and 'bias', got {sorted(tensors)}")
    w, b = tensors["weight"].astype(np.float32), tensors["bias"].astype(np.float32)

    def apply(x: np.ndarray) -> np.ndarray:
        if x.shape[1] != w.shape[1]:
            raise MatchbenchError(
                f"{p}: adapts {w.shape[1]}-d descriptors, got {x.shape[1]}-d ones (another model's?)"
            )
        return _normalise(np.asarray(x, dtype=np.float32) @ w.T + b)

    return apply


@dataclass
class Part:
    """One block of the database: the positives, or a distractor shard."""

    name: str
    ids: list[str]
    features: np.ndarray  # (n, d), float16 memmap or float32


class Database:
    """Positives then distractor shards, each adapted on the fly, one at a time."""

    def __init__(self, parts: list[Part], transform: Transform | None) -> None:
        self.parts, self.transform = parts, transform
        self.sizes = [len(p.ids) for p in parts]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def array(self, j: int) -> np.ndarray:
        """Part ``j`` as float32 rows, adapted when the method says so."""
        f = self.parts[j].features
        out = []
        for s in range(0, len(f), CHUNK):
            x = np.asarray(f[s : s + CHUNK], dtype=np.float32)
            out.append(self.transform(x) if self.transform else x)
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)

    def arrays(self) -> Iterator[np.ndarray]:
        for j in range(len(self.parts)):
            yield self.array(j)

    @property
    def dim(self) -> int:
        x = np.asarray(self.parts[0].features[:1], dtype=np.float32)
        return int((self.transform(x) if self.transform else x).shape[1])

    def vectors(self, idx: np.ndarray) -> np.ndarray:
        """Rows at global indices ``idx`` (any order), adapted."""
        flat = np.asarray(idx, dtype=np.int64).ravel()
        part = self._part(flat)
        out = np.zeros((flat.size, self.dim), dtype=np.float32)
        for j in np.unique(part):
            sel = np.flatnonzero(part == j)
            local = flat[sel] - self.offsets[j]
            order = np.argsort(local, kind="stable")
            x = np.asarray(self.parts[j].features[local[order]], dtype=np.float32)
            out[sel[order]] = self.transform(x) if self.transform else x
        return out

    def _part(self, idx: np.ndarray) -> np.ndarray:
        """The part each global index is in."""
        return np.searchsorted(self.offsets, idx, side="right") - 1

    def part_of(self, idx: np.ndarray) -> list[str]:
        """The name of the part each global index is in."""
        return [self.parts[j].name for j in self._part(idx).tolist()]

    def id_of(self, idx: np.ndarray) -> list[str]:
        part = self._part(idx)
        return [
            self.parts[j].ids[i - self.offsets[j]]
            for i, j in zip(idx.tolist(), part.tolist(), strict=True)
        ]


def _shard_store(layout: Layout, dataset: str, model: str, shard: str) -> Part:
    folder = Path(layout.distractors(dataset, model, shard))
    path = folder / "features.npy"
    if not path.is_file():
        raise MatchbenchError(
            f"{folder}: no features of distractor shard {shard}; run `matchbench extract "
            f"--dataset {dataset} --model {model} --shard {shard}`"
        )
    ids = (folder / "ids.txt").read_text(encoding="utf-8").splitlines()
    feats = np.load(path, mmap_mode="r", allow_pickle=False)
    if feats.shape[0] != len(ids):
        raise MatchbenchError(f"{folder}: {len(ids)} ids but {feats.shape[0]} feature rows")
    return Part(shard, ids, feats)


def ranked_by_points(
    db: Database, queries: np.ndarray, k: int, points: list[int], progress: bool = True
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Exact top-``k`` (scores, global indices) of every query over the positives and the
    first ``p`` shards, for each ``p`` in ``points``: one pass, per-shard top-k merged."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    running: tuple[np.ndarray, np.ndarray] | None = None
    bar = progress_bar(total=len(db.parts), desc="search", unit="shard", disable=not progress)
    for j in range(len(db.parts)):
        x = db.array(j)
        if len(x):
            s, i = exact_search(queries, [x], min(k, len(x)))
            i = np.where(i >= 0, i + db.offsets[j], -1)
            running = (s, i) if running is None else merge_topk(*running, s, i, k)
        if j in points:  # part 0 is the positives: after part j, j shards are in
            if running is None:
                raise MatchbenchError("the database is empty: no positives and no distractors")
            out[j] = running
        bar.update(1)
    bar.close()
    return out


def expand(
    db: Database, queries: np.ndarray, scores: np.ndarray, idx: np.ndarray, n: int, alpha: float
) -> np.ndarray:
    """Alpha query expansion (Radenović et al., TPAMI 2018): each query plus its top ``n``
    database vectors weighted by their similarity to the power ``alpha``, L2-normalised."""
    n = min(n, idx.shape[1])
    top = idx[:, :n]
    w = np.clip(scores[:, :n], 0.0, None) ** alpha
    w = np.where(top >= 0, w, 0.0)
    x = db.vectors(np.where(top >= 0, top, 0)).reshape(len(queries), n, -1)
    return _normalise(queries + (w[..., None] * x).sum(axis=1))


def encode_texts(
    cfg: dict[str, Any], model: str, dataset: str, texts: list[str]
) -> np.ndarray | None:
    """Text-query descriptors by the model's text tower, or None when it has none."""
    from matchbench.config import backbone_spec
    from matchbench.layout import split_model

    if not texts or backbone_spec(cfg, split_model(model)[0])["source"] != "open_clip":
        return None  # a timm encoder is image-only: no need to build it to learn that

    import torch
    import torch.nn.functional as F

    from matchbench.models.backbones import load_model
    from matchbench.runtime import start

    rt = start(cfg)
    encoder = load_model(cfg, model, dataset)
    if not encoder.has_text:
        return None
    encoder.module.to(rt.device).eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(texts), 256):
            tokens = encoder.tokenize(texts[s : s + 256]).to(rt.device)
            out.append(F.normalize(encoder.encode_text(tokens).float(), dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def query_features(
    cfg: dict[str, Any],
    model: str,
    dataset: str,
    table: pd.DataFrame,
    feats: np.ndarray,
    row: dict[str, int],
    folder: Path,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The queries this model can run (image queries always; text queries with a text tower),
    and their descriptors, in the table's order."""
    images = table[table["kind"] == "image"]
    missing = [q for q in images["query"] if q not in row]
    if missing:
        raise MatchbenchError(f"{folder}: image query {missing[0]!r} has no feature; extract again")
    parts, rows = [feats[[row[q] for q in images["query"]]]], [images]
    texts = table[table["kind"] == "text"]
    tf = encode_texts(cfg, model, dataset, texts["text"].tolist())
    if tf is not None:
        parts.append(tf)
        rows.append(texts)
    return pd.concat(rows, ignore_index=True), np.concatenate(parts).astype(np.float32)


def retrieve(cfg: dict[str, Any], args: argparse.Namespace) -> str:
    ranks, info = search(cfg, args.model, args.dataset)
    full = ranks[ranks["distractors"] == ranks["distractors"].max()]
    out = Path(Layout.of(cfg).ranked(args.dataset, args.model))
    with atomic_dir(out) as tmp:
        write_parquet(tmp / "ranks.parquet", ranks)
        write_json(tmp / "predictions.json", _predictions(full), compact=True)
        write_json(tmp / "search.json", info)
    kinds = ", ".join(
        f"{n} {kind}" for kind, n in full.groupby("kind")["query"].nunique().sort_index().items()
    )
    shards = len(info["distractor_shards"])
    return f"{args.model} on {args.dataset}: {kinds} queries, database {info['database']} ({shards} shards), top {info['k']} -> {out}"


def search(cfg: dict[str, Any], name: str, dataset: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ranked lists of the model ``<model>@<method>`` ``name`` on ``dataset`` at every
    curve point (``ranks.parquet``'s rows) and what was searched (``search.json``)."""
    blk = block(cfg)
    model, method = split_method(name)
    layout = Layout.of(cfg)
    k = blk["k"]
    table = read_queries(layout.table(dataset, QUERIES))
    positives = read_positives(layout.table(dataset, POSITIVES))
    folder = Path(layout.features(dataset, model))
    feats, ids, _ = read_features(folder)
    row = {x: i for i, x in enumerate(ids)}
    missing = [p for p in positives["id"] if p not in row]
    if missing:
        raise MatchbenchError(f"{folder}: positive {missing[0]!r} has no feature; extract again")
    table, q = query_features(cfg, model, dataset, table, feats, row, folder)
    ckpt = method_checkpoint(cfg, model, method)
    transform = load_adapter(ckpt) if ckpt else None
    if transform is not None:
        q = transform(q)
    shards = shard_names(cfg, dataset)
    parts = [Part("positives", positives["id"].tolist(), feats[[row[p] for p in positives["id"]]])]
    parts += [_shard_store(layout, dataset, model, s) for s in shards]
    db = Database(parts, transform)
    check_k(k, len(db), "tracks.retrieval.k")
    points = curve_points(cfg)
    found = ranked_by_points(db, q, k, points)
    if method in EXPANDED:
        r = blk["rerank"]
        s_full, i_full = found[points[-1]]
        q = expand(db, q, s_full, i_full, r["n"], r["alpha"])
        found = ranked_by_points(db, q, k, points)
    info: dict[str, Any] = {
        "model": name,
        "method": method,
        "factory": blk["index"]["factory"],
        "params": blk["index"]["params"],
        "k": k,
        "database": len(db),
        "positives": len(positives),
        "distractor_shards": shards,
        "points": [int(db.offsets[p + 1] - db.offsets[1]) for p in points],
        "ann": {},
    }
    exact = found[points[-1]]
    final = exact
    factories = [blk["index"]["factory"]] if blk["index"]["factory"] != "Flat" else []
    if method == "global":
        factories += [f for f in blk["index"]["compare"] if f not in factories]
    for factory in factories:
        approx = ann_search(db, q, k, factory, blk["index"], cfg["seed"])  # "factory params"
        info["ann"][factory] = {f"recall@{k}": round(recall_at_k(approx[1], exact[1], k), 6)}
        if factory == blk["index"]["factory"]:
            final = approx
    lists = {p: final if p == points[-1] else found[p] for p in points}
    if method in LOCAL:
        lists = rerank_local(cfg, model, dataset, db, table, lists)
        info["local"] = dict(blk["local"])
    frames = []
    for p in points:
        s, i = lists[p]
        frames.append(_frame(db, table, s, i, int(db.offsets[p + 1] - db.offsets[1])))
    return pd.concat(frames, ignore_index=True), info


def rerank_local(
    cfg: dict[str, Any],
    model: str,
    dataset: str,
    db: Database,
    table: pd.DataFrame,
    lists: dict[int, tuple[np.ndarray, np.ndarray]],
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The image queries' lists at every curve point, their shortlists re-ranked by the
    Chamfer similarity of ``model``'s dense features (:mod:`matchbench.tracks.retrieval.local`)."""
    from matchbench.tracks.retrieval.local import INDEX, LocalDescriptors, rerank_lists

    lcfg = block(cfg)["local"]
    local = LocalDescriptors(cfg, model, dataset, progress=True)
    queries = [
        str(q) if kind == "image" else None
        for q, kind in zip(table["query"], table["kind"], strict=True)
    ]
    positives = db.parts[0].name

    def source_of(idx: np.ndarray) -> list[str]:
        return [INDEX if name == positives else name for name in db.part_of(idx)]

    return rerank_lists(
        local,
        queries,
        lists,
        db.id_of,
        source_of,
        lcfg["shortlist"],
        lcfg["weight"],
        memory=lcfg["memory_gb"] * 2**30,
    )


def ann_search(
    db: Database, q: np.ndarray, k: int, factory: str, icfg: dict[str, Any], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` by a faiss index built from ``factory`` (a factory string, optionally
    followed by a space and its ParameterSpace settings), trained on a seeded sample."""
    name, _, params = factory.partition(" ")
    if factory == icfg["factory"]:
        params = icfg["params"]
    rng = np.random.default_rng(seed)
    n = min(icfg["train_size"], len(db))
    sample = np.sort(rng.choice(len(db), size=n, replace=False))
    index = build_index(
        name,
        db.dim,
        db.vectors(sample),
        db.arrays(),
        params=params.strip(),
        key="tracks.retrieval.index",
    )
    return search_index(index, q, k)


def _frame(
    db: Database, table: pd.DataFrame, s: np.ndarray, i: np.ndarray, distractors: int
) -> pd.DataFrame:
    keep = i >= 0
    qi, r = np.nonzero(keep)
    return pd.DataFrame(
        {
            "distractors": np.full(qi.size, distractors, dtype=np.int64),
            "query": table["query"].to_numpy()[qi],
            "kind": table["kind"].to_numpy()[qi],
            "rank": (r + 1).astype(np.int64),
            "id": db.id_of(i[keep]),
            "score": s[keep].astype(np.float32),
        }
    )


def _predictions(ranks: pd.DataFrame) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for query, part in ranks.groupby("query", sort=True):
        out[str(query)] = {str(x): float(v) for x, v in zip(part["id"], part["score"], strict=True)}
    return out


def read_ranks(folder: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    d = Path(folder)
    path = d / "ranks.parquet"
    if not path.is_file():
        raise MatchbenchError(f"{d}: no ranked lists; run `matchbench retrieve` first")
    return pd.read_parquet(path), read_json(d / "search.json")
