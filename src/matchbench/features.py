"""The feature store: ``results/features/<dataset>/<model>/`` (features.npy, ids.txt, meta.json).

Written by the ``extract`` stage; read by mining, evaluation and retrieval alike (extract once,
use everywhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from matchbench.errors import MatchbenchError
from matchbench.io import read_json, read_npy


def read_features(folder: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Features (float32, N×D), ids and meta of a feature store folder."""
    d = Path(folder)
    feats = read_npy(d / "features.npy").astype(np.float32)
    ids = (d / "ids.txt").read_text().splitlines()
    meta = read_json(d / "meta.json")
    if len(ids) != feats.shape[0]:
        raise MatchbenchError(f"{d}: {len(ids)} ids but {feats.shape[0]} feature rows")
    return feats, ids, meta
