"""Sentence sampling of rich captions, chosen on a validation SugarCrepe, then tested.

The compose track's rich captions name every object of a scene and start with their count; a
SugarCrepe positive names one or two of them. Sentence sampling (``train.sentences``: each
sentence of a rich caption kept with probability p, drawn anew at every step) is the paper's
augmentation against that mismatch. Which p? This script trains ``clip-rich`` with each value
of ``--values`` on the config's training corpus (the demo's: ``config/default.yaml``), and
scores it on a **validation** SugarCrepe, another draw of the mini-world (``--val-seed``; its
scenes, like every benchmark scene, are from the scene graphs held out of training), and on the
config's own SugarCrepe (test), beside ``clip-alt``. The value to use is the one best on
validation; the test columns are read after that choice, and the paired bootstrap (over the
same test items, macro over the 7 categories, as the report's) says whether it beats alt-text.

    python benchmarks/compose_sentences.py --out /tmp/sentences --values none,0.3,0.5,0.7,0.85

Each value trains in a folder of its own under ``--out`` (the generated data is shared).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from compose_probes import run  # noqa: I001 - benchmarks/ is the script's folder

from matchbench.metrics import paired_bootstrap

ROOT = Path(__file__).resolve().parents[1]
AVG = "sugarcrepe_avg"


def parse_value(text: str) -> int | float | None:
    if text == "none":
        return None
    return float(text) if "." in text else int(text)


def train_and_score(
    raw: dict[str, Any], name: str, variant: str, out: Path, datasets: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, pd.DataFrame], float]:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    raw = copy.deepcopy(raw)
    raw["paths"] = {
        "data": str(out / "data"),
        "results": str(folder / "results"),
        "reports": str(folder / "reports"),
    }
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    c = ["--config", str(config)]
    for ds in datasets:
        if not (out / "data" / ds / "captions.parquet").is_file():
            run(["matchbench", "download", *c, "--dataset", ds], folder / f"download-{ds}.log")
            run(["matchbench", "prepare", *c, "--dataset", ds], folder / f"prepare-{ds}.log")
    model = f"clip-mini+clip-{variant}"
    t0 = time.perf_counter()
    run(
        ["matchbench", "finetune", *c, "--recipe", f"clip-{variant}", "--dataset", datasets[0]]
        + ["--backbone", "clip-mini"],
        folder / "finetune.log",
    )
    seconds = time.perf_counter() - t0
    docs, per_query = {}, {}
    for ds in datasets:
        run(
            ["matchbench", "evaluate", *c, "--task", "compose", "--dataset", ds, "--model", model],
            folder / f"evaluate-{ds}.log",
        )
        stem = folder / "results" / "metrics" / "compose" / ds / model
        docs[ds] = json.loads(stem.with_suffix(".json").read_text())["metrics"]
        pq = pd.read_parquet(f"{stem}.per_query.parquet")
        per_query[ds] = pq[pq["metric"] == AVG].sort_values("query", kind="mergesort")
    return docs, per_query, seconds


def cell(m: dict[str, Any]) -> str:
    return f"{100 * m['value']:.1f} ({100 * m['ci_low']:.1f}–{100 * m['ci_high']:.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/default.yaml")
    ap.add_argument("--out", type=Path, default=Path("sentences"))
    ap.add_argument("--values", default="none,0.3,0.5,0.7,0.85", help="train.sentences values")
    ap.add_argument("--val-seed", type=int, default=1)
    args = ap.parse_args()
    raw = yaml.safe_load((ROOT / args.config).read_text(encoding="utf-8"))
    blk = raw["tracks"]["compose"]
    test = blk.get("train_dataset") or blk["datasets"][0]
    val = f"{test}-val"
    raw["datasets"][val] = copy.deepcopy(raw["datasets"][test])
    raw["datasets"][val].setdefault("options", {})["seed"] = args.val_seed
    blk["datasets"] = [test, val]
    blk["train_dataset"] = test
    out = args.out.resolve()
    datasets = [test, val]

    alt, alt_pq, alt_s = train_and_score(raw, "alt", "alt", out, datasets)
    rows = [("alt", "alt-text", alt, None, alt_s)]
    for text in args.values.split(","):
        value = parse_value(text)
        cfg = copy.deepcopy(raw)
        cfg["tracks"]["compose"].setdefault("train", {})["sentences"] = value
        docs, pq, seconds = train_and_score(cfg, f"rich-{text}", "rich", out, datasets)
        a, b = pq[test], alt_pq[test]
        assert a["query"].tolist() == b["query"].tolist()
        t = paired_bootstrap(
            a["value"].to_numpy(), b["value"].to_numpy(), a["group"].to_numpy(), seed=raw["seed"]
        )
        rows.append((f"rich, sentences {text}", "rich", docs, t, seconds))

    cats = sorted(k for k in alt[test] if k.startswith("sugarcrepe_") and k != AVG)
    print(
        f"\n| variant | validation SugarCrepe avg ({val}) | test SugarCrepe avg ({test}) | "
        "test − alt-text, paired | "
        + " | ".join(k[len("sugarcrepe_") :] for k in cats)
        + " | T2I R@1 (test) | train (s) |"
    )
    print("|" + "---|" * (6 + len(cats)))
    for label, _, docs, t, seconds in rows:
        paired = (
            "—"
            if t is None
            else f"{100 * t['delta']:+.1f} ({100 * t['ci_low']:+.1f} to {100 * t['ci_high']:+.1f}), "
            f"p = {t['p']:.3f}"
        )
        print(
            f"| {label} | {cell(docs[val][AVG])} | {cell(docs[test][AVG])} | {paired} | "
            + " | ".join(f"{100 * docs[test][k]['value']:.0f}" for k in cats)
            + f" | {cell(docs[test]['t2i_r@1'])} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
