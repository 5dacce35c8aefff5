"""Keypoint transfer (`matchbench.tracks.correspondence.match`) on hand-made maps with known answers,
the grid coordinate maps, and the PCK rules the correspondence evaluation relies on.

Two kinds of maps: one-hot maps (cell k of a map holds the unit vector e_k, so a source cell
matches exactly the target cell holding the same vector), and two-channel "score" maps whose
target cells hold (s, sqrt(1 - s^2)) against a source feature (1, 0): the cosine of each
target cell is then exactly s, so any score map can be written by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from matchbench.errors import MatchbenchError
from matchbench.metrics import bootstrap_ci, pck
from matchbench.tracks.correspondence.dense import from_grid, to_grid
from matchbench.tracks.correspondence.evaluate import bootstrap_ratio_ci, score_points
from matchbench.tracks.correspondence.match import VARIANTS, sample, transfer, transfer_variants

torch.set_num_threads(1)


def one_hot_maps(h: int, w: int, shift: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Target cell (x, y) holds e_(y*w+x); source cell (x, y) holds the vector of target cell
    (x + dx, y + dy) (wrapping around), so the true match of source (x, y) is that cell."""
    dx, dy = shift
    trg = torch.eye(h * w).reshape(h * w, h, w)
    src = torch.roll(trg, shifts=(-dy, -dx), dims=(1, 2))
    return src, trg


