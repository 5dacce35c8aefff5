"""Read the files the report consumes (docs/contracts.md) into tidy tables.

Every reader validates what it reads and raises :class:`MatchbenchError` naming the file and
the key at fault, so a bad input stops the report before anything is written.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench.errors import MatchbenchError
from matchbench.io import read_json
from matchbench.report.names import ordered_datasets

PathLike = str | os.PathLike[str]

METRIC_COLUMNS = ["task", "dataset", "model", "metric", "value", "ci_low", "ci_high"]
METRIC_KEYS = ["task", "dataset", "model", "metric"]
MINING_COLUMNS = [
    "dataset",
    "model",
    "k",
    "threshold",
    "n_anchors",
    "n_pairs",
    "anchors_with_pairs",
    "precision",
]
MINING_CURVE_COLUMNS = [
    "dataset",
    "model",
    "threshold",
    "n_pairs",
    "anchors_with_pairs",
    "precision",
]
LOG_COLUMNS = ["dataset", "model", "epoch", "series", "value"]
PUBLISHED_COLUMNS = ["task", "dataset", "model", "metric", "value", "source"]
# Columns of train_log.csv that are the x axis or bookkeeping, not something to plot.
LOG_NOT_PLOTTED = {"epoch", "step", "seconds", "lr"}
PAIR_EXAMPLES = 8
THUMBNAIL_PX = 160


# --- validation helpers -------------------------------------------------------------------

_JSON_TYPES = {
    dict: "object",
    list: "array",
    str: "string",
    bool: "boolean",
    int: "number",
    float: "number",
    type(None): "null",
}


def _show(value: Any) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = json.dumps(value, default=str)
    if len(text) > 60:
        text = text[:57] + "..."
    return kind if value is None else f"{kind} {text}"


def _expected(path: Path, key: str, expected: str, got: Any) -> MatchbenchError:
    return MatchbenchError(f"{path}: key {key!r}: expected {expected}, got {_show(got)}")


def _field(path: Path, obj: dict[str, Any], key: str, where: str, expected: str) -> Any:
    if key not in obj:
        raise MatchbenchError(f"{path}: missing key {where + key!r} (expected {expected})")
    return obj[key]


def _object(path: Path, value: Any, key: str, expected: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        if not key:
            raise MatchbenchError(
                f"{path}: expected {expected} at the top level, got {_show(value)}"
            )
        raise _expected(path, key, expected, value)
    return value


def _string(path: Path, obj: dict[str, Any], key: str, where: str = "") -> str:
    value = _field(path, obj, key, where, "a non-empty string")
    if not isinstance(value, str) or not value.strip():
        raise _expected(path, where + key, "a non-empty string", value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(
    path: Path,
    obj: dict[str, Any],
    key: str,
    where: str = "",
    *,
    fraction: bool = False,
    nullable: bool = False,
    required: bool = True,
) -> float:
    expected = "a number in [0, 1] (a fraction, not a percent)" if fraction else "a finite number"
    if nullable:
        expected += " or null"
    if not required and key not in obj:
        return math.nan
    value = _field(path, obj, key, where, expected)
    if value is None and nullable:
        return math.nan
    if not _is_number(value) or not math.isfinite(value) or (fraction and not 0 <= value <= 1):
        raise _expected(path, where + key, expected, value)
    return float(value)


def _count(path: Path, obj: dict[str, Any], key: str, where: str = "") -> int:
    expected = "a non-negative integer"
    value = _field(path, obj, key, where, expected)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _expected(path, where + key, expected, value)
    return value


# --- metrics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsDoc:
    """One metrics JSON, read and checked for its identity (task, dataset, model)."""

    path: Path
    task: str
    dataset: str
    model: str
    doc: dict[str, Any]


def read_metrics_docs(paths: Iterable[PathLike]) -> list[MetricsDoc]:
    """Read every metrics JSON; two files claiming one (task, dataset, model) are an error."""
    docs: list[MetricsDoc] = []
    owner: dict[tuple[str, str, str], Path] = {}
    for raw in paths:
        path = Path(raw)
        doc = _object(path, read_json(path), "", "a JSON object")
        ident = (
            _string(path, doc, "task"),
            _string(path, doc, "dataset"),
            _string(path, doc, "model"),
        )
        if ident in owner:
            raise MatchbenchError(
                f"{path}: task/dataset/model {'/'.join(ident)} already given by {owner[ident]}"
            )
        owner[ident] = path
        docs.append(MetricsDoc(path, *ident, doc))
    return docs


def gather_metrics(paths: Iterable[PathLike]) -> pd.DataFrame:
    """Every metrics JSON as one tidy table: one row per (task, dataset, model, metric).

    Columns are exactly ``task, dataset, model, metric, value, ci_low, ci_high`` (values are
    fractions; a CI that is null or absent is NaN), sorted by the first four. Two files
    claiming the same (task, dataset, model) are an error, not a silent overwrite.
    """
    return metrics_table(read_metrics_docs(paths))


def metrics_table(docs: Iterable[MetricsDoc]) -> pd.DataFrame:
    """The tidy table of :func:`gather_metrics` from documents already read."""
    rows: list[dict[str, Any]] = []
    for d in docs:
        rows.extend(_metric_rows(d.path, d.doc, (d.task, d.dataset, d.model)))
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    df = df.astype({"value": "float64", "ci_low": "float64", "ci_high": "float64"})
    return df.sort_values(METRIC_KEYS, kind="mergesort", ignore_index=True)


def _metric_rows(
    path: Path, doc: dict[str, Any], ident: tuple[str, str, str]
) -> list[dict[str, Any]]:
    expected = "an object of metric name -> {value, ci_low, ci_high}"
    metrics = _object(path, _field(path, doc, "metrics", "", expected), "metrics", expected)
    if not metrics:
        raise MatchbenchError(f"{path}: key 'metrics': expected at least one metric, got none")
    rows = []
    for name in sorted(metrics):
        key = f"metrics.{name}"
        if not name.strip():
            raise MatchbenchError(f"{path}: key {key!r}: expected a non-empty metric name")
        entry = _object(path, metrics[name], key, "an object with value, ci_low, ci_high")
        where = key + "."
        value = _number(path, entry, "value", where, fraction=True)
        # The contract writes null where a metric has no per-query values; absent means the same.
        ci_low, ci_high = (
            _number(path, entry, bound, where, fraction=True, nullable=True, required=False)
            for bound in ("ci_low", "ci_high")
        )
        task, dataset, model = ident
        rows.append(
            {
                "task": task,
                "dataset": dataset,
                "model": model,
                "metric": name,
                "value": value,
                "ci_low": ci_low,
                "ci_high": ci_high,
            }
        )
    return rows


# --- mining statistics --------------------------------------------------------------------


def mining_source(path: PathLike) -> tuple[str, str]:
    """``results/pairs/<dataset>/<model>/stats.json`` -> (dataset, sampler model)."""
    p = Path(path)
    if len(p.parts) < 3:
        raise MatchbenchError(
            f"{p}: cannot tell dataset and model from the path "
            "(expected results/pairs/<dataset>/<model>/stats.json)"
        )
    return p.parent.parent.name, p.parent.name


def gather_mining(paths: Iterable[PathLike]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mining ``stats.json`` files -> (one summary row per file, the by-threshold curves)."""
    summary: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    owner: dict[tuple[str, str], Path] = {}
    for raw in paths:
        path = Path(raw)
        dataset, model = mining_source(path)
        if (dataset, model) in owner:
            raise MatchbenchError(
                f"{path}: mining stats for {dataset}/{model} already given by {owner[dataset, model]}"
            )
        owner[dataset, model] = path
        doc = _object(path, read_json(path), "", "a JSON object")
        summary.append(
            {
                "dataset": dataset,
                "model": model,
                "k": _count(path, doc, "k"),
                "threshold": _number(path, doc, "threshold"),
                "n_anchors": _count(path, doc, "n_anchors"),
                "n_pairs": _count(path, doc, "n_pairs"),
                "anchors_with_pairs": _count(path, doc, "anchors_with_pairs"),
                "precision": _number(path, doc, "precision", fraction=True, nullable=True),
            }
        )
        expected = "an array of {threshold, n_pairs, precision, anchors_with_pairs}"
        by_threshold = _field(path, doc, "by_threshold", "", expected)
        if not isinstance(by_threshold, list):
            raise _expected(path, "by_threshold", expected, by_threshold)
        for i, item in enumerate(by_threshold):
            where = f"by_threshold[{i}]."
            entry = _object(path, item, where[:-1], "an object")
            curves.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "threshold": _number(path, entry, "threshold", where),
                    "n_pairs": _count(path, entry, "n_pairs", where),
                    "anchors_with_pairs": _count(path, entry, "anchors_with_pairs", where),
                    "precision": _number(
                        path, entry, "precision", where, fraction=True, nullable=True
                    ),
                }
            )
    summary_df = pd.DataFrame(summary, columns=MINING_COLUMNS)
    curves_df = pd.DataFrame(curves, columns=MINING_CURVE_COLUMNS)
    summary_df = summary_df.astype({"threshold": "float64", "precision": "float64"})
    curves_df = curves_df.astype({"threshold": "float64", "precision": "float64"})
    return (
        summary_df.sort_values(["dataset", "model"], kind="mergesort", ignore_index=True),
        curves_df.sort_values(
            ["dataset", "model", "threshold"], kind="mergesort", ignore_index=True
        ),
    )


