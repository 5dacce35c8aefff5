"""The dense-map cache ``results/dense/<dataset>/<model>/{maps.npy, ids.txt, meta.json}``, and the
one way dense maps are computed for evaluation (cached or on the fly).

Only the images used by the pairs of the evaluated split are embedded, at
``tracks.correspondence.features.resolution`` (or the backbone's entry of
``features.resolutions``), block ``features.layer``, in float16 (the maps
are not normalised: matching normalises along C). ``maps.npy`` is written row by row through
``numpy.lib.format.open_memmap`` inside a temporary folder renamed into place at the end, so a
dataset's maps are never all in memory and an interrupted run leaves no cache that looks
complete. As in the unified benchmark's ``test.py`` (``pre_extract_features``), every image is
embedded once however many pairs use it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.lib.format import open_memmap
from torch.utils.data import DataLoader

from matchbench.config import backbone_spec, dataset_spec, split_model
from matchbench.errors import MatchbenchError
from matchbench.images import read_index
from matchbench.io import atomic_dir, read_json_object, write_json, write_text
from matchbench.layout import Layout
from matchbench.models import Encoder
from matchbench.models.backbones import load_model
from matchbench.progress import bar as progress_bar
from matchbench.runtime import loader_workers, prepare_batch, start
from matchbench.tracks.correspondence.dense import SquareImages, config_keys, resolution_for
from matchbench.tracks.correspondence.pairs import read_pairs_table

FILES = ("maps.npy", "ids.txt", "meta.json")


def track_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``tracks.correspondence`` of a resolved config, or an error saying it is missing."""
    track = cfg.get("tracks", {}).get("correspondence")
    if track is None:
        raise MatchbenchError(
            "config has no tracks.correspondence section (features, match, evaluate); add one "
            "to extract dense maps or evaluate correspondence"
        )
    return track


def model_resolution(cfg: dict[str, Any], model: str) -> int:
    """The square input side at which ``model``'s maps are computed (overrides included)."""
    track_config(cfg)
    return resolution_for(cfg, split_model(model)[0])


def evaluated_images(cfg: dict[str, Any], dataset: str) -> pd.DataFrame:
    """Rows of ``images.parquet`` used by the pairs of the evaluated split, in index order."""
    dataset_spec(cfg, dataset)
    split = track_config(cfg)["evaluate"]["split"]
    data_dir = Path(Layout.of(cfg).dataset(dataset))
    pairs = read_pairs_table(data_dir / "pairs.parquet", split)
    index = read_index(data_dir / "images.parquet")
    used = set(pairs["src"]) | set(pairs["trg"])
    missing = sorted(used - set(index["id"]))
    if missing:
        raise MatchbenchError(
            f"{data_dir / 'pairs.parquet'}: {len(missing)} image ids of split {split!r} are not in "
            f"images.parquet (first: {missing[:3]}); re-run the prepare stage"
        )
    return index[index["id"].isin(used)].reset_index(drop=True)


def open_backbone(
    cfg: dict[str, Any],
    model: str,
    dataset: str,
    device: torch.device,
    weights: Path | None = None,
) -> tuple[Encoder, Path | None]:
    """The model's backbone, weights loaded (by convention unless given), eval mode, on ``device``,
    taking its ``features.resolution``² inputs (``dense.resolution_for``)."""
    if weights is None:
        found = Layout.of(cfg).model_weights(cfg, model, dataset)
        weights = Path(found) if found else None
    backbone = load_model(cfg, model, dataset, weights)
    with config_keys():
        backbone.set_resolution(model_resolution(cfg, model))
    backbone.module.eval().to(device)
    if device.type == "cuda":
        backbone.module.to(memory_format=torch.channels_last)
    return backbone, weights


@torch.inference_mode()
def compute_maps(
    backbone: Encoder,
    batch: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype | None,
    layer: int,
) -> torch.Tensor:
    """Dense maps (B, C, h, w) of a uint8 batch (B, 3, R, R), float16, on ``device``.

    float16 is the cache's precision; evaluation without the cache rounds its maps the same
    way, so ``features.cache`` changes where maps come from, not what they are.
    """
    x = prepare_batch(batch, backbone, device)
    with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        maps = backbone.dense(x, layer)
    return maps.to(torch.float16)


