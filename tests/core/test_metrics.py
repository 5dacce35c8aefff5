"""The metrics agree with hand-computed values and with the official conventions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score

from matchbench import metrics as M
from matchbench.errors import MatchbenchError

# --------------------------------------------------------------------------- PCK


def test_pck_counts_a_keypoint_exactly_at_alpha_t():
    gt = np.zeros((1, 1, 2))
    pred = np.array([[[3.0, 4.0]]])  # 5 px away; alpha * T = 0.1 * 50 = 5
    assert M.pck(pred, gt, [50.0], 0.1) == 1.0
    assert M.pck(pred + [0, 1e-9], gt, [50.0], 0.1) == 0.0


def test_pck_per_image_averages_pairs_per_point_pools_keypoints():
    gt = np.zeros((2, 2, 2))
    pred = np.array([[[1.0, 0.0], [9.0, 0.0]], [[1.0, 0.0], [np.nan, np.nan]]])
    valid = np.array([[True, True], [True, False]])
    t = np.array([20.0, 20.0])  # alpha 0.1 -> 2 px
    np.testing.assert_allclose(M.pck_per_pair(pred, gt, t, 0.1, valid), [0.5, 1.0])
    assert M.pck(pred, gt, t, 0.1, valid, per="image") == pytest.approx(0.75)
    assert M.pck(pred, gt, t, 0.1, valid, per="point") == pytest.approx(2 / 3)


def test_pck_all_right_and_all_wrong():
    gt = np.random.default_rng(0).uniform(0, 100, (4, 3, 2))
    t = np.full(4, 100.0)
    assert M.pck(gt, gt, t, 0.01) == 1.0
    assert M.pck(gt + 50, gt, t, 0.15, per="point") == 0.0


def test_pck_pair_without_valid_keypoint_is_named():
    valid = np.array([[True], [False], [False]])
    with pytest.raises(MatchbenchError, match=r"pairs \[1, 2\] have no valid keypoint"):
        M.pck(np.zeros((3, 1, 2)), np.zeros((3, 1, 2)), np.ones(3), 0.1, valid)


def test_pck_rejects_bad_per_and_shapes():
    with pytest.raises(MatchbenchError, match="per"):
        M.pck(np.zeros((1, 1, 2)), np.zeros((1, 1, 2)), [1.0], 0.1, per="pair")
    with pytest.raises(MatchbenchError, match="pred and gt"):
        M.pck(np.zeros((1, 2, 2)), np.zeros((1, 1, 2)), [1.0], 0.1)


def test_pck_threshold_bbox_and_image():
    np.testing.assert_allclose(
        M.pck_threshold(bbox_xyxy=[[10, 20, 110, 70], [0, 0, 5, 30]]), [100, 30]
    )
    np.testing.assert_allclose(M.pck_threshold(image_hw=[[375, 500], [480, 320]]), [500, 480])
    with pytest.raises(MatchbenchError, match="exactly one"):
        M.pck_threshold()
    with pytest.raises(MatchbenchError, match="exactly one"):
        M.pck_threshold(bbox_xyxy=[[0, 0, 1, 1]], image_hw=[[1, 1]])


def test_pooled_pck_scores_agree_with_the_padded_pck():
    g = np.random.default_rng(1)
    counts = g.integers(1, 6, size=30)
    gt = g.uniform(0, 100, (int(counts.sum()), 2))
    pred = gt + g.normal(0, 8, gt.shape)
    t = g.uniform(20, 120, counts.size)
    s = M.pck_scores(pred, gt, t, counts, 0.1)
    assert s.correct.shape == (int(counts.sum()),) and s.per_pair.shape == (30,)
    padded_pred, padded_gt = np.zeros((30, 5, 2)), np.zeros((30, 5, 2))
    valid = np.arange(5)[None, :] < counts[:, None]
    padded_pred[valid], padded_gt[valid] = pred, gt
    for per in ("image", "point"):
        assert s.value(per) == M.pck(padded_pred, padded_gt, t, 0.1, valid, per)
    np.testing.assert_array_equal(s.per_pair, M.pck_per_pair(padded_pred, padded_gt, t, 0.1, valid))


def test_pck_scores_summaries_and_categories():
    # pair 0: 1 of 1 correct, pair 1: 1 of 3, pair 2: 0 of 2
    s = M.PckScores([True, True, False, False, False, False], [1, 3, 2])
    np.testing.assert_allclose(s.per_pair, [1.0, 1 / 3, 0.0])
    image, point = s.summary("image", 300, 0), s.summary("point", 300, 0)
    assert image["value"] == pytest.approx(4 / 9) and image["n"] == 3
    assert point["value"] == pytest.approx(2 / 6) and point["n"] == 6
    for m in (image, point):
        assert m["ci_low"] <= m["value"] <= m["ci_high"]
    cats = np.array(["b", "a", "b"])
    assert s.per_category("image", cats) == {"a": pytest.approx(1 / 3), "b": 0.5}
    assert s.per_category("point", cats) == {"a": pytest.approx(1 / 3), "b": pytest.approx(1 / 3)}
    assert s.value("point", cats == "b") == pytest.approx(1 / 3)
    with pytest.raises(MatchbenchError, match="3 keypoints for pairs holding 4"):
        M.PckScores([True] * 3, [2, 2])
    with pytest.raises(MatchbenchError, match="at least one keypoint"):
        M.PckScores([True], [1, 0])


def test_pck_metrics_names_both_aggregations_per_alpha():
    gt = np.zeros((3, 2))
    pred = np.array([[1.0, 0.0], [4.0, 0.0], [0.0, 0.0]])
    scores = {a: M.pck_scores(pred, gt, [20.0, 20.0], [2, 1], a) for a in (0.05, 0.1)}
    values, per_category = M.pck_metrics(scores, 100, 0, np.array(["x", "y"]))
    assert list(values) == ["pck@0.05", "pck_point@0.05", "pck@0.1", "pck_point@0.1"]
    assert values["pck@0.05"]["value"] == pytest.approx(0.75)  # (1/2 + 1) / 2; 1 px <= 1 px
    assert values["pck_point@0.1"]["value"] == pytest.approx(2 / 3)  # 4 px > 2 px
    assert per_category["pck@0.1"] == {"x": 0.5, "y": 1.0}
    assert M.pck_metrics(scores, 100, 0)[1] == {}
    assert M.pck_key(0.1, "point") == "pck_point@0.1" and M.pck_key(1, "image") == "pck@1.0"


# --------------------------------------------------------------------------- AP@k


def test_ap_hand_computed():
    scores = [[0.9, 0.8, 0.7, 0.6]]
    rel = [[True, False, True, False]]
    # precision 1/1 at rank 1 and 2/3 at rank 3, over min(k, R) = 2
    assert M.average_precision_at_k(scores, rel, 10)[0] == pytest.approx((1 + 2 / 3) / 2)
    # the cut at k = 2 keeps one hit, still over min(2, 2)
    assert M.average_precision_at_k(scores, rel, 2)[0] == pytest.approx(0.5)
    # a shortlist: three relevant items exist, one is not in the scores
    ap = M.average_precision_at_k(scores, rel, 10, n_relevant=np.array([3]))
    assert ap[0] == pytest.approx((1 + 2 / 3) / 3)


def test_ap_empty_queries_score_zero_and_count_in_the_mean():
    scores = [[0.9, 0.1, 0.5], [0.9, 0.1, 0.5], [0.9, 0.1, 0.5]]
    rel = [[True, False, False], [False, False, False], [False, True, False]]
    np.testing.assert_allclose(M.average_precision_at_k(scores, rel, 2), [1.0, 0.0, 0.0])
    assert M.map_at_k(scores, rel, 2) == pytest.approx(1 / 3)
    assert M.map_at_k(scores, rel, 3) == pytest.approx((1 + 0 + 1 / 3) / 3)


def test_ap_empty_gallery_and_no_queries():
    np.testing.assert_array_equal(
        M.average_precision_at_k(np.zeros((2, 0)), np.zeros((2, 0), bool), 5), [0.0, 0.0]
    )
    with pytest.raises(MatchbenchError, match="no queries"):
        M.map_at_k(np.zeros((0, 3)), np.zeros((0, 3), bool), 5)
    with pytest.raises(MatchbenchError, match="non-empty"):
        M.recall_from_ranks([], [1])


def test_ap_ties_inside_top_k_use_precision_at_the_group_end():
    scores = [[1.0, 1.0, 0.0]]
    rel = [[False, True, False]]
    assert M.average_precision_at_k(scores, rel, 3)[0] == pytest.approx(0.5)
    assert average_precision_score([0, 1, 0], [1.0, 1.0, 0.0]) == pytest.approx(0.5)
    # order inside the tie does not matter
    assert M.average_precision_at_k([[1.0, 1.0, 0.0]], [[True, False, False]], 3)[0] == 0.5


def test_ap_tie_straddling_the_cut_is_the_expected_value():
    # 4 tied items, 1 relevant, k = 2: it is in the top 2 half of the time, where it scores
    # precision 1/2 (the truncated group's end): 0.5 * 0.5 = 0.25.
    ap = M.average_precision_at_k([[1.0, 1.0, 1.0, 1.0]], [[True, False, False, False]], 2)
    assert ap[0] == pytest.approx(0.25)
    # One hit above the cut, then a tie of 3 holding 2 relevant with 1 place left (k = 2):
    # X ~ Bernoulli(2/3), contribution X * (1 + X) / 2 -> 2/3; plus 1 for rank 1; R = 3.
    ap = M.average_precision_at_k([[2.0, 1.0, 1.0, 1.0]], [[True, True, True, False]], 2)
    assert ap[0] == pytest.approx((1 + 2 / 3) / 2)


def test_ap_rejects_nan_and_bad_k():
    with pytest.raises(MatchbenchError, match="NaN"):
        M.average_precision_at_k([[np.nan, 1.0]], [[True, False]], 1)
    with pytest.raises(MatchbenchError, match="k must be"):
        M.average_precision_at_k([[0.0, 1.0]], [[True, False]], 0)
    with pytest.raises(MatchbenchError, match="n_relevant"):
        M.average_precision_at_k([[0.0, 1.0]], [[True, True]], 1, n_relevant=np.array([1]))


def _official_ap(scores: np.ndarray, rel: np.ndarray, k: int) -> float:
    """ILIAS's ``_compute_AP`` for one ordering: scikit-learn AP on the top k, rescaled."""
    top_s, top_r = scores[:k], rel[:k]
    if not top_r.any():
        return 0.0
    return average_precision_score(top_r, top_s) * top_r.sum() / min(k, rel.sum())


