"""The retrieval track's local re-ranking on the demo's mini-ILIAS: settings against mAP@1k.

After the demo (``snakemake --cores 2``: the features, shards and models are in place), for
each model of ``--models``, ranks the image queries under ``global`` and under ``local`` with
each setting of ``--grid`` (``tracks.retrieval.local`` keys, JSON), in this process, and prints
the image queries' mAP@1k (%) at every point of the distractor curve, with the seconds the
search took. Nothing is written: the demo's own ranked lists stay as they are.

    python benchmarks/local_rerank.py --models resnet-ilias+ilias-embed,clip-mini+clip-rich \
        --grid '[{"layer": -1}, {"layer": -2}, {"layer": -2, "weight": 1.0}]'
"""

from __future__ import annotations

import argparse
import copy
import json
import time

from matchbench.config import load_config
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.tracks.retrieval.evaluate import average_precisions
from matchbench.tracks.retrieval.methods import K, model_name
from matchbench.tracks.retrieval.retrieve import search
from matchbench.tracks.retrieval.tables import (
    POSITIVES,
    QUERIES,
    ground_truth,
    read_positives,
    read_queries,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="config/default.yaml")
    ap.add_argument("--models", default="resnet-ilias,resnet-ilias+ilias-embed,clip-mini+clip-rich")
    ap.add_argument("--grid", default='[{"layer": -1}, {"layer": -2}]')
    ap.add_argument("--method", default="local", choices=("local", "linear-local"))
    args = ap.parse_args()
    cfg0 = load_config(args.config)
    dataset = cfg0["tracks"]["retrieval"]["dataset"]
    layout = Layout.of(cfg0)
    table = read_queries(layout.table(dataset, QUERIES))
    gt = ground_truth(read_positives(layout.table(dataset, POSITIVES)))
    instance = dict(zip(table["query"], table["instance"], strict=True))
    queries = table.loc[table["kind"] == "image", "query"].tolist()
    base = "linear" if args.method == "linear-local" else "global"
    for model in args.models.split(","):
        runs = [(base, {})] + [(args.method, g) for g in json.loads(args.grid)]
        for method, setting in runs:
            cfg = copy.deepcopy(cfg0)
            cfg["tracks"]["retrieval"]["local"].update(setting)
            t0 = time.perf_counter()
            try:
                ranks, _ = search(cfg, model_name(model, method), dataset)
            except MatchbenchError as e:  # a setting this model cannot take
                print(f"{model}@{method} {json.dumps(setting)}: {e}")
                continue
            seconds = time.perf_counter() - t0
            curve = {
                int(n): round(
                    100 * float(average_precisions(part, queries, instance, gt, K).mean()), 2
                )
                for n, part in ranks.groupby("distractors")
            }
            print(f"{model}@{method} {json.dumps(setting)}: {seconds:.1f} s, mAP@1k {curve}")


if __name__ == "__main__":
    main()
