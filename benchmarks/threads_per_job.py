"""Two demo jobs on two cores: side by side with one torch thread each (`threads: 1`, what
`snakemake --cores 2` then does) against one after the other with two threads (`threads: 2`).

Runs `matchbench finetune --recipe ssl` (SimCLR on the mini-world, the demo's longest kind of
job) for a few epochs as subprocesses (startup included, as Snakemake runs them), the two
arrangements alternating. Needs the demo's prepared `miniworld` dataset (`snakemake --cores 2`
first, or `snakemake --cores 2 data/miniworld/images.parquet`). From the repository root:

    python benchmarks/threads_per_job.py --epochs 4 --repeats 3

Also prints one job alone at each thread count.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml


def _cmd(config: Path, out: Path) -> list[str]:
    return [
        "matchbench", "finetune", "--config", str(config), "--recipe", "ssl",
        "--dataset", "miniworld", "--backbone", "resnet-mini", "--out", str(out),
    ]  # fmt: skip


def _timed(cmds: list[list[str]], parallel: bool) -> float:
    t0 = time.perf_counter()
    if parallel:
        procs = [
            subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for c in cmds
        ]
        if any(p.wait() for p in procs):
            raise SystemExit("a finetune run failed")
    else:
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/default.yaml")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {
        "two jobs side by side, 1 thread each": [],
        "two jobs one after the other, 2 threads each": [],
        "one job, 1 thread": [],
        "one job, 2 threads": [],
    }
    names = list(rows)
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = {}
        for threads in (1, 2):
            cfg = yaml.safe_load(Path(args.config).read_text())
            cfg["threads"] = threads
            cfg["tracks"]["ssl"]["train"].update(epochs=args.epochs, eval_every=args.epochs)
            cfgs[threads] = Path(tmp, f"t{threads}.yaml")
            cfgs[threads].write_text(yaml.safe_dump(cfg))
        for r in range(args.repeats):
            runs = [
                (
                    names[0],
                    [_cmd(cfgs[1], Path(tmp, f"a{r}")), _cmd(cfgs[1], Path(tmp, f"b{r}"))],
                    True,
                ),
                (
                    names[1],
                    [_cmd(cfgs[2], Path(tmp, f"c{r}")), _cmd(cfgs[2], Path(tmp, f"d{r}"))],
                    False,
                ),
                (names[2], [_cmd(cfgs[1], Path(tmp, f"e{r}"))], False),
                (names[3], [_cmd(cfgs[2], Path(tmp, f"f{r}"))], False),
            ]
            for name, cmds, parallel in runs if r % 2 == 0 else runs[::-1]:
                rows[name].append(_timed(cmds, parallel))
    print("| arrangement | median wall (s) | runs |")
    print("|---|---|---|")
    for name, t in rows.items():
        print(f"| {name} | {statistics.median(t):.1f} | {', '.join(f'{x:.1f}' for x in t)} |")
    ratio = statistics.median(rows[names[0]]) / statistics.median(rows[names[1]])
    print(f"\nside by side / one after the other: {ratio:.2f}")


if __name__ == "__main__":
    main()
