"""Reading the common index and its images, for every stage that feeds images to a network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from matchbench.data import INDEX_COLUMNS
from matchbench.errors import MatchbenchError


def read_index(path: str | Path, split: str | None = None) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise MatchbenchError(f"{p}: index not found (run the prepare stage first)")
    df = pd.read_parquet(p)
    missing = [c for c in INDEX_COLUMNS if c not in df.columns]
    if missing:
        raise MatchbenchError(f"{p}: index lacks columns {missing} (expected {INDEX_COLUMNS})")
    if split is not None:
        df = df[df["split"] == split].reset_index(drop=True)
        if df.empty:
            raise MatchbenchError(f"{p}: no images in split {split!r}")
    return df


def load_rgb(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise MatchbenchError(f"{path}: not a readable image ({e})") from None


def normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def to_uint8_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size``, centre-crop to a square, return uint8 (3, size, size)."""
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        img = img.resize(
            (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC
        )
        w, h = img.size
        left, top = (w - size) // 2, (h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class IndexedImages(Dataset):
    """Images of an index as uint8 tensors (normalisation happens on the device, batched)."""

    def __init__(self, root: Path, paths: list[str], size: int) -> None:
        self.root, self.paths, self.size = root, paths, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_uint8_tensor(load_rgb(self.root / self.paths[i]), self.size)


def load_all(root: Path, paths: list[str], size: int) -> torch.Tensor:
    """All images as one uint8 tensor (N, 3, size, size): for small datasets trained on the CPU."""
    return torch.stack([IndexedImages(root, paths, size)[i] for i in range(len(paths))])
