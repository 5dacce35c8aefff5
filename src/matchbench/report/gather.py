"""Read what the report consumes: metrics documents, the training logs they name, published
numbers, each into a tidy table.

A document is validated against the metrics schema (``matchbench.documents``), then for what
the schema cannot say (values are fractions). Its identity is its ``task``, ``dataset`` and
``model``; its side files are the paths in ``artifacts`` (``train_log``, ``predictions``,
``pairs``, ...). Nothing here learns anything from a path's folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from matchbench.documents import validate_document
from matchbench.errors import MatchbenchError
from matchbench.io import read_json
from matchbench.layout import split_model
from matchbench.report import checks

PathLike = str | os.PathLike[str]

METRIC_COLUMNS = ["task", "dataset", "model", "metric", "value", "ci_low", "ci_high"]
METRIC_KEYS = ["task", "dataset", "model", "metric"]
LOG_COLUMNS = ["dataset", "model", "epoch", "series", "value"]
PUBLISHED_COLUMNS = ["task", "dataset", "model", "metric", "value", "source"]
TRAIN_LOG = "train_log"  # the artifact role of a fine-tuned model's training log


# --- metrics documents --------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsDoc:
    """One metrics document, validated; its identity (task, dataset, model) read from it."""

    path: Path
    task: str
    dataset: str
    model: str
    doc: dict[str, Any]

    def artifact(self, role: str) -> Path | None:
        """The side file of ``role`` the document names (``artifacts``), or None."""
        value = self.doc.get("artifacts", {}).get(role)
        return None if value is None else Path(value)


def read_metrics_docs(paths: Iterable[PathLike]) -> list[MetricsDoc]:
    """Read and validate every document; two claiming one (task, dataset, model) are an error."""
    docs: list[MetricsDoc] = []
    owner: dict[tuple[str, str, str], Path] = {}
    for raw in paths:
        path = Path(raw)
        doc = read_json(path)
        validate_document(doc, str(path))
        ident = (doc["task"], doc["dataset"], doc["model"])
        if ident in owner:
            raise MatchbenchError(
                f"{path}: task/dataset/model {'/'.join(ident)} already given by {owner[ident]}"
            )
        owner[ident] = path
        docs.append(MetricsDoc(path, *ident, doc))
    return docs


def gather_metrics(paths: Iterable[PathLike]) -> pd.DataFrame:
    """Every metrics document as one tidy table: one row per (task, dataset, model, metric).

    Columns are exactly ``task, dataset, model, metric, value, ci_low, ci_high`` (values are
    fractions; a CI that is null or absent is NaN), sorted by the first four. Two files
    claiming the same (task, dataset, model) are an error, not a silent overwrite.
    """
    return metrics_table(read_metrics_docs(paths))


def metrics_table(docs: Iterable[MetricsDoc]) -> pd.DataFrame:
    """The tidy table of :func:`gather_metrics` from documents already read."""
    rows: list[dict[str, Any]] = []
    for d in docs:
        rows.extend(_metric_rows(d))
    df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    df = df.astype({"value": "float64", "ci_low": "float64", "ci_high": "float64"})
    return df.sort_values(METRIC_KEYS, kind="mergesort", ignore_index=True)


def _metric_rows(d: MetricsDoc) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(d.doc["metrics"]):  # an object of objects with a value: the schema's
        key = f"metrics.{name}"
        if not name.strip():
            raise MatchbenchError(f"{d.path}: key {key!r}: expected a non-empty metric name")
        entry, where = d.doc["metrics"][name], key + "."
        value = checks.number(d.path, entry, "value", where, fraction=True)
        # The contract writes null where a metric has no per-query values; absent means the same.
        ci_low, ci_high = (
            checks.number(d.path, entry, bound, where, fraction=True, nullable=True, required=False)
            for bound in ("ci_low", "ci_high")
        )
        rows.append(
            {"task": d.task, "dataset": d.dataset, "model": d.model, "metric": name}
            | {"value": value, "ci_low": ci_low, "ci_high": ci_high}
        )
    return rows


# --- training logs ------------------------------------------------------------------------


def gather_train_logs(docs: Iterable[MetricsDoc]) -> pd.DataFrame:
    """The training logs the documents name, as a long table (dataset, model, epoch, series,
    value); the series are the recipe's ``plot_columns`` (``matchbench.tracks.recipes()``), the
    recipe named by the model (``<backbone>+<recipe>``) or by the document's ``extra.recipe``.

    Documents of several tasks may name one model's log: it is read once.
    """
    from matchbench.tracks import find_recipe

    frames: list[pd.DataFrame] = []
    owner: dict[tuple[str, str], Path] = {}
    for d in sorted(docs, key=lambda d: (d.dataset, d.model, d.task)):
        path = d.artifact(TRAIN_LOG)
        if path is None:
            continue
        key = (d.dataset, d.model)
        if key in owner:
            if owner[key] != path:
                raise MatchbenchError(
                    f"{d.path}: artifacts.{TRAIN_LOG}: {path} differs from {owner[key]}, the "
                    f"training log another document gives for {d.model} on {d.dataset}"
                )
            continue
        owner[key] = path
        # A task whose model names do not end in the recipe (cir's <model>@<method>) names
        # the log's recipe in extra.recipe.
        recipe = d.doc.get("extra", {}).get("recipe") or split_model(d.model)[1]
        try:
            declared = find_recipe(recipe or "")[1]
            series = list(declared.plot_columns)
        except MatchbenchError as e:
            raise MatchbenchError(
                f"{d.path}: artifacts.{TRAIN_LOG}: model {d.model!r} names no known recipe "
                f"(expected <backbone>+<recipe>; {e})"
            ) from None
        log = checks.read_csv(path)
        for column in ("epoch", *series):
            if column not in log.columns:
                raise MatchbenchError(
                    f"{path}: missing column {column!r} (recipe {recipe!r} logs "
                    f"{', '.join(declared.log_columns)})"
                )
            if not checks.numeric(log[column]):
                raise MatchbenchError(f"{path}: column {column!r}: expected numbers")
        long = log.melt(id_vars=["epoch"], value_vars=series, var_name="series").dropna()
        long.insert(0, "model", d.model)
        long.insert(0, "dataset", d.dataset)
        frames.append(long[LOG_COLUMNS])
    if not frames:
        return pd.DataFrame(columns=LOG_COLUMNS)
    df = pd.concat(frames, ignore_index=True).astype({"epoch": "float64", "value": "float64"})
    return df.sort_values(
        ["dataset", "model", "series", "epoch"], kind="mergesort", ignore_index=True
    )


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
    what = "a list of {task, dataset, model, metric, value, source}"
    if not isinstance(doc, list):
        raise MatchbenchError(f"{p}: expected {what} at the top level, got {checks.show(doc)}")
    rows = []
    for i, item in enumerate(doc):
        where = f"[{i}]."
        entry = checks.mapping(p, item, f"[{i}]", "an object")
        row: dict[str, Any] = {key: checks.string(p, entry, key, where) for key in METRIC_KEYS}
        row["value"] = checks.number(p, entry, "value", where, fraction=True)
        source = entry.get("source", "")
        if not isinstance(source, str):
            raise checks.expected(p, where + "source", "a string", source)
        row["source"] = source
        rows.append(row)
    df = pd.DataFrame(rows, columns=PUBLISHED_COLUMNS).astype({"value": "float64"})
    return df.sort_values([*METRIC_KEYS, "source"], kind="mergesort", ignore_index=True)
