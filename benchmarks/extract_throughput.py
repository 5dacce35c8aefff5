"""Extraction throughput: the `extract` stage against a bare timm forward loop, side by side.

On a generated mini-world (PNG files on disk), with one timm model, batch size, device and
precision for every row, the stage's data path with the images decoded in the main process
(``workers 0``) and by DataLoader worker processes (``--workers``, default ``auto``: what
``extract.workers: auto`` gives on this machine, ``matchbench.runtime.loader_workers``):

- ``bare``: the model's forward passes over images already decoded and normalised in one tensor
  on the device, model warm. Nothing else: the upper bound.
- ``embed``: the stage's data path, ``matchbench.runtime.embed`` over the stage's DataLoader of
  ``IndexedImages`` with its batches (``matchbench.stages.extract.shard_batches``: PNG decode,
  resize/crop, uint8 batches, normalisation on the device, L2 normalisation, copy back), same
  warm model; once with 0 workers, once with N. Its gap to ``bare`` is the data path's cost.
- ``extract``: the whole stage, ``matchbench.stages.extract.extract`` (new model per call, so a
  cold first batch; index read; worker startup; shards and the feature store written), with 0
  workers and with N; images/s over the call.
- ``decode``: the stage's DataLoader alone, 0 workers, no model: what reading the PNGs costs.
- with ``--jobs J``: J ``matchbench extract`` processes started together (as Snakemake runs the
  demo's jobs with ``--cores J``), with 0 workers and with N: images/s of all J over the
  slowest's wall time, process startup included.

Each row is timed in wall-clock and in CPU time: this process's and that of the processes it
waited for (DataLoader workers, the ``--jobs`` processes; ``os.times``). Repeats run the rows
back to back; on a shared machine, other processes' load moves wall-clock figures a lot, and the
ratios (each row / ``bare``, and N workers / 0 workers for ``--jobs``), taken per repeat and
then their median, are the figures to read.

    python benchmarks/extract_throughput.py --device cpu --model test_resnet \\
        --image-size 64 --batch-size 128 --images 512 --repeats 7 --threads 1

GPU (random weights, throughput only):

    python benchmarks/extract_throughput.py --device cuda --precision fp16 \\
        --model vit_base_patch16_224 --image-size 224 --batch-size 256 --images 4096 \\
        --repeats 5 --threads 1 --workers auto
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import DataLoader

from matchbench.config import resolve
from matchbench.data import get_family
from matchbench.data.synth import CATEGORIES
from matchbench.images import IndexedImages, normalise, read_index
from matchbench.models import create_backbone
from matchbench.runtime import autocast_dtype, embed, loader_workers, resolve_device, set_threads
from matchbench.stages.extract import extract, shard_batches, shard_bounds

MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]
CLI = "import sys; from matchbench.cli import main; sys.exit(main(sys.argv[1:]))"


def workers_arg(value: str) -> int | str:
    if value == "auto":
        return value
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"expected an integer >= 0 or auto, got {value!r}")


def make_config(root: Path, args: argparse.Namespace, workers: int | str) -> dict[str, Any]:
    per_class = math.ceil(args.images / len(CATEGORIES))
    n = per_class * len(CATEGORIES)
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
                "workers": workers,
                "shard_size": args.shard_size or n,  # default one shard: no resume bookkeeping
                "precision": args.precision,
            },
        },
        "benchmark",
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cpu_seconds() -> float:
    """CPU time of this process and of every process it has waited for (DataLoader workers
    once joined, the ``--jobs`` processes and their workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``fn()``."""
    sync(device)
    w0, c0 = time.perf_counter(), cpu_seconds()
    fn()
    sync(device)
    return time.perf_counter() - w0, cpu_seconds() - c0


@torch.inference_mode()
def bare_loop(model: torch.nn.Module, x: torch.Tensor, bs: int, dtype: torch.dtype | None) -> None:
    for s in range(0, len(x), bs):
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            f = model(x[s : s + bs])
        torch.nn.functional.normalize(f.float(), dim=1).cpu()


def run_jobs(configs: list[Path], outs: list[Path]) -> None:
    """``matchbench extract`` once per config, all started together; fails if any fails."""
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CLI,
                "extract",
                "--config",
                str(c),
                "--dataset",
                "bench",
                "--model",
                "bench",
                "--out",
                str(o),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for c, o in zip(configs, outs, strict=True)
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"matchbench extract failed ({p.returncode}):\n{err.decode()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--model", default="test_resnet", help="timm architecture (random weights)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--shard-size", type=int, help="extract.shard_size (default: all images)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--workers", type=workers_arg, default="auto",
        help="extract.workers of the rows set beside 0 workers: an integer or auto (default)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads, every row")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument(
        "--jobs", type=int, default=0,
        help="also time this many `matchbench extract` processes started together",
    )  # fmt: skip
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = p.parse_args(argv)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="matchbench-bench-") as tmp:
        root = Path(tmp)
        cfgs = {"0": make_config(root, args, 0), "N": make_config(root, args, args.workers)}
        cfg = cfgs["N"]
        n_workers = loader_workers(cfg)
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
        batches = shard_batches(shard_bounds(n, cfg["extract"]["shard_size"]), args.batch_size)

        def loader(workers: int) -> DataLoader:  # as extract builds it
            return DataLoader(images, batch_sampler=batches, num_workers=workers,
                              pin_memory=device.type == "cuda")  # fmt: skip

        # The bare loop's input: every image decoded once, normalised, on the device.
        x = torch.stack([images[i] for i in range(n)]).to(device).float().div_(255)
        x = normalise(x, backbone.mean, backbone.std)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)

        job_configs: dict[str, Path] = {}
        for key, c in cfgs.items():
            job_configs[key] = root / f"config-{key}.yaml"
            job_configs[key].write_text(yaml.safe_dump(c, sort_keys=False))

        def jobs(key: str, r: int) -> None:
            outs = [root / "jobs" / key / f"{r}-{j}" for j in range(args.jobs)]
            run_jobs([job_configs[key]] * args.jobs, outs)

        label = f"{n_workers} workers" + (" (auto)" if args.workers == "auto" else "")

        def whole(key: str, r: int) -> None:
            extract(cfgs[key], "bench", "bench", root / f"f{key}" / str(r), progress=False)

        def forward(r: int) -> None:
            bare_loop(backbone.module, x, args.batch_size, dtype)

        runs: dict[str, tuple[str, Callable[[int], Any]]] = {
            "bare": ("bare timm forward, pre-loaded tensor", forward),
            "embed/0": (
                "stage data path + forward, 0 workers",
                lambda r: embed(backbone, loader(0), device, dtype),
            ),
            "embed/N": (
                f"stage data path + forward, {label}",
                lambda r: embed(backbone, loader(n_workers), device, dtype),
            ),
            "extract/0": ("whole extract() call, 0 workers", lambda r: whole("0", r)),
            "extract/N": (f"whole extract() call, {label}", lambda r: whole("N", r)),
            "decode": ("DataLoader PNG decode only, 0 workers", lambda r: sum(map(len, loader(0)))),
        }
        if args.jobs:
            runs["jobs/0"] = (
                f"{args.jobs} extract CLIs at once, 0 workers",
                lambda r: jobs("0", r),
            )
            runs["jobs/N"] = (f"{args.jobs} extract CLIs at once, {label}", lambda r: jobs("N", r))
        count = {k: n * (args.jobs if k.startswith("jobs/") else 1) for k in runs}

        bare_loop(backbone.module, x[: args.batch_size], args.batch_size, dtype)  # warm-up
        wall: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for r in range(args.repeats):
            for name, (_, fn) in runs.items():
                w, c = timed(lambda fn=fn, r=r: fn(r), device)
                wall[name].append(count[name] / w)
                cpu[name].append(count[name] / c)
            print(f"repeat {r + 1}/{args.repeats}: "
                  + ", ".join(f"{k} {wall[k][-1]:.0f}" for k in runs) + " images/s (wall)",
                  file=sys.stderr)  # fmt: skip
    load_after = os.getloadavg()

    def paired(num: str, den: str, table: dict[str, list[float]]) -> float:
        return statistics.median(a / b for a, b in zip(table[num], table[den], strict=True))

    pairs = [(k, "bare") for k in ("embed/0", "embed/N", "extract/0", "extract/N")]
    if args.jobs:
        pairs.append(("jobs/N", "jobs/0"))
    ratios = {
        f"{num} / {den}": {"wall": paired(num, den, wall), "cpu": paired(num, den, cpu)}
        for num, den in pairs
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
        "workers": {"setting": args.workers, "resolved": n_workers},
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average": {"before": load_before, "after": load_after},
        "precision": "fp32" if dtype is None else str(dtype).removeprefix("torch."),
        "repeats": args.repeats,
        "jobs": args.jobs,
        "images_per_s_wall": wall,
        "images_per_cpu_s": cpu,
        "paired_median_ratios": ratios,
    }

    print(f"\n{args.model}, {args.image_size} px, batch {args.batch_size}, {n} images, "
          f"{result['device']} ({args.threads} threads, {result['precision']}, "
          f"workers 0 and {label}), {args.repeats} repeats; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")  # fmt: skip
    print(f"  {'':44s} {'images/s (wall)':>22s} {'images per CPU-s':>22s}")
    print(f"  {'':44s} {'median [min-max]':>22s} {'median [min-max]':>22s}")
    for name, (text, _) in runs.items():
        cells = [
            f"{statistics.median(t[name]):7.0f} [{min(t[name]):.0f}-{max(t[name]):.0f}]"
            for t in (wall, cpu)
        ]
        print(f"  {text:44s} {cells[0]:>22s} {cells[1]:>22s}")
    for key, value in ratios.items():
        text = f"ratio {key}, paired median"
        print(f"  {text:44s} {value['wall']:22.2f} {value['cpu']:22.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