def _brute_force_ap(scores: np.ndarray, rel: np.ndarray, k: int) -> float:
    """Average of the official computation over every order of the tied items."""
    groups = [np.flatnonzero(scores == v) for v in sorted(set(scores), reverse=True)]
    values = []
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        order = np.concatenate([np.asarray(p, dtype=int) for p in perms])
        values.append(_official_ap(scores[order], rel[order], k))
    return float(np.mean(values))


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=6),
    k=st.integers(1, 7),
)
def test_ap_matches_official_code_averaged_over_tie_orders(data, k):
    scores = np.array([float(s) for s, _ in data])
    rel = np.array([r for _, r in data])
    got = M.average_precision_at_k(scores[None], rel[None], k)[0]
    assert got == pytest.approx(_brute_force_ap(scores, rel, k), abs=1e-12)
    perm = np.random.default_rng(len(data)).permutation(len(data))
    assert M.average_precision_at_k(scores[None, perm], rel[None, perm], k)[0] == pytest.approx(got)
    if k >= len(data) and rel.any():
        assert got == pytest.approx(average_precision_score(rel, scores))


def test_ap_blocks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, (9, 40)).astype(float)
    rel = rng.random((9, 40)) < 0.3
    whole = M.average_precision_at_k(scores, rel, 7)
    monkeypatch.setattr(M, "_BLOCK_ELEMENTS", 50)
    np.testing.assert_allclose(M.average_precision_at_k(scores, rel, 7), whole)


