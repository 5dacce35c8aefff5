"""Batched SimCLR augmentations: shapes, ranges, determinism, and what each part does."""

from __future__ import annotations

import torch

from matchbench.tracks.ssl.augment import augment, colour, geometry


def batch(n: int = 8, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_views_keep_shape_and_range_and_reproduce_from_the_seed():
    x = batch()
    cfg = {
        "crop_scale": [0.3, 1.0],
        "rotation": 180,
        "color_jitter": 0.8,
        "hue": 0.5,
        "grayscale": 0.5,
    }
    a = augment(x, torch.Generator().manual_seed(0), cfg)
    b = augment(x, torch.Generator().manual_seed(0), cfg)
    c = augment(x, torch.Generator().manual_seed(1), cfg)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_colour_off_is_the_identity():
    x = batch()
    y = colour(x, torch.Generator().manual_seed(0), 0.0, 0.0, p=1.0, gray_p=0.0)
    assert torch.allclose(y, x, atol=1e-5)


def test_rotation_by_a_half_turn_of_a_symmetric_pattern():
    # Without cropping, a rotated centred square keeps its centre and (roughly) its area.
    x = torch.zeros(4, 3, 32, 32)
    x[:, :, 12:20, 12:20] = 1
    y = geometry(x, torch.Generator().manual_seed(0), (1.0, 1.0), 180.0)
    assert torch.allclose(y.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.25)
    assert y[:, :, 15:17, 15:17].min() > 0.9  # the centre stays inside the square


def test_hue_rotation_keeps_luma_and_grayscale_is_gray():
    x = batch()
    gray_w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    y = colour(x, torch.Generator().manual_seed(0), 0.0, 0.5, p=1.0, gray_p=0.0)
    luma_x, luma_y = (x * gray_w).sum(1), (y * gray_w).sum(1)
    clipped = (y <= 0) | (y >= 1)
    assert torch.allclose(luma_x[~clipped.any(1)], luma_y[~clipped.any(1)], atol=1e-4)
    assert not torch.allclose(x, y)
    g = colour(x, torch.Generator().manual_seed(0), 0.0, 0.0, p=0.0, gray_p=1.0)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
