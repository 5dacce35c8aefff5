"""Correspondence evaluation throughput: pairs per second with and without the dense-map cache.

On a generated mini-world in SPair-71k's layout (the ``miniworld-spair`` family: JPEG files on
disk, pairs grouped by category so that images recur), one timm backbone with random weights,
side by side in each repeat:

- ``cache``: the two stages of ``features.cache: true``: ``matchbench extract --dense``
  (``store.extract_dense``, each image of the split embedded once, maps written to a float16
  memmap) and then ``correspondence.evaluate.evaluate`` reading the maps back; pairs/s over
  both, and over the evaluation alone (a rerun whose maps already exist).
- ``live``: ``features.cache: false``: ``evaluate`` computing each pair's two maps as it goes
  (an image's map reused only by the next chunk of pairs), nothing stored.

Both end in the same metrics (checked every repeat: the cache holds the float16 maps that
the live path rounds to as well; bit-equal on the CPU). Each row is timed in wall-clock and in process CPU time; the ratio
``cache / live`` (end to end) is taken per repeat and its median reported, as both rows of a
repeat see the same background load. How much the cache saves grows with the number of pairs
per image (``reuse`` below; SPair-71k's test split: 12,234 pairs).

    python benchmarks/correspondence_throughput.py --device cpu --threads 1 --repeats 5

GPU, the unified benchmark's setting (DINOv2 ViT-B/14 at 840 px, a 60 x 60 map; random
weights, throughput only):

    python benchmarks/correspondence_throughput.py --device cuda --arch vit_base_patch14_dinov2 \\
        --resolution 840 --batch-size 8 --workers 4
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import matchbench.tracks.correspondence.families  # noqa: F401  (registers the miniworld-spair family)
from matchbench.config import resolve
from matchbench.data import get_family
from matchbench.images import read_index
from matchbench.runtime import resolve_device
from matchbench.tracks.correspondence.evaluate import evaluate
from matchbench.tracks.correspondence.store import extract_dense

# The demo backbone: a 4-block ViT with DINOv2's layout (registers, patch 8 at 112 px: 14 x 14).
DEMO_ARCH = "vit_small_patch14_reg4_dinov2"
DEMO_KWARGS = {"embed_dim": 96, "depth": 4, "num_heads": 3, "img_size": 112, "patch_size": 8}


def make_config(root: Path, args: argparse.Namespace, cache: bool) -> dict[str, Any]:
    kwargs = DEMO_KWARGS if args.arch == DEMO_ARCH else {}
    return resolve(
        {
            "run": "bench",
            "seed": 0,
            "device": args.device,
            "threads": args.threads,
            "paths": {k: str(root / k) for k in ("data", "results", "reports")},
            "datasets": {"bench": {"family": "miniworld-spair", "options": dataset_options(args)}},
            "backbones": {
                "bench": {
                    "source": "timm",
                    "arch": args.arch,
                    "image_size": args.resolution,
                    "kwargs": kwargs,
                }
            },
            "extract": {"workers": args.workers, "precision": args.precision},
            "tracks": {
                "correspondence": {
                    "datasets": ["bench"],
                    "backbones": ["bench"],
                    "features": {
                        "resolution": args.resolution,
                        "batch_size": args.batch_size,
                        "cache": cache,
                    },
                    "evaluate": {"bootstrap": args.bootstrap},
                }
            },
        },
        "benchmark",
    )


def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": 0,
        "progress": False,
        "pairs": {"train": 0, "val": 0, "test": args.pairs},
        "images_per_category": {"train": 0, "val": 0, "test": args.images_per_category},
    }


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, float, Any]:
    """(wall seconds, process CPU seconds, result) of ``fn()``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - w0, time.process_time() - c0, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--arch", default=DEMO_ARCH, help="timm architecture (random weights)")
    p.add_argument("--resolution", type=int, default=112, help="features.resolution")
    p.add_argument("--batch-size", type=int, default=8, help="features.batch_size")
    p.add_argument("--pairs", type=int, default=240, help="test pairs to generate")
    p.add_argument("--images-per-category", type=int, default=8, help="test images per category")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (extract.workers)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (config threads)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--bootstrap", type=int, default=1000, help="evaluate.bootstrap")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="matchbench-corr-bench-") as tmp:
        root = Path(tmp)
        cached_cfg, live_cfg = make_config(root, args, True), make_config(root, args, False)
        device = resolve_device(cached_cfg["device"])
        t0 = time.perf_counter()
        family = get_family("miniworld-spair")
        raw, data = root / "data" / "raw" / "bench", root / "data" / "bench"
        family.download(raw, dataset_options(args))
        family.prepare(raw, data, {})
        n_images = len(read_index(data / "images.parquet", "test"))
        print(f"generated {args.pairs} pairs over {n_images} images "
              f"in {time.perf_counter() - t0:.1f} s", file=sys.stderr)  # fmt: skip
        dense = root / "results" / "dense"

        def cached() -> tuple[float, float, float, float, dict[str, Any]]:
            shutil.rmtree(dense, ignore_errors=True)
            we, ce, meta = timed(
                lambda: extract_dense(cached_cfg, "bench", "bench", dense, progress=False),
                device,
            )
            wv, cv, (doc, _, speed) = timed(
                lambda: evaluate(cached_cfg, "bench", "bench", dense, progress=False), device
            )
            return we, ce, wv, cv, doc | {"pairs_per_s": speed}

        def live() -> tuple[float, float, dict[str, Any]]:
            w, c, (doc, _, speed) = timed(
                lambda: evaluate(live_cfg, "bench", "bench", progress=False), device
            )
            return w, c, doc | {"pairs_per_s": speed}

        with contextlib.redirect_stderr(io.StringIO()):
            cached()  # warm-up: imports, allocator, page cache
        rows: dict[str, list[float]] = {
            k: [] for k in ("cache", "cache_eval", "live", "cache_cpu", "live_cpu", "ratio")
        }
        loop: dict[str, list[float]] = {"cache": [], "live": []}
        n_pairs, max_diff = args.pairs, 0.0
        for r in range(args.repeats):
            we, ce, wv, cv, doc_c = cached()
            wl, cl, doc_l = live()
            # Bit-equal on the CPU; on a GPU, kernels chosen by batch size may move a float16
            # map by an ulp and a keypoint across its threshold, never a metric by much.
            diff = max(
                abs(doc_c["metrics"][k]["value"] - doc_l["metrics"][k]["value"])
                for k in doc_c["metrics"]
            )
            max_diff = max(max_diff, diff)
            if diff > 0.01:
                raise SystemExit(f"cache and live metrics differ by {diff:.4f}: a bug")
            n_pairs = doc_c["extra"]["n_pairs"]
            rows["cache"].append(n_pairs / (we + wv))
            rows["cache_eval"].append(n_pairs / wv)
            rows["live"].append(n_pairs / wl)
            rows["cache_cpu"].append(n_pairs / (ce + cv))
            rows["live_cpu"].append(n_pairs / cl)
            rows["ratio"].append(rows["cache"][-1] / rows["live"][-1])
            loop["cache"].append(doc_c["pairs_per_s"])
            loop["live"].append(doc_l["pairs_per_s"])
            print(f"repeat {r + 1}/{args.repeats}: cache {rows['cache'][-1]:.1f} "
                  f"(eval only {rows['cache_eval'][-1]:.1f}), live {rows['live'][-1]:.1f} "
                  f"pairs/s (wall)", file=sys.stderr)  # fmt: skip
        grid = doc_c["extra"]["grid"]
        pck = doc_c["metrics"]["pck@0.1"]["value"]

    result = {
        "command": " ".join(
            ["python", "benchmarks/correspondence_throughput.py", *(argv or sys.argv[1:])]
        ),
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine()
        ),  # fmt: skip
        "torch": torch.__version__,
        "threads": args.threads,
        "arch": args.arch,
        "resolution": args.resolution,
        "grid": grid,
        "batch_size": args.batch_size,
        "pairs": n_pairs,
        "images": n_images,
        "reuse": round(2 * n_pairs / n_images, 2),
        "repeats": args.repeats,
        "pairs_per_s": rows,
        "evaluate_loop_pairs_per_s": loop,
        "pck@0.1": pck,
        "max_metric_difference_cache_live": max_diff,
    }

    def cell(xs: list[float]) -> str:
        return f"{statistics.median(xs):8.1f} [{min(xs):.1f}-{max(xs):.1f}]"

    print(f"\n{args.arch} at {args.resolution} px ({grid[0]}x{grid[1]} map), {n_pairs} pairs over "
          f"{n_images} images ({result['reuse']} map uses per image), {result['device']} "
          f"({args.threads} threads), batch {args.batch_size}, {args.repeats} repeats")  # fmt: skip
    print(f"  {'pairs/s, median [min-max]':44s} {'wall':>24s} {'per CPU-second':>24s}")
    print(f"  {'cache: extract --dense + evaluate':44s} {cell(rows['cache']):>24s} "
          f"{cell(rows['cache_cpu']):>24s}")  # fmt: skip
    print(f"  {'cache: evaluate alone (maps exist)':44s} {cell(rows['cache_eval']):>24s}")
    print(f"  {'live: evaluate, maps on the fly':44s} {cell(rows['live']):>24s} "
          f"{cell(rows['live_cpu']):>24s}")  # fmt: skip
    print(f"  {'ratio cache / live (paired median)':44s} {statistics.median(rows['ratio']):24.2f}")
    print(f"  evaluate's own pairs_per_s (loop only): cache {statistics.median(loop['cache']):.1f}, "
          f"live {statistics.median(loop['live']):.1f}; PCK@0.1 {pck:.3f}, largest metric "
          f"difference cache vs live {max_diff:.4f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