# --------------------------------------------------------------------------- recall


def test_recall_at_k_with_and_without_the_reference():
    scores = np.array([[0.9, 0.5, 0.1, 0.3], [0.2, 0.4, 0.8, 0.6]])
    target = np.array([1, 1])
    assert M.recall_at_k(scores, target, [1, 2, 3]) == {1: 0.0, 2: 0.5, 3: 1.0}
    # removing item 0 (query 0) and item 2 (query 1) lifts both targets one place
    assert M.recall_at_k(scores, target, [1, 2], exclude=np.array([0, 2])) == {1: 0.5, 2: 1.0}


def test_recall_ties_go_against_the_target():
    scores = np.array([[0.5, 0.5, 0.1]])
    assert M.target_rank(scores, np.array([0]))[0] == 2
    assert M.target_rank(scores, np.array([1]))[0] == 2
    assert M.recall_at_k(np.zeros((2, 5)), np.array([0, 4]), [1, 5]) == {1: 0.0, 5: 1.0}


def test_recall_errors():
    with pytest.raises(MatchbenchError, match="exclude equals target"):
        M.recall_at_k(np.ones((1, 3)), np.array([1]), [1], exclude=np.array([1]))
    with pytest.raises(MatchbenchError, match="out of range"):
        M.recall_at_k(np.ones((1, 3)), np.array([3]), [1])
    with pytest.raises(MatchbenchError, match="cut-offs"):
        M.recall_at_k(np.ones((1, 3)), np.array([0]), [0])


