"""Square images for dense maps, and the maps between image and feature-grid coordinates.

The dense maps themselves come from the encoder (``Encoder.dense``, ``Encoder.set_resolution``).

As in the unified benchmark (``Visual-AI/Semantic-Correspondence``), every image is resized to a
square ``resolution`` x ``resolution`` (no crop), so a keypoint of the original frame maps to
the grid by a per-axis scale. Coordinates are continuous with cell centres at integers: grid
cell ``j`` covers original pixels ``[j * W / w, (j + 1) * W / w)`` and its centre is
``(j + 0.5) * W / w``. Predictions are mapped back to the original frame, where PCK is computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from matchbench.errors import MatchbenchError
from matchbench.images import load_rgb
from matchbench.models import OptionError

# The config key of this track each encoder option comes from.
OPTION_KEYS = {
    "layer": "tracks.correspondence.features.layer",
    "unfreeze": "tracks.correspondence.train.unfreeze",
    "resolution": "tracks.correspondence.features.resolution",
}


@contextmanager
def config_keys() -> Iterator[None]:
    """Re-raise an encoder's :class:`OptionError` naming the config key the value came from."""
    try:
        yield
    except OptionError as e:
        message = str(e).removeprefix(e.option)
        raise MatchbenchError(f"{OPTION_KEYS.get(e.option, e.option)}{message}") from None


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
