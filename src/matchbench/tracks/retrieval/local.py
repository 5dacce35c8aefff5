"""Local re-ranking: the global shortlist re-scored by the Chamfer similarity of dense features.

Methods ``local`` and ``linear-local``: the top ``local.shortlist`` of each image query's
global list (``global``'s, or ``linear``'s) are re-scored with the local descriptors of the
same backbone, the L2-normalised cells of its dense map (block ``local.layer``, at
``local.resolution``, by default the model's own), computed for the query crop and for the
shortlisted images only:

    s = (1 - w) s_global + w CS(q, x),   CS(q, x) = 1/|Q| sum_{i in Q} max_{j in X} <q_i, x_j>

``Q``, ``X`` the query's and the image's local descriptors, ``w`` = ``local.weight``. The
Chamfer similarity is the asymmetric similarity of ViSiL (Kordopatis-Zilos et al., ICCV 2019)
and the local baseline that AMES (Suma et al., ECCV 2024) compares against; a query is a crop
of its object, so every query cell should find itself somewhere in a positive, however small
and cluttered the object is there, which a global descriptor of the whole image averages away.

The re-scored shortlist is sorted by ``s`` and keeps ranks 1 to ``shortlist``; the rest of the
list keeps its order below it. Scores stay a ranking (ILIAS's JSON is scored by sorting
them): a shortlisted image's score is ``SHIFT + s`` (``s`` in [-1, 1]), above every cosine.
Text queries have no local descriptors: their lists are the global ones, unchanged.

The images are read again where they are (the prepared index for the query crops and the
positives, each distractor's tar shard at its member's offset), decoded and passed through
the backbone in batches; the cost grows with the queries times the shortlist, not with the
database (docs/retrieval.md, docs/scale.md). The queries are taken in blocks whose images'
descriptors fit in ``local.memory_gb``, each distinct image computed once a block.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.progress import bar as progress_bar

KEY = "tracks.retrieval.local"
SHIFT = 3.0  # a re-scored image ranks above every image left with its cosine in [-1, 1]
INDEX = ""  # the source of query crops and positives: the dataset's prepared index


@contextmanager
def config_keys() -> Iterator[None]:
    """An encoder's :class:`OptionError` (a layer out of range, a resolution it cannot take)
    re-raised naming this block's key."""
    from matchbench.models import OptionError

    try:
        yield
    except OptionError as e:
        raise MatchbenchError(f"{KEY}.{e.option}{str(e).removeprefix(e.option)}") from None