def test_recall_subset_ranks_members_without_the_reference():
    # gallery of 8; the set is items 0-5, the reference is item 0 (the best-scored)
    scores = np.array([[0.99, 0.2, 0.9, 0.95, 0.1, 0.3, 0.98, 0.97]])
    members = np.array([[0, 1, 2, 3, 4, 5]])
    # target 2: only item 3 (0.95) beats it among members 1-5 -> rank 2
    got = M.recall_subset_at_k(scores, np.array([2]), members, np.array([0]), [1, 2, 3])
    assert got == {1: 0.0, 2: 1.0, 3: 1.0}
    with pytest.raises(MatchbenchError, match="not among the members"):
        M.recall_subset_at_k(scores, np.array([6]), members, np.array([0]), [1])
    with pytest.raises(MatchbenchError, match="not among the members"):
        M.recall_subset_at_k(scores, np.array([0]), members, np.array([0]), [1])


def test_recall_from_ranks_counts_missing_targets_as_misses():
    assert M.recall_from_ranks([1, 3, np.inf, 50], [1, 10, 50]) == {1: 0.25, 10: 0.5, 50: 0.75}


# --------------------------------------------------------------------------- pairs


def test_pair_accuracy_counts_ties_as_wrong():
    assert M.pair_accuracy([1.0, 2.0, 3.0], [0.0, 2.0, 4.0]) == pytest.approx(1 / 3)
    assert M.pair_accuracy([1.0], [0.0]) == 1.0
    assert M.pair_accuracy([0.0], [1.0]) == 0.0
    with pytest.raises(MatchbenchError, match="no items"):
        M.pair_accuracy([], [])


# --------------------------------------------------------------------------- probing


def test_knn_weighted_vote():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 1.0]])
    labels = np.array([7, 7, 5, 5, 5])
    queries = np.array([[1.0, 0.05], [0.05, 1.0]])
    np.testing.assert_array_equal(M.knn_classify(train, labels, queries, k=2), [7, 5])
    # k = 5: three votes for 5 but the two label-7 neighbours are far more similar to query 0
    np.testing.assert_array_equal(
        M.knn_classify(train, labels, queries, k=5, temperature=0.07), [7, 5]
    )
    # a very high temperature makes the vote a plain majority
    np.testing.assert_array_equal(
        M.knn_classify(train, labels, queries, k=5, temperature=1e6), [5, 5]
    )


