"""The `extract` stage: global features into the feature store, in resumable shards.

Batched under ``torch.inference_mode``; on a GPU with bf16/fp16 autocast, channels-last and
pinned memory. Each shard of ``extract.shard_size`` images is written atomically to
``<out>/.shards/`` as it completes, so a killed run resumes at the first missing shard. Batches
never cross a shard boundary, so a resumed run computes exactly what an uninterrupted one does.

One DataLoader feeds every missing shard: ``extract.workers`` processes
(:func:`matchbench.runtime.loader_workers`) decode images while the network runs, started once
per run, not once per shard; the batches are fixed in advance (:func:`shard_batches`), so the
features are the same bytes whatever the number of workers.

The images come from the dataset's ``images.parquet`` by default; a caller with images
elsewhere (inside tar shards, say) passes its own ``Dataset`` and ids to :func:`extract`.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from matchbench.config import add_config_argument, backbone_spec, load_config, split_model
from matchbench.errors import MatchbenchError
from matchbench.images import IndexedImages, read_index
from matchbench.io import dumps_json, read_npy, write_json, write_npy, write_text
from matchbench.layout import Layout
from matchbench.models import create_backbone
from matchbench.progress import bar as progress_bar
from matchbench.runtime import embed, loader_workers, start
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


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, end) of each shard of ``n`` images."""
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def shard_batches(bounds: Sequence[tuple[int, int]], batch_size: int) -> list[list[int]]:
    """The batches (image positions) of the shards ``bounds``, in order, none crossing a shard
    boundary: a shard's features are the same whichever shards a run computes."""
    return [
        list(range(b, min(b + batch_size, e))) for s, e in bounds for b in range(s, e, batch_size)
    ]