def chamfer(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Chamfer similarity of one query's local descriptors ``q`` (n, C) with each image's of
    ``x`` (S, m, C): the mean over ``q``'s rows of their best inner product in the image, (S,)."""
    return np.einsum("nc,smc->snm", q, x, optimize=True).max(axis=2).mean(axis=1)


def rescore(
    scores: np.ndarray,
    idx: np.ndarray,
    local: np.ndarray,
    shortlist: int,
    weight: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One query's list re-ranked: ``local`` (the Chamfer similarity of its first
    ``min(shortlist, len)`` valid entries) mixed with their global scores, sorted (ties to the
    global order), shifted above the rest of the list, which keeps its order and scores."""
    n = min(shortlist, int((idx >= 0).sum()))
    if n == 0:
        return scores.copy(), idx.copy()
    mixed = (1.0 - weight) * scores[:n].astype(np.float64) + weight * local[:n]
    order = np.argsort(-mixed, kind="stable")
    s, i = scores.copy(), idx.copy()
    s[:n] = (SHIFT + mixed[order]).astype(np.float32)
    i[:n] = idx[:n][order]
    return s, i


class LocalDescriptors:
    """Dense descriptors of any image of the search: a query crop or positive (by id, from the
    prepared index) or a distractor (by id, from its shard's tar), computed once each."""

    def __init__(self, cfg: dict[str, Any], model: str, dataset: str, progress: bool) -> None:
        from matchbench.images import read_index
        from matchbench.models.backbones import load_model
        from matchbench.runtime import start

        lcfg = cfg["tracks"]["retrieval"]["local"]
        self.cfg, self.dataset, self.progress = cfg, dataset, progress
        self.layer, self.batch_size = lcfg["layer"], lcfg["batch_size"]
        self.rt = start(cfg)
        self.encoder = load_model(cfg, model, dataset)
        self.size = lcfg["resolution"] or self.encoder.image_size
        with config_keys():
            self.encoder.set_resolution(self.size)
        self.encoder.module.to(self.rt.device).eval()
        layout = Layout.of(cfg)
        index = read_index(Path(layout.index(dataset)))
        self.root = Path(layout.dataset(dataset))
        self.paths = dict(zip(index["id"], index["path"], strict=True))
        self.cache: dict[str, np.ndarray] = {}

    def _dataset(self, source: str, wanted: list[str]) -> tuple[Any, list[int]]:
        """The images of ``source`` and the positions of ``wanted`` in it."""
        from matchbench.images import IndexedImages

        if source == INDEX:
            missing = [x for x in wanted if x not in self.paths]
            if missing:
                raise MatchbenchError(
                    f"{Layout.of(self.cfg).index(self.dataset)}: no image {missing[0]!r} "
                    "for its local descriptors; prepare the dataset again"
                )
            return IndexedImages(self.root, [self.paths[x] for x in wanted], self.size), list(
                range(len(wanted))
            )
        from matchbench.stages.extract import shard_source

        images, ids = shard_source(self.cfg, self.dataset, source)
        where = {x: p for p, x in enumerate(ids)}
        missing = [x for x in wanted if x not in where]
        if missing:
            raise MatchbenchError(
                f"{Layout.of(self.cfg).shard(self.dataset, source)}: no member {missing[0]!r}, "
                "whose features the search found; download the shard again"
            )
        return images(self.size), [where[x] for x in wanted]

    def compute(self, wanted: dict[str, list[str]]) -> None:
        """Descriptors of the images ``wanted`` (ids by source: :data:`INDEX` or a shard)
        not yet computed."""
        import torch
        import torch.nn.functional as F

        from matchbench.runtime import prepare_batch

        todo = {src: sorted({x for x in ids if x not in self.cache}) for src, ids in wanted.items()}
        total = sum(len(v) for v in todo.values())
        bar = progress_bar(
            total=total, desc="local descriptors", unit="img", disable=not self.progress
        )
        for source, ids in todo.items():
            if not ids:
                continue
            images, positions = self._dataset(source, ids)
            for s in range(0, len(ids), self.batch_size):
                batch = torch.stack([images[p] for p in positions[s : s + self.batch_size]])
                x = prepare_batch(batch, self.encoder, self.rt.device)
                with torch.inference_mode(), self.rt.autocast(), config_keys():
                    fmap = self.encoder.dense(x, self.layer)
                cells = F.normalize(fmap.float().flatten(2).transpose(1, 2), dim=2)
                for x_id, d in zip(ids[s : s + self.batch_size], cells.cpu().numpy(), strict=True):
                    self.cache[x_id] = d.astype(np.float16)
                bar.update(len(batch))
            close = getattr(images, "close", None)
            if close is not None:
                close()
        bar.close()

    def stack(self, ids: list[str]) -> np.ndarray:
        return np.stack([self.cache[x] for x in ids]).astype(np.float32)

    def clear(self) -> None:
        self.cache.clear()

    def bytes_per_image(self) -> int:
        """What one image's descriptors take (float16 cells x channels), from the shape of
        one blank image's map."""
        import torch

        blank = torch.zeros(1, 3, self.size, self.size, device=self.rt.device)
        with torch.inference_mode(), self.rt.autocast(), config_keys():
            fmap = self.encoder.dense(blank, self.layer)
        return 2 * int(fmap[0].numel())


def rerank_lists(
    local: LocalDescriptors,
    queries: list[str | None],
    lists: dict[Any, tuple[np.ndarray, np.ndarray]],
    id_of: Any,
    source_of: Any,
    shortlist: int,
    weight: float,
    memory: float = float("inf"),
) -> dict[Any, tuple[np.ndarray, np.ndarray]]:
    """Every list of ``lists`` (scores, database indices; one row per query) re-ranked for
    the rows whose query has an image id in ``queries`` (``None``: a text query, unchanged).

    ``id_of(indices) -> ids`` and ``source_of(indices) -> sources`` place a database index.
    The queries are taken in blocks whose images' descriptors fit in ``memory`` bytes (at
    least one query a block), each image computed once a block and dropped after it: the
    same re-ranking for any ``memory`` (up to float rounding: the batches differ); a small one
    recomputes the images that queries of different blocks share."""
    rows = [r for r, q in enumerate(queries) if q is not None]
    out = {key: (scores.copy(), idx.copy()) for key, (scores, idx) in lists.items()}
    if not rows:
        return out

    def top_of(idx: np.ndarray, r: int) -> np.ndarray:
        top = idx[r, :shortlist]
        return top[top >= 0]

    needs: list[set[tuple[str, str]]] = []
    for r in rows:
        need = {(INDEX, str(queries[r]))}
        for _, idx in lists.values():
            top = top_of(idx, r)
            need.update(zip(source_of(top), id_of(top), strict=True))
        needs.append(need)
    per_image = local.bytes_per_image()
    blocks: list[tuple[list[int], set[tuple[str, str]]]] = []
    for r, need in zip(rows, needs, strict=True):
        if blocks and len(blocks[-1][1] | need) * per_image <= memory:
            blocks[-1][0].append(r)
            blocks[-1][1].update(need)
        else:
            blocks.append(([r], set(need)))
    for block_rows, need in blocks:
        wanted: dict[str, list[str]] = defaultdict(list)
        for src, x_id in sorted(need):
            wanted[src].append(x_id)
        local.compute(dict(wanted))
        for key, (scores, idx) in lists.items():
            s_out, i_out = out[key]
            for r in block_rows:
                top = top_of(idx, r)
                if not len(top):
                    continue
                q = local.stack([str(queries[r])])[0]
                cs = chamfer(q, local.stack(id_of(top)))
                s_out[r], i_out[r] = rescore(scores[r], idx[r], cs, shortlist, weight)
        if len(blocks) > 1:
            local.clear()
    return out