def _check_out(out: Path) -> None:
    # The folder is replaced whole at the end: refuse to delete anything that is not ours.
    if out.exists():
        if not out.is_dir():
            raise MatchbenchError(f"{out}: exists and is not a folder (expected a dense-map cache)")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in FILES)
        if foreign:
            raise MatchbenchError(
                f"{out}: holds files that are not a dense-map cache ({foreign[:3]}); choose an "
                "empty folder for --out"
            )


def extract_dense(
    cfg: dict[str, Any],
    dataset: str,
    model: str,
    out: Path,
    weights: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the dense-map cache of ``model`` on the evaluated split of ``dataset`` into ``out``."""
    fcfg = track_config(cfg)["features"]
    rt = start(cfg)
    device, dtype = rt.device, rt.dtype
    rows = evaluated_images(cfg, dataset)
    ids = rows["id"].tolist()
    _check_out(out)
    backbone, weights = open_backbone(cfg, model, dataset, device, weights)

    data_dir = Path(Layout.of(cfg).dataset(dataset))
    loader = DataLoader(
        SquareImages(data_dir, rows["path"].tolist(), model_resolution(cfg, model)),
        batch_size=fcfg["batch_size"],
        shuffle=False,
        num_workers=loader_workers(cfg),
        pin_memory=device.type == "cuda",
    )
    bar = progress_bar(
        total=len(ids), desc=f"dense maps {model} on {dataset}", unit="img", disable=not progress
    )
    with atomic_dir(out) as tmp:
        maps: np.ndarray | None = None
        done = 0
        t0 = time.perf_counter()
        for batch in loader:
            m = compute_maps(backbone, batch, device, dtype, fcfg["layer"]).cpu().numpy()
            if maps is None:
                maps = open_memmap(
                    tmp / "maps.npy", mode="w+", dtype=np.float16, shape=(len(ids), *m.shape[1:])
                )
            maps[done : done + len(m)] = m
            done += len(m)
            bar.update(len(m))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        bar.close()
        if maps is None or done != len(ids):
            raise MatchbenchError(f"{data_dir}: embedded {done} of {len(ids)} images")
        shape = maps.shape
        maps.flush()
        del maps
        meta = {
            "dataset": dataset,
            "model": model,
            "backbone": backbone_spec(cfg, split_model(model)[0]),
            "weights": str(weights) if weights else None,
            "split": track_config(cfg)["evaluate"]["split"],
            "resolution": model_resolution(cfg, model),
            "layer": fcfg["layer"],
            "grid": [int(shape[3]), int(shape[2])],
            "dim": int(shape[1]),
            "count": len(ids),
            "dtype": "float16",
            "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
            "device": str(device),
        }
        write_text(tmp / "ids.txt", "\n".join(ids) + "\n")
        write_json(tmp / "meta.json", meta)
    # Speed goes to the log, never into meta.json: a rerun writes the same bytes.
    return meta | {
        "seconds": round(seconds, 3),
        "images_per_s": round(len(ids) / seconds, 1) if seconds else None,
    }


def run_extract_dense(
    cfg: dict[str, Any], dataset: str, model: str, out: Path, weights: Path | None
) -> int:
    """``matchbench extract --dense``: the cache, and one summary line."""
    meta = extract_dense(cfg, dataset, model, out, weights)
    w, h = meta["grid"]
    print(
        f"extract --dense: {meta['count']} maps, {meta['dim']}x{h}x{w}, "
        f"{meta['images_per_s']} images/s on {meta['device']} -> {out}"
    )
    return 0


def read_dense(folder: str | Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Maps (memory-mapped, float16 (N, C, h, w)), ids and meta of a dense-map cache."""
    d = Path(folder)
    absent = [f for f in FILES if not (d / f).is_file()]
    if absent:
        raise MatchbenchError(
            f"{d}: not a dense-map cache (missing {', '.join(absent)}); run "
            "`matchbench extract --dense` first"
        )
    try:
        maps = np.load(d / "maps.npy", mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise MatchbenchError(f"{d / 'maps.npy'}: not a readable .npy file ({e})") from None
    ids = (d / "ids.txt").read_text(encoding="utf-8").splitlines()
    meta = read_json_object(d / "meta.json", "dense-map meta")
    if maps.ndim != 4 or len(ids) != maps.shape[0]:
        raise MatchbenchError(
            f"{d}: {len(ids)} ids but maps of shape {maps.shape} (expected (N, C, h, w))"
        )
    return maps, ids, meta
