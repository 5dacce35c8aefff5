"""Keypoint transfer between two dense feature maps: the four matching variants of the unified
benchmark (``Visual-AI/Semantic-Correspondence`` ``utils/matching.py``, called by
``utils/evaluator.py`` ``PCKEvaluator.evaluate_feature_map``).

Coordinates are continuous feature-grid coordinates, (x, y) with cell centres at integers
(``matchbench.tracks.correspondence.dense``): cell ``(j, i)`` is at ``(j, i)``, as the official
``create_grid`` and ``grid_sample(..., align_corners=True)`` place them. Maps are (C, h, w);
all keypoints of a pair are matched in one batch. As in the official code, the source feature
of a keypoint is sampled bilinearly from the raw map and then L2-normalised along C, the
target map is L2-normalised per cell (``x / (||x|| + 1e-6)``, the official
``L2normalization``), and scores are cosine similarities.

One difference of frame, none of method: the official evaluator scales image keypoints to the
grid with ``align_corners`` (pixel 0 and W-1 onto cell 0 and w-1), this project with cell
centres (``dense.to_grid``), so a keypoint near the border may fall up to half a cell outside
the grid. Query coordinates are clamped into ``[0, w-1] x [0, h-1]`` before sampling, which is
where the official code's queries always lie.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from matchbench.errors import MatchbenchError

VARIANTS = ("nn", "bilinear", "softmax", "kernel_softmax")


def l2_normalise(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x / (||x|| + 1e-6)`` along ``dim`` (the official ``L2normalization``)."""
    return x / (x.norm(dim=dim, keepdim=True) + 1e-6)


def cell_grid(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h * w, 2) float32 (x, y) coordinates of every cell, row-major (the official ``create_grid``)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32, device=device),
        torch.arange(w, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)


