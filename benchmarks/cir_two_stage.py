"""The cir track's stage 2 under other settings, scored on the demo's mini-world benchmarks.

Trains `cir-stage2` (on the frozen model and the stage 1 checkpoint of a finished demo run)
with each variant's `tracks.cir.two_stage` overrides into a temporary folder, and evaluates
the `two-stage` method with it on CIRR (R@1, R@10), CIRCO (mAP@10) and FashionIQ (R@10), with
the pipeline's bootstrap intervals. This is how the stage 2 defaults were chosen. Run from the
repository root after `snakemake --cores 2`:

    python benchmarks/cir_two_stage.py --variant 'one-layer={"adapter_layers": 1, "injection": 0.5, "train_mapping": false, "epochs": 20, "lr": 0.001}' \\
        --variant 'defaults={}'

`--triplets <dataset>` trains on another triplets dataset of the config (its features
extracted by the frozen model first). `--test` also scores each variant's CIRR test1 server
files against the mini-world's held ground truth (`<raw>/cirr/server`, what `matchbench score`
reads): a setting chosen on val is confirmed on queries it was not chosen on.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from matchbench.config import load_config
from matchbench.layout import Layout
from matchbench.tracks.cir import evaluate as ev
from matchbench.tracks.cir import recipe
from matchbench.tracks.cir.score import score_cirr

TEST = ("mini-cirr", "recall@1")
SCORES = (
    ("mini-cirr", "recall@1"),
    ("mini-cirr", "recall@10"),
    ("mini-circo", "map@10"),
    ("mini-fiq", "recall@10"),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/default.yaml")
    ap.add_argument(
        "--variant", action="append", required=True, help="name=<JSON of two_stage keys>"
    )
    ap.add_argument("--triplets", help="the triplets dataset (default: the config's)")
    ap.add_argument("--test", action="store_true", help="also score CIRR test1 (held out)")
    args = ap.parse_args()
    base = load_config(args.config)
    blk = base["tracks"]["cir"]
    frozen = blk["models"][0]
    heads = [f"{d} {m}" for d, m in SCORES] + ([f"{TEST[0]} test1 {TEST[1]}"] if args.test else [])
    print("| variant | " + " | ".join(heads) + " | train + eval (s) |")
    print("|---" * (len(heads) + 2) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.variant:
            name, _, overrides = spec.partition("=")
            cfg = copy.deepcopy(base)
            cfg["tracks"]["cir"]["two_stage"].update(json.loads(overrides or "{}"))
            triplets = args.triplets or blk["triplets"]
            cfg["tracks"]["cir"]["triplets"] = triplets
            out = Path(tmp, name)
            t0 = time.perf_counter()
            recipe.train_stage2(cfg, triplets, frozen, out)
            ev.method_checkpoint = lambda c, f, m, out=out: str(out / "model.safetensors")
            cells, held = [], []  # held: the test1 cell, last
            for dataset, metric in SCORES:
                a = argparse.Namespace(
                    dataset=dataset,
                    model=f"{frozen}@two-stage",
                    out=str(Path(tmp, f"{name}-{dataset}.json")),
                )
                doc = ev.evaluate(cfg, a)
                cells.append(_cell(doc["metrics"][metric]))
                if args.test and (dataset, metric) == TEST:
                    side = Path(doc["artifacts"]["submission"])
                    files = [side / f"cirr_test1_{k}.json" for k in ("recall", "recall_subset")]
                    server = Path(Layout.of(cfg).raw(dataset), "cirr", "server")
                    boot = blk["evaluate"]["bootstrap"]
                    found = score_cirr(files, server, "test1", boot, cfg["seed"])
                    held.append(_cell(found["metrics"][metric]))
            cells += held
            print(
                f"| {name} | " + " | ".join(cells) + f" | {time.perf_counter() - t0:.0f} |",
                flush=True,
            )


def _cell(x: dict[str, float]) -> str:
    return f"{x['value'] * 100:.1f} ({x['ci_low'] * 100:.1f}–{x['ci_high'] * 100:.1f})"


if __name__ == "__main__":
    main()
