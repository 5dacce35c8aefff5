"""Top-k inner-product search over a sharded feature store: exact, and through faiss indexes.

The retrieval track follows ILIAS (Kordopatis-Zilos et al., "ILIAS: Instance-Level Image
retrieval At Scale", CVPR 2025): 1,000 queries against up to 100M distractor images, global
descriptors L2-normalised (stored float16, the feature store's ``features.npy``), inner
product, k = 1,000, mAP@1k. The distractors are read one shard at a time (a memory-mapped
``features.npy`` per shard), so no step holds the whole collection in memory.

Ordering, everywhere in this module: score descending, then the lower global row index first
(rows numbered across the shards in the order given). Missing results (a database smaller than
k, an approximate index that found fewer than k) are index ``-1`` with score ``-inf``, at the
end of a row. Same inputs give the same bytes on one machine (BLAS and faiss are deterministic
for a fixed thread count; faiss 1.15 builds HNSW graphs deterministically, tested here with
two threads).

Exact search is a BLAS matmul per chunk of a shard (the float16 rows converted to float32 in
two reused buffers, the next chunk in a second thread while the current one is multiplied)
whose scores go into faiss's per-query heaps of the k best (``float_minheap_array_t``), kept
across chunks and shards: faiss's flat search without its float32 copy of the database. Merging
result lists and ordering them uses one uint64 key per (score, index) pair (:func:`_keys`),
which makes "score descending, lower index first" a plain ascending sort.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError
from matchbench.progress import bar

_PAD = np.uint64(0xFFFF_FFFF_FFFF_FFFF)  # the key of a missing result: after every real one
_LOW = np.uint64(0xFFFF_FFFF)
MAX_ROWS = 0xFFFF_FFFF  # a key keeps the row index in 32 bits; 2**32 - 1 is the padding's
_SCORE_BYTES = 256 << 20  # one chunk's (queries x rows) float32 scores
_MAX_CHUNK_ROWS = 65_536
_QUERY_BLOCK = 4_096
_ADD_ROWS = 65_536  # rows converted to float32 per faiss ``add``


def _faiss() -> Any:
    import faiss

    return faiss


# --------------------------------------------------------------------------- keys


def _keys(scores: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """uint64 keys whose ascending order is (score descending, index ascending).

    The high 32 bits are the float32 score mapped to an order-preserving unsigned integer
    and inverted; the low 32 bits the row index. ``-0.0`` counts as ``0.0``; NaN as ``-inf``;
    an index < 0 is a missing result (:data:`_PAD`)."""
    s = np.asarray(scores, dtype=np.float32) + np.float32(0.0)  # -0.0 -> +0.0, and a copy
    s[np.isnan(s)] = -np.inf
    u = s.view(np.uint32)
    ordered = np.where(u & np.uint32(0x8000_0000), ~u, u | np.uint32(0x8000_0000))
    i = np.asarray(idx, dtype=np.int64)
    keys = ((~ordered).astype(np.uint64) << np.uint64(32)) | (i.astype(np.uint64) & _LOW)
    keys[i < 0] = _PAD
    return keys


def _decode(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (float32 scores, int64 indices) of :func:`_keys`."""
    ordered = ~(keys >> np.uint64(32)).astype(np.uint32)
    u = np.where(ordered & np.uint32(0x8000_0000), ordered & np.uint32(0x7FFF_FFFF), ~ordered)
    scores = u.view(np.float32)
    idx = (keys & _LOW).astype(np.int64)
    pad = keys == _PAD
    scores[pad] = -np.inf
    idx[pad] = -1
    return scores, idx


def _best(keys: np.ndarray, k: int) -> np.ndarray:
    """The k smallest keys of each row (the best k results), unordered; padded when fewer."""
    q, n = keys.shape
    if n < k:
        keys = np.concatenate([keys, np.full((q, k - n), _PAD, dtype=np.uint64)], axis=1)
    elif n > k:
        keys = np.partition(keys, k - 1, axis=1)[:, :k]
    return keys


