"""The `extract` stage: global features into the feature store, in resumable shards.

Batched under ``torch.inference_mode``; on a GPU with bf16/fp16 autocast, channels-last and
pinned memory. Each shard of ``extract.shard_size`` images is written atomically to
``<out>/.shards/`` as it completes, so a killed run resumes at the first missing shard. Batches
never cross a shard boundary, so a resumed run computes exactly what an uninterrupted one does.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from matchbench.config import add_config_argument, backbone_spec, load_config, split_model
from matchbench.errors import MatchbenchError
from matchbench.images import IndexedImages, read_index
from matchbench.io import dumps_json, read_npy, write_json, write_npy, write_text
from matchbench.layout import Layout
from matchbench.models import create_backbone
from matchbench.progress import bar as progress_bar
from matchbench.runtime import embed, start
from matchbench.tracks import feature_kinds, load_object


def _fingerprint(
    model: str,
    weights: Path | None,
    spec: dict[str, Any],
    ids: list[str],
    shard_size: int,
    precision: str,
) -> str:
    h = hashlib.sha256()
    h.update(
        dumps_json(
            {"model": model, "spec": spec, "shard_size": shard_size, "precision": precision}
        ).encode()
    )
    h.update(("\n".join(ids)).encode())
    if weights is not None:
        st = weights.stat()
        h.update(f"{weights.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def extract(
    cfg: dict[str, Any],
    dataset: str,
    model: str,
    out: Path,
    weights: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    ecfg = cfg["extract"]
    rt = start(cfg)
    device, dtype = rt.device, rt.dtype
    backbone_name, _ = split_model(model)
    spec = backbone_spec(cfg, backbone_name)
    layout = Layout.of(cfg)
    if weights is None:
        found = layout.model_weights(cfg, model, dataset)
        weights = Path(found) if found else None

    data_dir = Path(layout.dataset(dataset))
    index = read_index(Path(layout.index(dataset)))
    ids = index["id"].tolist()
    backbone = create_backbone(spec, weights, name=backbone_name)
    backbone.module.eval().to(device)
    if device.type == "cuda":
        backbone.module.to(memory_format=torch.channels_last)

    images = IndexedImages(data_dir, index["path"].tolist(), backbone.image_size)
    shards_dir = out / ".shards"
    fp = _fingerprint(model, weights, spec, ids, ecfg["shard_size"], ecfg["precision"])
    fp_file = shards_dir / "fingerprint.txt"
    if shards_dir.exists() and (not fp_file.exists() or fp_file.read_text() != fp):
        shutil.rmtree(shards_dir)  # shards of another model/config: never mix them
    shards_dir.mkdir(parents=True, exist_ok=True)
    write_text(fp_file, fp)

    bounds = [
        (s, min(s + ecfg["shard_size"], len(ids))) for s in range(0, len(ids), ecfg["shard_size"])
    ]
    resumed = {k for k in range(len(bounds)) if (shards_dir / f"{k:05d}.npy").exists()}
    done = len(resumed)
    bar = progress_bar(
        total=len(ids), desc=f"extract {model} on {dataset}", unit="img", disable=not progress
    )
    bar.update(sum(bounds[k][1] - bounds[k][0] for k in resumed))
    computed, seconds = 0, 0.0
    for k, (s, e) in enumerate(bounds):
        shard = shards_dir / f"{k:05d}.npy"
        if k in resumed:
            continue
        loader = DataLoader(
            Subset(images, range(s, e)),
            batch_size=ecfg["batch_size"],
            shuffle=False,
            num_workers=ecfg["workers"],
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        t0 = time.perf_counter()
        feats = embed(backbone, loader, device, dtype)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        computed += e - s
        write_npy(shard, feats.astype(np.float16))
        bar.update(e - s)
    bar.close()

    feats = np.concatenate([read_npy(shards_dir / f"{k:05d}.npy") for k in range(len(bounds))])
    if feats.shape != (len(ids), backbone.dim):
        raise MatchbenchError(
            f"{shards_dir}: shards hold {feats.shape}, expected ({len(ids)}, {backbone.dim})"
        )
    meta = {
        "dataset": dataset,
        "model": model,
        "backbone": spec,
        "weights": str(weights) if weights else None,
        "image_size": backbone.image_size,
        "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
        "dim": backbone.dim,
        "count": len(ids),
        "dtype": "float16",
        "device": str(device),
    }
    write_npy(out / "features.npy", feats)
    write_text(out / "ids.txt", "\n".join(ids) + "\n")
    write_json(out / "meta.json", meta)
    shutil.rmtree(shards_dir)
    # Throughput goes to the log, never into meta.json (a rerun writes the same bytes); it is
    # measured over the images computed in this run (resumed shards excluded).
    speed = {
        "images_computed": computed,
        "seconds": round(seconds, 3),
        "images_per_s": round(computed / seconds, 1) if seconds else None,
        "resumed_shards": done,
    }
    return meta | speed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--dataset", required=True)
    parser.add_argument(
        "--model", required=True, help="backbone name, or <backbone>+<recipe> for a fine-tuned one"
    )
    parser.add_argument(
        "--weights", type=Path, help="weights file (default: by convention, see docs/contracts.md)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="feature store folder (default: <results>/features/<dataset>/<model>; with "
        "--dense: <results>/dense/<dataset>/<model>)",
    )
    parser.add_argument(
        "--dense",
        action="store_true",
        help="write a track's dense-map cache (dense feature maps of the split it evaluates) "
        "instead of global features",
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    layout = Layout.of(cfg)
    if args.dense:
        kinds = feature_kinds()
        out = args.out or Path(layout.dense(args.dataset, args.model))
        return int(
            load_object(kinds["dense"])(cfg, args.dataset, args.model, out, args.weights) or 0
        )
    out = args.out or Path(layout.features(args.dataset, args.model))
    info = extract(cfg, args.dataset, args.model, out, args.weights)
    speed = f"{info['images_per_s']:.1f} images/s" if info["images_per_s"] else "all shards resumed"
    resumed = f", {info['resumed_shards']} shards resumed" if info["resumed_shards"] else ""
    print(
        f"extract: {info['count']} images, dim {info['dim']}, {speed}{resumed} on "
        f"{info['device']} -> {out}"
    )
    return 0
