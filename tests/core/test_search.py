"""The retrieval search engine: exact sharded search equals brute force, ties included; faiss
indexes built shard by shard behave as their type promises; mistakes are one-line errors."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from matchbench import search
from matchbench.errors import MatchbenchError
from matchbench.search import (
    ExactSearch,
    build_index,
    check_factory,
    check_k,
    exact_search,
    merge_topk,
    recall_at_k,
    search_index,
)


def brute_force(queries: np.ndarray, db: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy on the whole database: sort by score descending, then index ascending; pad with
    index -1, score -inf where the database has fewer than k rows."""
    scores = queries.astype(np.float32) @ db.astype(np.float32).T
    n = db.shape[0]
    out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_i = np.full((len(queries), k), -1, dtype=np.int64)
    for r, row in enumerate(scores):
        order = np.lexsort((np.arange(n), -row))[:k]
        out_s[r, : len(order)] = row[order]
        out_i[r, : len(order)] = order
    return out_s, out_i


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, dim: int, centres: int = 16, noise: float = 0.3):
    c = unit(rng.standard_normal((centres, dim)))
    return unit(
        c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, dim)) / np.sqrt(dim) * 4
    )


def write_shards(tmp_path, parts: list[np.ndarray]) -> list[np.ndarray]:
    """float16 .npy files, opened memory-mapped as the feature store's readers do."""
    out = []
    for i, p in enumerate(parts):
        path = tmp_path / f"shard{i}.npy"
        np.save(path, p.astype(np.float16))
        out.append(np.load(path, mmap_mode="r"))
    return out


# --------------------------------------------------------------------------- exact search


def test_exact_search_over_memmapped_uneven_shards_equals_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    db = unit(rng.standard_normal((1_700, 48))).astype(np.float16)
    sizes = [600, 3, 0, 1_000, 97]  # uneven, one empty, two smaller than k
    parts = np.split(db, np.cumsum(sizes)[:-1])
    shards = write_shards(tmp_path, parts)
    assert isinstance(shards[0], np.memmap)
    queries = unit(rng.standard_normal((23, 48)))
    got_s, got_i = exact_search(queries, shards, k=150)
    want_s, want_i = brute_force(queries, db, k=150)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_s, want_s, rtol=0, atol=1e-6)
    assert got_s.dtype == np.float32 and got_i.dtype == np.int64


def test_exact_search_breaks_ties_by_the_lower_index(tmp_path):
    # Small integers: every dot product is exact in float32 whatever the BLAS, so equal
    # vectors tie exactly, and many ties fall across the k-th place and across shards.
    rng = np.random.default_rng(1)
    base = rng.integers(-2, 3, size=(40, 16))
    db = base[rng.integers(0, 40, 900)].astype(np.float16)  # ~22 copies of each vector
    queries = rng.integers(-2, 3, size=(30, 16)).astype(np.float32)
    shards = write_shards(tmp_path, np.split(db, [250, 251, 700]))
    for k in (1, 7, 64, 500, 900):
        got_s, got_i = exact_search(queries, shards, k=k)
        want_s, want_i = brute_force(queries, db, k=k)
        np.testing.assert_array_equal(got_s, want_s)
        np.testing.assert_array_equal(got_i, want_i)
    # A row's equal scores come in index order.
    row_s, row_i = got_s[0], got_i[0]
    same = row_s[1:] == row_s[:-1]
    assert same.any() and (row_i[1:][same] > row_i[:-1][same]).all()


def test_exact_search_with_tiny_chunks_and_rising_scores(monkeypatch):
    # Scores that rise along the database: every row of every chunk enters the top-k and
    # pushes older ones out. Chunks of 1,024 rows, k larger than a chunk, many ties, and the
    # queries in blocks of 4.
    monkeypatch.setattr(search, "_MAX_CHUNK_ROWS", 1_024)
    monkeypatch.setattr(search, "_SCORE_BYTES", 1)
    monkeypatch.setattr(search, "_QUERY_BLOCK", 4)
    rng = np.random.default_rng(2)
    db = rng.integers(-2, 3, size=(9_000, 12)).astype(np.float16)
    queries = rng.integers(-2, 3, size=(9, 12)).astype(np.float32)
    db = db[np.argsort(db.astype(np.float32) @ queries[0], kind="stable")]
    got_s, got_i = exact_search(queries, [db[:5_000], db[5_000:]], k=1_500)
    want_s, want_i = brute_force(queries, db, k=1_500)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_s, want_s)


