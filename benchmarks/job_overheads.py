"""What every demo job pays besides its own work, measured on this machine.

1. The imports a job that builds a network pays: ``python -c "import ..."`` in a fresh
   interpreter, for torch, torch + timm and open_clip (which imports timm), and for what a
   job that builds none imports (matchbench's config, numpy, pandas, faiss); median of
   ``--repeats`` runs.
2. The mini-world's supersampling, ``np.kron`` with a block of ones (before) against repeating
   pixels (``world._supersampled``, now), side by side on the canvases of a 64-px image:
   both give the same values, the ratio is the speed-up.
3. One network job, ``matchbench extract`` of a small mini-world with ``resnet-mini``, run as a
   new process (cold) and forked by the warm server (``matchbench.warm``, what a local
   Snakemake run does), alternately, ``--repeats`` times each; both write the same features.

    python benchmarks/job_overheads.py [--repeats 5]

``--job "ARGS"`` times instead any ``matchbench ARGS`` in the current folder (a workspace after
the demo), cold against warm, alternately; ``{out}`` in ARGS becomes a new folder per run, e.g.

    python benchmarks/job_overheads.py --repeats 2 --job "finetune --config config/default.yaml \
        --recipe clip-rich-hn --dataset mini-vl --backbone clip-mini --out {out}"

Run it with nothing else on the machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np
import yaml

IMPORTS = {
    "no network (matchbench.config, numpy, pandas, faiss)": (
        "import matchbench.config, numpy, pandas, faiss"
    ),
    "torch": "import torch",
    "torch + timm": "import torch, timm",
    "open_clip (imports torch, timm)": "import open_clip",
}


def import_seconds(statement: str, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--job", help="time this matchbench command cold and warm instead")
    args = ap.parse_args()
    if args.job:
        one_job_cold_and_warm(args.job, args.repeats)
        return

    print("| what a job imports | median s | min-max s |")
    print("| :--- | ---: | ---: |")
    for name, statement in IMPORTS.items():
        s = import_seconds(statement, args.repeats)
        print(f"| {name} | {statistics.median(s):.2f} | {min(s):.2f}-{max(s):.2f} |")

    from matchbench.data.synth.world import SUPERSAMPLE, _supersampled

    canvas = np.random.default_rng(0).uniform(0, 255, size=(64, 64, 3))
    ones = np.ones((SUPERSAMPLE, SUPERSAMPLE, 1))
    assert np.array_equal(np.kron(canvas, ones), _supersampled(canvas))
    n = 200
    kron = min(timeit.repeat(lambda: np.kron(canvas, ones), number=n, repeat=args.repeats)) / n
    rep = min(timeit.repeat(lambda: _supersampled(canvas), number=n, repeat=args.repeats)) / n
    print(
        f"\nsupersampling a 64-px canvas x{SUPERSAMPLE}: np.kron {kron * 1e3:.2f} ms, "
        f"repeat {rep * 1e3:.2f} ms (best of {args.repeats} x {n}); ratio {kron / rep:.1f}"
    )
    report_cold_and_warm(args.repeats)


JOB_CONFIG = {
    "run": "overheads",
    "device": "cpu",
    "threads": 1,
    "datasets": {
        "miniworld": {
            "family": "miniworld",
            "options": {
                "seed": 0,
                "image_size": 32,
                "categories": ["triangle", "square", "star"],
                "per_class": {"train": 20, "val": 0, "test": 10},
                "instances_per_class": 4,
            },
        }
    },
    "backbones": {
        "resnet-mini": {
            "source": "timm",
            "arch": "test_resnet",
            "pretrained": False,
            "image_size": 32,
        }
    },
    "extract": {"workers": 0},
    "tracks": {"ssl": {"dataset": "miniworld", "backbones": ["resnet-mini"]}},
}


def timed_cold_and_warm(
    argv: list[str], cwd: Path, repeats: int, verbose: bool = False
) -> tuple[list[float], list[float]]:
    """Seconds of ``matchbench argv`` in ``cwd``, run cold and forked by a warm server,
    alternately, ``repeats`` times each; ``{out}`` in an argument becomes a new folder per run."""
    from matchbench import warm

    base = {k: v for k, v in os.environ.items() if k != warm.ENV}
    times: dict[str, list[float]] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = warm.start(Path(tmp) / "warm.log")
        assert server is not None
        os.environ.pop(warm.ENV, None)
        hot = {**base, warm.ENV: str(server.socket)}
        try:
            # waits for the server's own imports: not counted
            subprocess.run(["matchbench", "--version"], env=hot, check=True, capture_output=True)
            for i in range(repeats):
                for name, env in (("cold", base), ("warm", hot)):
                    out = str(Path(tmp) / f"{name}{i}")
                    t0 = time.perf_counter()
                    subprocess.run(["matchbench", *(a.replace("{out}", out) for a in argv)],
                                   cwd=cwd, env=env, check=True, capture_output=True)  # fmt: skip
                    times[name].append(time.perf_counter() - t0)
                    if verbose:
                        print(f"{name} {i}: {times[name][-1]:.1f} s", flush=True)
        finally:
            server.stop()
    return times["cold"], times["warm"]


def cold_and_warm(repeats: int) -> tuple[list[float], list[float]]:
    """Seconds of ``matchbench extract`` run cold and warm, alternately, in a scratch folder."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "config.yaml").write_text(yaml.safe_dump(JOB_CONFIG))
        for stage in ("download", "prepare"):
            subprocess.run(["matchbench", stage, "--config", "config.yaml", "--dataset", "miniworld"],
                           cwd=root, check=True, capture_output=True)  # fmt: skip
        extract = ["extract", "--config", "config.yaml", "--dataset", "miniworld", "--model", "resnet-mini"]  # fmt: skip
        return timed_cold_and_warm(extract, root, repeats)


def one_job_cold_and_warm(args: str, repeats: int) -> None:
    """``matchbench args`` here, cold and warm alternately; prints each time and the medians."""
    import shlex

    cold, hot = timed_cold_and_warm(shlex.split(args), Path.cwd(), repeats, verbose=True)
    c, w = statistics.median(cold), statistics.median(hot)
    print(
        f"matchbench {args}: cold {c:.1f} s, warm {w:.1f} s (medians of {repeats}); cold - warm {c - w:.1f} s"
    )


def report_cold_and_warm(repeats: int) -> None:
    cold, hot = cold_and_warm(repeats)
    c, w = statistics.median(cold), statistics.median(hot)
    print(
        f"\nmatchbench extract (90 mini-world images, resnet-mini): cold {c:.2f} s "
        f"({min(cold):.2f}-{max(cold):.2f}), warm {w:.2f} s ({min(hot):.2f}-{max(hot):.2f}), "
        f"medians of {repeats}, alternating; cold / warm {c / w:.1f}"
    )


if __name__ == "__main__":
    main()