def merge_topk(
    scores_a: np.ndarray,
    idx_a: np.ndarray,
    scores_b: np.ndarray,
    idx_b: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-k of two result lists of the same queries (Q, ka) and (Q, kb).

    The lists hold different database rows (results over disjoint shards); neither needs to be
    sorted. Returns scores (float32) and indices (int64), (Q, k), score descending, the lower
    index first among equal scores; index ``-1`` entries are ignored and pad a row (score
    ``-inf``) that has fewer than k results."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    a = _keys(scores_a, idx_a)
    b = _keys(scores_b, idx_b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0]:
        raise ValueError(f"result lists of shapes {a.shape} and {b.shape} do not match")
    keys = np.sort(_best(np.concatenate([a, b], axis=1), k), axis=1)
    return _decode(keys)


# --------------------------------------------------------------------------- checks


def _reason(e: BaseException) -> str:
    """faiss's C++ message without the 'Error in <signature> at <file>:<line>:' preamble."""
    text = " ".join(str(e).split())
    text = re.sub(r"^Error in .*? at \S+:\d+: ", "", text)
    return re.sub(r"^Error: ", "", text)


def check_factory(factory: str, dim: int, key: str) -> None:
    """Raise a MatchbenchError naming ``key`` unless faiss builds ``factory`` as an
    inner-product index of dimension ``dim`` (faiss's ``index_factory`` string syntax:
    https://github.com/facebookresearch/faiss/wiki/The-index-factory)."""
    _factory_index(factory, dim, key)


def _factory_index(factory: str, dim: int, key: str) -> Any:
    faiss = _faiss()
    if not isinstance(factory, str) or not factory.strip():
        raise MatchbenchError(f"{key}: expected a faiss index factory string, got {factory!r}")
    if dim < 1:
        raise MatchbenchError(f"{key}: dimension must be >= 1, got {dim}")
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise MatchbenchError(
            f"{key}: faiss cannot build index {factory!r} for dimension {dim}: {_reason(e)}"
        ) from None
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise MatchbenchError(
            f"{key}: faiss index {factory!r} does not search by inner product "
            f"(it built metric {index.metric_type}); retrieval needs an inner-product index"
        )
    return index


def check_k(k: int, n_database: int, key: str) -> None:
    """Raise a MatchbenchError naming ``key`` unless 1 <= k <= n_database."""
    if k < 1:
        raise MatchbenchError(f"{key}: k = {k} must be at least 1")
    if k > n_database:
        raise MatchbenchError(f"{key}: k = {k} is larger than the database ({n_database} vectors)")


def _queries(queries: np.ndarray) -> np.ndarray:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim != 2:
        raise MatchbenchError(f"queries: expected a (Q, D) array, got shape {q.shape}")
    return q


def _shard_shape(i: int, shard: np.ndarray, dim: int) -> int:
    if shard.ndim != 2 or shard.shape[1] != dim:
        raise MatchbenchError(
            f"shard {i}: features of shape {tuple(shard.shape)}, expected (n, {dim}) "
            "like the queries"
        )
    return int(shard.shape[0])


# --------------------------------------------------------------------------- exact search


def _chunk_rows(n_queries: int) -> int:
    rows = _SCORE_BYTES // (4 * min(n_queries, _QUERY_BLOCK))
    return int(max(1_024, min(_MAX_CHUNK_ROWS, rows)))


def _to_float32(rows: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = rows``: float16 rows through faiss's fp16 decoder (F16C instructions, about
    1.6x numpy's cast here), anything else through numpy."""
    if rows.dtype == np.float16 and rows.flags.c_contiguous and rows.size:
        faiss = _faiss()
        codes = np.asarray(rows).view(np.uint8)
        _fp16(faiss, out.shape[1]).decode_c(faiss.swig_ptr(codes), faiss.swig_ptr(out), len(out))
    else:
        np.copyto(out, rows, casting="same_kind")


_FP16: dict[int, Any] = {}


def _fp16(faiss: Any, dim: int) -> Any:
    if dim not in _FP16:
        _FP16[dim] = faiss.ScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
    return _FP16[dim]


class _Heaps:
    """The running top-k of each query: faiss's min-heaps (``float_minheap_array_t``, the
    structure of faiss's own flat search), fed a chunk of scores at a time by
    ``addn_with_ids``, which compares every score with its row's k-th best and is parallel
    over rows (OpenMP).

    A score enters only if strictly above the row's k-th best, so of equal scores the one met
    first, the lower row, stays; and of equal scores in the heap, faiss evicts the one with the
    smaller id first: rows are stored as ``-2 - row`` (``-1`` is faiss's empty slot), which
    makes that the higher row."""

    def __init__(self, n_queries: int, k: int) -> None:
        faiss = _faiss()
        self.scores = np.empty((n_queries, k), dtype=np.float32)
        self.ids = np.empty((n_queries, k), dtype=np.int64)
        self.heaps = faiss.float_minheap_array_t()
        self.heaps.nh, self.heaps.k = n_queries, k
        self.heaps.val = faiss.swig_ptr(self.scores)
        self.heaps.ids = faiss.swig_ptr(self.ids)
        self.heaps.heapify()

    def update(self, scores: np.ndarray, first_query: int, stored_ids: np.ndarray) -> None:
        """Merge ``scores`` (nq, m) of queries ``first_query ..`` with the m rows ``stored_ids``."""
        faiss = _faiss()
        nq, m = scores.shape
        self.heaps.addn_with_ids(
            m, faiss.swig_ptr(scores), faiss.swig_ptr(stored_ids), 0, first_query, nq
        )

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        rows = np.where(self.ids <= -2, -2 - self.ids, -1)
        return _decode(np.sort(_keys(self.scores, rows), axis=1))


class ExactSearch:
    """Exact inner-product top-k of ``queries`` (Q, D) over database rows given a shard at a
    time; :func:`exact_search` in steps, for callers that want the answer after each shard
    (the retrieval track's mAP-vs-distractors curve) without restarting the running top-k.

    ``add(shard)`` appends a (n, D) array (a float16 memmap is read a chunk at a time into
    two reused float32 buffers, the next chunk converted while the current one is
    multiplied); ``result()`` is the top-k over every row added so far."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        if k < 1:
            raise MatchbenchError(f"k = {k} must be at least 1")
        self.queries = _queries(queries)
        self.k = k
        self.n_rows = 0  # rows added so far: the global index of the next one
        self.n_shards = 0
        n_queries, dim = self.queries.shape
        self._blocks = [
            slice(s, min(s + _QUERY_BLOCK, n_queries)) for s in range(0, n_queries, _QUERY_BLOCK)
        ]
        self._heaps = _Heaps(n_queries, k)
        self._rows = _chunk_rows(n_queries)
        # Two float32 chunk buffers: one converted while the other is multiplied.
        self._x = [np.empty(self._rows * dim, dtype=np.float32) for _ in range(2)]
        self._scores = np.empty(min(n_queries, _QUERY_BLOCK) * self._rows, dtype=np.float32)
        self._ids = -2 - np.arange(self._rows, dtype=np.int64)  # a chunk's rows, as stored

    def add(self, shard: np.ndarray) -> None:
        dim = self.queries.shape[1]
        n = _shard_shape(self.n_shards, shard, dim)
        if self.n_rows + n > MAX_ROWS:
            raise MatchbenchError(f"exact search handles at most {MAX_ROWS} rows in all")
        starts = range(0, n, self._rows)

        def convert(i: int) -> np.ndarray:
            # Chunk i of the shard into buffer i % 2: read (page faults on a memmap) and
            # converted in a second thread while the BLAS products of chunk i - 1 run
            # (faiss and numpy release the GIL); two threads of BLAS alone leave this
            # single-threaded step on the critical path (benchmarks/README.md).
            start = starts[i]
            m = min(self._rows, n - start)
            x = self._x[i % 2][: m * dim].reshape(m, dim)
            _to_float32(shard[start : start + m], x)
            return x

        with ThreadPoolExecutor(1) as pool:
            pending = [pool.submit(convert, 0)] if starts else []
            for i, start in enumerate(starts):
                x = pending.pop().result()
                if i + 1 < len(starts):
                    pending.append(pool.submit(convert, i + 1))
                m = len(x)
                ids = self._ids[:m] - (self.n_rows + start)
                for block in self._blocks:
                    nq = block.stop - block.start
                    scores = self._scores[: nq * m].reshape(nq, m)
                    np.matmul(self.queries[block], x.T, out=scores)
                    self._heaps.update(scores, block.start, ids)
        self.n_rows += n
        self.n_shards += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores (float32) and global row indices (int64), (Q, k): score descending, the lower
        index first among equal scores; index -1, score -inf where fewer than k rows."""
        return self._heaps.result()


def exact_search(
    queries: np.ndarray,
    shards: Iterable[np.ndarray],
    k: int,
    *,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k of ``queries`` (Q, D) over the rows of ``shards``.

    Each shard is a (n_i, D) array, typically a float16 ``np.load(..., mmap_mode="r")``; they
    are read one after the other, a chunk of rows at a time (converted to float32 into one
    reused buffer), so memory is O(Q*k + one chunk) however large the collection. Returns
    scores (float32) and global row indices (int64, counting across the shards in order),
    both (Q, k), score descending, the lower index first among equal scores. With fewer than
    k rows in all, the missing results are index -1, score -inf (:func:`check_k` refuses such
    a k up front). A score is a float32 BLAS dot product: the same on every run, possibly a
    last bit apart from numpy's on the same pair (BLAS sums in blocks)."""
    search = ExactSearch(queries, k)
    for shard in bar(shards, desc="exact search", unit="shard", disable=not progress):
        search.add(shard)
    return search.result()


# --------------------------------------------------------------------------- faiss indexes


def _chunks(shards: Iterable[np.ndarray], dim: int, rows: int) -> Iterator[np.ndarray]:
    """float32 chunks of at most ``rows`` rows of each shard, in order (one reused buffer)."""
    buf = np.empty(rows * dim, dtype=np.float32)
    for i, shard in enumerate(shards):
        n = _shard_shape(i, shard, dim)
        for start in range(0, n, rows):
            m = min(rows, n - start)
            x = buf[: m * dim].reshape(m, dim)
            _to_float32(shard[start : start + m], x)
            yield x


def _has_gpus(faiss: Any) -> bool:
    return hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0


def _place(index: Any, factory: str, gpu: bool | None, key: str) -> Any:
    """``index`` on all GPUs where asked for or (gpu=None) possible; else ``index``."""
    faiss = _faiss()
    if gpu is False:
        return index
    if not _has_gpus(faiss):
        if gpu:
            raise MatchbenchError(
                f"{key}: a GPU index was asked for (gpu=True) but faiss {faiss.__version__} "
                "sees no GPU (faiss-cpu, or no CUDA device visible); install faiss-gpu "
                "(`pip install .[gpu]`) or leave the GPU choice automatic"
            )
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as e:
        if gpu:
            raise MatchbenchError(
                f"{key}: faiss has no GPU version of index {factory!r}: {_reason(e)}"
            ) from None
        return index


def _no_polysemous(index: Any) -> None:
    """Switch off the polysemous training that ``index_factory`` turns on for PQ codes.

    It only serves polysemous Hamming filtering (``polysemous_ht``, Douze et al., ECCV 2016),
    which this module never enables; it permutes the codebooks without changing any distance,
    and it took 100 of the 160 s of training IVF4096,PQ64 on 100K vectors of d = 512 here."""
    faiss = _faiss()
    for part in (index, faiss.try_extract_index_ivf(index)):
        if part is not None:
            part = faiss.downcast_index(part)
            if hasattr(part, "do_polysemous_training"):
                part.do_polysemous_training = False


def train_index(
    factory: str,
    dim: int,
    train: np.ndarray | None,
    *,
    gpu: bool | None = None,
    key: str = "factory",
) -> Any:
    """An empty inner-product index of ``factory``, trained on ``train`` where it needs it.

    Half of :func:`build_index`, for callers that train once and fill several copies (the
    scale benchmark fills one trained index per database size)."""
    cpu = _factory_index(factory, dim, key)
    _no_polysemous(cpu)
    index = _place(cpu, factory, gpu, key)
    if index.is_trained:
        return index
    if train is None:
        raise MatchbenchError(
            f"{key}: index {factory!r} needs training (coarse centroids or codebooks) "
            "but no training sample was given"
        )
    x = np.ascontiguousarray(train, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != dim:
        raise MatchbenchError(f"{key}: training sample of shape {x.shape}, expected (n, {dim})")
    try:
        index.train(x)
    except RuntimeError as e:
        raise MatchbenchError(
            f"{key}: training index {factory!r} on {x.shape[0]} vectors failed: {_reason(e)}"
        ) from None
    return index


def add_shards(index: Any, shards: Iterable[np.ndarray]) -> Any:
    """Add the rows of each shard to ``index`` in order, in float32 chunks of 65,536 rows (a
    shard is never converted whole). Returns ``index``."""
    for x in _chunks(shards, index.d, _ADD_ROWS):
        index.add(x)
    return index


def set_params(index: Any, params: str, *, key: str = "factory") -> Any:
    """Apply a faiss ParameterSpace string ("nprobe=16", "efSearch=128", "nprobe=32,
    quantizer_efSearch=64") to ``index``; an unknown parameter is an error naming ``key``."""
    if not params:
        return index
    faiss = _faiss()
    on_gpu = hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)
    space = faiss.GpuParameterSpace() if on_gpu else faiss.ParameterSpace()
    try:
        space.set_index_parameters(index, params)
    except RuntimeError as e:
        raise MatchbenchError(f"{key}: cannot set {params!r} on this index: {_reason(e)}") from None
    return index


def build_index(
    factory: str,
    dim: int,
    train: np.ndarray | None,
    shards: Iterable[np.ndarray],
    *,
    gpu: bool | None = None,
    params: str = "",
    key: str = "factory",
) -> Any:
    """A faiss inner-product index of ``factory`` holding the rows of ``shards`` in order.

    Trained on ``train`` (a float32 sample) when the index type needs training; filled shard
    by shard in float32 chunks; then ``params`` (a faiss ParameterSpace string such as
    "nprobe=16" or "efSearch=128") applied. ``gpu=None``: on all GPUs when faiss sees one and
    has a GPU version of the index (IVF and flat indexes; not HNSW), else on the CPU;
    ``gpu=True`` without one is an error. Errors name ``key`` (the config key of the factory).
    """
    index = train_index(factory, dim, train, gpu=gpu, key=key)
    add_shards(index, shards)
    return set_params(index, params, key=key)


def search_index(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` with this module's conventions: scores (float32) and global row
    indices (int64), (Q, k), score descending, the lower index first among equal scores.

    An approximate index may find fewer than k results for a query (an IVF index whose probed
    lists hold fewer than k rows); those are index -1, score -inf, at the end of the row, and
    count as misses in :func:`recall_at_k` and the metrics."""
    if k < 1:
        raise MatchbenchError(f"k = {k} must be at least 1")
    scores, idx = index.search(_queries(queries), k)
    keys = np.sort(_keys(scores, idx), axis=1)
    return _decode(keys)


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int | None = None) -> float:
    """Mean over queries of |approx[:, :k] ∩ exact[:, :k]| / k, index -1 ignored.

    ``k`` defaults to the width of ``exact``. Rows are index lists (Q, >= k)."""
    a = np.asarray(approx, dtype=np.int64)
    e = np.asarray(exact, dtype=np.int64)
    k = e.shape[1] if k is None else k
    if a.ndim != 2 or e.ndim != 2 or a.shape[0] != e.shape[0]:
        raise ValueError(f"index lists of shapes {a.shape} and {e.shape} do not match")
    if not 1 <= k <= min(a.shape[1], e.shape[1]):
        raise ValueError(f"k = {k} must be in 1..{min(a.shape[1], e.shape[1])}")
    if a.shape[0] == 0:
        return float("nan")
    a, e = a[:, :k], e[:, :k]
    # Make ids unique across rows, so one set intersection counts every row at once.
    span = np.int64(max(int(a.max()), int(e.max()), 0) + 1)
    row = np.arange(a.shape[0], dtype=np.int64)[:, None] * span
    hits = np.intersect1d((a + row)[a >= 0], (e + row)[e >= 0])
    return float(hits.size / (k * a.shape[0]))
