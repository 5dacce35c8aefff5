"""Dense feature maps of any backbone, and the maps between image and feature-grid coordinates.

As in the unified benchmark (``Visual-AI/Semantic-Correspondence``), every image is resized to a
square ``resolution`` x ``resolution`` (no crop), so a keypoint of the original frame maps to
the grid by a per-axis scale. Coordinates are continuous with cell centres at integers: grid
cell ``j`` covers original pixels ``[j * W / w, (j + 1) * W / w)`` and its centre is
``(j + 0.5) * W / w``. Predictions are mapped back to the original frame, where PCK is computed.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from matchbench.errors import MatchbenchError
from matchbench.images import load_rgb
from matchbench.models import Backbone


def resolution_for(cfg: dict, backbone: str, *, train: bool = False) -> int:
    """The square input side of ``backbone`` in the correspondence track (config, with overrides)."""
    track = cfg["tracks"]["correspondence"]
    if train and track["train"]["resolution"] is not None:
        return int(track["train"]["resolution"])
    features = track["features"]
    return int(features["resolutions"].get(backbone, features["resolution"]))


def to_grid(xy: np.ndarray, image_wh: tuple[float, float], grid_wh: tuple[int, int]) -> np.ndarray:
    """Original-frame pixels (..., 2) → continuous feature-grid coordinates (cell centres at ints)."""
    scale = np.asarray(grid_wh, dtype=np.float64) / np.asarray(image_wh, dtype=np.float64)
    return np.asarray(xy, dtype=np.float64) * scale - 0.5


def from_grid(
    uv: np.ndarray, image_wh: tuple[float, float], grid_wh: tuple[int, int]
) -> np.ndarray:
    """Inverse of :func:`to_grid`."""
    scale = np.asarray(image_wh, dtype=np.float64) / np.asarray(grid_wh, dtype=np.float64)
    return (np.asarray(uv, dtype=np.float64) + 0.5) * scale


def load_square(path: Path, resolution: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image resized (not cropped) to ``resolution``², uint8 (3, R, R), and its original (w, h)."""
    img = load_rgb(path)
    size = img.size
    if size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1), size


class SquareImages(Dataset):
    """Images by path as uint8 (3, R, R) tensors (normalisation happens batched on the device)."""

    def __init__(self, root: Path, paths: list[str], resolution: int) -> None:
        self.root, self.paths, self.resolution = root, paths, resolution

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return load_square(self.root / self.paths[i], self.resolution)[0]


def set_resolution(backbone: Backbone, resolution: int) -> None:
    """Let a ViT take ``resolution``² inputs (its position embeddings are resampled, as timm does)."""
    module = backbone.module
    if hasattr(module, "patch_embed") and hasattr(module, "set_input_size"):
        grid = getattr(module.patch_embed, "img_size", None)
        if grid is not None and tuple(grid) != (resolution, resolution):
            module.set_input_size(img_size=(resolution, resolution))
        return
    visual = getattr(module, "visual", None)
    native = getattr(visual, "image_size", None)
    if native is not None and tuple(native) != (resolution, resolution):
        raise MatchbenchError(
            f"open_clip visual towers run at their native size {tuple(native)}; set "
            f"tracks.correspondence.features.resolution to {native[0]} for this backbone"
        )


def dense_features(backbone: Backbone, x: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """The output of block ``layer`` (-1 = last, after the final norm for ViTs) as (B, C, h, w).

    ``x`` is a normalised batch. Prefix (class, register) tokens are dropped. Not L2-normalised:
    matching and the loss normalise along C.
    """
    module = backbone.module
    visual = getattr(module, "visual", None)
    if visual is not None and hasattr(visual, "forward_intermediates"):  # open_clip
        out = visual.forward_intermediates(
            x, indices=[layer], intermediates_only=True, normalize_intermediates=True
        )
        return out["image_intermediates"][0]
    if not hasattr(module, "forward_intermediates"):
        raise MatchbenchError(
            f"{type(module).__name__} has no forward_intermediates: it cannot give a dense map"
        )
    kwargs = {"indices": [layer], "intermediates_only": True}
    params = inspect.signature(module.forward_intermediates).parameters
    if "norm" in params:
        kwargs["norm"] = True
    if "output_fmt" in params:
        kwargs["output_fmt"] = "NCHW"
    return module.forward_intermediates(x, **kwargs)[0]
