"""The retrieval track's search, re-ranking and scoring, on small exact cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matchbench.errors import MatchbenchError
from matchbench.metrics import average_precision_at_k
from matchbench.models import OptionError
from matchbench.tracks.retrieval.evaluate import average_precisions, breakdown_groups
from matchbench.tracks.retrieval.local import SHIFT, chamfer, config_keys, rerank_lists, rescore
from matchbench.tracks.retrieval.methods import split_method
from matchbench.tracks.retrieval.retrieve import Database, Part, expand, ranked_by_points


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _db(tmp_path, rng, sizes, d=16):
    parts = []
    for j, n in enumerate(sizes):
        x = _unit(rng, n, d).astype(np.float16)
        path = tmp_path / f"part{j}.npy"
        np.save(path, x)
        parts.append(Part(f"p{j}", [f"p{j}/{i}" for i in range(n)], np.load(path, mmap_mode="r")))
    return parts


def test_every_curve_point_is_the_exact_search_of_its_prefix(tmp_path):
    rng = np.random.default_rng(0)
    parts = _db(tmp_path, rng, [7, 30, 3, 25])
    db = Database(parts, None)
    q = _unit(rng, 5, 16)
    k = 10
    found = ranked_by_points(db, q, k, [0, 1, 3], progress=False)
    assert sorted(found) == [0, 1, 3]
    for p, (s, i) in found.items():
        full = np.concatenate([np.asarray(x.features, dtype=np.float32) for x in parts[: p + 1]])
        brute = q @ full.T
        width = min(k, len(full))
        for r in range(len(q)):
            want = np.lexsort((np.arange(len(full)), -brute[r]))[:width]
            got = i[r][i[r] >= 0]
            assert got.tolist() == want.tolist()
            np.testing.assert_allclose(s[r][: len(got)], brute[r][want], rtol=1e-6)


def test_an_adapted_database_is_searched_through_the_transform(tmp_path):
    rng = np.random.default_rng(1)
    parts = _db(tmp_path, rng, [5, 9])
    w = rng.normal(size=(4, 16)).astype(np.float32)

    def transform(x):
        y = x @ w.T
        return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)

    db = Database(parts, transform)
    assert db.dim == 4
    idx = np.array([13, 0, 6, 4])
    np.testing.assert_allclose(db.vectors(idx), np.concatenate(list(db.arrays()))[idx], rtol=1e-6)
    assert db.id_of(idx) == ["p1/8", "p0/0", "p1/1", "p0/4"]


def test_alpha_query_expansion_adds_the_weighted_top_results(tmp_path):
    rng = np.random.default_rng(2)
    parts = _db(tmp_path, rng, [6])
    db = Database(parts, None)
    q = _unit(rng, 1, 16)
    s, i = ranked_by_points(db, q, 4, [0], progress=False)[0]
    got = expand(db, q, s, i, n=2, alpha=3.0)
    x = np.asarray(parts[0].features, dtype=np.float32)
    w = np.clip(s[0, :2], 0, None) ** 3
    want = q[0] + w[0] * x[i[0, 0]] + w[1] * x[i[0, 1]]
    np.testing.assert_allclose(got[0], want / np.linalg.norm(want), rtol=1e-5)


def _ranks(lists):
    rows = []
    for q, items in lists.items():
        for r, (x, s) in enumerate(items, start=1):
            rows.append(
                {"distractors": 0, "query": q, "kind": "image", "rank": r, "id": x, "score": s}
            )
    return pd.DataFrame(rows)


def test_average_precision_follows_ilias_and_a_breakdown_removes_the_other_positives():
    ranks = _ranks({"a/q": [("a/p1", 0.9), ("d1", 0.8), ("a/p2", 0.7), ("d2", 0.6)]})
    gt = {"a": {"a/p1", "a/p2", "a/p3"}}
    ap = average_precisions(ranks, ["a/q"], {"a/q": "a"}, gt, k=1000)
    # precision 1/1 at rank 1, 2/3 at rank 3, over min(k, |GT|) = 3 (p3 never retrieved)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 3)
    want = average_precision_at_k(
        np.array([[0.9, 0.8, 0.7, 0.6]]), np.array([[1, 0, 1, 0]], bool), 1000, np.array([3])
    )
    assert ap[0] == pytest.approx(want[0])
    # Only p2 relevant, p1 removed: p2 rises to rank 2.
    sub = average_precisions(
        ranks, ["a/q"], {"a/q": "a"}, {"a": {"a/p2"}}, k=1000, ignore={"a": {"a/p1", "a/p3"}}
    )
    assert sub[0] == pytest.approx(1 / 2)
    # A cut at k = 2 keeps only what is in the top 2.
    assert average_precisions(ranks, ["a/q"], {"a/q": "a"}, gt, k=2)[0] == pytest.approx(1 / 2)


def test_breakdown_groups_by_scale_tertiles_and_clutter():
    pos = pd.DataFrame(
        {
            "id": list("abcdef"),
            "scale": [0.01, 0.02, 0.1, 0.2, 0.5, 0.6],
            "clutter": [0, 0, 1, 2, 3, 5],
        }
    )
    g = breakdown_groups(pos)
    assert g["scale"].tolist() == ["small", "small", "medium", "medium", "large", "large"]
    assert g["clutter"].tolist() == ["none", "none", "1-2", "1-2", "3+", "3+"]


def test_model_names_need_a_known_method():
    assert split_method("clip-mini+clip-rich@linear-aqe") == ("clip-mini+clip-rich", "linear-aqe")
    with pytest.raises(MatchbenchError, match="unknown retrieval method 'lineer'.*linear"):
        split_method("clip-mini@lineer")
    with pytest.raises(MatchbenchError, match="<model>@<method>"):
        split_method("clip-mini")


def test_chamfer_similarity_averages_each_query_cell_s_best_match():
    q = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    s = np.sqrt(0.5)
    x = np.array(
        [
            [[1.0, 0.0], [0.0, 1.0]],  # both query cells found: 1
            [[s, s], [-1.0, 0.0]],  # each query cell's best is the diagonal: sqrt(1/2)
            [[1.0, 0.0], [1.0, 0.0]],  # the first found, the second orthogonal: (1 + 0) / 2
        ],
        dtype=np.float32,
    )
    np.testing.assert_allclose(chamfer(q, x), [1.0, s, 0.5], rtol=1e-6)
    # Asymmetric: an image with more than the query (clutter) loses nothing.
    clutter = np.concatenate([x[:1], -x[:1]], axis=1)
    np.testing.assert_allclose(chamfer(q, clutter), [1.0], rtol=1e-6)


def test_rescoring_reorders_the_shortlist_above_an_untouched_rest():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, -np.inf], dtype=np.float32)
    idx = np.array([10, 11, 12, 13, 14, -1])
    local = np.array([0.0, 0.2, 1.0])  # the third of the shortlist of 3 matches best
    s, i = rescore(scores, idx, local, shortlist=3, weight=0.5)
    assert i.tolist() == [12, 11, 10, 13, 14, -1]
    np.testing.assert_allclose(s[:3], SHIFT + np.array([0.85, 0.5, 0.45]), rtol=1e-6)
    assert s[3:5].tolist() == pytest.approx([0.6, 0.5])
    assert np.all(np.diff(s[:5]) < 0)  # still a ranking by score
    # weight 0: the global order and scores (shifted) are kept; ties stay in global order.
    s0, i0 = rescore(scores, idx, local, shortlist=3, weight=0.0)
    assert i0.tolist() == idx.tolist()
    # A shortlist longer than the list stops at its padding.
    s2, i2 = rescore(scores, idx, np.zeros(5), shortlist=100, weight=1.0)
    assert i2.tolist() == idx.tolist() and s2[5] == -np.inf


class _Cells:
    """Local descriptors given by hand (what LocalDescriptors computes from images)."""

    def __init__(self, cells):
        self.cache, self.asked = dict(cells), []

    def compute(self, wanted):
        self.asked.append({src: sorted(v) for src, v in wanted.items()})

    def stack(self, ids):
        return np.stack([self.cache[x] for x in ids]).astype(np.float32)

    def bytes_per_image(self):
        return 2 * next(iter(self.cache.values())).size

    def clear(self):
        self.asked.append("clear")


def test_a_positive_found_by_its_details_climbs_the_shortlist_text_queries_stay():
    e = np.eye(4, dtype=np.float32)
    # The image query shows details 0 and 1; the positive "pos" (global rank 3) has both,
    # among clutter (3); the distractors share one detail at most.
    cells = {
        "q": e[[0, 1]],
        "pos": e[[0, 3, 1]],
        "d1": e[[0, 2, 2]],
        "d2": e[[2, 3, 3]],
        "d3": e[[1, 2, 3]],
    }
    ids = ["d1", "d2", "pos", "d3"]
    src = {"d1": "shard0", "d2": "shard0", "pos": "", "d3": "shard1"}
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0.3, 0.2]], dtype=np.float32)
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    local = _Cells(cells)
    out = rerank_lists(
        local,
        ["q", None],  # an image query, then a text query
        {0: (scores, idx)},
        lambda top: [ids[i] for i in top],
        lambda top: [src[ids[i]] for i in top],
        shortlist=3,
        weight=0.5,
    )
    s, i = out[0]
    assert [ids[x] for x in i[0]] == ["pos", "d1", "d2", "d3"]  # d3 is past the shortlist
    assert i[1].tolist() == idx[1].tolist() and s[1].tolist() == scores[1].tolist()
    # Descriptors are asked once, for the query and the image query's shortlist only.
    assert local.asked == [{"": ["pos", "q"], "shard0": ["d1", "d2"]}]


def test_queries_are_reranked_in_blocks_that_fit_the_memory_with_the_same_lists():
    rng = np.random.default_rng(3)
    names = [f"x{i}" for i in range(12)]
    cells = {x: _unit(rng, 3, 8) for x in names + ["qa", "qb", "qc"]}
    scores = np.sort(rng.uniform(0, 1, size=(3, 6)).astype(np.float32), axis=1)[:, ::-1].copy()
    idx = np.array([[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11], [0, 6, 1, 7, 2, 8]])
    lists = {0: (scores, idx), 1: (scores[:, ::-1].copy(), idx[:, ::-1].copy())}

    def run(memory):
        local = _Cells(cells)
        out = rerank_lists(
            local,
            ["qa", "qb", "qc"],
            lists,
            lambda top: [names[i] for i in top],
            lambda top: ["s" if i >= 6 else "" for i in top],
            shortlist=4,
            weight=0.5,
            memory=memory,
        )
        return out, local.asked

    whole, asked = run(float("inf"))
    assert len(asked) == 1  # one block: every image once
    one_image = 2 * 3 * 8
    # Each query needs 7 images (itself and the union of its two shortlists of 4).
    split, asked = run(9 * one_image)  # room for one query a block
    blocks = [a for a in asked if a != "clear"]
    assert [b[""][0] for b in blocks] == ["qa", "qb", "qc"] and asked.count("clear") == 3
    assert blocks[2] == {"": ["qc", "x0", "x1", "x2"], "s": ["x6", "x7", "x8"]}
    pair, asked = run(14 * one_image)  # qa and qb together, then qc
    assert len([a for a in asked if a != "clear"]) == 2
    for key in lists:
        for a, b in zip(whole[key], pair[key], strict=True):
            np.testing.assert_array_equal(a, b)
    for key in lists:
        for a, b in zip(whole[key], split[key], strict=True):
            np.testing.assert_array_equal(a, b)


def test_an_encoder_s_refusal_names_the_local_block_s_key():
    refused = pytest.raises(MatchbenchError, match=r"^tracks\.retrieval\.local\.layer: -9 is out")
    with refused, config_keys():
        raise OptionError("layer", "-9 is out of range for 'clip-mini'")
