"""Extraction throughput: the `extract` stage against a bare timm forward loop, side by side.

On a generated mini-world (PNG files on disk), with one timm model, batch size, device and
precision for every row:

- ``bare``: the model's forward passes over images already decoded and normalised in one tensor
  on the device, model warm. Nothing else: the upper bound.
- ``embed``: the stage's data path, ``matchbench.stages.extract.embed`` over the stage's DataLoader of
  ``IndexedImages`` (PNG decode, resize/crop, uint8 batches, normalisation on the device, L2
  normalisation, copy back), same warm model. Its gap to ``bare`` is the data path's cost.
- ``extract``: the whole stage, ``matchbench.stages.extract.extract`` (new model per call, so a cold
  first batch; index read; shards and the feature store written); images/s over the call.
- ``decode``: the stage's DataLoader alone, no model: what reading the PNGs costs.

Each row is timed in wall-clock and in this process's CPU time (``time.process_time``: with
``--workers 0`` all the work is in this process). Repeats run the rows back to back; on a shared
machine, other processes' load moves wall-clock figures a lot and CPU-time figures much less,
and the ratios (``embed / bare``, ``extract / bare``) are the figures to read.

    python benchmarks/extract_throughput.py --device cpu --model test_resnet \\
        --image-size 64 --batch-size 128 --images 512 --repeats 7
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from matchbench.config import resolve
from matchbench.data import get_family
from matchbench.data.synth import CATEGORIES
from matchbench.images import IndexedImages, normalise, read_index
from matchbench.models import create_backbone
from matchbench.runtime import autocast_dtype, embed, resolve_device, set_threads
from matchbench.stages.extract import extract

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
ROWS = {
    "bare": "bare timm forward, pre-loaded tensor",
    "embed": "stage data path + forward (embed)",
    "extract": "whole extract() call",
    "decode": "DataLoader PNG decode only",
}


def make_config(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    per_class = math.ceil(args.images / len(CATEGORIES))
    return resolve(
        {
            "run": "bench",
            "seed": 0,
            "device": args.device,
            "threads": args.threads,
            "paths": {k: str(root / k) for k in ("data", "results", "reports")},
            "datasets": {
                "bench": {
                    "family": "miniworld",
                    "options": {
                        "seed": 0,
                        "image_size": args.image_size,
                        "per_class": {"train": per_class, "val": 0, "test": 0},
                        "instances_per_class": 8,
                    },
                }
            },
            "backbones": {
                "bench": {
                    "source": "timm",
                    "arch": args.model,
                    "image_size": args.image_size,
                    "mean": MEAN,
                    "std": STD,
                }
            },
            "extract": {
                "batch_size": args.batch_size,
                "workers": args.workers,
                "shard_size": per_class * len(CATEGORIES),  # one shard: no resume bookkeeping
                "precision": args.precision,
            },
        },
        "benchmark",
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of ``fn()``."""
    sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


@torch.inference_mode()
def bare_loop(model: torch.nn.Module, x: torch.Tensor, bs: int, dtype: torch.dtype | None) -> None:
    for s in range(0, len(x), bs):
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            f = model(x[s : s + bs])
        torch.nn.functional.normalize(f.float(), dim=1).cpu()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--model", default="test_resnet", help="timm architecture (random weights)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (extract.workers)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads, every row")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="matchbench-bench-") as tmp:
        root = Path(tmp)
        cfg = make_config(root, args)
        device = resolve_device(cfg["device"])
        dtype = autocast_dtype(cfg["extract"]["precision"], device)
        set_threads(cfg["threads"])

        t0 = time.perf_counter()
        family, spec = get_family("miniworld"), cfg["datasets"]["bench"]
        with contextlib.redirect_stderr(io.StringIO()):  # the generator's progress bar
            family.download(root / "data" / "raw" / "bench", spec["options"])
        family.prepare(root / "data" / "raw" / "bench", root / "data" / "bench", spec["options"])
        index = read_index(root / "data" / "bench" / "images.parquet")
        n = len(index)
        print(f"generated {n} mini-world images of {args.image_size} px "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)  # fmt: skip

        backbone = create_backbone(cfg["backbones"]["bench"])
        backbone.module.eval().to(device)
        if device.type == "cuda":
            backbone.module.to(memory_format=torch.channels_last)
        images = IndexedImages(root / "data" / "bench", index["path"].tolist(), backbone.image_size)

        def loader() -> DataLoader:  # as extract builds it
            return DataLoader(images, batch_size=args.batch_size, shuffle=False,
                              num_workers=args.workers, pin_memory=device.type == "cuda")  # fmt: skip

        # The bare loop's input: every image decoded once, normalised, on the device.
        x = torch.stack([images[i] for i in range(n)]).to(device).float().div_(255)
        x = normalise(x, backbone.mean, backbone.std)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)

        runs: dict[str, Callable[[int], Any]] = {
            "bare": lambda r: bare_loop(backbone.module, x, args.batch_size, dtype),
            "embed": lambda r: embed(backbone, loader(), device, dtype),
            "extract": lambda r: extract(
                cfg, "bench", "bench", root / "f" / str(r), progress=False
            ),
            "decode": lambda r: sum(len(b) for b in loader()),
        }
        bare_loop(backbone.module, x[: args.batch_size], args.batch_size, dtype)  # warm-up
        wall: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.repeats):
            for name, fn in runs.items():
                w, c = timed(lambda fn=fn, r=r: fn(r), device)
                wall[name].append(n / w)
                cpu[name].append(n / c)
            print(f"repeat {r + 1}/{args.repeats}: "
                  + ", ".join(f"{k} {wall[k][-1]:.0f}" for k in runs) + " images/s (wall)",
                  file=sys.stderr)  # fmt: skip

    def paired(num: str, den: str, table: dict[str, list[float]]) -> float:
        return statistics.median(a / b for a, b in zip(table[num], table[den], strict=True))

    ratios = {
        f"{num}/bare": {"wall": paired(num, "bare", wall), "cpu": paired(num, "bare", cpu)}
        for num in ("embed", "extract")
    }
    result = {
        "command": " ".join(
            ["python", "benchmarks/extract_throughput.py", *(argv or sys.argv[1:])]
        ),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),  # fmt: skip
        "torch": torch.__version__,
        "threads": args.threads,
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "images": n,
        "workers": args.workers,
        "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
        "repeats": args.repeats,
        "images_per_s_wall": wall,
        "images_per_cpu_s": cpu,
        "paired_median_ratios": ratios,
    }

    print(f"\n{args.model}, {args.image_size} px, batch {args.batch_size}, {n} images, "
          f"{result['device']} ({args.threads} threads, {result['precision']}, "
          f"{args.workers} workers), {args.repeats} repeats")  # fmt: skip
    print(f"  {'':40s} {'images/s (wall)':>22s} {'images per CPU-s':>22s}")
    print(f"  {'':40s} {'median [min-max]':>22s} {'median [min-max]':>22s}")
    for name, label in ROWS.items():
        cells = [
            f"{statistics.median(t[name]):7.0f} [{min(t[name]):.0f}-{max(t[name]):.0f}]"
            for t in (wall, cpu)
        ]
        print(f"  {label:40s} {cells[0]:>22s} {cells[1]:>22s}")
    for key, value in ratios.items():
        label = f"ratio {key}, paired median"
        print(f"  {label:40s} {value['wall']:22.2f} {value['cpu']:22.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
