"""The retrieval track's search, re-ranking and scoring, on small exact cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matchbench.errors import MatchbenchError
from matchbench.metrics import average_precision_at_k
from matchbench.tracks.retrieval.evaluate import average_precisions, breakdown_groups
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
