"""`matchbench score`: score prediction files in each benchmark's official format, no model run.

A benchmark's format is a function ``score(predictions, annotations, split, n_boot, seed)``
that reads the annotations (``matchbench.data.formats``), checks the prediction files entry by
entry (``matchbench.data.formats.predictions``: an error names the file, the entry and what was
expected) and returns the document's ``task``, ``split``, ``metrics``, ``per_category`` and
``extra``. A track declares its formats (``Track.score_formats``); the formats of the tracks still to
come are in this module's own table, :data:`FORMATS`. Every metric with per-query values carries the summary of
``matchbench.metrics.summarise`` (value, 95% bootstrap interval, n), the one the pipeline's
evaluation writes. The document is validated (``matchbench.documents``) before it is written;
the formats are documented in docs/metrics.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from matchbench import metrics
from matchbench.data.formats import ilias
from matchbench.data.formats.predictions import (
    as_object,
    examples,
    number,
    read_predictions,
    single,
)
from matchbench.documents import validate_document
from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.io import write_json
from matchbench.layout import Layout

ILIAS_K = 1000

# The formats of tracks that do not exist yet, by benchmark name. Each moves to its track's
# ``score_formats`` when the track lands (retrieval: ilias).
FORMATS: dict[str, str] = {
    "ilias": f"{__name__}:score_ilias",
}


def formats() -> dict[str, str]:
    """Every benchmark ``score`` reads: this module's table and each track's formats."""
    from matchbench.tracks import score_formats

    found = dict(FORMATS)
    for bench, ref in score_formats().items():
        if bench in found:
            raise MatchbenchError(
                f"score format {bench!r} is declared twice: {found[bench]}, {ref}"
            )
        found[bench] = ref
    return dict(sorted(found.items()))


def plain(value: float, n: int) -> dict[str, Any]:
    """A metric without per-query values (a mean of categories): no interval."""
    return {"value": float(value), "ci_low": None, "ci_high": None, "n": int(n)}


def _result(
    task: str,
    split: str,
    values: dict[str, dict[str, Any]],
    per_category: dict[str, dict[str, float]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "task": task,
        "split": split,
        "metrics": values,
        "per_category": per_category or {},
        "extra": extra or {},
    }


def _mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))


# --------------------------------------------------------------------------- instance retrieval


def score_ilias(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """ILIAS similarity JSON (``knn_search/search.py --save_as json``):
    ``{"<query id>": {"<image id>": similarity, ...}, ...}``. Image queries, text queries or
    both may be scored, each set complete."""
    path = single(paths, "ilias")
    split = split or "test"
    ids = ilias.read_ids(root)
    data = as_object(read_predictions(path), path, "top level")
    sets = {"image": ids["image_queries"], "text": ids["text_queries"]}
    known = set(sets["image"]) | set(sets["text"])
    unknown = [q for q in data if q not in known]
    if unknown:
        raise MatchbenchError(
            f"{path}: unknown query id {examples(unknown)} (not in image_ids/*_query_ids.txt)"
        )
    present = {}
    for kind, qs in sets.items():
        have = [q for q in qs if q in data]
        if have and len(have) < len(qs):
            missing = [q for q in qs if q not in data]
            raise MatchbenchError(f"{path}: no similarities for {kind} query {examples(missing)}")
        if have:
            present[kind] = have
    if not present:
        raise MatchbenchError(f"{path}: no query of the annotations")
    key = f"map@{ILIAS_K // 1000}k" if ILIAS_K % 1000 == 0 else f"map@{ILIAS_K}"
    all_ap, by_kind = [], {}
    for kind, qs in present.items():
        aps = []
        for q in qs:
            entry = as_object(data[q], path, f"query {q!r}")
            if not entry:
                aps.append(0.0)
                continue
            scores = np.array(
                [number(s, path, q, f"similarity of {db!r}") for db, s in entry.items()]
            )
            gt = ids["gt"].get(ilias.instance_of(q), set())
            relevant = np.array([db in gt for db in entry], dtype=bool)
            ap = metrics.average_precision_at_k(
                scores[None], relevant[None], ILIAS_K, n_relevant=np.array([len(gt)])
            )
            aps.append(float(ap[0]))
        by_kind[kind] = _mean(aps)
        all_ap.extend(aps)
    return _result(
        "instance",
        split,
        {key: metrics.summarise(all_ap, n_boot, seed)},
        {key: by_kind},
        {"queries": len(all_ap), "query_sets": list(present)},
    )


# --------------------------------------------------------------------------- compositional matching


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=list(formats()))
    parser.add_argument(
        "--predictions",
        required=True,
        nargs="+",
        type=Path,
        help="prediction file(s) in the benchmark's format (CIRR: a recall and/or a recall_subset file)",
    )
    parser.add_argument(
        "--annotations",
        required=True,
        type=Path,
        help="the dataset root (or, for CIRR and CIRCO, the annotation file)",
    )
    parser.add_argument(
        "--split", help="split to score (default: val for CIRR/CIRCO/FashionIQ, else test)"
    )
    parser.add_argument(
        "--model", help="model name in the metrics JSON (default: the predictions file stem)"
    )
    parser.add_argument(
        "--task", help="task name in the metrics JSON (default: the benchmark's task)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="metrics JSON to write (default: results/metrics/<task>/<benchmark>/<model>.json)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def format_table(doc: dict[str, Any]) -> str:
    lines = [f"{doc['dataset']} ({doc['split']}), model {doc['model']}"]
    width = max(len("metric"), *(len(m) for m in doc["metrics"]))
    lines.append(f"{'metric':<{width}}  {'value':>7}  {'95% CI':<17}  {'n':>6}")
    for name, m in doc["metrics"].items():
        ci = f"[{m['ci_low']:.4f}, {m['ci_high']:.4f}]" if m["ci_low"] is not None else "-"
        lines.append(f"{name:<{width}}  {m['value']:>7.4f}  {ci:<17}  {m['n']:>6}")
    per_cat = doc["per_category"]
    if per_cat:
        # One row per category, one column per metric.
        cats = sorted({c for values in per_cat.values() for c in values})
        cw = max(len("category"), *(len(c) for c in cats))
        widths = [max(7, len(m)) for m in per_cat]
        lines.append("")
        lines.append(
            f"{'category':<{cw}}  "
            + "  ".join(f"{m:>{w}}" for m, w in zip(per_cat, widths, strict=True))
        )
        for c in cats:
            cells = [
                f"{per_cat[m][c]:>{w}.4f}" if c in per_cat[m] else f"{'-':>{w}}"
                for m, w in zip(per_cat, widths, strict=True)
            ]
            lines.append(f"{c:<{cw}}  " + "  ".join(cells))
    return "\n".join(lines)


def score(
    benchmark: str,
    predictions: list[Path],
    annotations: Path,
    split: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The ``task``, ``split``, ``metrics``, ``per_category`` and ``extra`` of ``benchmark``'s
    predictions (see the module docstring), through the format registry."""
    from matchbench.tracks import load_object

    known = formats()
    if benchmark not in known:
        raise MatchbenchError(
            f"--benchmark: unknown benchmark {benchmark!r} (known: {', '.join(known)})"
            f"{did_you_mean(benchmark, known)}"
        )
    if n_boot < 1:
        raise MatchbenchError(f"--bootstrap must be >= 1, got {n_boot}")
    return load_object(known[benchmark])(list(predictions), annotations, split, n_boot, seed)


def run(args: argparse.Namespace) -> int:
    paths = list(args.predictions)
    result = score(args.benchmark, paths, args.annotations, args.split, args.bootstrap, args.seed)
    task = args.task or result["task"]
    model = args.model or paths[0].stem
    doc = {
        "task": task,
        "dataset": args.benchmark,
        "model": model,
        "split": result["split"],
        "metrics": result["metrics"],
        "per_category": result["per_category"],
        "extra": {
            **result["extra"],
            "predictions": [str(p) for p in paths],
            "annotations": str(args.annotations),
            "bootstrap": {"n_boot": args.bootstrap, "seed": args.seed, "confidence": 0.95},
        },
    }
    out = args.out or Path(Layout().metrics(task, args.benchmark, model))
    validate_document(doc, str(out))
    write_json(out, doc)
    print(format_table(doc))
    print(f"wrote {out}")
    return 0