def _clamp(uv: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return torch.stack([uv[:, 0].clamp(0, w - 1), uv[:, 1].clamp(0, h - 1)], dim=1)


def _corners(uv: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, ...]:
    """Integer corners (x0, x1, y0, y1) of clamped queries and the fractional offsets (fx, fy).

    ``x0`` stops at ``w - 2`` so that ``x1 = x0 + 1`` stays on the grid; a query on the last
    column then puts all its weight on ``x1`` (the official code clamps to ``w - 1 - 1e-5``).
    """
    x0 = uv[:, 0].floor().clamp(0, max(w - 2, 0))
    y0 = uv[:, 1].floor().clamp(0, max(h - 2, 0))
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    fx, fy = (uv[:, 0] - x0).clamp(0, 1), (uv[:, 1] - y0).clamp(0, 1)
    return x0, x1, y0, y1, fx, fy


def sample(feature_map: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of a (C, h, w) map at (K, 2) grid coordinates (clamped) → (K, C).

    The official ``extract_feature`` (``grid_sample``, ``align_corners=True``) inside the grid.
    """
    _, h, w = feature_map.shape
    x0, x1, y0, y1, fx, fy = _corners(_clamp(uv, h, w), h, w)
    flat = feature_map.reshape(feature_map.shape[0], -1)

    def at(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return flat[:, (y * w + x).long()].T  # (K, C)

    fx, fy = fx[:, None], fy[:, None]
    return (
        at(x0, y0) * (1 - fx) * (1 - fy)
        + at(x1, y0) * fx * (1 - fy)
        + at(x0, y1) * (1 - fx) * fy
        + at(x1, y1) * fx * fy
    )


def cosine_scores(query: torch.Tensor, target_cells: torch.Tensor) -> torch.Tensor:
    """(K, C) raw query features against (C, h*w) L2-normalised target cells → (K, h*w) cosines."""
    return l2_normalise(query, dim=1) @ target_cells


def argmax_cells(scores: torch.Tensor, w: int) -> torch.Tensor:
    """(K, 2) (x, y) of each row's best cell; ties go to the first cell in row-major order."""
    idx = scores.argmax(dim=1)
    return torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=1).float()


def soft_argmax(scores: torch.Tensor, grid: torch.Tensor, temperature: float) -> torch.Tensor:
    """Expected (x, y) under ``softmax(scores / temperature)`` over the cells (``grid`` (h*w, 2)).

    The official ``softmax_with_temperature`` followed by the weighted sum of ``create_grid``.
    """
    return torch.softmax(scores / temperature, dim=1) @ grid


def gaussian_window(scores: torch.Tensor, h: int, w: int, sigma: float) -> torch.Tensor:
    """Scores multiplied by a Gaussian of ``sigma`` cells centred on each row's argmax cell.

    The official ``apply_gaussian_kernel``: the window multiplies the cosine scores themselves
    (before the temperature and the softmax), so a far cell's score is pulled towards 0, not
    removed.
    """
    peak = argmax_cells(scores, w)  # (K, 2)
    grid = cell_grid(h, w, scores.device)  # (h*w, 2)
    d2 = ((grid[None, :, :] - peak[:, None, :]) ** 2).sum(dim=-1)
    return scores * torch.exp(-d2 / (2 * sigma**2))


def transfer_variants(
    src_map: torch.Tensor,
    trg_map: torch.Tensor,
    src_uv: torch.Tensor,
    variants: Iterable[str] = VARIANTS,
    temperature: float = 0.04,
    window_sigma: float = 7.0,
) -> dict[str, torch.Tensor]:
    """Every requested variant's transfer of ``src_uv`` (K, 2), sharing one score computation.

    ``src_map`` (C, h1, w1) and ``trg_map`` (C, h2, w2) are raw (not normalised) feature maps;
    they and the keypoints are cast to float32. Returns ``{variant: (K, 2) float32}`` in target
    grid coordinates (x, y), on the maps' device:

    - ``nn``: the target cell of highest cosine with the bilinearly sampled source feature
      (official ``nn_get_matches``).
    - ``bilinear``: the four integer neighbours of the query are each ``nn``-matched and their
      matches averaged with the query's bilinear weights (official ``bilinear_get_matches``).
    - ``softmax``: soft-argmax of ``cosine / temperature`` over the whole target map (official
      ``softargmax_get_matches``).
    - ``kernel_softmax``: the cosine map is multiplied by a Gaussian window of ``window_sigma``
      cells centred on its argmax, then soft-argmax with ``temperature`` (official
      ``kernel_softargmax_get_matches``: window first, then temperature and softmax).
    """
    wanted = list(variants)
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise MatchbenchError(
            f"match: unknown variants {unknown}; expected some of {list(VARIANTS)}"
        )
    if src_map.ndim != 3 or trg_map.ndim != 3 or src_map.shape[0] != trg_map.shape[0]:
        raise MatchbenchError(
            f"match: expected (C, h, w) maps with equal C, got {tuple(src_map.shape)} and "
            f"{tuple(trg_map.shape)}"
        )
    if temperature <= 0 or window_sigma <= 0:
        raise MatchbenchError(
            f"match: temperature and window_sigma must be positive, got {temperature}, {window_sigma}"
        )
    src = src_map.float()
    c, h1, w1 = src.shape
    _, h2, w2 = trg_map.shape
    uv = src_uv.to(device=src.device, dtype=torch.float32).reshape(-1, 2)
    if uv.shape[0] == 0:
        return {v: torch.zeros((0, 2), device=src.device) for v in wanted}
    cells = l2_normalise(trg_map.float().reshape(c, h2 * w2), dim=0)
    grid = cell_grid(h2, w2, src.device)
    out: dict[str, torch.Tensor] = {}

    if {"nn", "softmax", "kernel_softmax"} & set(wanted):
        scores = cosine_scores(sample(src, uv), cells)
        if "nn" in wanted:
            out["nn"] = argmax_cells(scores, w2)
        if "softmax" in wanted:
            out["softmax"] = soft_argmax(scores, grid, temperature)
        if "kernel_softmax" in wanted:
            windowed = gaussian_window(scores, h2, w2, window_sigma)
            out["kernel_softmax"] = soft_argmax(windowed, grid, temperature)

    if "bilinear" in wanted:
        x0, x1, y0, y1, fx, fy = _corners(_clamp(uv, h1, w1), h1, w1)
        corners = torch.cat(
            [
                torch.stack(xy, dim=1)
                for xy in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))  # the four neighbours
            ]
        )
        weights = torch.cat([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
        matches = argmax_cells(cosine_scores(sample(src, corners), cells), w2)
        k = uv.shape[0]
        out["bilinear"] = (matches * weights[:, None]).reshape(4, k, 2).sum(dim=0)

    return {v: out[v] for v in wanted}


def transfer(
    src_map: torch.Tensor,
    trg_map: torch.Tensor,
    src_uv: torch.Tensor,
    variant: str = "kernel_softmax",
    temperature: float = 0.04,
    window_sigma: float = 7.0,
) -> torch.Tensor:
    """Transfer source keypoints (K, 2) to target grid coordinates with one ``variant``.

    See :func:`transfer_variants` for the maps, the coordinates and the variants.
    """
    return transfer_variants(src_map, trg_map, src_uv, [variant], temperature, window_sigma)[
        variant
    ]
