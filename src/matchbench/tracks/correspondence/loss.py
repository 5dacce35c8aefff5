"""The training loss of the strong baseline: a Gaussian-smoothed cross-entropy over the target map.

For each source keypoint, its feature (the source map sampled bilinearly at the keypoint) is
compared by cosine similarity with every cell of the target map; a softmax with temperature
(0.03) turns the similarities into a distribution over target cells, and the loss is its
cross-entropy with a Gaussian (sigma = 1.5 cells) centred at the true target location.

The convention is that of the unified benchmark's ``GaussianCrossEntropyLoss``
(``Visual-AI/Semantic-Correspondence``, ``src/loss.py``): features sampled before they are
L2-normalised, the loss averaged over a pair's keypoints and then over the pairs of the batch.
One deliberate difference: the official code weighs the log of the probabilities sampled
bilinearly at a 7x7 window of integer offsets around the true location with Gaussian weights
(sigma = 3 / 2, unnormalised: they sum to 0.965) and masks the taps on or past the grid border.
Here the target is a Gaussian over the cell centres of the whole grid, normalised to sum to one.
It is then a distribution, so the loss is minimal, with zero gradient, exactly when the
prediction equals it (not so for the truncated, border-masked window). The two reward the same
thing: for a true location on a cell centre away from the border the official weights are this
target cut to the window, which holds 96.5% of its mass. Near the border the target keeps its
whole mass on the cells that exist instead of losing taps.

Coordinates are feature-grid coordinates with cell centres at integers
(:func:`matchbench.tracks.correspondence.dense.to_grid`); a keypoint outside the grid,
``[-0.5, w - 0.5] x [-0.5, h - 0.5]``, in either image does not count.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

TEMPERATURE = 0.03
SIGMA = 1.5


def inside(uv: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Whether grid points (..., 2) lie on the grid (cell edges included), as a bool (...)."""
    h, w = grid_hw
    u, v = uv[..., 0], uv[..., 1]
    return (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)


def sample_points(fmap: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of maps (B, C, h, w) at grid points (B, K, 2): (B, K, C).

    Cell centres are at integers, so ``align_corners=True`` with the grid's extreme centres at
    -1 and 1; points past the outermost centres take the border value.
    """
    _, _, h, w = fmap.shape
    scale = uv.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (uv * scale - 1.0).unsqueeze(2)  # (B, K, 1, 2)
    out = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.squeeze(3).transpose(1, 2)


def cosine_logits(
    src_map: torch.Tensor,
    trg_map: torch.Tensor,
    src_uv: torch.Tensor,
    temperature: float = TEMPERATURE,
) -> torch.Tensor:
    """Cosine similarity of each source keypoint's feature with every target cell, / temperature.

    ``src_map`` (B, C, h, w), ``trg_map`` (B, C, h', w'), ``src_uv`` (B, K, 2) → (B, K, h', w').
    """
    b, c, h, w = trg_map.shape
    feats = F.normalize(sample_points(src_map, src_uv), dim=-1)
    cells = F.normalize(trg_map, dim=1).reshape(b, c, h * w)
    return (torch.bmm(feats, cells) / temperature).reshape(b, -1, h, w)


def gaussian_log_target(
    uv: torch.Tensor, grid_hw: tuple[int, int], sigma: float = SIGMA
) -> torch.Tensor:
    """Log of the Gaussian target: (B, K, 2) true locations → (B, K, h, w), normalised per point."""
    h, w = grid_hw
    ys = torch.arange(h, dtype=uv.dtype, device=uv.device)
    xs = torch.arange(w, dtype=uv.dtype, device=uv.device)
    d2 = (xs.view(1, 1, 1, w) - uv[..., 0, None, None]) ** 2 + (
        ys.view(1, 1, h, 1) - uv[..., 1, None, None]
    ) ** 2
    logits = (-d2 / (2 * sigma**2)).flatten(2)
    return torch.log_softmax(logits, dim=-1).reshape(*uv.shape[:2], h, w)


def gaussian_cross_entropy(
    logits: torch.Tensor,
    trg_uv: torch.Tensor,
    valid: torch.Tensor | None = None,
    sigma: float = SIGMA,
) -> torch.Tensor:
    """Cross-entropy between softmax(``logits``) (B, K, h, w) and the Gaussian at ``trg_uv`` (B, K, 2).

    The mean over each pair's valid keypoints (``valid`` (B, K) and on the grid), then over the
    pairs with at least one; a batch with none gives a zero that still carries a gradient.
    """
    b, k, h, w = logits.shape
    keep = inside(trg_uv, (h, w))
    if valid is not None:
        keep = keep & valid
    target = gaussian_log_target(trg_uv.float(), (h, w), sigma).exp().flatten(2)
    log_p = torch.log_softmax(logits.float().flatten(2), dim=-1)
    # target * log_p, with target == 0 cells contributing exactly 0 even where log_p is -inf
    per_point = -torch.where(target > 0, target * log_p, torch.zeros_like(log_p)).sum(-1)
    per_point = per_point.masked_fill(~keep, 0.0)
    n = keep.sum(1)
    has = n > 0
    per_pair = per_point.sum(1) / n.clamp(min=1)
    if not bool(has.any()):
        return logits.sum() * 0.0
    return per_pair[has].mean()


class PairLoss(NamedTuple):
    value: torch.Tensor  # the scalar loss
    logits: torch.Tensor  # (B, K, h, w) cosine similarities / temperature
    keep: torch.Tensor  # (B, K) the keypoints that counted


def correspondence_loss(
    src_map: torch.Tensor,
    trg_map: torch.Tensor,
    src_uv: torch.Tensor,
    trg_uv: torch.Tensor,
    valid: torch.Tensor | None = None,
    temperature: float = TEMPERATURE,
    sigma: float = SIGMA,
) -> PairLoss:
    """The loss of a batch of pairs: dense maps (B, C, h, w) and keypoints (B, K, 2) in grid units.

    ``valid`` (B, K) marks real keypoints (False for padding); keypoints off either grid are
    dropped as well. Computed in float32 whatever the maps' dtype.
    """
    src_map, trg_map = src_map.float(), trg_map.float()
    keep = inside(src_uv, (src_map.shape[-2], src_map.shape[-1]))
    keep = keep & inside(trg_uv, (trg_map.shape[-2], trg_map.shape[-1]))
    if valid is not None:
        keep = keep & valid
    logits = cosine_logits(src_map, trg_map, src_uv.float(), temperature)
    return PairLoss(gaussian_cross_entropy(logits, trg_uv, keep, sigma), logits, keep)


def choose_keypoints(n: int, max_keypoints: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of at most ``max_keypoints`` of ``n`` keypoints: all in order, or a seeded subset."""
    if n <= max_keypoints:
        return torch.arange(n)
    return torch.randperm(n, generator=generator)[:max_keypoints].sort().values
