"""`matchbench score`: score prediction files in each benchmark's official format, no model run.

Reads a benchmark's annotations with the parsers in ``matchbench.data.<benchmark>``, checks
the prediction file entry by entry (a malformed one is an error naming the file, the entry
and what was expected), computes the metrics with ``matchbench.metrics``, prints a table and
writes the metrics JSON of docs/contracts.md. The formats are documented in docs/metrics.md.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matchbench import metrics
from matchbench.data.formats import ap10k, circo, cirr, fashioniq, ilias, pfpascal, spair, sugarcrepe
from matchbench.errors import MatchbenchError
from matchbench.io import write_json

CIRR_KS = (1, 5, 10, 50)
CIRR_SUBSET_KS = (1, 2, 3)
CIRCO_KS = (5, 10, 25, 50)
FASHIONIQ_KS = (10, 50)
ILIAS_K = 1000
PCK_ALPHAS = (0.01, 0.05, 0.1, 0.15)
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pk"}


# --------------------------------------------------------------------------- reading predictions


def read_predictions(path: Path) -> Any:
    """Parse a prediction file as JSON; refuse pickles and duplicate keys."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise MatchbenchError(
            f"{path}: refusing to read a pickle: unpickling runs code from the file; "
            "write the predictions as JSON (for ILIAS: knn_search/search.py --save_as json)"
        )
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MatchbenchError(f"{path}: file not found") from None
    if raw[:1] == b"\x80":
        raise MatchbenchError(
            f"{path}: this looks like a pickle; refusing to unpickle it (unpickling runs code); "
            "write the predictions as JSON"
        )

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise MatchbenchError(f"{path}: key {key!r} appears twice in one object")
            out[key] = value
        return out

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except UnicodeDecodeError:
        raise MatchbenchError(f"{path}: not a UTF-8 JSON file") from None
    except json.JSONDecodeError as e:
        raise MatchbenchError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _object(value: Any, path: Path, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MatchbenchError(f"{path}: {what}: expected a JSON object, got {type(value).__name__}")
    return value


def _examples(keys: Iterable[str], limit: int = 3) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def _check_keys(entries: dict[str, Any], expected: Sequence[str], path: Path, what: str) -> None:
    """Every expected key present and no other: a partial file would shift the mean."""
    expected_set = set(expected)
    unknown = [k for k in entries if k not in expected_set]
    if unknown:
        raise MatchbenchError(
            f"{path}: unknown {what} {_examples(unknown)} (not in the annotations)"
        )
    missing = [k for k in expected if k not in entries]
    if missing:
        raise MatchbenchError(f"{path}: no prediction for {what} {_examples(missing)}")


def _ranked(value: Any, path: Path, entry: str, item: Callable[[Any], Any], noun: str) -> list[Any]:
    """A ranked list of distinct items, or an error naming the entry."""
    if not isinstance(value, list):
        raise MatchbenchError(f"{path}: entry {entry!r}: expected a ranked list of {noun}s")
    out = []
    for v in value:
        x = item(v)
        if x is None:
            raise MatchbenchError(f"{path}: entry {entry!r}: {v!r} is not an {noun}")
        out.append(x)
    if len(set(out)) != len(out):
        dup = next(x for i, x in enumerate(out) if x in out[:i])
        raise MatchbenchError(f"{path}: entry {entry!r}: {dup!r} appears twice in the ranked list")
    return out


def _name(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _number(value: Any, path: Path, entry: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MatchbenchError(
            f"{path}: entry {entry!r}: {what} must be a finite number, got {value!r}"
        )
    return float(value)


# --------------------------------------------------------------------------- results


@dataclass
class Scores:
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stats:
    """Turns per-query values into a contract metric entry with a bootstrap interval."""

    n_boot: int
    seed: int

    def __call__(self, per_query: np.ndarray, value: float | None = None) -> dict[str, Any]:
        v = np.asarray(per_query, dtype=np.float64)
        lo, hi = metrics.bootstrap_ci(v, n_boot=self.n_boot, seed=self.seed)
        return {
            "value": float(v.mean()) if value is None else float(value),
            "ci_low": lo,
            "ci_high": hi,
            "n": int(v.size),
        }

    @staticmethod
    def plain(value: float, n: int) -> dict[str, Any]:
        return {"value": float(value), "ci_low": None, "ci_high": None, "n": int(n)}


def _mean(values: Iterable[float]) -> float:
    return float(np.mean(list(values)))


# --------------------------------------------------------------------------- composed retrieval


def score_cirr(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    """CIRR test-server files: ``{"version": "rc2", "metric": "recall" | "recall_subset",
    "<pairid>": [ranked image names], ...}``. The reference image is dropped from a list
    where present (CIRR ranks the gallery without it)."""
    cap = cirr.captions_path(root, split)
    queries = cirr.read_queries(cap)
    if any(q["target"] is None for q in queries):
        raise MatchbenchError(
            f"{cap}: no 'target_hard': the ground truth of this split is kept by the CIRR "
            "evaluation server; score val here"
        )
    gallery = cirr.read_gallery(root, split)
    gallery_set = set(gallery) if gallery is not None else None
    out = Scores(extra={"queries": len(queries)})
    seen: dict[str, Path] = {}
    for path in paths:
        data = _object(read_predictions(path), path, "top level")
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
        _check_keys(entries, [q["pairid"] for q in queries], path, "pairid")
        ranks = []
        for q in queries:
            pid, ref = q["pairid"], q["reference"]
            names = [n for n in _ranked(entries[pid], path, pid, _name, "image name") if n != ref]
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
                        f"{path}: entry {pid!r}: {_examples(stray)} not in {where}"
                    )
            if len(names) < need:
                raise MatchbenchError(
                    f"{path}: entry {pid!r}: expected at least {need} ranked images "
                    f"(reference excluded), got {len(names)}"
                )
            ranks.append(names.index(q["target"]) + 1 if q["target"] in names else np.inf)
        r = np.asarray(ranks)
        for k in CIRR_KS if kind == "recall" else CIRR_SUBSET_KS:
            out.metrics[f"{kind}@{k}"] = stats((r <= k).astype(np.float64))
    return out


def score_circo(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    """CIRCO submission: ``{"<query id>": [ranked image ids, at least 50], ...}``."""
    path = _single(paths, "circo")
    ann = circo.annotations_path(root, split)
    queries = circo.read_queries(ann)
    if any(q["gt"] is None for q in queries):
        raise MatchbenchError(
            f"{ann}: no 'gt_img_ids': the ground truth of this split is kept by the CIRCO "
            "evaluation server; score val here"
        )
    data = _object(read_predictions(path), path, "top level")
    _check_keys(data, [q["id"] for q in queries], path, "query id")
    depth = CIRCO_KS[-1]
    relevant = np.zeros((len(queries), depth), dtype=bool)
    for i, q in enumerate(queries):
        ids = _ranked(data[q["id"]], path, q["id"], circo.image_id, "image id")
        if len(ids) < depth:
            raise MatchbenchError(
                f"{path}: entry {q['id']!r}: expected at least {depth} ranked image ids, got {len(ids)}"
            )
        relevant[i] = np.isin(ids[:depth], q["gt"])
    n_gt = np.array([len(q["gt"]) for q in queries])
    order = np.tile(-np.arange(depth, dtype=np.float64), (len(queries), 1))
    out = Scores(extra={"queries": len(queries)})
    for k in CIRCO_KS:
        ap = metrics.average_precision_at_k(order, relevant, k, n_relevant=n_gt)
        out.metrics[f"map@{k}"] = stats(ap)
        if k == 10:
            # CIRCO's evaluation also reports mAP@10 per semantic aspect.
            aspects: dict[str, list[float]] = {}
            for q, a in zip(queries, ap, strict=True):
                for aspect in q["aspects"]:
                    aspects.setdefault(aspect, []).append(float(a))
            if aspects:
                out.per_category["map@10"] = {a: _mean(v) for a, v in sorted(aspects.items())}
    return out


def score_fashioniq(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    """FashionIQ: ``{"<category>": {"<triplet index>": [ranked image names, at least 50]}}``,
    the index being the 0-based position in ``cap.<category>.<split>.json``."""
    path = _single(paths, "fashioniq")
    data = _object(read_predictions(path), path, "top level")
    unknown = [c for c in data if c not in fashioniq.CATEGORIES]
    if unknown or not data:
        raise MatchbenchError(
            f"{path}: top-level keys must be FashionIQ categories ({', '.join(fashioniq.CATEGORIES)}); "
            f"got {_examples(unknown or ['nothing'])}"
        )
    out = Scores()
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
        entries = _object(data[cat], path, f"category {cat!r}")
        _check_keys(entries, [q["index"] for q in queries], path, f"{cat} triplet index")
        ranks = []
        for q in queries:
            entry = f"{cat}/{q['index']}"
            names = _ranked(entries[q["index"]], path, entry, _name, "image name")
            if gallery_set is not None and (stray := [n for n in names if n not in gallery_set]):
                raise MatchbenchError(
                    f"{path}: entry {entry!r}: {_examples(stray)} not in the {cat} gallery"
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
        out.metrics[f"recall@{k}"] = Stats.plain(_mean(per_k[k].values()), total)
        out.per_category[f"recall@{k}"] = per_k[k]
    out.extra = {"categories": list(per_k[FASHIONIQ_KS[0]]), "queries": total}
    return out


# --------------------------------------------------------------------------- instance retrieval


def score_ilias(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    """ILIAS similarity JSON (``knn_search/search.py --save_as json``):
    ``{"<query id>": {"<image id>": similarity, ...}, ...}``. Image queries, text queries or
    both may be scored, each set complete."""
    path = _single(paths, "ilias")
    ids = ilias.read_ids(root)
    data = _object(read_predictions(path), path, "top level")
    sets = {"image": ids["image_queries"], "text": ids["text_queries"]}
    known = set(sets["image"]) | set(sets["text"])
    unknown = [q for q in data if q not in known]
    if unknown:
        raise MatchbenchError(
            f"{path}: unknown query id {_examples(unknown)} (not in image_ids/*_query_ids.txt)"
        )
    present = {}
    for kind, qs in sets.items():
        have = [q for q in qs if q in data]
        if have and len(have) < len(qs):
            missing = [q for q in qs if q not in data]
            raise MatchbenchError(f"{path}: no similarities for {kind} query {_examples(missing)}")
        if have:
            present[kind] = have
    if not present:
        raise MatchbenchError(f"{path}: no query of the annotations")
    name = f"map@{ILIAS_K // 1000}k" if ILIAS_K % 1000 == 0 else f"map@{ILIAS_K}"
    out = Scores()
    all_ap, by_kind = [], {}
    for kind, qs in present.items():
        aps = []
        for q in qs:
            entry = _object(data[q], path, f"query {q!r}")
            if not entry:
                aps.append(0.0)
                continue
            scores = np.array(
                [_number(s, path, q, f"similarity of {db!r}") for db, s in entry.items()]
            )
            gt = ids["gt"].get(ilias.instance_of(q), set())
            relevant = np.array([db in gt for db in entry], dtype=bool)
            ap = metrics.average_precision_at_k(
                scores[None], relevant[None], ILIAS_K, n_relevant=np.array([len(gt)])
            )
            aps.append(float(ap[0]))
        by_kind[kind] = _mean(aps)
        all_ap.extend(aps)
    out.metrics[name] = stats(np.asarray(all_ap))
    out.per_category[name] = by_kind
    out.extra = {"queries": len(all_ap), "query_sets": list(present)}
    return out


# --------------------------------------------------------------------------- correspondence


def _score_pck(
    path: Path, pairs: list[dict[str, Any]], threshold: np.ndarray, stats: Stats
) -> Scores:
    """Transferred keypoints ``{"<pair name>": [[x, y], ...]}``, one point per annotated
    target keypoint (those visible in both images) in annotation order, in original pixels."""
    data = _object(read_predictions(path), path, "top level")
    _check_keys(data, [p["name"] for p in pairs], path, "pair")
    empty = [p["name"] for p in pairs if len(p["trg_kps"]) == 0]
    if empty:
        raise MatchbenchError(
            f"annotations: pair {_examples(empty)} has no keypoint visible in both images"
        )
    n, k = len(pairs), max(len(p["trg_kps"]) for p in pairs)
    pred = np.zeros((n, k, 2))
    gt = np.zeros((n, k, 2))
    valid = np.zeros((n, k), dtype=bool)
    for i, p in enumerate(pairs):
        want = len(p["trg_kps"])
        value = data[p["name"]]
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.shape != (want, 2) or not np.isfinite(arr).all():
            got = f"shape {arr.shape}" if arr is not None else repr(value)[:60]
            raise MatchbenchError(
                f"{path}: entry {p['name']!r}: expected {want} finite [x, y] points (one per "
                f"keypoint visible in both images, in annotation order), got {got}"
            )
        pred[i, :want], gt[i, :want], valid[i, :want] = arr, p["trg_kps"], True
    counts = valid.sum(axis=1)
    categories = sorted({p["category"] for p in pairs})
    cat_of = np.array([p["category"] for p in pairs])
    out = Scores(extra={"pairs": n, "keypoints": int(counts.sum())})
    for alpha in PCK_ALPHAS:
        per_pair = metrics.pck_per_pair(pred, gt, threshold, alpha, valid)
        correct = per_pair * counts
        img, pt = f"pck@{alpha:g}", f"pck_point@{alpha:g}"
        out.metrics[img] = stats(per_pair)
        # Per point pools keypoints of the same pair, which are not independent: no interval.
        out.metrics[pt] = Stats.plain(correct.sum() / counts.sum(), counts.sum())
        out.per_category[img] = {c: float(per_pair[cat_of == c].mean()) for c in categories}
        out.per_category[pt] = {
            c: float(correct[cat_of == c].sum() / counts[cat_of == c].sum()) for c in categories
        }
    return out


def score_spair(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    pairs = spair.read_pairs(root, split)
    threshold = metrics.pck_threshold(bbox_xyxy=np.stack([p["trg_bbox"] for p in pairs]))
    return _score_pck(_single(paths, "spair"), pairs, threshold, stats)


def score_ap10k(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    pairs = ap10k.read_pairs(root, split)
    threshold = metrics.pck_threshold(bbox_xyxy=np.stack([p["trg_bbox"] for p in pairs]))
    return _score_pck(_single(paths, "ap10k"), pairs, threshold, stats)


def score_pfpascal(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    pairs = pfpascal.read_pairs(root, split)
    flipped = [p["name"] for p in pairs if p["flip"]]
    if flipped:
        raise MatchbenchError(
            f"{root}: pair {_examples(flipped)} is flipped (training augmentation); score val or test"
        )
    threshold = metrics.pck_threshold(image_hw=np.array([p["trg_hw"] for p in pairs]))
    return _score_pck(_single(paths, "pfpascal"), pairs, threshold, stats)


# --------------------------------------------------------------------------- compositional matching


def score_sugarcrepe(paths: list[Path], root: Path, split: str, stats: Stats) -> Scores:
    """SugarCrepe: ``{"<file>": {"<item id>": {"pos": s, "neg": s}}}``, any of the seven files;
    ``pos`` scores the image with its caption, ``neg`` with the negative caption."""
    path = _single(paths, "sugarcrepe")
    items = sugarcrepe.read_items(root)
    data = _object(read_predictions(path), path, "top level")
    unknown = [f for f in data if f not in sugarcrepe.FILES]
    if unknown or not data:
        raise MatchbenchError(
            f"{path}: top-level keys must be SugarCrepe files ({', '.join(sugarcrepe.FILES)}); "
            f"got {_examples(unknown or ['nothing'])}"
        )
    out = Scores()
    accs: dict[str, float] = {}
    total = 0
    for name in (f for f in sugarcrepe.FILES if f in data):
        if name not in items:
            raise MatchbenchError(f"{path}: {name!r}: the annotations have no {name}.json")
        entries = _object(data[name], path, f"file {name!r}")
        _check_keys(entries, list(items[name]), path, f"{name} item")
        pos, neg = np.empty(len(entries)), np.empty(len(entries))
        for i, item_id in enumerate(items[name]):
            entry = f"{name}/{item_id}"
            e = entries[item_id]
            if not isinstance(e, dict) or set(e) != {"pos", "neg"}:
                raise MatchbenchError(
                    f'{path}: entry {entry!r}: expected {{"pos": score, "neg": score}}'
                )
            pos[i] = _number(e["pos"], path, entry, "'pos'")
            neg[i] = _number(e["neg"], path, entry, "'neg'")
        accs[name] = metrics.pair_accuracy(pos, neg)
        out.metrics[f"accuracy_{name}"] = stats((pos > neg).astype(np.float64), accs[name])
        total += len(pos)
    out.metrics["accuracy"] = Stats.plain(_mean(accs.values()), total)
    out.per_category["accuracy"] = accs
    out.extra = {"files": list(accs), "items": total}
    return out


# --------------------------------------------------------------------------- command


@dataclass(frozen=True)
class Benchmark:
    task: str
    default_split: str
    scorer: Callable[[list[Path], Path, str, Stats], Scores]


BENCHMARKS: dict[str, Benchmark] = {
    "cirr": Benchmark("cir", "val", score_cirr),
    "circo": Benchmark("cir", "val", score_circo),
    "fashioniq": Benchmark("cir", "val", score_fashioniq),
    "ilias": Benchmark("instance", "test", score_ilias),
    "spair": Benchmark("correspondence", "test", score_spair),
    "pfpascal": Benchmark("correspondence", "test", score_pfpascal),
    "ap10k": Benchmark("correspondence", "test", score_ap10k),
    "sugarcrepe": Benchmark("compose", "test", score_sugarcrepe),
}


def _single(paths: list[Path], benchmark: str) -> Path:
    if len(paths) != 1:
        raise MatchbenchError(f"--predictions: {benchmark} takes one file, got {len(paths)}")
    return paths[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
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


def run(args: argparse.Namespace) -> int:
    bench = BENCHMARKS[args.benchmark]
    if args.bootstrap < 1:
        raise MatchbenchError(f"--bootstrap must be >= 1, got {args.bootstrap}")
    split = args.split or bench.default_split
    paths = list(args.predictions)
    scores = bench.scorer(paths, args.annotations, split, Stats(args.bootstrap, args.seed))
    task = args.task or bench.task
    model = args.model or paths[0].stem
    doc = {
        "task": task,
        "dataset": args.benchmark,
        "model": model,
        "split": split,
        "metrics": scores.metrics,
        "per_category": scores.per_category,
        "extra": {
            **scores.extra,
            "predictions": [str(p) for p in paths],
            "annotations": str(args.annotations),
            "bootstrap": {"n_boot": args.bootstrap, "seed": args.seed, "confidence": 0.95},
        },
    }
    out = args.out or Path("results") / "metrics" / task / args.benchmark / f"{model}.json"
    write_json(out, doc)
    print(format_table(doc))
    print(f"wrote {out}")
    return 0