def test_exact_search_pads_a_database_smaller_than_k():
    rng = np.random.default_rng(3)
    db = unit(rng.standard_normal((5, 8)))
    s, i = exact_search(db[:2], [db[:3], db[3:]], k=8)
    assert (i[:, 5:] == -1).all() and np.isneginf(s[:, 5:]).all()
    assert sorted(i[0, :5]) == [0, 1, 2, 3, 4] and i[0, 0] == 0 and i[1, 0] == 1


def test_exact_search_is_deterministic_and_takes_a_generator(tmp_path):
    rng = np.random.default_rng(4)
    db = unit(rng.standard_normal((3_000, 32)))
    paths = []
    for n, part in enumerate(np.array_split(db, 3)):
        paths.append(tmp_path / f"{n}.npy")
        np.save(paths[-1], part.astype(np.float16))
    queries = unit(rng.standard_normal((10, 32)))

    def shards():
        for p in paths:  # one shard open at a time, as the retrieval stage reads them
            yield np.load(p, mmap_mode="r")

    a = exact_search(queries, shards(), k=100, progress=True)
    b = exact_search(queries, shards(), k=100)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()


def test_exact_search_in_steps_answers_after_every_shard():
    rng = np.random.default_rng(7)
    db = rng.integers(-2, 3, size=(2_000, 16)).astype(np.float16)
    queries = rng.integers(-2, 3, size=(12, 16)).astype(np.float32)
    parts = np.split(db, [700, 710, 1_500])
    search = ExactSearch(queries, k=300)
    for p, part in enumerate(parts, start=1):
        search.add(part)
        want = brute_force(queries, np.concatenate(parts[:p]), k=300)
        got = search.result()
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    assert search.n_rows == 2_000


def test_exact_search_errors_name_the_problem():
    q = np.zeros((2, 8), dtype=np.float32)
    with pytest.raises(MatchbenchError, match=r"shard 1: features of shape \(3, 4\)"):
        exact_search(q, [np.zeros((3, 8)), np.zeros((3, 4))], k=2)
    with pytest.raises(MatchbenchError, match="k = 0"):
        exact_search(q, [np.zeros((3, 8))], k=0)


# --------------------------------------------------------------------------- merge


def test_merge_topk_is_the_exact_top_k_of_the_union():
    rng = np.random.default_rng(5)
    for _ in range(50):
        q, ka, kb = (int(v) for v in rng.integers(1, 12, 3))
        k = int(rng.integers(1, ka + kb + 3))
        ids = rng.permutation(200)[: ka + kb]  # the two lists hold different rows
        scores = rng.integers(-3, 4, size=(q, ka + kb)).astype(np.float32)  # many ties
        idx = np.tile(ids, (q, 1))
        idx[rng.random(idx.shape) < 0.1] = -1  # missing results are ignored
        s, i = merge_topk(scores[:, :ka], idx[:, :ka], scores[:, ka:], idx[:, ka:], k)
        for r in range(q):
            valid = idx[r] >= 0
            order = np.lexsort((idx[r][valid], -scores[r][valid]))[:k]
            n = len(order)
            np.testing.assert_array_equal(i[r, :n], idx[r][valid][order])
            np.testing.assert_array_equal(s[r, :n], scores[r][valid][order])
            assert (i[r, n:] == -1).all() and np.isneginf(s[r, n:]).all()


def test_merge_topk_orders_negative_scores_and_zeros():
    s, i = merge_topk(
        np.array([[-0.0, -2.5, 1.0]], dtype=np.float32),
        np.array([[4, 1, 9]]),
        np.array([[0.0, -np.inf, 7.0]], dtype=np.float32),
        np.array([[2, 3, 5]]),
        k=6,
    )
    np.testing.assert_array_equal(i, [[5, 9, 2, 4, 1, 3]])
    np.testing.assert_array_equal(s, np.array([[7.0, 1.0, 0.0, 0.0, -2.5, -np.inf]], np.float32))


def test_recall_at_k_counts_the_overlap_ignoring_padding():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    approx = np.array([[4, 3, 9, -1], [8, 7, 6, 5]])
    assert recall_at_k(approx, exact) == pytest.approx((2 / 4 + 4 / 4) / 2)
    assert recall_at_k(approx, exact, k=2) == pytest.approx((0 / 2 + 0 / 2) / 2)
    assert recall_at_k(exact, exact, k=3) == 1.0


