"""What every demo job pays besides its own work, measured on this machine.

1. The imports a job that builds a network pays: ``python -c "import ..."`` in a fresh
   interpreter, for torch, torch + timm and open_clip (which imports timm), and for what a
   job that builds none imports (matchbench's config, numpy, pandas, faiss); median of
   ``--repeats`` runs.
2. The mini-world's supersampling, ``np.kron`` with a block of ones (before) against repeating
   pixels (``world._supersampled``, now), side by side on the canvases of a 64-px image:
   both give the same values, the ratio is the speed-up.

    python benchmarks/job_overheads.py [--repeats 5]

Run it with nothing else on the machine: the figures are wall times.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import timeit

import numpy as np

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
    args = ap.parse_args()

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


if __name__ == "__main__":
    main()
