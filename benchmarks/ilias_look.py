"""How the mini-ILIAS positives look against what each step of the retrieval track adds.

For each look of ``--looks`` (a name, and the ``miniworld-ilias`` options ``object_scale``,
``clutter`` and ``occlusion`` it sets; a key it leaves out takes the generator's default),
writes a copy of ``--config`` with ``run: look-<name>`` and those options for the retrieval
track's dataset, builds the track's metrics with Snakemake (the DAG builds what they need: the
mini-world, the features, the trainings, the searches; nothing of the other tracks but the
models the retrieval track searches with) and prints, for each model and method, the image
queries' mAP@1k (%) with its 95% interval and the paired bootstrap of the method against the
same model's global descriptor (for a fine-tuned backbone's global descriptor: against the
backbone's), over the same queries, as the report's table "What each step adds".

    python benchmarks/ilias_look.py --cores 2 --looks \
        '{"generator": {}, "demo": {"object_scale": [0.16, 0.28], "clutter": [1, 4]}}'

The runs' results stay under ``results/look-<name>/`` (delete them when done). The datasets
live under ``data/``, shared by every run: each look regenerates ``mini-ilias`` there, and the
next ``snakemake`` of a config with another look regenerates it again (its jobs' params say so).
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from matchbench.config import load_config
from matchbench.layout import Layout
from matchbench.metrics import paired_bootstrap
from matchbench.tracks.retrieval.methods import EMBED, model_name, split_model

ROOT = Path(__file__).resolve().parents[1]
LOOK = ("object_scale", "clutter", "occlusion")


def look_config(raw: dict, name: str, look: dict, dataset: str) -> dict:
    cfg = copy.deepcopy(raw)
    cfg["run"] = f"look-{name}"
    options = cfg["datasets"][dataset].setdefault("options", {})
    for key in LOOK:
        options.pop(key, None)
    unknown = set(look) - set(LOOK)
    if unknown:
        sys.exit(f"--looks {name}: unknown key(s) {sorted(unknown)}; expected some of {LOOK}")
    options.update(look)
    return cfg


def image_values(layout: Layout, dataset: str, name: str) -> pd.Series:
    pq = pd.read_parquet(layout.metrics("retrieval", dataset, name, "per_query.parquet"))
    pq = pq[pq["metric"] == "image_map@1k"]
    return pq.set_index("query")["value"].sort_index()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/default.yaml")
    ap.add_argument("--looks", required=True, help="JSON: {name: {option: value}}")
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    raw = yaml.safe_load((ROOT / args.config).read_text(encoding="utf-8"))
    block = raw["tracks"]["retrieval"]
    dataset, models, methods = block["dataset"], block["models"], block["methods"]
    for name, look in json.loads(args.looks).items():
        cfg_raw = look_config(raw, name, look, dataset)
        path = ROOT / "config" / f".look-{name}.yaml"  # beside the original: same relative paths
        path.write_text(yaml.safe_dump(cfg_raw, sort_keys=False), encoding="utf-8")
        try:
            cfg = load_config(path)
            layout, n_boot, seed = Layout.of(cfg), cfg["report"]["paired_bootstrap"], cfg["seed"]
            targets = [
                layout.metrics("retrieval", dataset, model_name(m, method))
                for m in models
                for method in methods
            ]
            log_path = ROOT / "logs" / f"look-{name}.snakemake.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            print(
                f"look {name}: snakemake, its log in {log_path.relative_to(ROOT)}", file=sys.stderr
            )
            with log_path.open("w", encoding="utf-8") as log:
                subprocess.run(
                    ["snakemake", *targets, "--cores", str(args.cores), "--configfile", str(path)],
                    cwd=ROOT,
                    check=True,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            print(f"\n## look {name}: {json.dumps(look)}\n")
            print("| model | method | mAP@1k (95% CI) | against | Δ (95% CI), p |")
            print("|---|---|---|---|---|")
            for m in models:
                for method in methods:
                    name_ = model_name(m, method)
                    doc = json.loads(Path(layout.metrics("retrieval", dataset, name_)).read_text())
                    v = doc["metrics"]["image_map@1k"]
                    cell = (
                        f"{v['value'] * 100:.2f} ({v['ci_low'] * 100:.2f}–{v['ci_high'] * 100:.2f})"
                    )
                    base = model_name(m, "global") if method != "global" else None
                    if base is None and split_model(m)[1] == EMBED:
                        base = model_name(split_model(m)[0], "global")
                    gain = "—"
                    if base is not None and base.rsplit("@", 1)[0] in models:
                        a, b = (
                            image_values(layout, dataset, name_),
                            image_values(layout, dataset, base),
                        )
                        t = paired_bootstrap(
                            a.to_numpy(), b.loc[a.index].to_numpy(), n_boot=n_boot, seed=seed
                        )
                        gain = (
                            f"{t['delta'] * 100:+.2f} ({t['ci_low'] * 100:+.2f} to "
                            f"{t['ci_high'] * 100:+.2f}), p = {t['p']:.3f}"
                        )
                    print(f"| {m} | {method} | {cell} | {base or '—'} | {gain} |")
        finally:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