def score_maps(scores: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1x1 source map (1, 0), a target map whose cosines with it are ``scores`` (h, w), and
    the query (0, 0)."""
    s = torch.tensor(scores, dtype=torch.float64)
    trg = torch.stack([s, torch.sqrt(1 - s**2)]).float()
    src = torch.tensor([1.0, 0.0]).reshape(2, 1, 1)
    return src, trg, torch.zeros(1, 2)


def soft_argmax_ref(scores: np.ndarray, temperature: float) -> np.ndarray:
    h, w = scores.shape
    ys, xs = np.mgrid[0:h, 0:w]
    e = np.exp((scores - scores.max()) / temperature)
    e /= e.sum()
    return np.array([(e * xs).sum(), (e * ys).sum()])


# --------------------------------------------------------------------------- nn and bilinear


def test_nn_finds_the_matching_cell_of_every_keypoint_in_one_batch():
    src, trg = one_hot_maps(6, 8, shift=(2, 1))
    uv = torch.tensor([[0.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 5.0]])
    got = transfer(src, trg, uv, "nn")
    want = torch.tensor([[2.0, 1.0], [5.0, 3.0], [7.0, 5.0], [1.0, 0.0]])  # (7+2) % 8 = 1
    assert torch.equal(got, want)


def test_bilinear_interpolates_the_matches_of_the_four_neighbours_nn_snaps():
    src, trg = one_hot_maps(6, 8, shift=(2, 1))
    uv = torch.tensor([[1.25, 2.25], [3.0, 1.0], [1.5, 3.75]])
    got = transfer_variants(src, trg, uv, ["nn", "bilinear"])
    # A translation: the bilinear average of the neighbours' matches is the query + (2, 1).
    torch.testing.assert_close(got["bilinear"], uv + torch.tensor([2.0, 1.0]))
    # nn takes the argmax of the sampled feature: the heaviest neighbour's match.
    assert torch.equal(got["nn"][0], torch.tensor([3.0, 3.0]))  # (1, 2) weighs 0.5625
    assert torch.equal(got["nn"][1], torch.tensor([5.0, 2.0]))  # on a cell: that cell


def test_bilinear_queries_on_the_last_row_and_column_and_outside_stay_on_the_grid():
    src, trg = one_hot_maps(4, 5, shift=(0, 0))
    uv = torch.tensor([[4.0, 3.0], [4.0, 1.5], [-0.5, -0.5], [4.4, 3.4]])
    got = transfer(src, trg, uv, "bilinear")
    want = torch.tensor([[4.0, 3.0], [4.0, 1.5], [0.0, 0.0], [4.0, 3.0]])  # clamped to the grid
    torch.testing.assert_close(got, want)


def test_sampling_agrees_with_grid_sample_align_corners_inside_the_grid():
    # The official extract_feature: grid_sample(align_corners=True) on (x/(w-1), y/(h-1)) * 2 - 1.
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(5, 7, 9, generator=g)
    uv = torch.rand(20, 2, generator=g) * torch.tensor([8.0, 6.0])
    norm = uv / torch.tensor([8.0, 6.0]) * 2 - 1
    ref = F.grid_sample(fmap[None], norm[None, :, None, :], align_corners=True)[0, :, :, 0].T
    torch.testing.assert_close(sample(fmap, uv), ref, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- softmax variants


def test_softmax_of_a_symmetric_peak_is_its_centre():
    h, w = 7, 11
    ys, xs = np.mgrid[0:h, 0:w]
    scores = 0.9 * np.exp(-((xs - 5) ** 2 + (ys - 3) ** 2) / (2 * 1.5**2))  # centre of the grid
    src, trg, q = score_maps(scores)
    for variant in ("softmax", "kernel_softmax"):
        got = transfer(src, trg, q, variant, temperature=0.04, window_sigma=7)
        torch.testing.assert_close(got, torch.tensor([[5.0, 3.0]]), atol=1e-4, rtol=0)


def test_softmax_matches_a_numpy_soft_argmax_off_centre():
    g = np.random.default_rng(1)
    scores = g.uniform(-0.3, 0.5, size=(6, 9))
    scores[1, 7] = 0.8
    src, trg, q = score_maps(scores)
    got = transfer(src, trg, q, "softmax", temperature=0.1)
    np.testing.assert_allclose(got[0].numpy(), soft_argmax_ref(scores, 0.1), atol=1e-4)


def test_kernel_softmax_suppresses_a_far_distractor_that_softmax_follows():
    scores = np.zeros((7, 15))
    scores[3, 2], scores[3, 12] = 0.9, 0.85  # peak, and a distractor 10 cells away
    src, trg, q = score_maps(scores)
    out = transfer_variants(src, trg, q, VARIANTS, temperature=0.04, window_sigma=1.0)
    # softmax: weights e^(0.9/0.04) and e^(0.85/0.04), pulled 2.8 cells towards the distractor
    pull = 10 * math.exp(-0.05 / 0.04) / (1 + math.exp(-0.05 / 0.04))
    np.testing.assert_allclose(out["softmax"][0].numpy(), [2 + pull, 3], atol=1e-3)
    torch.testing.assert_close(out["kernel_softmax"], torch.tensor([[2.0, 3.0]]), atol=1e-4, rtol=0)
    assert torch.equal(out["nn"], torch.tensor([[2.0, 3.0]]))


def test_kernel_softmax_windows_the_scores_before_the_softmax():
    # The official order: softmax(window * cos / T). The other order, softmax(cos / T) * window,
    # would give a different answer on this map; the numpy reference follows the official one.
    g = np.random.default_rng(2)
    scores = g.uniform(0.2, 0.6, size=(8, 8))
    scores[5, 2] = 0.7
    ys, xs = np.mgrid[0:8, 0:8]
    window = np.exp(-((xs - 2) ** 2 + (ys - 5) ** 2) / (2 * 2.0**2))
    src, trg, q = score_maps(scores)
    got = transfer(src, trg, q, "kernel_softmax", temperature=0.05, window_sigma=2.0)
    np.testing.assert_allclose(got[0].numpy(), soft_argmax_ref(scores * window, 0.05), atol=1e-4)


# --------------------------------------------------------------------------- inputs


def test_bad_inputs_are_named():
    src, trg = one_hot_maps(3, 3, shift=(0, 0))
    q = torch.zeros(1, 2)
    with pytest.raises(MatchbenchError, match="unknown variants"):
        transfer(src, trg, q, "argmax")
    with pytest.raises(MatchbenchError, match="equal C"):
        transfer(src[:4], trg, q, "nn")
    with pytest.raises(MatchbenchError, match="temperature"):
        transfer(src, trg, q, "softmax", temperature=0)
    empty = transfer_variants(src, trg, torch.zeros(0, 2))
    assert all(v.shape == (0, 2) for v in empty.values())


def test_half_precision_maps_are_matched_in_float32():
    src, trg = one_hot_maps(4, 4, shift=(1, 1))
    got = transfer(src.half(), trg.half(), torch.tensor([[1.0, 2.0]]), "bilinear")
    assert got.dtype == torch.float32 and torch.equal(got, torch.tensor([[2.0, 3.0]]))


# --------------------------------------------------------------------------- coordinates


def test_grid_coordinates_put_cell_centres_at_integers_and_round_trip():
    wh, grid = (100.0, 50.0), (8, 4)  # cells of 12.5 x 12.5 pixels
    centres = np.array([[6.25, 6.25], [93.75, 43.75]])
    np.testing.assert_allclose(to_grid(centres, wh, grid), [[0, 0], [7, 3]])
    xy = np.random.default_rng(0).uniform(0, 100, size=(50, 2)) * [1, 0.5]
    np.testing.assert_allclose(from_grid(to_grid(xy, wh, grid), wh, grid), xy)


def test_transfer_through_the_grid_returns_the_target_pixel():
    # Source image 64 x 32 on an 8 x 4 grid, target 200 x 100 on the same grid, features shifted
    # by one cell: the pixel at source cell (2, 1)'s centre lands on target cell (3, 2)'s centre.
    src, trg = one_hot_maps(4, 8, shift=(1, 1))
    uv = to_grid(np.array([[20.0, 12.0]]), (64, 32), (8, 4))
    pred = transfer(src, trg, torch.from_numpy(uv).float(), "nn").double().numpy()
    np.testing.assert_allclose(from_grid(pred, (200, 100), (8, 4)), [[87.5, 62.5]])


# --------------------------------------------------------------------------- PCK


def test_pck_boundary_is_inclusive_at_alpha_times_threshold():
    gt = np.zeros((3, 2))
    pred = np.array([[6.0, 8.0], [6.0, 8.0 + 1e-9], [0.0, 10.0]])  # distances 10, >10, 10
    s = score_points(pred, gt, np.array([40.0, 40.0, 40.0]), np.array([1, 1, 1]), alpha=0.25)
    assert s.correct.tolist() == [True, False, True]


def test_per_image_and_per_point_pck_pool_differently():
    # Pair 0: 1 of 1 keypoints correct; pair 1: 1 of 3. Per image (1 + 1/3) / 2, per point 2/4.
    gt = np.zeros((4, 2))
    pred = np.array([[0, 0], [0, 0], [50, 0], [50, 0]], dtype=float)
    s = score_points(pred, gt, np.array([100.0, 100.0]), np.array([1, 3]), alpha=0.1)
    assert s.per_pair.tolist() == [1.0, 1 / 3]
    assert s.value("image") == pytest.approx(2 / 3) and s.value("point") == 0.5
    # the metrics module's own pooling agrees (padded arrays with a validity mask)
    padded_pred = np.array([[[0, 0], [0, 0], [0, 0]], [[0, 0], [50, 0], [50, 0]]], dtype=float)
    valid = np.array([[True, False, False], [True, True, True]])
    for per in ("image", "point"):
        assert pck(padded_pred, np.zeros((2, 3, 2)), [100, 100], 0.1, valid, per) == s.value(per)
    point = s.summary("point", n_boot=50, seed=0)
    assert point["n"] == 4 and point["ci_low"] <= 0.5 <= point["ci_high"]


def test_per_point_bootstrap_resamples_pairs_like_the_per_image_one():
    g = np.random.default_rng(3)
    hits = g.integers(0, 5, size=40).astype(float)
    den = np.full(40, 4.0)
    assert bootstrap_ratio_ci(hits, den, 200, seed=7) == pytest.approx(
        bootstrap_ci(hits / den, n_boot=200, seed=7)
    )
    assert bootstrap_ratio_ci(np.array([1.0]), np.array([4.0]), 200, seed=7) == (0.25, 0.25)
