"""Evaluation metrics: pure functions, numpy in, Python floats or numpy arrays out.

Every value is a fraction in [0, 1], never a percentage. Each function's docstring states its
convention (inclusive or strict comparisons, ties, what is removed from a ranking) and the
official evaluation file it agrees with; docs/metrics.md collects them per benchmark.

Bad input data (a pair without keypoints, NaN scores, an empty set of queries) raises
:class:`~matchbench.errors.MatchbenchError`, so the CLI reports it as one line.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from matchbench.errors import MatchbenchError

# Work on blocks of rows so that a (rows x items) temporary stays near this many elements.
_BLOCK_ELEMENTS = 1 << 22


def _row_blocks(n_rows: int, n_cols: int) -> Iterable[slice]:
    step = max(1, _BLOCK_ELEMENTS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(n_rows, start + step))


def _first(indices: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    more = f", ... ({len(indices)} in all)" if len(indices) > limit else ""
    return f"[{shown}{more}]"


def _scores_2d(scores: ArrayLike, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise MatchbenchError(f"{name}: expected a (queries, items) array, got shape {s.shape}")
    bad = np.flatnonzero(np.isnan(s).any(axis=1))
    if bad.size:
        raise MatchbenchError(f"{name}: NaN scores in queries {_first(bad)}")
    return s


def _index_vector(x: ArrayLike, name: str, n_rows: int, n_items: int) -> np.ndarray:
    v = np.asarray(x)
    if v.shape != (n_rows,) or not np.issubdtype(v.dtype, np.integer):
        raise MatchbenchError(f"{name}: expected {n_rows} integer indices, got {v.dtype} {v.shape}")
    bad = np.flatnonzero((v < 0) | (v >= n_items))
    if bad.size:
        raise MatchbenchError(f"{name}: index out of range [0, {n_items}) in queries {_first(bad)}")
    return v.astype(np.int64)


def _ks(ks: int | Iterable[int]) -> list[int]:
    out = [int(ks)] if isinstance(ks, int | np.integer) else [int(k) for k in ks]
    if not out or min(out) < 1:
        raise MatchbenchError(f"ks: expected cut-offs >= 1, got {out}")
    return out


# --------------------------------------------------------------------------- correspondence


def _pck_correct(
    p: np.ndarray, g: np.ndarray, threshold: ArrayLike, alpha: float, valid: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, K) correctness and (N, K) validity of padded keypoints: the one PCK comparison."""
    if p.ndim != 3 or p.shape[-1] != 2 or p.shape != g.shape:
        raise MatchbenchError(
            f"pck: pred and gt must both be (pairs, keypoints, 2); got {p.shape} and {g.shape}"
        )
    n, k = p.shape[:2]
    t = np.asarray(threshold, dtype=np.float64)
    if t.shape != (n,):
        raise MatchbenchError(f"pck: threshold must have shape ({n},), got {t.shape}")
    bad_t = np.flatnonzero(~np.isfinite(t) | (t <= 0))
    if bad_t.size:
        raise MatchbenchError(f"pck: threshold must be positive and finite; pairs {_first(bad_t)}")
    if not np.isfinite(alpha) or alpha <= 0:
        raise MatchbenchError(f"pck: alpha must be positive, got {alpha}")
    v = np.ones((n, k), dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    if v.shape != (n, k):
        raise MatchbenchError(f"pck: valid must have shape ({n}, {k}), got {v.shape}")
    empty = np.flatnonzero(v.sum(axis=1) == 0)
    if empty.size:
        raise MatchbenchError(f"pck: pairs {_first(empty)} have no valid keypoint")
    dist = np.sqrt(((p - g) ** 2).sum(axis=-1))
    nonfinite = np.flatnonzero((v & ~np.isfinite(dist)).any(axis=1))
    if nonfinite.size:
        raise MatchbenchError(
            f"pck: non-finite coordinates at valid keypoints of pairs {_first(nonfinite)}"
        )
    return v & (np.where(v, dist, np.inf) <= alpha * t[:, None]), v


def pck_per_pair(
    pred: ArrayLike,
    gt: ArrayLike,
    threshold: ArrayLike,
    alpha: float,
    valid: ArrayLike | None = None,
) -> np.ndarray:
    """PCK of each pair: the fraction of its valid keypoints with ``||pred - gt||_2 <= alpha * T``.

    ``pred`` and ``gt`` are (N, K, 2) arrays of (x, y) in the same pixel frame, ``threshold``
    the (N,) normaliser T of each pair (see :func:`pck_threshold`), ``valid`` an optional (N, K)
    mask of the keypoints that count (default: all). Values at invalid keypoints are ignored
    and may be NaN. The comparison is inclusive (``<=``), as in the unified benchmark
    ``Visual-AI/Semantic-Correspondence`` ``utils/evaluator.py`` (``diff <= alpha*thres``).

    A pair without any valid keypoint has no PCK and is an error naming the pair indices.
    """
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    correct, v = _pck_correct(p, g, threshold, alpha, valid)
    return correct.sum(axis=1) / v.sum(axis=1)


def pck(
    pred: ArrayLike,
    gt: ArrayLike,
    threshold: ArrayLike,
    alpha: float,
    valid: ArrayLike | None = None,
    per: Literal["image", "point"] = "image",
) -> float:
    """Percentage of correct keypoints, as a fraction, aggregated per image or per point.

    A keypoint is correct when ``||pred - gt||_2 <= alpha * T`` (inclusive; see
    :func:`pck_per_pair` for the arrays). ``per="image"`` averages each pair's PCK and then
    averages over pairs (``Visual-AI/Semantic-Correspondence`` ``EVALUATOR.BY = 'image'``, the
    number papers report as "per image"); ``per="point"`` pools every valid keypoint of every
    pair (``BY = 'point'``).
    """
    if per not in ("image", "point"):
        raise MatchbenchError(f"pck: per must be 'image' or 'point', got {per!r}")
    p, g = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    correct, v = _pck_correct(p, g, threshold, alpha, valid)
    return PckScores(correct[v], v.sum(axis=1)).value(per)


def pck_threshold(
    bbox_xyxy: ArrayLike | None = None, image_hw: ArrayLike | None = None
) -> np.ndarray:
    """The PCK normaliser T of each pair, from exactly one of two sources.

    ``bbox_xyxy`` (N, 4) target boxes (x1, y1, x2, y2): ``T = max(x2 - x1, y2 - y1)``, used by
    SPair-71k, AP-10K and PF-Willow. ``image_hw`` (N, 2) target image (height, width):
    ``T = max(H, W)``, used by PF-PASCAL. Both follow ``get_pckthres`` in
    ``Visual-AI/Semantic-Correspondence`` ``dataset/dataset.py`` (there in the resized frame).
    """
    if (bbox_xyxy is None) == (image_hw is None):
        raise MatchbenchError("pck_threshold: give exactly one of bbox_xyxy and image_hw")
    if bbox_xyxy is not None:
        b = np.asarray(bbox_xyxy, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != 4:
            raise MatchbenchError(f"pck_threshold: bbox_xyxy must be (pairs, 4), got {b.shape}")
        t = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    else:
        hw = np.asarray(image_hw, dtype=np.float64)
        if hw.ndim != 2 or hw.shape[1] != 2:
            raise MatchbenchError(f"pck_threshold: image_hw must be (pairs, 2), got {hw.shape}")
        t = hw.max(axis=1)
    bad = np.flatnonzero(~np.isfinite(t) | (t <= 0))
    if bad.size:
        raise MatchbenchError(
            f"pck_threshold: non-positive box or image size in pairs {_first(bad)}"
        )
    return t


def pck_key(alpha: float, per: Literal["image", "point"]) -> str:
    """The metric's name in a metrics document: ``pck@0.1`` (per image) or ``pck_point@0.1``
    (per point), alpha as Python prints the float."""
    return f"{'pck' if per == 'image' else 'pck_point'}@{float(alpha)}"


class PckScores:
    """Keypoint correctness grouped by pair, and PCK's two aggregations of it.

    ``correct`` (P,) bool holds the keypoints of every pair in pair order, ``counts`` (N,) how
    many belong to each pair. Per image (``per="image"``): the mean over pairs of each pair's
    fraction correct (``EVALUATOR.BY = 'image'`` in ``Visual-AI/Semantic-Correspondence``
    ``utils/evaluator.py``). Per point (``per="point"``): correct keypoints over all keypoints
    (``BY = 'point'``). Both intervals resample *pairs* (a keypoint's correctness is not
    independent of its pair's): per point with :func:`bootstrap_ratio_ci`, whose draws are
    those of the per-image :func:`bootstrap_ci` with the same seed.
    """

    def __init__(self, correct: ArrayLike, counts: ArrayLike) -> None:
        self.correct = np.asarray(correct, dtype=bool)
        self.counts = np.asarray(counts, dtype=np.int64)
        if self.counts.ndim != 1 or self.counts.size == 0 or (self.counts < 1).any():
            raise MatchbenchError("pck: expected pairs, each with at least one keypoint")
        if self.correct.shape != (int(self.counts.sum()),):
            raise MatchbenchError(
                f"pck: {self.correct.size} keypoints for pairs holding {int(self.counts.sum())}"
            )
        owner = np.repeat(np.arange(self.counts.size), self.counts)
        self.hits = np.bincount(owner, weights=self.correct, minlength=self.counts.size)
        self.per_pair = self.hits / self.counts

    def value(self, per: Literal["image", "point"], mask: ArrayLike | None = None) -> float:
        """PCK over the pairs of ``mask`` (default: all)."""
        m = slice(None) if mask is None else np.asarray(mask, dtype=bool)
        if per == "image":
            return float(self.per_pair[m].mean())
        return float(self.hits[m].sum() / self.counts[m].sum())

    def summary(self, per: Literal["image", "point"], n_boot: int, seed: int) -> dict[str, Any]:
        """``value``, ``ci_low``, ``ci_high`` (95% bootstrap over pairs) and ``n`` (pairs per
        image, keypoints per point)."""
        if per == "image":
            return summarise(self.per_pair, n_boot, seed)
        return summarise_ratio(self.hits, self.counts, n_boot, seed)

    def per_category(
        self, per: Literal["image", "point"], categories: ArrayLike
    ) -> dict[str, float]:
        """PCK within each category of the pairs (sorted by name)."""
        if per == "image":
            return per_category(self.per_pair, categories)
        return per_category(self.hits, categories, den=self.counts)


def pck_scores(
    pred: ArrayLike, gt: ArrayLike, threshold: ArrayLike, counts: ArrayLike, alpha: float
) -> PckScores:
    """Score pooled keypoints: ``pred`` and ``gt`` (P, 2) hold every pair's keypoints in pair
    order, ``counts`` (N,) how many each pair has, ``threshold`` (N,) each pair's T. A keypoint
    is correct when ``||pred - gt||_2 <= alpha * T``, the comparison of :func:`pck_per_pair`."""
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(gt, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    t = np.asarray(threshold, dtype=np.float64)
    if p.ndim != 2 or p.shape[-1] != 2 or p.shape != g.shape:
        raise MatchbenchError(
            f"pck: pred and gt must both be (keypoints, 2); got {p.shape} and {g.shape}"
        )
    if c.ndim != 1 or t.shape != c.shape or (c < 0).any() or int(c.sum()) != len(p):
        raise MatchbenchError(
            f"pck: counts {c.shape} and threshold {t.shape} must be per pair and cover the "
            f"{len(p)} keypoints"
        )
    owner = np.repeat(np.arange(c.size), c)
    correct, _ = _pck_correct(p[:, None, :], g[:, None, :], t[owner], alpha, None)
    return PckScores(correct[:, 0], c)


def pck_metrics(
    scores: Mapping[float, PckScores],
    n_boot: int,
    seed: int,
    categories: ArrayLike | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """The ``metrics`` and ``per_category`` blocks of a correspondence metrics document.

    For each alpha of ``scores``: ``pck@alpha`` and ``pck_point@alpha`` (:func:`pck_key`) with
    their intervals and, given the pairs' ``categories`` (N,), the same per category (values
    only). The one PCK aggregation of the pipeline's evaluation and of ``matchbench score``.
    """
    metrics: dict[str, dict[str, Any]] = {}
    by_category: dict[str, dict[str, float]] = {}
    for alpha, s in scores.items():
        for per in ("image", "point"):
            metrics[pck_key(alpha, per)] = s.summary(per, n_boot, seed)
    if categories is not None:
        for alpha, s in scores.items():
            for per in ("image", "point"):
                by_category[pck_key(alpha, per)] = s.per_category(per, categories)
    return metrics, by_category


# --------------------------------------------------------------------------- ranking


def average_precision_at_k(
    scores: ArrayLike,
    relevant: ArrayLike,
    k: int,
    n_relevant: ArrayLike | None = None,
) -> np.ndarray:
    """AP@k of each query: the ILIAS and CIRCO definition, with a tie rule that ignores order.

    ``scores`` (Q, N), higher is better; ``relevant`` (Q, N) bool. Items are ranked by score
    and only the top ``k`` count:

        AP@k = sum over relevant items in the top k of precision at their rank / min(k, R)

    where R is the number of relevant items of the query: ``relevant.sum(1)``, or
    ``n_relevant`` (Q,) when the score matrix holds only a shortlist (a top-50 list, the
    top-1000 of a similarity file) and some relevant items are not in it. A query with R = 0,
    or with no relevant item in the top k, scores 0 and still counts in a mean.

    With distinct scores this is exactly ``miccunifi/CIRCO`` ``src/evaluation.py`` (precision
    at each relevant position, summed to K, over ``min(len(gt_img_ids), K)``) and
    ``ilias-vrg/ilias`` ``evaluation/src/dataset.py`` (scikit-learn ``average_precision_score``
    on the top k, times ``hits / min(k, |GT|)``): step AP, not the trapezoid of revisitop.

    Ties. Items with equal scores form a group, and each relevant item of the group gets the
    precision at the group's end, as scikit-learn's ``average_precision_score`` does (it
    evaluates one threshold per distinct score). When the top-k cut falls inside a group of
    g items (r relevant, R_b relevant ranked above it, m of its places inside the top k), the
    group contributes the expected value of that rule when the order inside the group is
    uniformly random: X relevant items land in the top k (X hypergeometric: g, r, m) and
    contribute ``X * (R_b + X) / k``, so the group adds ``(R_b E[X] + E[X^2]) / k``. The result
    never depends on the order of tied items, and equals the official code whenever no tie
    straddles the cut (and its average over tie orders when one does).
    """
    s = _scores_2d(scores)
    rel = np.asarray(relevant)
    if rel.shape != s.shape:
        raise MatchbenchError(f"relevant: expected shape {s.shape}, got {rel.shape}")
    rel = rel.astype(bool)
    k = int(k)
    if k < 1:
        raise MatchbenchError(f"k must be >= 1, got {k}")
    q, n = s.shape
    hits_all = rel.sum(axis=1)
    if n_relevant is None:
        total = hits_all
    else:
        total = np.asarray(n_relevant)
        if total.shape != (q,) or not np.issubdtype(total.dtype, np.integer):
            raise MatchbenchError(
                f"n_relevant: expected {q} integers, got {total.dtype} {total.shape}"
            )
        short = np.flatnonzero(total < hits_all)
        if short.size:
            raise MatchbenchError(
                f"n_relevant is smaller than the relevant items present in queries {_first(short)}"
            )
    ap = np.zeros(q, dtype=np.float64)
    if n == 0:
        return ap
    kk = min(k, n)
    pos = np.arange(kk)
    for rows in _row_blocks(q, n):
        sb, rb = s[rows], rel[rows]
        # Only the top kk items matter, plus the size of the tie group at the cut: select
        # them in O(n) and sort just those.
        top = np.argpartition(-sb, kk - 1, axis=1)[:, :kk]
        ts = np.take_along_axis(sb, top, axis=1)
        tr = np.take_along_axis(rb, top, axis=1)
        order = np.argsort(-ts, axis=1, kind="stable")
        ts, tr = np.take_along_axis(ts, order, axis=1), np.take_along_axis(tr, order, axis=1)
        cut = ts[:, -1]  # the kk-th largest score
        above = ts > cut[:, None]  # a prefix: every item scoring above the cut is in the top kk
        is_end = np.ones(ts.shape, dtype=bool)
        is_end[:, :-1] = ts[:, 1:] != ts[:, :-1]
        end = np.minimum.accumulate(np.where(is_end, pos, kk)[:, ::-1], axis=1)[:, ::-1]
        cum = np.cumsum(tr, axis=1)
        prec_at_end = np.take_along_axis(cum, end, axis=1) / (end + 1)
        total_prec = np.where(tr & above, prec_at_end, 0.0).sum(axis=1)

        # The group of items tied with the cut score: g of them, r relevant, m places left.
        before = (tr & above).sum(axis=1)
        at_cut = sb == cut[:, None]
        g = at_cut.sum(axis=1).astype(np.float64)
        r = (at_cut & rb).sum(axis=1)
        m = kk - above.sum(axis=1).astype(np.float64)
        p = r / g
        ex = m * p
        var = np.where(g > 1, m * p * (1 - p) * (g - m) / np.maximum(g - 1, 1), 0.0)
        total_prec += (before * ex + var + ex**2) / kk

        denom = np.minimum(k, total[rows])
        ap[rows] = np.where(denom > 0, total_prec / np.maximum(denom, 1), 0.0)
    return ap


def map_at_k(
    scores: ArrayLike, relevant: ArrayLike, k: int, n_relevant: ArrayLike | None = None
) -> float:
    """Mean over queries of :func:`average_precision_at_k` (ILIAS mAP@1k, CIRCO mAP@K)."""
    ap = average_precision_at_k(scores, relevant, k, n_relevant)
    if ap.size == 0:
        raise MatchbenchError("map_at_k: no queries")
    return float(ap.mean())


def target_rank(
    scores: ArrayLike, target: ArrayLike, exclude: ArrayLike | None = None
) -> np.ndarray:
    """1-based rank of each query's single correct item, ties resolved against it.

    ``rank = 1 + (number of other items scoring >= the target)``, with ``exclude`` (Q,) one
    item per query removed from the ranking first. The official code (``torch.argsort`` in
    ``miccunifi/SEARLE`` ``src/validate.py``, ``ABaldrati/CLIP4Cir`` ``src/validate.py``) orders
    tied items arbitrarily; this pessimistic rule gives the same rank whenever the target's
    score is unique, never depends on item order, and gives a constant-score model no credit.
    """
    s = _scores_2d(scores)
    q, n = s.shape
    t = _index_vector(target, "target", q, n)
    rows = np.arange(q)
    st = s[rows, t]
    rank = np.empty(q, dtype=np.int64)
    for blk in _row_blocks(q, n):
        rank[blk] = (s[blk] >= st[blk, None]).sum(axis=1)
    if exclude is not None:
        ex = _index_vector(exclude, "exclude", q, n)
        same = np.flatnonzero(ex == t)
        if same.size:
            raise MatchbenchError(f"exclude equals target in queries {_first(same)}")
        rank -= s[rows, ex] >= st
    return rank


def recall_from_ranks(ranks: ArrayLike, ks: int | Iterable[int]) -> dict[int, float]:
    """Recall@k from 1-based target ranks (``inf`` = not retrieved): mean of ``rank <= k``."""
    r = np.asarray(ranks, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise MatchbenchError(f"recall: expected a non-empty vector of ranks, got shape {r.shape}")
    return {k: float((r <= k).mean()) for k in _ks(ks)}


def recall_at_k(
    scores: ArrayLike,
    target: ArrayLike,
    ks: int | Iterable[int],
    exclude: ArrayLike | None = None,
) -> dict[int, float]:
    """Recall@k for queries with one correct item: the fraction ranked in the top k.

    ``scores`` (Q, N), higher is better; ``target`` (Q,) index of the correct item;
    ``exclude`` (Q,) an item removed from each ranking before counting. CIRR removes the
    reference image (``exclude=reference``, as ``cirr_compute_val_metrics`` in
    ``miccunifi/SEARLE`` ``src/validate.py``); FashionIQ does not (``fiq_compute_val_metrics``).
    Ties are resolved against the target (see :func:`target_rank`).
    """
    return recall_from_ranks(target_rank(scores, target, exclude), ks)


def subset_target_rank(
    scores: ArrayLike, target: ArrayLike, members: ArrayLike, reference: ArrayLike
) -> np.ndarray:
    """1-based rank of the target among ``members`` minus the reference, ties against it."""
    s = _scores_2d(scores)
    q, n = s.shape
    t = _index_vector(target, "target", q, n)
    ref = _index_vector(reference, "reference", q, n)
    mem = np.asarray(members)
    if mem.ndim != 2 or mem.shape[0] != q or not np.issubdtype(mem.dtype, np.integer):
        raise MatchbenchError(
            f"members: expected ({q}, M) integer indices, got {mem.dtype} {mem.shape}"
        )
    bad = np.flatnonzero(((mem < 0) | (mem >= n)).any(axis=1))
    if bad.size:
        raise MatchbenchError(f"members: index out of range [0, {n}) in queries {_first(bad)}")
    srt = np.sort(mem, axis=1)
    dup = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
    if dup.size:
        raise MatchbenchError(f"members: repeated index in queries {_first(dup)}")
    keep = mem != ref[:, None]
    missing = np.flatnonzero(~((mem == t[:, None]) & keep).any(axis=1))
    if missing.size:
        raise MatchbenchError(
            f"target is not among the members (minus the reference) in queries {_first(missing)}"
        )
    ms = np.take_along_axis(s, mem, axis=1)
    st = s[np.arange(q), t]
    others = keep & (mem != t[:, None])
    return 1 + (others & (ms >= st[:, None])).sum(axis=1)


def recall_subset_at_k(
    scores: ArrayLike,
    target: ArrayLike,
    members: ArrayLike,
    reference: ArrayLike,
    ks: int | Iterable[int],
) -> dict[int, float]:
    """CIRR Recall_subset@k: recall when ranking only the query's image set.

    ``members`` (Q, M) gallery indices of each query's ``img_set.members``; the ``reference``
    (Q,) is removed from them and the target must be among the rest. Only those members are
    ranked (by their gallery ``scores``), as ``group_labels`` in ``miccunifi/SEARLE``
    ``src/validate.py`` (the reference-free ranking restricted to the set). Ties against the
    target, as :func:`target_rank`.
    """
    return recall_from_ranks(subset_target_rank(scores, target, members, reference), ks)


def pair_accuracy(pos_scores: ArrayLike, neg_scores: ArrayLike) -> float:
    """Fraction of items whose positive scores strictly higher than its negative.

    A tie counts as wrong, as ``text_retrieval`` in ``RAIVNLab/sugar-crepe`` ``main_eval.py``
    (``1 if pos_score > neg_score else 0``). Also ARO's pairwise accuracy.
    """
    p = np.asarray(pos_scores, dtype=np.float64)
    n = np.asarray(neg_scores, dtype=np.float64)
    if p.shape != n.shape or p.ndim != 1:
        raise MatchbenchError(
            f"pair_accuracy: expected two equal-length vectors, got {p.shape} and {n.shape}"
        )
    if p.size == 0:
        raise MatchbenchError("pair_accuracy: no items")
    bad = np.flatnonzero(np.isnan(p) | np.isnan(n))
    if bad.size:
        raise MatchbenchError(f"pair_accuracy: NaN scores at items {_first(bad)}")
    return float((p > n).mean())


# --------------------------------------------------------------------------- probing


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _feature_matrix(x: ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2 or a.shape[0] == 0:
        raise MatchbenchError(
            f"{name}: expected a non-empty (samples, dim) array, got shape {a.shape}"
        )
    if not np.isfinite(a).all():
        raise MatchbenchError(f"{name}: contains NaN or infinite values")
    return a


def knn_classify(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    query_feats: ArrayLike,
    k: int = 20,
    temperature: float = 0.07,
) -> np.ndarray:
    """Weighted kNN vote of Wu et al. 2018, as DINO's ``eval_knn.py`` (``knn_classifier``).

    Features are L2-normalised; each query takes its ``k`` most cosine-similar training
    samples (equal similarities at the k-th place go to the lowest training index), each
    voting for its label with weight ``exp(sim / temperature)``; the label with the largest
    summed weight wins, ties going to the lowest label. Queries are processed in blocks so
    memory stays bounded. Nothing is excluded: train and query are different sets.
    Returns the predicted labels (Q,), with the values of ``train_labels``.
    """
    tr = _l2_normalise(_feature_matrix(train_feats, "train_feats"))
    qu = _l2_normalise(_feature_matrix(query_feats, "query_feats"))
    if tr.shape[1] != qu.shape[1]:
        raise MatchbenchError(f"knn: train and query dims differ ({tr.shape[1]} vs {qu.shape[1]})")
    labels = np.asarray(train_labels)
    if labels.shape != (tr.shape[0],):
        raise MatchbenchError(
            f"knn: train_labels must have shape ({tr.shape[0]},), got {labels.shape}"
        )
    if k < 1 or temperature <= 0:
        raise MatchbenchError(
            f"knn: need k >= 1 and temperature > 0, got k={k}, temperature={temperature}"
        )
    classes, label_idx = np.unique(labels, return_inverse=True)
    onehot = np.zeros((tr.shape[0], classes.size), dtype=np.float64)
    onehot[np.arange(tr.shape[0]), label_idx] = 1.0
    n = tr.shape[0]
    kk = min(int(k), n)
    out = np.empty(qu.shape[0], dtype=np.int64)
    for blk in _row_blocks(qu.shape[0], n):
        sim = (qu[blk] @ tr.T).astype(np.float64)
        kth = -np.partition(-sim, kk - 1, axis=1)[:, kk - 1]
        above = sim > kth[:, None]
        tied = sim == kth[:, None]
        need = kk - above.sum(axis=1)
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= need[:, None]))
        # Subtracting the row maximum leaves the vote unchanged and keeps exp() finite.
        w = np.where(chosen, np.exp((sim - sim.max(axis=1, keepdims=True)) / temperature), 0.0)
        out[blk] = np.argmax(w @ onehot, axis=1)
    return classes[out]


def accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of predictions equal to the target."""
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape or p.ndim != 1:
        raise MatchbenchError(
            f"accuracy: expected two equal-length vectors, got {p.shape} and {t.shape}"
        )
    if p.size == 0:
        raise MatchbenchError("accuracy: no predictions")
    return float((p == t).mean())


def linear_probe_predict(
    train_feats: ArrayLike,
    train_labels: ArrayLike,
    test_feats: ArrayLike,
    *,
    c: float = 1.0,
    max_iter: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Linear probe: multinomial logistic regression on standardised frozen features.

    Features are standardised with the mean and standard deviation of the training set, then
    scikit-learn's ``LogisticRegression`` (lbfgs, L2, inverse strength ``c``) is fitted; lbfgs
    is deterministic, and ``seed`` fixes anything else. Returns the predicted test labels.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    tr = _feature_matrix(train_feats, "train_feats").astype(np.float64)
    te = _feature_matrix(test_feats, "test_feats").astype(np.float64)
    if tr.shape[1] != te.shape[1]:
        raise MatchbenchError(
            f"linear probe: train and test dims differ ({tr.shape[1]} vs {te.shape[1]})"
        )
    y = np.asarray(train_labels)
    if y.shape != (tr.shape[0],):
        raise MatchbenchError(
            f"linear probe: train_labels must have shape ({tr.shape[0]},), got {y.shape}"
        )
    if np.unique(y).size < 2:
        raise MatchbenchError("linear probe: need at least two classes in train_labels")
    scaler = StandardScaler().fit(tr)
    clf = LogisticRegression(C=c, max_iter=max_iter, solver="lbfgs", random_state=seed)
    clf.fit(scaler.transform(tr), y)
    return clf.predict(scaler.transform(te))


# --------------------------------------------------------------------------- uncertainty


def _resamples(n: int, n_boot: int, seed: int) -> Iterator[tuple[slice, np.ndarray]]:
    """``n_boot`` draws of ``n`` indices with replacement, in row blocks: one
    ``np.random.default_rng(seed)`` stream, the same for every bootstrap of ``n`` values."""
    rng = np.random.default_rng(seed)
    for blk in _row_blocks(n_boot, n):
        yield blk, rng.integers(0, n, size=(blk.stop - blk.start, n))


def _check_bootstrap(n_boot: int, confidence: float, name: str) -> None:
    if not 0 < confidence < 1 or n_boot < 1:
        raise MatchbenchError(
            f"{name}: need 0 < confidence < 1 and n_boot >= 1, got {confidence}, {n_boot}"
        )


def _percentiles(stats: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
    return float(lo), float(hi)


def bootstrap_ci(
    per_query_values: ArrayLike,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean over queries.

    Resamples the queries with replacement ``n_boot`` times (``np.random.default_rng(seed)``,
    so the interval is reproducible) and returns the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` percentiles of the resampled means. One value gives ``(v, v)``.
    """
    v = np.asarray(per_query_values, dtype=np.float64).ravel()
    if v.size == 0:
        raise MatchbenchError("bootstrap_ci: no values")
    if np.isnan(v).any():
        raise MatchbenchError("bootstrap_ci: NaN among the values")
    _check_bootstrap(n_boot, confidence, "bootstrap_ci")
    if v.size == 1:
        return float(v[0]), float(v[0])
    means = np.empty(n_boot, dtype=np.float64)
    for blk, idx in _resamples(v.size, n_boot, seed):
        means[blk] = v[idx].mean(axis=1)
    return _percentiles(means, confidence)


def bootstrap_ratio_ci(
    num: ArrayLike,
    den: ArrayLike,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap of the pooled ratio ``sum(num) / sum(den)``, resampling the
    (num, den) units (for per-point PCK: the correct and the total keypoints of each pair).

    The draws are those of :func:`bootstrap_ci` with the same seed and count, so with equal
    ``den`` the interval is that of the mean of ``num / den``. One unit gives ``(r, r)``.
    """
    a = np.asarray(num, dtype=np.float64).ravel()
    b = np.asarray(den, dtype=np.float64).ravel()
    if a.size == 0 or a.shape != b.shape:
        raise MatchbenchError(
            f"bootstrap_ratio_ci: expected two equal non-empty vectors, got {a.shape}, {b.shape}"
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all() and (b > 0).all()):
        raise MatchbenchError("bootstrap_ratio_ci: values must be finite, denominators positive")
    _check_bootstrap(n_boot, confidence, "bootstrap_ratio_ci")
    if a.size == 1:
        r = float(a[0] / b[0])
        return r, r
    ratios = np.empty(n_boot, dtype=np.float64)
    for blk, idx in _resamples(a.size, n_boot, seed):
        ratios[blk] = a[idx].sum(axis=1) / b[idx].sum(axis=1)
    return _percentiles(ratios, confidence)


def paired_bootstrap(
    a: ArrayLike,
    b: ArrayLike,
    groups: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float | int]:
    """Paired percentile bootstrap of the difference between two models on the same queries.

    ``a[i]`` and ``b[i]`` are the two models' values on query ``i``. The statistic is
    ``mean(a) - mean(b)``, or with ``groups`` the difference of the macro averages (the plain
    mean of per-group means, as :func:`macro_summary`). Each draw resamples the queries with
    replacement (within each group, its size kept) and applies the same draw to both models,
    so what the queries share cancels. Returns ``delta``, the ``ci_low``/``ci_high`` percentiles
    of the resampled differences, the two-sided bootstrap ``p`` (twice the smaller fraction of
    draws on either side of zero, at most 1) and ``n``, the number of queries.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    g = np.zeros(x.shape, dtype=np.int64) if groups is None else np.asarray(groups).ravel()
    if x.size == 0 or not (x.shape == y.shape == g.shape):
        raise MatchbenchError(
            f"paired bootstrap: expected equal non-empty vectors, got {x.shape}, {y.shape}, "
            f"{g.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise MatchbenchError("paired bootstrap: values must be finite")
    _check_bootstrap(n_boot, confidence, "paired bootstrap")
    d = x - y
    names = sorted(set(g.tolist()))
    delta = sum(d[g == name].mean() for name in names)
    stats = _stratified_means(d, g, names, n_boot, seed)
    low, high = _percentiles(stats, confidence)
    p = min(1.0, 2.0 * min(float((stats <= 0).mean()), float((stats >= 0).mean())))
    return {
        "delta": float(delta / len(names)),
        "ci_low": low,
        "ci_high": high,
        "p": p,
        "n": int(x.size),
    }


def summarise(per_query: ArrayLike, n_boot: int, seed: int) -> dict[str, float | int]:
    """The mean of per-query values with its 95% percentile-bootstrap interval.

    The one summary of every metrics document (``value``, ``ci_low``, ``ci_high``, ``n``),
    written by the pipeline's evaluation and by ``matchbench score`` alike.
    """
    v = np.asarray(per_query, dtype=np.float64).ravel()
    low, high = bootstrap_ci(v, n_boot=n_boot, seed=seed)
    return {"value": float(v.mean()), "ci_low": low, "ci_high": high, "n": int(v.size)}


def summarise_ratio(num: ArrayLike, den: ArrayLike, n_boot: int, seed: int) -> dict[str, Any]:
    """The pooled ratio ``sum(num) / sum(den)`` with its 95% bootstrap interval over units
    (:func:`bootstrap_ratio_ci`); ``n`` is ``sum(den)``, the pooled count (keypoints)."""
    a = np.asarray(num, dtype=np.float64).ravel()
    b = np.asarray(den).ravel()
    low, high = bootstrap_ratio_ci(a, b, n_boot=n_boot, seed=seed)
    return {"value": float(a.sum() / b.sum()), "ci_low": low, "ci_high": high, "n": int(b.sum())}


def per_category(
    per_query: ArrayLike, categories: ArrayLike, den: ArrayLike | None = None
) -> dict[str, float]:
    """Mean of per-query values within each category (sorted by name); with ``den``, the
    pooled ratio ``sum(per_query) / sum(den)`` within each category."""
    v, c = np.asarray(per_query, dtype=np.float64).ravel(), np.asarray(categories).ravel()
    if den is None:
        return {str(k): float(v[c == k].mean()) for k in sorted(set(c.tolist()))}
    d = np.asarray(den).ravel()
    return {str(k): float(v[c == k].sum() / d[c == k].sum()) for k in sorted(set(c.tolist()))}


def macro_summary(
    values: ArrayLike, groups: ArrayLike, n_boot: int, seed: int, confidence: float = 0.95
) -> dict[str, Any]:
    """The plain mean of per-group means, with a percentile bootstrap stratified by group.

    Each draw resamples every group's items with replacement (its size kept), in sorted group
    order from one ``np.random.default_rng(seed)`` stream; the statistic is the mean of the
    resampled group means. ``n`` is the number of items.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    g = np.asarray(groups).ravel()
    if v.size == 0 or v.shape != g.shape:
        raise MatchbenchError(f"macro average: expected equal non-empty vectors, got {v.shape}")
    if n_boot < 1:
        raise MatchbenchError(f"macro average: n_boot must be >= 1, got {n_boot}")
    names = sorted(set(g.tolist()))
    means = [v[g == name].mean() for name in names]
    stats = _stratified_means(v, g, names, n_boot, seed)
    lo, hi = np.percentile(stats, [50 * (1 - confidence), 50 * (1 + confidence)])
    return {"value": float(np.mean(means)), "ci_low": float(lo), "ci_high": float(hi), "n": v.size}


def _stratified_means(
    v: np.ndarray, g: np.ndarray, names: list[Any], n_boot: int, seed: int
) -> np.ndarray:
    """``n_boot`` draws of the mean of per-group means, each group's items resampled with
    replacement (its size kept), groups in the order of ``names``, from one
    ``np.random.default_rng(seed)`` stream: the draws of :func:`macro_summary` and
    :func:`paired_bootstrap`."""
    rng = np.random.default_rng(seed)
    stats = np.zeros(n_boot, dtype=np.float64)
    for name in names:
        x = v[g == name]
        rows = max(1, (1 << 22) // x.size)  # bound the (draws x items) temporary
        for s in range(0, n_boot, rows):
            idx = rng.integers(0, x.size, size=(min(rows, n_boot - s), x.size))
            stats[s : s + idx.shape[0]] += x[idx].mean(axis=1)
    return stats / len(names)