def test_knn_ties_go_to_the_lowest_label_and_the_lowest_index():
    train = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert M.knn_classify(train, np.array([3, 1]), np.array([[1.0, 0.0]]), k=2)[0] == 1
    # k = 1 with two equally similar neighbours: the first training sample is kept
    assert M.knn_classify(train, np.array([3, 1]), np.array([[1.0, 0.0]]), k=1)[0] == 3


def test_knn_blocks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(0)
    train, labels = rng.normal(size=(50, 8)), rng.integers(0, 4, 50)
    queries = rng.normal(size=(23, 8))
    whole = M.knn_classify(train, labels, queries, k=7)
    monkeypatch.setattr(M, "_BLOCK_ELEMENTS", 60)
    np.testing.assert_array_equal(M.knn_classify(train, labels, queries, k=7), whole)


def test_accuracy():
    assert M.accuracy([1, 2, 3, 4], [1, 2, 0, 0]) == 0.5
    with pytest.raises(MatchbenchError):
        M.accuracy([], [])


def test_linear_probe_is_deterministic_and_separates_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    y = np.repeat([0, 1, 2], 20)
    x = centres[y] + rng.normal(size=(60, 3))
    test = centres[[0, 1, 2]] + 0.1
    a = M.linear_probe_predict(x, y, test, c=1.0, seed=0)
    b = M.linear_probe_predict(x, y, test, c=1.0, seed=0)
    np.testing.assert_array_equal(a, [0, 1, 2])
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_ci():
    assert M.bootstrap_ci([0.7]) == (0.7, 0.7)
    assert M.bootstrap_ci([0.5] * 10) == (0.5, 0.5)
    # Means of two draws from {0, 1} are 0, 1/2 or 1: the 2.5th and 97.5th percentiles.
    assert M.bootstrap_ci([0.0, 1.0], n_boot=2000) == (0.0, 1.0)
    v = np.random.default_rng(0).random(200)
    lo, hi = M.bootstrap_ci(v, seed=3)
    assert lo < v.mean() < hi
    assert M.bootstrap_ci(v, seed=3) == (lo, hi)
    with pytest.raises(MatchbenchError, match="no values"):
        M.bootstrap_ci([])


def test_bootstrap_ratio_ci_draws_what_bootstrap_ci_draws():
    g = np.random.default_rng(3)
    hits = g.integers(0, 5, size=40).astype(float)
    assert M.bootstrap_ratio_ci(hits, np.full(40, 4.0), 200, seed=7) == M.bootstrap_ci(
        hits / 4, n_boot=200, seed=7
    )
    assert M.bootstrap_ratio_ci([1.0], [4.0], 200, seed=7) == (0.25, 0.25)
    # units of different weight: the pooled ratio, not the mean of ratios
    assert M.bootstrap_ratio_ci([0.0, 10.0], [1.0, 10.0], n_boot=2000) == (0.0, 1.0)
    lo, hi = M.bootstrap_ratio_ci(hits, g.integers(4, 9, size=40), seed=1)
    assert lo < hi
    with pytest.raises(MatchbenchError, match="denominators positive"):
        M.bootstrap_ratio_ci([1.0, 2.0], [1.0, 0.0])
    with pytest.raises(MatchbenchError, match="equal non-empty"):
        M.bootstrap_ratio_ci([1.0], [1.0, 2.0])


def test_summaries_and_per_category():
    assert M.summarise([1.0, 0.0, 1.0, 1.0], 100, 0)["value"] == 0.75
    r = M.summarise_ratio([2, 1], [2, 4], 100, 0)
    assert r["value"] == 0.5 and r["n"] == 6 and r["ci_low"] <= 0.5 <= r["ci_high"]
    cats = ["b", "a", "b"]
    assert M.per_category([1.0, 0.0, 0.5], cats) == {"a": 0.0, "b": 0.75}
    assert M.per_category([1, 0, 1], cats, den=[1, 2, 3]) == {"a": 0.0, "b": 0.5}