# --- training logs ------------------------------------------------------------------------


def train_log_source(path: PathLike) -> tuple[str, str]:
    """``results/models/<recipe>/<dataset>/<backbone>/train_log.csv`` -> (dataset, model).

    The model is named ``<backbone>+<recipe>``, as extract and evaluate name it.
    """
    p = Path(path)
    if len(p.parts) < 4:
        raise MatchbenchError(
            f"{p}: cannot tell recipe, dataset and backbone from the path "
            "(expected results/models/<recipe>/<dataset>/<backbone>/train_log.csv)"
        )
    backbone, dataset, recipe = p.parent.name, p.parent.parent.name, p.parent.parent.parent.name
    return dataset, f"{backbone}+{recipe}"


def gather_train_logs(paths: Iterable[PathLike]) -> pd.DataFrame:
    """Training logs as a long table: (dataset, model, epoch, series, value).

    ``series`` is ``loss`` plus every other numeric column except epoch, step, seconds, lr
    (recipe-specific columns such as ``knn_acc``).
    """
    frames: list[pd.DataFrame] = []
    owner: dict[tuple[str, str], Path] = {}
    for raw in paths:
        path = Path(raw)
        dataset, model = train_log_source(path)
        if (dataset, model) in owner:
            raise MatchbenchError(
                f"{path}: training log for {model} on {dataset} already given by "
                f"{owner[dataset, model]}"
            )
        owner[dataset, model] = path
        log = _read_csv(path)
        for column in ("epoch", "loss"):
            if column not in log.columns:
                raise MatchbenchError(
                    f"{path}: missing column {column!r} (expected epoch, step, loss, lr, seconds)"
                )
            if not _numeric(log[column]):
                raise MatchbenchError(f"{path}: column {column!r}: expected numbers")
        series = ["loss"] + [
            c for c in log.columns if c not in LOG_NOT_PLOTTED | {"loss"} and _numeric(log[c])
        ]
        long = log.melt(id_vars=["epoch"], value_vars=series, var_name="series").dropna()
        long.insert(0, "model", model)
        long.insert(0, "dataset", dataset)
        frames.append(long[LOG_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=LOG_COLUMNS)
    df = pd.concat(frames, ignore_index=True).astype({"epoch": "float64", "value": "float64"})
    return df.sort_values(
        ["dataset", "model", "series", "epoch"], kind="mergesort", ignore_index=True
    )


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise MatchbenchError(f"{path}: file not found")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MatchbenchError(f"{path}: not a readable CSV file ({e})") from None


# --- published numbers --------------------------------------------------------------------


def read_published(path: PathLike) -> pd.DataFrame:
    """Published numbers: a YAML or JSON list of {task, dataset, model, metric, value, source}.

    Values are fractions like the metrics files (write 61.2% as 0.612); ``source`` (the paper
    and table) is optional.
    """
    p = Path(path)
    if not p.is_file():
        raise MatchbenchError(f"{p}: file not found")
    if p.suffix.lower() == ".json":
        doc = read_json(p)
    else:
        import yaml

        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise MatchbenchError(f"{p}: not valid YAML ({e})") from None
    expected = "a list of {task, dataset, model, metric, value, source}"
    if not isinstance(doc, list):
        raise MatchbenchError(f"{p}: expected {expected} at the top level, got {_show(doc)}")
    rows = []
    for i, item in enumerate(doc):
        where = f"[{i}]."
        entry = _object(p, item, f"[{i}]", "an object")
        row: dict[str, Any] = {key: _string(p, entry, key, where) for key in METRIC_KEYS}
        row["value"] = _number(p, entry, "value", where, fraction=True)
        source = entry.get("source", "")
        if not isinstance(source, str):
            raise _expected(p, where + "source", "a string", source)
        row["source"] = source
        rows.append(row)
    df = pd.DataFrame(rows, columns=PUBLISHED_COLUMNS).astype({"value": "float64"})
    return df.sort_values([*METRIC_KEYS, "source"], kind="mergesort", ignore_index=True)


# --- example mined pairs ------------------------------------------------------------------


@dataclass(frozen=True)
class PairExample:
    anchor: str
    positive: str
    similarity: float
    anchor_class: str
    positive_class: str
    anchor_image: np.ndarray
    positive_image: np.ndarray

    @property
    def same_class(self) -> bool | None:
        """Whether both images share a class; None when either class is unknown."""
        if not self.anchor_class or not self.positive_class:
            return None
        return self.anchor_class == self.positive_class


@dataclass(frozen=True)
class PairSample:
    source: Path
    dataset: str
    model: str
    n_pairs: int
    n_anchors: int
    examples: tuple[PairExample, ...]


def select_pairs(pairs: pd.DataFrame, n: int = PAIR_EXAMPLES) -> pd.DataFrame:
    """The highest-similarity pair of each of ``n`` evenly spaced anchors (anchors sorted by id).

    Deterministic: the same pairs.parquet always gives the same rows, in anchor order; ties in
    similarity go to the better rank, then the smaller positive id.
    """
    anchors = sorted(pairs["anchor"].unique())
    if not anchors:
        return pairs.iloc[:0]
    picks = np.unique(np.linspace(0, len(anchors) - 1, min(n, len(anchors))).round().astype(int))
    chosen = {anchors[i] for i in picks}
    order = ["anchor", "similarity", "positive"]
    ascending = [True, False, True]
    if "rank" in pairs.columns:
        order.insert(2, "rank")
        ascending.insert(2, True)
    ranked = pairs[pairs["anchor"].isin(chosen)].sort_values(
        order, ascending=ascending, kind="mergesort"
    )
    return ranked.drop_duplicates("anchor", keep="first").reset_index(drop=True)


def read_pair_sample(
    pairs_path: PathLike,
    index_path: PathLike,
    images_root: PathLike | None = None,
    n: int = PAIR_EXAMPLES,
) -> PairSample:
    """Example mined pairs with their thumbnails, ready to draw.

    ``images_root`` is where the ``path`` column of images.parquet is relative to; by the
    contract that is the folder holding images.parquet, the default.
    """
    pairs_path, index_path = Path(pairs_path), Path(index_path)
    root = Path(images_root) if images_root is not None else index_path.parent
    pairs = _read_parquet(pairs_path, ["anchor", "positive", "similarity"])
    index = _read_parquet(index_path, ["id", "path"])
    if not pd.api.types.is_numeric_dtype(pairs["similarity"]):
        raise MatchbenchError(f"{pairs_path}: column 'similarity': expected numbers")
    index = index.drop_duplicates("id").set_index("id")
    classes = (
        index["class"].fillna("").astype(str)
        if "class" in index.columns
        else pd.Series("", index=index.index)
    )
    examples = []
    for row in select_pairs(pairs, n).itertuples(index=False):
        ids = (str(row.anchor), str(row.positive))
        for image_id in ids:
            if image_id not in index.index:
                raise MatchbenchError(
                    f"{pairs_path}: image id {image_id!r} is not in {index_path} (column 'id')"
                )
        examples.append(
            PairExample(
                anchor=ids[0],
                positive=ids[1],
                similarity=float(row.similarity),
                anchor_class=str(classes[ids[0]]),
                positive_class=str(classes[ids[1]]),
                anchor_image=_thumbnail(root / str(index.at[ids[0], "path"]), ids[0]),
                positive_image=_thumbnail(root / str(index.at[ids[1], "path"]), ids[1]),
            )
        )
    # results/pairs/<dataset>/<model>/pairs.parquet
    return PairSample(
        source=pairs_path,
        dataset=pairs_path.parent.parent.name,
        model=pairs_path.parent.name,
        n_pairs=len(pairs),
        n_anchors=int(pairs["anchor"].nunique()),
        examples=tuple(examples),
    )


def _read_parquet(path: Path, columns: Sequence[str]) -> pd.DataFrame:
    if not path.is_file():
        raise MatchbenchError(f"{path}: file not found")
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as e:
        raise MatchbenchError(f"{path}: not a readable parquet file ({e})") from None
    for column in columns:
        if column not in df.columns:
            raise MatchbenchError(
                f"{path}: missing column {column!r} (expected {', '.join(columns)})"
            )
    return df


def _thumbnail(path: Path, image_id: str) -> np.ndarray:
    return _image(path, image_id, THUMBNAIL_PX)[0]


def _image(path: Path, image_id: str, px: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image fit into ``px`` x ``px`` as RGB, and its original (width, height)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as e:
        raise MatchbenchError(f"{path}: cannot read the image of id {image_id!r} ({e})") from None
    return np.asarray(ImageOps.contain(rgb, (px, px))), rgb.size


# --- semantic correspondence --------------------------------------------------------------

CORRESPONDENCE = "correspondence"  # the task, and the recipe of fine-tuned models
PCK_KINDS = ("pck", "pck_point")  # per image (mean over pairs), per point (pooled)
RUN_COLUMNS = [
    "dataset",
    "model",
    "variant",
    "primary_alpha",
    "n_pairs",
    "n_points",
    "resolution",
    "grid",
    "cache",
    "source",
]
VARIANT_COLUMNS = ["dataset", "model", "variant", "kind", "alpha", "value", "ci_low", "ci_high"]
FLAG_COLUMNS = ["dataset", "model", "flag", "level", "value", "n"]
CURVE_COLUMNS = ["dataset", "model", "alpha", "pck", "pck_point"]
CATEGORY_COLUMNS = ["dataset", "model", "kind", "alpha", "category", "value", "ci_low", "ci_high"]
SKIPPED_COLUMNS = ["dataset", "model", "reason", "count"]


def parse_pck(name: str) -> tuple[str, float] | None:
    """``pck@0.1`` -> ("pck", 0.1), ``pck_point@0.05`` -> ("pck_point", 0.05), else None.

    Raises ValueError for a PCK name whose alpha is not a positive number.
    """
    kind, at, alpha = name.partition("@")
    if not at or kind not in PCK_KINDS:
        return None
    value = float(alpha)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(alpha)
    return kind, value


@dataclass(frozen=True)
class Correspondence:
    """The ``extra`` and ``per_category`` blocks of every correspondence metrics JSON, tidy.

    ``runs``: one row per (dataset, model) with the protocol of the run; ``variants``: every
    matching variant's PCK (kind ``pck`` per image or ``pck_point`` per point, at each
    alpha); ``flags``: per-image PCK at the primary alpha by difficulty-flag level;
    ``curves``: the PCK-vs-alpha curve; ``categories``: per-category PCK; ``skipped``: the
    pairs left out, by reason.
    """

    runs: pd.DataFrame
    variants: pd.DataFrame
    flags: pd.DataFrame
    curves: pd.DataFrame
    categories: pd.DataFrame
    skipped: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.runs.empty


def gather_correspondence(docs: Iterable[MetricsDoc]) -> Correspondence:
    """Validate and tidy the correspondence-specific blocks (docs/contracts.md).

    The runs of one dataset must share the primary variant and alpha: the report puts them in
    one column, so mixing them would compare unlike numbers.
    """
    runs: list[dict[str, Any]] = []
    frames: dict[str, list[dict[str, Any]]] = {
        "variants": [],
        "flags": [],
        "curves": [],
        "categories": [],
        "skipped": [],
    }
    first: dict[str, tuple[Path, str, float]] = {}
    for d in docs:
        if d.task != CORRESPONDENCE:
            continue
        run, rows = _correspondence_doc(d)
        if d.dataset in first:
            other, variant, alpha = first[d.dataset]
            for key, mine, theirs in (
                ("variant", run["variant"], variant),
                ("primary_alpha", run["primary_alpha"], alpha),
            ):
                if mine != theirs:
                    raise MatchbenchError(
                        f"{d.path}: key 'extra.{key}': {mine!r} differs from {theirs!r} in "
                        f"{other} (same dataset {d.dataset!r}; evaluate them with one config)"
                    )
        else:
            first[d.dataset] = (d.path, run["variant"], run["primary_alpha"])
        runs.append(run)
        for name, part in rows.items():
            frames[name].extend(part)

    def table(rows: list[dict[str, Any]], columns: list[str], keys: list[str]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=columns)
        return df.sort_values(keys, kind="mergesort", ignore_index=True)

    floats = {"value": "float64", "ci_low": "float64", "ci_high": "float64", "alpha": "float64"}
    return Correspondence(
        runs=table(runs, RUN_COLUMNS, ["dataset", "model"]),
        variants=table(
            frames["variants"], VARIANT_COLUMNS, ["dataset", "model", "variant", "kind", "alpha"]
        ).astype(floats),
        flags=table(frames["flags"], FLAG_COLUMNS, ["dataset", "model", "flag"]).astype(
            {"value": "float64"}
        ),
        curves=table(frames["curves"], CURVE_COLUMNS, ["dataset", "model", "alpha"]).astype(
            {"alpha": "float64", "pck": "float64", "pck_point": "float64"}
        ),
        categories=table(
            frames["categories"],
            CATEGORY_COLUMNS,
            ["dataset", "model", "kind", "alpha", "category"],
        ).astype(floats),
        skipped=table(frames["skipped"], SKIPPED_COLUMNS, ["dataset", "model", "reason"]),
    )


def _correspondence_doc(
    d: MetricsDoc,
) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    path, ident = d.path, {"dataset": d.dataset, "model": d.model}
    metrics = d.doc["metrics"]  # an object of metrics: checked by metrics_table
    kinds = {_pck_name(path, f"metrics.{name}", name) for name in metrics}
    if not any(k is not None and k[0] == "pck" for k in kinds):
        raise MatchbenchError(
            f"{path}: key 'metrics': expected pck@<alpha> entries (task {CORRESPONDENCE}), "
            f"got {', '.join(sorted(metrics))}"
        )
    extra = _object(path, _field(path, d.doc, "extra", "", "an object"), "extra", "an object")
    w = "extra."
    variant = _string(path, extra, "variant", w)
    primary_alpha = _positive(path, extra, "primary_alpha", w)
    variants = _variant_rows(path, extra, ident)
    named = sorted({r["variant"] for r in variants})
    if variant not in named:
        raise MatchbenchError(
            f"{path}: key 'extra.variant': {variant!r} is not one of extra.variants "
            f"({', '.join(named) or 'none'})"
        )
    run = {
        **ident,
        "variant": variant,
        "primary_alpha": primary_alpha,
        "n_pairs": _count(path, extra, "n_pairs", w),
        "n_points": _count(path, extra, "n_points", w),
        "resolution": _count(path, extra, "resolution", w),
        "grid": _grid(path, extra),
        "cache": _boolean(path, extra, "cache", w),
        "source": str(path),
    }
    rows = {
        "variants": variants,
        "flags": _flag_rows(path, extra, ident),
        "curves": _curve_rows(path, extra, ident),
        "categories": _category_rows(path, d.doc, ident),
        "skipped": _skipped_rows(path, extra, ident),
    }
    return run, rows


def _pck_name(path: Path, key: str, name: str) -> tuple[str, float] | None:
    try:
        return parse_pck(name)
    except ValueError:
        raise MatchbenchError(
            f"{path}: key {key!r}: expected <kind>@<alpha> with alpha a positive number"
        ) from None


def _positive(path: Path, obj: dict[str, Any], key: str, where: str) -> float:
    expected = "a positive number"
    value = _field(path, obj, key, where, expected)
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise _expected(path, where + key, expected, value)
    return float(value)


def _boolean(path: Path, obj: dict[str, Any], key: str, where: str) -> bool:
    value = _field(path, obj, key, where, "true or false")
    if not isinstance(value, bool):
        raise _expected(path, where + key, "true or false", value)
    return value


def _grid(path: Path, extra: dict[str, Any]) -> str:
    expected = "[w, h], two positive integers"
    grid = _field(path, extra, "grid", "extra.", expected)
    if not (
        isinstance(grid, list)
        and len(grid) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in grid)
    ):
        raise _expected(path, "extra.grid", expected, grid)
    return f"{grid[0]}×{grid[1]}"


def _ci_entry(path: Path, value: Any, key: str) -> tuple[float, float, float]:
    """``{value, ci_low, ci_high}`` (the CI null or absent: NaN) -> the three numbers."""
    entry = _object(path, value, key, "an object with value, ci_low, ci_high")
    where = key + "."
    return (
        _number(path, entry, "value", where, fraction=True),
        *(
            _number(path, entry, bound, where, fraction=True, nullable=True, required=False)
            for bound in ("ci_low", "ci_high")
        ),
    )


def _variant_rows(path: Path, extra: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of variant -> {metric: {value, ci_low, ci_high}}"
    variants = _object(
        path, _field(path, extra, "variants", "extra.", expected), "extra.variants", expected
    )
    rows = []
    for variant in sorted(variants):
        key = f"extra.variants.{variant}"
        metrics = _object(path, variants[variant], key, "an object of metric -> {value, ...}")
        for name in sorted(metrics):
            parsed = _pck_name(path, f"{key}.{name}", name)
            value, low, high = _ci_entry(path, metrics[name], f"{key}.{name}")
            if parsed is None:
                continue
            kind, alpha = parsed
            rows.append(
                {**ident, "variant": variant, "kind": kind, "alpha": alpha}
                | {"value": value, "ci_low": low, "ci_high": high}
            )
    return rows


def _flag_rows(path: Path, extra: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of flag -> {level: {value, n}}"
    flags = _object(path, _field(path, extra, "flags", "extra.", expected), "extra.flags", expected)
    rows = []
    for flag in sorted(flags):
        key = f"extra.flags.{flag}"
        levels = _object(path, flags[flag], key, "an object of level -> {value, n}")
        for level in sorted(levels, key=level_order):
            where = f"{key}.{level}"
            entry = _object(path, levels[level], where, "an object with value and n")
            rows.append(
                {
                    **ident,
                    "flag": flag,
                    "level": level,
                    # null where no pair has this level: nothing to average
                    "value": _number(
                        path, entry, "value", where + ".", fraction=True, nullable=True
                    ),
                    "n": _count(path, entry, "n", where + "."),
                }
            )
    return rows


def level_order(level: str) -> tuple[float, str]:
    """Flag levels are numbers written as JSON keys: sort 2 before 10, words last."""
    try:
        return float(level), level
    except ValueError:
        return math.inf, level


def _curve_rows(path: Path, extra: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = 'an object {"alpha": [...], "pck": [...], "pck_point": [...]}'
    curve = _object(path, _field(path, extra, "curve", "extra.", expected), "extra.curve", expected)
    series: dict[str, list[Any]] = {}
    for name in ("alpha", "pck", "pck_point"):
        values = _field(path, curve, name, "extra.curve.", "an array of numbers")
        if not isinstance(values, list) or not values:
            raise _expected(path, f"extra.curve.{name}", "a non-empty array of numbers", values)
        series[name] = values
    lengths = {name: len(v) for name, v in series.items()}
    if len(set(lengths.values())) > 1:
        raise MatchbenchError(
            f"{path}: key 'extra.curve': alpha, pck and pck_point differ in length ({lengths})"
        )
    rows = []
    for i in range(lengths["alpha"]):
        row: dict[str, Any] = dict(ident)
        for name, values in series.items():
            key = f"{name}[{i}]"
            row[name] = (
                _positive(path, {key: values[i]}, key, "extra.curve.")
                if name == "alpha"
                else _number(path, {key: values[i]}, key, "extra.curve.", fraction=True)
            )
        rows.append(row)
    return rows


def _category_rows(path: Path, doc: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of metric -> {category: value}"
    per_category = _object(
        path, _field(path, doc, "per_category", "", expected), "per_category", expected
    )
    rows = []
    for name in sorted(per_category):
        key = f"per_category.{name}"
        parsed = _pck_name(path, key, name)
        categories = _object(path, per_category[name], key, "an object of category -> value")
        for category in sorted(categories):
            where = f"{key}.{category}"
            entry = categories[category]
            if isinstance(entry, dict):
                value, low, high = _ci_entry(path, entry, where)
            else:
                value = _number(path, {category: entry}, category, key + ".", fraction=True)
                low = high = math.nan
            if parsed is not None:
                kind, alpha = parsed
                rows.append(
                    {**ident, "kind": kind, "alpha": alpha, "category": category}
                    | {"value": value, "ci_low": low, "ci_high": high}
                )
    return rows


def _skipped_rows(path: Path, extra: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of reason -> count ({} when none)"
    skipped = _object(
        path, _field(path, extra, "skipped", "extra.", expected), "extra.skipped", expected
    )
    return [
        {**ident, "reason": reason, "count": _count(path, skipped, reason, "extra.skipped.")}
        for reason in sorted(skipped)
    ]


# --- example keypoint transfers -----------------------------------------------------------

PREDICTION_COLUMNS = ["pair", "category", "src", "trg", "src_kps", "trg_kps", "pred_kps", "correct"]
PREDICTIONS_SUFFIX = ".predictions.parquet"
TRANSFER_EXAMPLES = 4
TRANSFER_PX = 400


@dataclass(frozen=True)
class Transfer:
    """One model's predictions for one pair, in the target's original frame."""

    model: str
    pred_kps: np.ndarray  # (K, 2)
    correct: np.ndarray  # (K,) bool, at the evaluation's primary alpha


@dataclass(frozen=True)
class TransferExample:
    pair: str
    category: str
    src: str
    trg: str
    src_image: np.ndarray  # downscaled RGB; keypoints stay in the original frame below
    trg_image: np.ndarray
    src_size: tuple[int, int]  # original (width, height): the frame of the keypoints
    trg_size: tuple[int, int]
    src_kps: np.ndarray  # (K, 2)
    trg_kps: np.ndarray  # (K, 2)
    transfers: tuple[Transfer, ...]  # one per model, in the order of TransferSample.models


@dataclass(frozen=True)
class TransferSample:
    dataset: str
    models: tuple[str, ...]
    sources: tuple[Path, ...]
    n_pairs: int  # pairs present in every predictions file of the dataset
    examples: tuple[TransferExample, ...]


def predictions_source(path: PathLike) -> tuple[str, str]:
    """``results/metrics/correspondence/<dataset>/<model>.predictions.parquet`` -> (dataset, model)."""
    p = Path(path)
    if not p.name.endswith(PREDICTIONS_SUFFIX) or p.name == PREDICTIONS_SUFFIX or len(p.parts) < 2:
        raise MatchbenchError(
            f"{p}: cannot tell dataset and model from the path (expected "
            f"results/metrics/{CORRESPONDENCE}/<dataset>/<model>{PREDICTIONS_SUFFIX})"
        )
    return p.parent.name, p.name[: -len(PREDICTIONS_SUFFIX)]


def select_transfer_pairs(pairs: pd.DataFrame, n: int = TRANSFER_EXAMPLES) -> list[str]:
    """``n`` pair names spread over categories: evenly spaced categories (sorted by name),
    then round-robin over them taking each category's pairs in name order.

    Deterministic, and blind to whether the predictions are right: no cherry-picking.
    """
    by_category = {
        c: sorted(g["pair"].astype(str))
        for c, g in pairs.groupby(pairs["category"].astype(str), sort=True)
    }
    categories = list(by_category)
    if not categories:
        return []
    picks = np.unique(np.linspace(0, len(categories) - 1, min(n, len(categories))).round())
    chosen = [by_category[categories[int(i)]] for i in picks]
    out: list[str] = []
    for rank in range(max(len(c) for c in chosen)):
        out += [c[rank] for c in chosen if rank < len(c)]
    return out[:n]


def read_transfer_samples(
    predictions: Sequence[PathLike],
    indexes: Sequence[PathLike],
    roots: Sequence[PathLike] = (),
    *,
    model_order: Sequence[str] = (),
    n: int = TRANSFER_EXAMPLES,
) -> list[TransferSample]:
    """Example keypoint transfers per dataset, the same pairs for every model given.

    Each predictions file finds its dataset's ``images.parquet`` among ``indexes`` by the
    folder name (``data/<dataset>/images.parquet``); ``roots`` (one per index, in the same
    order) is what the index's ``path`` column is relative to, by default its folder. Models
    are drawn in ``model_order`` (then by name).
    """
    if roots and len(roots) != len(indexes):
        raise MatchbenchError(
            f"--predictions-root: expected one folder per --predictions-index "
            f"({len(indexes)}), got {len(roots)}"
        )
    index_of: dict[str, tuple[Path, Path]] = {}
    for i, raw in enumerate(indexes):
        index = Path(raw)
        dataset = index.parent.name
        if dataset in index_of:
            raise MatchbenchError(
                f"{index}: a second images.parquet for dataset {dataset!r} "
                f"(first: {index_of[dataset][0]})"
            )
        index_of[dataset] = (index, Path(roots[i]) if roots else index.parent)
    files: dict[str, dict[str, Path]] = {}
    for raw in predictions:
        path = Path(raw)
        dataset, model = predictions_source(path)
        if dataset not in index_of:
            raise MatchbenchError(
                f"{path}: no --predictions-index for dataset {dataset!r} "
                f"(expected data/{dataset}/images.parquet)"
            )
        if model in files.setdefault(dataset, {}):
            raise MatchbenchError(
                f"{path}: predictions of {model} on {dataset} already given by "
                f"{files[dataset][model]}"
            )
        files[dataset][model] = path
    rank = {m: i for i, m in enumerate(model_order)}
    return [
        _transfer_sample(
            dataset,
            {
                m: files[dataset][m]
                for m in sorted(files[dataset], key=lambda m: (rank.get(m, len(rank)), m))
            },
            *index_of[dataset],
            n,
        )
        for dataset in ordered_datasets(files)
    ]


def _transfer_sample(
    dataset: str, files: dict[str, Path], index_path: Path, root: Path, n: int
) -> TransferSample:
    frames = {}
    for model, path in files.items():
        df = _read_parquet(path, PREDICTION_COLUMNS)
        df["pair"] = df["pair"].astype(str)
        if df["pair"].duplicated().any():
            dup = df.loc[df["pair"].duplicated(), "pair"].iloc[0]
            raise MatchbenchError(f"{path}: column 'pair': {dup!r} appears twice")
        frames[model] = df.set_index("pair", drop=False)
    common = set.intersection(*(set(df["pair"]) for df in frames.values()))
    if not common:
        raise MatchbenchError(
            f"no pair is in every predictions file of dataset {dataset!r} "
            f"({', '.join(map(str, files.values()))})"
        )
    first = next(iter(frames.values()))
    chosen = select_transfer_pairs(first[first["pair"].isin(common)], n)
    index = _read_parquet(index_path, ["id", "path"]).drop_duplicates("id").set_index("id")
    examples = [
        _transfer_example(
            pair, {m: df.loc[pair] for m, df in frames.items()}, files, index, index_path, root
        )
        for pair in chosen
    ]
    return TransferSample(
        dataset=dataset,
        models=tuple(frames),
        sources=tuple(files.values()),
        n_pairs=len(common),
        examples=tuple(examples),
    )


def _transfer_example(
    pair: str,
    rows: dict[str, pd.Series],
    files: dict[str, Path],
    index: pd.DataFrame,
    index_path: Path,
    root: Path,
) -> TransferExample:
    """One pair as every model predicted it; the first model's row gives the truth, which
    every other model's row must repeat."""
    first = next(iter(rows))
    ref, ref_path = rows[first], files[first]
    src_kps = _keypoints(ref_path, pair, ref, "src_kps")
    trg_kps = _keypoints(ref_path, pair, ref, "trg_kps", len(src_kps))
    transfers = []
    for model, row in rows.items():
        path = files[model]
        for side in ("src", "trg"):
            if str(row[side]) != str(ref[side]):
                raise MatchbenchError(
                    f"{path}: pair {pair!r}: column {side!r}: {str(row[side])!r} differs "
                    f"from {str(ref[side])!r} in {ref_path}"
                )
        truth = _keypoints(path, pair, row, "trg_kps")
        if truth.shape != trg_kps.shape or not np.allclose(truth, trg_kps):
            raise MatchbenchError(
                f"{path}: pair {pair!r}: column 'trg_kps' differs from {ref_path}"
            )
        transfers.append(
            Transfer(
                model=model,
                pred_kps=_keypoints(path, pair, row, "pred_kps", len(trg_kps)),
                correct=_correct(path, pair, row, len(trg_kps)),
            )
        )
    images, sizes = {}, {}
    for side in ("src", "trg"):
        image_id = str(ref[side])
        if image_id not in index.index:
            raise MatchbenchError(
                f"{ref_path}: column {side!r}: image id {image_id!r} is not in {index_path} "
                "(column 'id')"
            )
        images[side], size = _image(root / str(index.at[image_id, "path"]), image_id, TRANSFER_PX)
        sizes[side] = _frame(index, image_id, size)
    return TransferExample(
        pair=pair,
        category=str(ref["category"]),
        src=str(ref["src"]),
        trg=str(ref["trg"]),
        src_image=images["src"],
        trg_image=images["trg"],
        src_size=sizes["src"],
        trg_size=sizes["trg"],
        src_kps=src_kps,
        trg_kps=trg_kps,
        transfers=tuple(transfers),
    )


def _keypoints(
    path: Path, pair: str, row: pd.Series, column: str, k: int | None = None
) -> np.ndarray:
    """A flat ``[x0, y0, x1, y1, ...]`` cell as (K, 2); K must be ``k`` when given."""
    expected = "a flat list of x, y numbers" + (f" ({k} points)" if k is not None else "")
    try:
        flat = np.asarray(row[column], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        flat = None
    if (
        flat is None
        or len(flat) % 2
        or not np.isfinite(flat).all()
        or (k is not None and len(flat) != 2 * k)
    ):
        raise MatchbenchError(f"{path}: pair {pair!r}: column {column!r}: expected {expected}")
    return flat.reshape(-1, 2)


def _correct(path: Path, pair: str, row: pd.Series, k: int) -> np.ndarray:
    try:
        values = np.asarray(row["correct"]).reshape(-1)
    except (TypeError, ValueError):
        values = np.asarray([None])
    if values.dtype != np.bool_ or len(values) != k:
        raise MatchbenchError(
            f"{path}: pair {pair!r}: column 'correct': expected {k} booleans (one per keypoint)"
        )
    return values


def _frame(index: pd.DataFrame, image_id: str, size: tuple[int, int]) -> tuple[int, int]:
    """The original frame of an image's keypoints: the index's width and height, else the file's."""
    if {"width", "height"} <= set(index.columns):
        try:
            w, h = float(index.at[image_id, "width"]), float(index.at[image_id, "height"])
        except (TypeError, ValueError):
            return size
        if math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0:
            return round(w), round(h)
    return size
