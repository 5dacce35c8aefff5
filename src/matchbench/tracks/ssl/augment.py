"""SimCLR-style augmentations for a whole batch at once, on the batch's device.

One affine warp per image does random-resized-crop, flip and rotation together
(``affine_grid`` + ``grid_sample``); colour jitter is per-image arithmetic (brightness,
contrast, saturation, and hue as a rotation of the chroma plane in YIQ space), then random
grayscale. Per-image torchvision transforms cost more than the forward and backward pass of
a small network on the CPU; this costs a few matrix products. Every draw comes from the given
generator, so a seeded run reproduces exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

_GRAY = torch.tensor([0.299, 0.587, 0.114])
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _uniform(n: int, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def geometry(
    x: torch.Tensor, gen: torch.Generator, crop_scale: tuple[float, float], rotation: float
) -> torch.Tensor:
    """Random resized crop (area fraction in ``crop_scale``, aspect 3/4..4/3), h-flip, rotation."""
    b = x.shape[0]
    area = _uniform(b, crop_scale[0], crop_scale[1], gen)
    log_ratio = _uniform(b, math.log(3 / 4), math.log(4 / 3), gen)
    ratio = torch.exp(log_ratio)
    sx = torch.sqrt(area * ratio).clamp(max=1.0)  # crop width / image width
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - sx) * _uniform(b, -1, 1, gen)  # keep the crop inside the image
    ty = (1 - sy) * _uniform(b, -1, 1, gen)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    angle = _uniform(b, -rotation, rotation, gen) * math.pi / 180
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [
            torch.stack([cos * sx * flip, -sin * sy, tx], 1),
            torch.stack([sin * sx * flip, cos * sy, ty], 1),
        ],
        1,
    ).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def colour(
    x: torch.Tensor, gen: torch.Generator, strength: float, hue: float, p: float, gray_p: float
) -> torch.Tensor:
    """Colour jitter with probability ``p`` (strength for brightness/contrast/saturation), then grayscale."""
    b = x.shape[0]
    dev = x.device
    on = (torch.rand(b, generator=gen) < p).to(dev).view(b, 1, 1, 1)
    bri = _uniform(b, 1 - strength, 1 + strength, gen).to(dev).view(b, 1, 1, 1)
    con = _uniform(b, 1 - strength, 1 + strength, gen).to(dev).view(b, 1, 1, 1)
    sat = _uniform(b, 1 - strength, 1 + strength, gen).to(dev).view(b, 1, 1, 1)
    hue_angle = (_uniform(b, -hue, hue, gen) * 2 * math.pi).to(dev)
    gray_w = _GRAY.to(dev).view(1, 3, 1, 1)

    y = (x * bri).clamp(0, 1)
    mean = (y * gray_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    y = ((y - mean) * con + mean).clamp(0, 1)
    g = (y * gray_w).sum(1, keepdim=True)
    y = ((y - g) * sat + g).clamp(0, 1)
    # Hue: rotate (I, Q) by the angle; Y (luma) is unchanged.
    cos, sin = torch.cos(hue_angle), torch.sin(hue_angle)
    rot = torch.zeros(b, 3, 3, device=dev)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = _YIQ2RGB.to(dev) @ rot @ _RGB2YIQ.to(dev)  # (b, 3, 3)
    y = torch.einsum("bij,bjhw->bihw", m, y).clamp(0, 1)
    x = torch.where(on, y, x)

    gray = (torch.rand(b, generator=gen) < gray_p).to(dev).view(b, 1, 1, 1)
    return torch.where(gray, (x * gray_w).sum(1, keepdim=True).expand_as(x), x)


def augment(x: torch.Tensor, gen: torch.Generator, tcfg: dict[str, Any]) -> torch.Tensor:
    """One SimCLR view of every image of ``x`` (float in [0, 1], shape (B, 3, H, W))."""
    x = geometry(x, gen, tuple(tcfg["crop_scale"]), float(tcfg["rotation"]))
    return colour(
        x, gen, float(tcfg["color_jitter"]), float(tcfg["hue"]), 0.8, float(tcfg["grayscale"])
    )