def _checked(batches: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """``batches``, refused unless uint8 (B, 3, size, size): a caller's own image source must
    give what the backbone expects."""
    for batch in batches:
        if batch.dtype != torch.uint8 or tuple(batch.shape[1:]) != (3, size, size):
            raise MatchbenchError(
                f"extract: images must be uint8 tensors (3, {size}, {size}) for this backbone; "
                f"got a batch of {batch.dtype} {tuple(batch.shape)}"
            )
        yield batch


def extract(
    cfg: dict[str, Any],
    dataset: str,
    model: str,
    out: Path,
    weights: Path | None = None,
    progress: bool = True,
    *,
    images: Dataset[torch.Tensor] | Callable[[int], Dataset[torch.Tensor]] | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Global features of ``model`` into the feature store ``out``; returns meta.json's fields
    and the run's throughput.

    The images are the dataset's ``images.parquet`` rows, unless ``images`` and ``ids`` are
    given (both or neither): a ``Dataset`` whose item ``i`` is the uint8 tensor (3, S, S) of
    image ``ids[i]``, S the backbone's ``image_size``. With ``extract.workers`` > 0 it is sent
    to worker processes, so it must be picklable (and cheap to pickle: paths, not pixels).
    ``dataset`` still names the dataset in meta.json and for a fine-tuned model's checkpoint.
    ``images`` may also be a function of S returning that ``Dataset`` (S is known once the
    backbone is built: a distractor shard's reader, ``extract --shard``).
    """
    if (images is None) != (ids is None):
        raise MatchbenchError("extract: give both images and ids, or neither")
    ecfg = cfg["extract"]
    rt = start(cfg)
    device, dtype = rt.device, rt.dtype
    backbone_name, _ = split_model(model)
    spec = backbone_spec(cfg, backbone_name)
    layout = Layout.of(cfg)
    if weights is None:
        found = layout.model_weights(cfg, model, dataset)
        weights = Path(found) if found else None

    if ids is None:
        index = read_index(Path(layout.index(dataset)))
        ids = index["id"].tolist()
    backbone = create_backbone(spec, weights, name=backbone_name)
    if images is not None:
        ids = list(ids)
        if not hasattr(images, "__getitem__"):
            images = images(backbone.image_size)  # type: ignore[operator]
        n = len(images)  # type: ignore[arg-type]  # a map-style Dataset with a length
        if n != len(ids):
            raise MatchbenchError(f"extract: {n} images but {len(ids)} ids")
    else:
        data_dir = Path(layout.dataset(dataset))
        images = IndexedImages(data_dir, index["path"].tolist(), backbone.image_size)
    shards_dir = out / ".shards"
    fp = _fingerprint(model, weights, spec, ids, ecfg["shard_size"], ecfg["precision"])
    fp_file = shards_dir / "fingerprint.txt"
    if shards_dir.exists() and (not fp_file.exists() or fp_file.read_text() != fp):
        shutil.rmtree(shards_dir)  # shards of another model/config: never mix them
    shards_dir.mkdir(parents=True, exist_ok=True)
    write_text(fp_file, fp)

    bounds = shard_bounds(len(ids), ecfg["shard_size"])
    resumed = {k for k in range(len(bounds)) if (shards_dir / f"{k:05d}.npy").exists()}
    missing = [k for k in range(len(bounds)) if k not in resumed]
    bar = progress_bar(
        total=len(ids), desc=f"extract {model} on {dataset}", unit="img", disable=not progress
    )
    bar.update(sum(bounds[k][1] - bounds[k][0] for k in resumed))
    computed, seconds = 0, 0.0
    if missing:
        workers = loader_workers(cfg)
        bs = ecfg["batch_size"]
        # One loader, one pass, over the missing shards only: its workers start once and keep
        # decoding ahead across shard boundaries while the network runs (a single pass, so
        # `persistent_workers` would change nothing). No `shuffle`: the batches are fixed.
        loader = DataLoader(
            images,
            batch_sampler=shard_batches([bounds[k] for k in missing], bs),
            num_workers=workers,
            pin_memory=device.type == "cuda",
        )
        # The workers are forked here (in a CLI run, before this process starts CUDA) and
        # decode while the CUDA context starts (in `iter`, for pinned memory) and the model moves.
        batches = _checked(iter(loader), backbone.image_size)
        backbone.module.eval().to(device)
        if device.type == "cuda":
            backbone.module.to(memory_format=torch.channels_last)
        t0 = time.perf_counter()
        for k in missing:
            s, e = bounds[k]
            shard = embed(backbone, itertools.islice(batches, -(-(e - s) // bs)), device, dtype)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t0
            computed += e - s
            write_npy(shards_dir / f"{k:05d}.npy", shard.astype(np.float16))
            bar.update(e - s)
            t0 = time.perf_counter()
        del batches, loader  # the workers end here, not when the garbage collector gets to them
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
        "resumed_shards": len(resumed),
    }
    return meta | speed


def shard_source(
    cfg: dict[str, Any], dataset: str, shard: str
) -> tuple[Callable[[int], Dataset[torch.Tensor]], list[str]]:
    """A distractor shard's images (a function of the image size) and ids, by its family."""
    from matchbench.config import dataset_spec
    from matchbench.data import get_family, resolve_options

    spec = dataset_spec(cfg, dataset)
    family = get_family(spec["family"])
    if not hasattr(family, "shard_source"):
        raise MatchbenchError(
            f"--shard: dataset {dataset!r} (family {spec['family']}) has no distractor shards"
        )
    path = Path(Layout.of(cfg).shard(dataset, shard))
    return family.shard_source(path, resolve_options(family, spec["options"]), shard)


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
        "--shard",
        help="extract one distractor shard of a sharded dataset (ILIAS), read from its tar "
        "(<data>/raw/<dataset>.shards/<shard>.tar), into "
        "<results>/features/<dataset>/<model>/distractors/<shard>/",
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
    images = ids = None
    if args.shard:
        out = args.out or Path(layout.distractors(args.dataset, args.model, args.shard))
        images, ids = shard_source(cfg, args.dataset, args.shard)
    else:
        out = args.out or Path(layout.features(args.dataset, args.model))
    info = extract(cfg, args.dataset, args.model, out, args.weights, images=images, ids=ids)
    speed = f"{info['images_per_s']:.1f} images/s" if info["images_per_s"] else "all shards resumed"
    resumed = f", {info['resumed_shards']} shards resumed" if info["resumed_shards"] else ""
    print(
        f"extract: {info['count']} images, dim {info['dim']}, {speed}{resumed} on "
        f"{info['device']} -> {out}"
    )
    return 0