# --------------------------------------------------------------------------- faiss indexes


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(6)
    db = clustered(rng, 6_000, 64).astype(np.float16)
    queries = unit(
        db[rng.choice(6_000, 40)].astype(np.float32) + 0.05 * rng.standard_normal((40, 64))
    )
    train = db[rng.choice(6_000, 3_000, replace=False)].astype(np.float32)
    shards = np.split(db, [2_500, 2_600])
    return shards, queries, train, exact_search(queries, shards, k=50)


def test_flat_index_gives_the_exact_top_k(data):
    shards, queries, _, (want_s, want_i) = data
    index = build_index("Flat", 64, None, shards, gpu=None)
    assert index.ntotal == 6_000
    s, i = search_index(index, queries, 50)
    np.testing.assert_array_equal(i, want_i)
    np.testing.assert_allclose(s, want_s, atol=1e-5)


def test_ivf_probing_every_list_is_exact(data):
    shards, queries, train, (_, want_i) = data
    index = build_index("IVF16,Flat", 64, train, shards, params="nprobe=16")
    assert recall_at_k(search_index(index, queries, 50)[1], want_i) == 1.0


def test_ivf_pq_is_approximate_but_useful(data):
    shards, queries, train, (_, want_i) = data
    index = build_index("IVF16,PQ32x4fs", 64, train[:1_000], shards, params="nprobe=16")
    recall = recall_at_k(search_index(index, queries, 50)[1], want_i)
    assert 0.5 < recall < 1.0


def test_hnsw_works_and_is_deterministic(data):
    shards, queries, _, (_, want_i) = data
    a = build_index("HNSW16", 64, None, shards, params="efSearch=128")
    b = build_index("HNSW16", 64, None, shards, params="efSearch=128")
    assert recall_at_k(search_index(a, queries, 50)[1], want_i) > 0.9
    import faiss

    digest = [hashlib.sha256(faiss.serialize_index(x)).hexdigest() for x in (a, b)]
    assert digest[0] == digest[1]


def test_search_index_pads_with_minus_one_and_minus_inf(data):
    shards, queries, train, _ = data
    index = build_index("IVF16,Flat", 64, train, [shards[1]], params="nprobe=1")  # 100 rows
    s, i = search_index(index, queries, 50)
    assert (i == -1).any()
    assert np.isneginf(s[i == -1]).all() and np.isfinite(s[i >= 0]).all()
    for row in i:  # the missing results come last
        assert (np.diff((row == -1).astype(int)) >= 0).all()


# --------------------------------------------------------------------------- checks


def test_check_factory_accepts_and_rejects_with_the_key():
    check_factory("IVF16,Flat", 64, "tracks.retrieval.index")
    with pytest.raises(MatchbenchError, match=r"^tracks\.retrieval\.index: .*'NotAnIndex'") as e:
        check_factory("NotAnIndex", 64, "tracks.retrieval.index")
    assert "\n" not in str(e.value) and "could not parse" in str(e.value)
    with pytest.raises(MatchbenchError, match=r"^idx: .*'IVF16,PQ7'.*multiple of") as e:
        check_factory("IVF16,PQ7", 64, "idx")  # PQ needs m | d
    assert "\n" not in str(e.value) and ".cpp" not in str(e.value)
    with pytest.raises(MatchbenchError, match=r"^idx: .*'LSH'"):
        check_factory("LSH", 64, "idx")  # L2 only


def test_check_k():
    check_k(1_000, 1_500, "k")
    with pytest.raises(MatchbenchError) as e:
        check_k(2_000, 1_500, "tracks.retrieval.k")
    assert str(e.value) == (
        "tracks.retrieval.k: k = 2000 is larger than the database (1500 vectors)"
    )
    with pytest.raises(MatchbenchError, match="k = 0"):
        check_k(0, 10, "k")


def test_training_needed_but_missing_or_too_small(data):
    shards, *_ = data
    with pytest.raises(MatchbenchError, match=r"^idx: index 'IVF16,Flat' needs training"):
        build_index("IVF16,Flat", 64, None, shards, key="idx")
    with pytest.raises(MatchbenchError, match=r"^idx: training index 'IVF64,Flat' on 10 vectors"):
        build_index("IVF64,Flat", 64, np.zeros((10, 64), np.float32), shards, key="idx")
    with pytest.raises(MatchbenchError, match=r"^idx: cannot set 'nprob=4'"):
        build_index("Flat", 64, None, shards, params="nprob=4", key="idx")


def test_gpu_true_without_a_gpu_is_a_clear_error(data):
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("this machine has a GPU")
    shards, *_ = data
    with pytest.raises(MatchbenchError, match=r"^idx: a GPU index was asked for \(gpu=True\)"):
        build_index("Flat", 64, None, shards, gpu=True, key="idx")
