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
from matchbench.data.formats import circo, cirr, fashioniq, ilias
from matchbench.data.formats.predictions import (
    as_object,
    check_keys,
    examples,
    image_name,
    number,
    ranked,
    read_predictions,
    single,
)
from matchbench.documents import validate_document
from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.io import write_json
from matchbench.layout import Layout

CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
CIRCO_KS = (5, 10, 25, 50)
FASHIONIQ_KS = (10, 50)
ILIAS_K = 1000

# The formats of tracks that do not exist yet, by benchmark name. Each moves to its track's
# ``score_formats`` when the track lands (cir: cirr, circo, fashioniq; retrieval: ilias).
FORMATS: dict[str, str] = {
    "cirr": f"{__name__}:score_cirr",
    "circo": f"{__name__}:score_circo",
    "fashioniq": f"{__name__}:score_fashioniq",
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


# --------------------------------------------------------------------------- composed retrieval


def score_cirr(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """CIRR test-server files: ``{"version": "rc2", "metric": "recall" | "recall_subset",
    "<pairid>": [ranked image names], ...}``. The reference image is dropped from a list
    where present (CIRR ranks the gallery without it)."""
    split = split or "val"
    cap = cirr.captions_path(root, split)
    queries = cirr.read_queries(cap)
    if any(q["target"] is None for q in queries):
        raise MatchbenchError(
            f"{cap}: no 'target_hard': the ground truth of this split is kept by the CIRR "
            "evaluation server; score val here"
        )
    gallery = cirr.read_gallery(root, split)
    gallery_set = set(gallery) if gallery is not None else None
    out = _result("cir", split, {}, extra={"queries": len(queries)})
    seen: dict[str, Path] = {}
    for path in paths:
        data = as_object(read_predictions(path), path, "top level")
        if data.get("version") != "rc2":
            raise MatchbenchError(f'{path}: expected "version": "rc2", got {data.get("version")!r}')
        kind = data.get("metric")
        if kind not in ("recall", "recall_subset"):
            raise MatchbenchError(
                f'{path}: expected "metric": "recall" or "recall_subset", got {kind!r}'
            )
        if kind in seen:
            raise MatchbenchError(f"{path}: a second {kind!r} file (the first was {seen[kind]})")
        seen[kind] = path
        entries = {k: v for k, v in data.items() if k not in ("version", "metric")}
        check_keys(entries, [q["pairid"] for q in queries], path, "pairid")
        ranks = []
        for q in queries:
            pid, ref = q["pairid"], q["reference"]
            names = [
                n for n in ranked(entries[pid], path, pid, image_name, "image name") if n != ref
            ]
            if kind == "recall":
                allowed, need = gallery_set, CIRR_KS[-1]
            else:
                allowed, need = set(q["members"]) - {ref}, CIRR_SUBSET_KS[-1]
            if allowed is not None:
                stray = [n for n in names if n not in allowed]
                if stray:
                    where = (
                        "the split's gallery" if kind == "recall" else "the query's img_set.members"
                    )
                    raise MatchbenchError(
                        f"{path}: entry {pid!r}: {examples(stray)} not in {where}"
                    )
            if len(names) < need:
                raise MatchbenchError(
                    f"{path}: entry {pid!r}: expected at least {need} ranked images "
                    f"(reference excluded), got {len(names)}"
                )
            ranks.append(names.index(q["target"]) + 1 if q["target"] in names else np.inf)
        r = np.asarray(ranks)
        for k in CIRR_KS if kind == "recall" else CIRR_SUBSET_KS:
            out["metrics"][f"{kind}@{k}"] = metrics.summarise(r <= k, n_boot, seed)
    return out


def score_circo(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """CIRCO submission: ``{"<query id>": [ranked image ids, at least 50], ...}``."""
    path = single(paths, "circo")
    split = split or "val"
    ann = circo.annotations_path(root, split)
    queries = circo.read_queries(ann)
    if any(q["gt"] is None for q in queries):
        raise MatchbenchError(
            f"{ann}: no 'gt_img_ids': the ground truth of this split is kept by the CIRCO "
            "evaluation server; score val here"
        )
    data = as_object(read_predictions(path), path, "top level")
    check_keys(data, [q["id"] for q in queries], path, "query id")
    depth = CIRCO_KS[-1]
    relevant = np.zeros((len(queries), depth), dtype=bool)
    for i, q in enumerate(queries):
        ids = ranked(data[q["id"]], path, q["id"], circo.image_id, "image id")
        if len(ids) < depth:
            raise MatchbenchError(
                f"{path}: entry {q['id']!r}: expected at least {depth} ranked image ids, got {len(ids)}"
            )
        relevant[i] = np.isin(ids[:depth], q["gt"])
    n_gt = np.array([len(q["gt"]) for q in queries])
    order = np.tile(-np.arange(depth, dtype=np.float64), (len(queries), 1))
    out = _result("cir", split, {}, extra={"queries": len(queries)})
    for k in CIRCO_KS:
        ap = metrics.average_precision_at_k(order, relevant, k, n_relevant=n_gt)
        out["metrics"][f"map@{k}"] = metrics.summarise(ap, n_boot, seed)
        if k == 10:
            # CIRCO's evaluation also reports mAP@10 per semantic aspect.
            aspects: dict[str, list[float]] = {}
            for q, a in zip(queries, ap, strict=True):
                for aspect in q["aspects"]:
                    aspects.setdefault(aspect, []).append(float(a))
            if aspects:
                out["per_category"]["map@10"] = {a: _mean(v) for a, v in sorted(aspects.items())}
    return out


def score_fashioniq(
    paths: list[Path], root: Path, split: str | None, n_boot: int, seed: int
) -> dict[str, Any]:
    """FashionIQ: ``{"<category>": {"<triplet index>": [ranked image names, at least 50]}}``,
    the index being the 0-based position in ``cap.<category>.<split>.json``."""
    path = single(paths, "fashioniq")
    split = split or "val"
    data = as_object(read_predictions(path), path, "top level")
    unknown = [c for c in data if c not in fashioniq.CATEGORIES]
    if unknown or not data:
        raise MatchbenchError(
            f"{path}: top-level keys must be FashionIQ categories ({', '.join(fashioniq.CATEGORIES)}); "
            f"got {examples(unknown or ['nothing'])}"
        )
    out = _result("cir", split, {})
    per_k: dict[int, dict[str, float]] = {k: {} for k in FASHIONIQ_KS}
    total = 0
    depth = FASHIONIQ_KS[-1]
    for cat in (c for c in fashioniq.CATEGORIES if c in data):
        cap = fashioniq.captions_path(root, cat, split)
        queries = fashioniq.read_queries(cap)
        if any(q["target"] is None for q in queries):
            raise MatchbenchError(f"{cap}: some triplets have no 'target'; cannot score this split")
        gallery = fashioniq.read_gallery(root, cat, split)
        gallery_set = set(gallery) if gallery is not None else None
        entries = as_object(data[cat], path, f"category {cat!r}")
        check_keys(entries, [q["index"] for q in queries], path, f"{cat} triplet index")
        ranks = []
        for q in queries:
            entry = f"{cat}/{q['index']}"
            names = ranked(entries[q["index"]], path, entry, image_name, "image name")
            if gallery_set is not None and (stray := [n for n in names if n not in gallery_set]):
                raise MatchbenchError(
                    f"{path}: entry {entry!r}: {examples(stray)} not in the {cat} gallery"
                )
            if len(names) < depth:
                raise MatchbenchError(
                    f"{path}: entry {entry!r}: expected at least {depth} ranked images, got {len(names)}"
                )
            ranks.append(names.index(q["target"]) + 1 if q["target"] in names else np.inf)
        recalls = metrics.recall_from_ranks(ranks, FASHIONIQ_KS)
        for k in FASHIONIQ_KS:
            per_k[k][cat] = recalls[k]
        total += len(queries)
    for k in FASHIONIQ_KS:
        # The benchmark's figure is the plain mean of the categories, not a pooled recall.
        out["metrics"][f"recall@{k}"] = plain(_mean(per_k[k].values()), total)
        out["per_category"][f"recall@{k}"] = per_k[k]
    out["extra"] = {"categories": list(per_k[FASHIONIQ_KS[0]]), "queries": total}
    return out


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
