"""Reading the correspondence documents for the report: the ``extra`` and ``per_category``
blocks of every metrics document of the task, validated and made tidy (docs/contracts.md,
"Correspondence metrics and predictions"), and the names the unified benchmark prints.

The schema (``schemas/metrics.schema.yaml``) has checked the document's shape already; what
is checked here is the track's own contract, each error naming the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from matchbench.errors import MatchbenchError
from matchbench.report import checks
from matchbench.report.gather import MetricsDoc

# How the papers spell the datasets the config names by short keys (config/*.yaml), in the
# order of the unified benchmark's tables.
DATASET_TITLES = {
    "spair71k": "SPair-71k",
    "pfpascal": "PF-PASCAL",
    "ap10k": "AP-10K",
    "miniworld-spair": "mini-world (SPair-71k layout)",
}


def dataset_title(name: str) -> str:
    """``spair71k`` -> ``SPair-71k``; a name the report does not know is shown as it is."""
    return DATASET_TITLES.get(name, name)


def ordered_datasets(datasets: Iterable[str]) -> list[str]:
    """The datasets the report knows in the papers' column order, then the others by name."""
    rank = {name: i for i, name in enumerate(DATASET_TITLES)}
    return sorted(set(datasets), key=lambda d: (rank.get(d, len(rank)), d))


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
    extra = checks.mapping(
        path, checks.field(path, d.doc, "extra", "", "an object"), "extra", "an object"
    )
    w = "extra."
    variant = checks.string(path, extra, "variant", w)
    primary_alpha = checks.positive(path, extra, "primary_alpha", w)
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
        "n_pairs": checks.count(path, extra, "n_pairs", w),
        "n_points": checks.count(path, extra, "n_points", w),
        "resolution": checks.count(path, extra, "resolution", w),
        "grid": _grid(path, extra),
        "cache": checks.boolean(path, extra, "cache", w),
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


def _grid(path: Path, extra: dict[str, Any]) -> str:
    expected = "[w, h], two positive integers"
    grid = checks.field(path, extra, "grid", "extra.", expected)
    if not (
        isinstance(grid, list)
        and len(grid) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in grid)
    ):
        raise checks.expected(path, "extra.grid", expected, grid)
    return f"{grid[0]}×{grid[1]}"


def _ci_entry(path: Path, value: Any, key: str) -> tuple[float, float, float]:
    """``{value, ci_low, ci_high}`` (the CI null or absent: NaN) -> the three numbers."""
    entry = checks.mapping(path, value, key, "an object with value, ci_low, ci_high")
    where = key + "."
    return (
        checks.number(path, entry, "value", where, fraction=True),
        *(
            checks.number(path, entry, bound, where, fraction=True, nullable=True, required=False)
            for bound in ("ci_low", "ci_high")
        ),
    )


def _variant_rows(path: Path, extra: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of variant -> {metric: {value, ci_low, ci_high}}"
    variants = checks.mapping(
        path, checks.field(path, extra, "variants", "extra.", expected), "extra.variants", expected
    )
    rows = []
    for variant in sorted(variants):
        key = f"extra.variants.{variant}"
        metrics = checks.mapping(
            path, variants[variant], key, "an object of metric -> {value, ...}"
        )
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
    flags = checks.mapping(
        path, checks.field(path, extra, "flags", "extra.", expected), "extra.flags", expected
    )
    rows = []
    for flag in sorted(flags):
        key = f"extra.flags.{flag}"
        levels = checks.mapping(path, flags[flag], key, "an object of level -> {value, n}")
        for level in sorted(levels, key=level_order):
            where = f"{key}.{level}"
            entry = checks.mapping(path, levels[level], where, "an object with value and n")
            rows.append(
                {
                    **ident,
                    "flag": flag,
                    "level": level,
                    # null where no pair has this level: nothing to average
                    "value": checks.number(
                        path, entry, "value", where + ".", fraction=True, nullable=True
                    ),
                    "n": checks.count(path, entry, "n", where + "."),
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
    curve = checks.mapping(
        path, checks.field(path, extra, "curve", "extra.", expected), "extra.curve", expected
    )
    series: dict[str, list[Any]] = {}
    for name in ("alpha", "pck", "pck_point"):
        values = checks.field(path, curve, name, "extra.curve.", "an array of numbers")
        if not isinstance(values, list) or not values:
            raise checks.expected(
                path, f"extra.curve.{name}", "a non-empty array of numbers", values
            )
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
                checks.positive(path, {key: values[i]}, key, "extra.curve.")
                if name == "alpha"
                else checks.number(path, {key: values[i]}, key, "extra.curve.", fraction=True)
            )
        rows.append(row)
    return rows


def _category_rows(path: Path, doc: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of metric -> {category: value}"
    per_category = checks.mapping(
        path, checks.field(path, doc, "per_category", "", expected), "per_category", expected
    )
    rows = []
    for name in sorted(per_category):
        key = f"per_category.{name}"
        parsed = _pck_name(path, key, name)
        categories = checks.mapping(path, per_category[name], key, "an object of category -> value")
        for category in sorted(categories):
            value = checks.number(
                path, categories, category, key + ".", fraction=True, nullable=True
            )
            if parsed is not None and not math.isnan(value):  # null: no pair to average
                kind, alpha = parsed
                rows.append(
                    {**ident, "kind": kind, "alpha": alpha, "category": category}
                    | {"value": value, "ci_low": math.nan, "ci_high": math.nan}
                )
    return rows


def _skipped_rows(path: Path, extra: dict[str, Any], ident: dict[str, str]) -> list[dict[str, Any]]:
    expected = "an object of reason -> count ({} when none)"
    skipped = checks.mapping(
        path, checks.field(path, extra, "skipped", "extra.", expected), "extra.skipped", expected
    )
    return [
        {**ident, "reason": reason, "count": checks.count(path, skipped, reason, "extra.skipped.")}
        for reason in sorted(skipped)
    ]
