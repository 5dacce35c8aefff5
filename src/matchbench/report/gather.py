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


def gather_metrics(paths: Iterable[PathLike]) -> pd.DataFrame:
    """Every metrics JSON as one tidy table: one row per (task, dataset, model, metric).

    Columns are exactly ``task, dataset, model, metric, value, ci_low, ci_high`` (values are
    fractions; a CI that is null or absent is NaN), sorted by the first four. Two files
    claiming the same (task, dataset, model) are an error, not a silent overwrite.
    """
    rows: list[dict[str, Any]] = []
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
        rows.extend(_metric_rows(path, doc, ident))
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
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (OSError, ValueError) as e:
        raise MatchbenchError(f"{path}: cannot read the image of id {image_id!r} ({e})") from None
    return np.asarray(ImageOps.contain(rgb, (THUMBNAIL_PX, THUMBNAIL_PX)))
