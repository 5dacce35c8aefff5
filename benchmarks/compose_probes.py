"""Probes of the compose track on the mini-world: what does a change to the data, the model or
the recipe do to SugarCrepe per category, ARO and long-caption retrieval?

Each probe is ``config/compose-mini.yaml`` with a few keys overridden (a Python literal, deep-
merged), run stage by stage through the real CLI (``matchbench download``, ``prepare``,
``finetune``, ``evaluate``) in a folder of its own, and printed as one line per trained variant.
Probes with the same dataset options share the generated data.

    python benchmarks/compose_probes.py --out /tmp/probes base sentences3 lr3 epochs20
    python benchmarks/compose_probes.py --list

The probes behind the README's "why not reproduced" paragraph are the named ones below.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "config" / "compose-mini.yaml"
FEW = {  # six well-separated shapes and four colours: colour sets identify fewer scenes
    "datasets": {
        "mini-vl": {
            "options": {
                "colours": ["red", "green", "blue", "yellow"],
                "shapes": ["triangle", "square", "star", "cross", "crescent", "arrow"],
            }
        }
    }
}
HN10 = {"hard_negatives": True, "start": "rich", "epochs": 10, "caption": "rich"}
CNN = {  # a convolutional image tower: timm's test_resnet, average-pooled, projected
    "backbones": {
        "clip-mini": {
            "kwargs": {
                "vision_cfg": {
                    "timm_model_name": "test_resnet",
                    "timm_pool": "avg",
                    "timm_proj": "linear",
                    "timm_model_pretrained": False,
                }
            }
        }
    }
}
SOLID = {"datasets": {"mini-vl": {"options": {"textures": ["solid"]}}}}


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


PROBES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "base": ({}, ["alt", "rich", "rich-hn"]),
    "sentences3": ({"tracks": {"compose": {"train": {"sentences": 3}}}}, ["rich"]),
    "lr3": ({"tracks": {"compose": {"train": {"lr": 0.003}}}}, ["rich"]),
    "epochs20": ({"tracks": {"compose": {"train": {"epochs": 20}}}}, ["rich"]),
    "patch4": (
        {"backbones": {"clip-mini": {"kwargs": {"vision_cfg": {"patch_size": 4}}}}},
        ["rich"],
    ),
    "cnn": (CNN, ["alt", "rich"]),
    "cnn-solid": (merge(CNN, SOLID), ["alt", "rich", "rich-hn"]),  # untextured: bare silhouettes
    "cnn-solid-few": (merge(merge(CNN, SOLID), FEW), ["alt", "rich", "rich-hn"]),
    "few": (FEW, ["alt", "rich"]),
    "negclip": (  # hard negatives from the start (NegCLIP from scratch), 10 epochs
        {"tracks": {"compose": {"variants": {"hn0": {"caption": "rich", "hard_negatives": True}}}}},
        ["hn0"],
    ),
    "few-hn10": (
        {**FEW, "tracks": {"compose": {"variants": {"rich-hn": HN10}}}},
        ["alt", "rich", "rich-hn"],
    ),
}


def run(argv: list[str], log: Path) -> None:
    with log.open("w") as f:
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=f)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed; see {log}")


def probe(name: str, override: dict[str, Any], variants: list[str], out: Path) -> list[str]:
    raw = merge(yaml.safe_load(BASE.read_text()), override)
    data_key = hashlib.sha256(json.dumps(raw["datasets"], sort_keys=True).encode()).hexdigest()[:10]
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    raw["paths"] = {
        "data": str(out / f"data-{data_key}"),
        "results": str(folder / "results"),
        "reports": str(folder / "reports"),
    }
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    cli = ["matchbench"]
    c = ["--config", str(config)]
    if not (Path(raw["paths"]["data"]) / "mini-vl" / "captions.parquet").is_file():
        run([*cli, "download", *c, "--dataset", "mini-vl"], folder / "download.log")
        run([*cli, "prepare", *c, "--dataset", "mini-vl"], folder / "prepare.log")
    lines = []
    for v in variants:
        t0 = time.perf_counter()
        run(
            [*cli, "finetune", *c, "--recipe", f"clip-{v}", "--dataset", "mini-vl"]
            + ["--backbone", "clip-mini"],
            folder / f"finetune-{v}.log",
        )
        seconds = time.perf_counter() - t0
        model = f"clip-mini+clip-{v}"
        run(
            [*cli, "evaluate", *c, "--task", "compose", "--dataset", "mini-vl", "--model", model],
            folder / f"evaluate-{v}.log",
        )
        doc = json.loads(
            (folder / "results" / "metrics" / "compose" / "mini-vl" / f"{model}.json").read_text()
        )
        m = doc["metrics"]

        def cell(key: str, m: dict[str, Any] = m) -> str:
            x = m[key]
            return f"{100 * x['value']:.1f} ({100 * x['ci_low']:.0f}-{100 * x['ci_high']:.0f})"

        cats = sorted(k for k in m if k.startswith("sugarcrepe_") and k != "sugarcrepe_avg")
        lines.append(
            f"{name:11s} {v:8s} train {seconds:5.0f} s | SugarCrepe avg {cell('sugarcrepe_avg')} | "
            + " ".join(f"{k[len('sugarcrepe_') :]} {100 * m[k]['value']:.0f}" for k in cats)
            + f" | ARO-R {cell('aro_relation')} ARO-A {cell('aro_attribution')}"
            + f" | T2I R@1 {cell('t2i_r@1')}"
        )
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("probes", nargs="*", help=f"probe names ({', '.join(PROBES)})")
    ap.add_argument("--out", type=Path, default=Path("probes"), help="working folder")
    ap.add_argument("--custom", help="a Python dict literal of overrides: one extra probe")
    ap.add_argument("--variants", default="alt,rich", help="variants of the --custom probe")
    ap.add_argument("--list", action="store_true", help="print the probes and exit")
    args = ap.parse_args()
    if args.list:
        for name, (override, variants) in PROBES.items():
            print(f"{name}: {variants} {override}")
        return
    todo = {n: PROBES[n] for n in args.probes}
    if args.custom:
        todo["custom"] = (ast.literal_eval(args.custom), args.variants.split(","))
    for name, (override, variants) in todo.items():
        probe(name, override, variants, args.out.resolve())


if __name__ == "__main__":
    main()
