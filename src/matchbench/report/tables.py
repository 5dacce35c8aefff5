"""Paper-style tables, built once as data and rendered as Markdown, LaTeX (booktabs) and CSV.

Values in the input tables are fractions; tables show percent with one decimal (captions say
so) and the 95% bootstrap confidence interval in parentheses, as papers usually print them.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from matchbench.io import write_text
from matchbench.report.gather import CORRESPONDENCE, Correspondence, parse_pck
from matchbench.report.names import (
    dataset_title,
    is_finetuned,
    ordered_datasets,
    ordered_models,
    slug,
    stem,
)

MISSING = "—"


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False


@dataclass(frozen=True)
class Table:
    """A rendered-format-neutral table: the one source of the .md, .tex, .csv and HTML forms."""

    name: str  # file stem under tables/
    title: str
    caption: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns
    # Column groups above the header, as (label, number of columns), "" for none; they cover
    # the header exactly. Markdown and CSV have one header row, so there a label prefixes
    # each of its columns' headers.
    groups: tuple[tuple[str, int], ...] = ()
    breaks: tuple[int, ...] = ()  # rows that start a new block of rows (a rule above them)

    def __post_init__(self) -> None:
        if self.groups and sum(span for _, span in self.groups) != len(self.header):
            raise ValueError(f"table {self.name}: column groups do not cover the header")

    def flat_header(self) -> tuple[str, ...]:
        """The header with each column's group label in front, for one-row headers."""
        if not self.groups:
            return self.header
        labels = [label for label, span in self.groups for _ in range(span)]
        return tuple(f"{g} {h}" if g else h for g, h in zip(labels, self.header, strict=True))


# --- cell formatting ----------------------------------------------------------------------


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}"


def with_ci(value: float, ci_low: float, ci_high: float) -> str:
    """``61.2 (55.0–67.1)``; just ``61.2`` when the metric has no confidence interval."""
    if math.isnan(ci_low) or math.isnan(ci_high):
        return percent(value)
    return f"{percent(value)} ({percent(ci_low)}–{percent(ci_high)})"


def results_csv(results: pd.DataFrame) -> str:
    """The tidy results table as CSV text with fixed float formatting (reruns: same bytes)."""
    buf = io.StringIO()
    results.to_csv(buf, index=False, float_format="%.6f", na_rep="", lineterminator="\n")
    return buf.getvalue()


# --- table builders -----------------------------------------------------------------------


def main_tables(results: pd.DataFrame) -> list[Table]:
    """One table per (task, dataset): rows are models, columns metrics, best per column bold.

    Higher is better for every metric in the contract (accuracies, PCK, recall, mAP). The
    best is chosen on the printed (rounded) values, so ties a reader sees are all bold.
    """
    tables = []
    for (task, dataset), group in results.groupby(["task", "dataset"], sort=True):
        models = sorted(group["model"].unique())
        metrics = sorted(group["metric"].unique())
        cells = group.set_index(["model", "metric"])
        best = {}
        for metric in metrics:
            shown = [float(percent(v)) for v in group.loc[group["metric"] == metric, "value"]]
            best[metric] = max(shown) if len(shown) > 1 else None
        rows = []
        for model in models:
            row = [Cell(model)]
            for metric in metrics:
                if (model, metric) not in cells.index:
                    row.append(Cell(MISSING))
                    continue
                r = cells.loc[(model, metric)]
                text = with_ci(r["value"], r["ci_low"], r["ci_high"])
                row.append(Cell(text, bold=float(percent(r["value"])) == best[metric]))
            rows.append(tuple(row))
        tables.append(
            Table(
                name=stem(task, dataset),
                title=f"{task} · {dataset}",
                caption=(
                    f"Task {task} on {dataset}. Values in percent (fractions × 100, one "
                    "decimal), 95% bootstrap confidence interval in parentheses; best per "
                    "column in bold."
                ),
                header=("model", *metrics),
                rows=tuple(rows),
                numeric=(False, *[True] * len(metrics)),
            )
        )
    return tables


def mining_table(summary: pd.DataFrame) -> Table:
    """The mining statistics at each sampler's chosen threshold."""
    rows = []
    for r in summary.itertuples(index=False):
        rows.append(
            (
                Cell(r.dataset),
                Cell(r.model),
                Cell(str(r.k)),
                Cell(f"{r.threshold:.3f}"),
                Cell(str(r.n_pairs)),
                Cell(f"{r.anchors_with_pairs} / {r.n_anchors}"),
                Cell(MISSING if math.isnan(r.precision) else percent(r.precision)),
            )
        )
    return Table(
        name="mining",
        title="Mined positive pairs",
        caption=(
            "Semantic positive pairs mined per dataset and sampler model (k nearest "
            "neighbours, kept above the chosen similarity threshold). Precision is the share "
            f"of pairs whose two images share a class, in percent ({MISSING} without labels)."
        ),
        header=(
            "dataset",
            "sampler model",
            "k",
            "threshold",
            "pairs kept",
            "anchors with pairs",
            "precision (%)",
        ),
        rows=tuple(rows),
        numeric=(False, False, True, True, True, True, True),
    )


def published_table(published: pd.DataFrame, results: pd.DataFrame) -> Table:
    """Reproduced numbers beside the published ones, with the difference in points."""
    ours = results.set_index(["task", "dataset", "model", "metric"])
    rows = []
    for p in published.itertuples(index=False):
        key = (p.task, p.dataset, p.model, p.metric)
        reproduced, delta, inside = MISSING, MISSING, MISSING
        if key in ours.index:
            r = ours.loc[key]
            reproduced = with_ci(r["value"], r["ci_low"], r["ci_high"])
            delta = f"{(r['value'] - p.value) * 100:+.1f}"
            if not (math.isnan(r["ci_low"]) or math.isnan(r["ci_high"])):
                inside = "yes" if r["ci_low"] <= p.value <= r["ci_high"] else "no"
        rows.append(
            (
                Cell(p.task),
                Cell(p.dataset),
                Cell(p.model),
                Cell(p.metric),
                Cell(reproduced),
                Cell(percent(p.value)),
                Cell(delta),
                Cell(inside),
                Cell(p.source or MISSING),
            )
        )
    return Table(
        name="published",
        title="Reproduced vs published",
        caption=(
            "Reproduced numbers (95% bootstrap CI in parentheses) beside the published ones, "
            "in percent with one decimal; Δ is reproduced minus published in points; "
            f"'in CI' says whether the published value lies in our interval ({MISSING}: "
            "not reproduced or no interval)."
        ),
        header=(
            "task",
            "dataset",
            "model",
            "metric",
            "reproduced",
            "published",
            "Δ",
            "in CI",
            "source",
        ),
        rows=tuple(rows),
        numeric=(False, False, False, False, True, True, True, False, False),
    )


# --- semantic correspondence --------------------------------------------------------------

# The matching variants from the plainest to the unified benchmark's default, as its paper
# lists them; a variant the report does not know comes after them, by name.
VARIANT_ORDER = ("nn", "bilinear", "softmax", "kernel_softmax")
PCK_CAPTION = (
    "a keypoint is correct when the prediction lies within α·T of the truth, T the pair's "
    "threshold (the target box's longer side; the target image's for PF-PASCAL)"
)


def ordered_variants(variants: pd.Series | list[str]) -> list[str]:
    rank = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return sorted(set(variants), key=lambda v: (rank.get(v, len(rank)), v))


def _alpha(alpha: float) -> str:
    """An alpha as the metric names print it (``pck@0.1``)."""
    return str(float(alpha))


def _bold_best(values: list[float | None]) -> list[bool]:
    """Which printed values are the best of their column; none when fewer than two values."""
    shown = [float(percent(v)) if v is not None else None for v in values]
    present = [v for v in shown if v is not None]
    if len(present) < 2:
        return [False] * len(values)
    return [v == max(present) for v in shown]


def _ci_cells(entries: list[pd.Series | None]) -> list[Cell]:
    """A column of value (CI) cells, the best value bold; ``None`` is a missing entry."""
    bold = _bold_best([None if r is None else float(r["value"]) for r in entries])
    return [
        Cell(MISSING)
        if r is None
        else Cell(with_ci(r["value"], r["ci_low"], r["ci_high"]), bold=bold[i])
        for i, r in enumerate(entries)
    ]


def _breaks(models: list[str]) -> tuple[int, ...]:
    """The row where fine-tuned models start, when frozen ones come before them."""
    first = next((i for i, m in enumerate(models) if is_finetuned(m)), 0)
    return (first,) if first else ()


def _variant_names(corr: Correspondence) -> str:
    """The primary matching variant, or which one each dataset used when they differ."""
    per_dataset = corr.runs.drop_duplicates("dataset").set_index("dataset")["variant"]
    if per_dataset.nunique() == 1:
        return str(per_dataset.iloc[0])
    return ", ".join(
        f"{per_dataset[d]} ({dataset_title(d)})" for d in ordered_datasets(per_dataset.index)
    )


def correspondence_table(results: pd.DataFrame, corr: Correspondence) -> Table:
    """The unified benchmark's main table (Zhang et al. 2025, "Semantic Correspondence:
    Unified Benchmarking and a Strong Baseline", Tab. 1): rows are models, frozen backbones
    then fine-tuned ones; a column group per dataset with per-image PCK at every alpha.
    """
    rows = results[results["task"] == CORRESPONDENCE]
    parsed = rows["metric"].map(parse_pck)
    pck = rows[parsed.map(lambda p: p is not None and p[0] == "pck")].assign(
        alpha=parsed.map(lambda p: p[1] if p is not None else math.nan)
    )
    datasets = ordered_datasets(pck["dataset"])
    alphas = {ds: sorted(pck.loc[pck["dataset"] == ds, "alpha"].unique()) for ds in datasets}
    columns = [(ds, a) for ds in datasets for a in alphas[ds]]
    models = ordered_models(pck["model"])
    value = pck.set_index(["model", "dataset", "alpha"])["value"]
    grid = [[value.get((m, ds, a)) for ds, a in columns] for m in models]
    bold = [_bold_best([grid[i][j] for i in range(len(models))]) for j in range(len(columns))]
    body = tuple(
        (
            Cell(m),
            *(
                Cell(MISSING if v is None else percent(v), bold=bold[j][i])
                for j, v in enumerate(grid[i])
            ),
        )
        for i, m in enumerate(models)
    )
    return Table(
        name="correspondence",
        title="Unified benchmark · PCK@α per image",
        caption=(
            f"PCK@α per image (the mean over pairs of each pair's share of correct keypoints) "
            f"in percent, one decimal; {PCK_CAPTION}. Matching variant {_variant_names(corr)}. "
            "Frozen backbones first, then fine-tuned models (<backbone>+<recipe>); best per "
            "column in bold. The 95% bootstrap confidence intervals and PCK per point are in "
            "the per-dataset tables and results.csv."
        ),
        header=("model", *[f"PCK@{_alpha(a)}" for _, a in columns]),
        rows=body,
        numeric=(False, *[True] * len(columns)),
        groups=(("", 1), *[(dataset_title(ds), len(alphas[ds])) for ds in datasets]),
        breaks=_breaks(models),
    )


def variant_tables(corr: Correspondence) -> list[Table]:
    """Per dataset: every matching variant of every model at the primary alpha, per image and
    per point, with 95% bootstrap CIs."""
    tables = []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        runs = corr.runs[corr.runs["dataset"] == dataset]
        alpha = float(runs["primary_alpha"].iloc[0])
        primary = str(runs["variant"].iloc[0])
        d = corr.variants[
            (corr.variants["dataset"] == dataset) & np.isclose(corr.variants["alpha"], alpha)
        ]
        cells = d.set_index(["model", "variant", "kind"])
        models = ordered_models(runs["model"])
        variants = ordered_variants(d["variant"]) or [primary]
        keys = [(m, v) for m in models for v in variants]
        per_image, per_point = (
            _ci_cells(
                [cells.loc[(m, v, kind)] if (m, v, kind) in cells.index else None for m, v in keys]
            )
            for kind in ("pck", "pck_point")
        )
        body = tuple(
            (Cell(m), Cell(f"{v} (primary)" if v == primary else v), per_image[i], per_point[i])
            for i, (m, v) in enumerate(keys)
        )
        title = dataset_title(dataset)
        tables.append(
            Table(
                name=f"correspondence_variants_{slug(dataset)}",
                title=f"Matching variants · {title}",
                caption=(
                    f"{title}: PCK@{_alpha(alpha)} of every matching variant, per image (mean "
                    "over pairs) and per point (all keypoints pooled), in percent with the "
                    f"95% bootstrap confidence interval over pairs; {PCK_CAPTION}. The primary "
                    f"variant ({primary}) gives the main table; best per column in bold."
                ),
                header=(
                    "model",
                    "variant",
                    f"PCK@{_alpha(alpha)} per image",
                    f"PCK@{_alpha(alpha)} per point",
                ),
                rows=body,
                numeric=(False, False, True, True),
                breaks=tuple(range(len(variants), len(keys), len(variants))),
            )
        )
    return tables


def correspondence_runs_table(corr: Correspondence) -> Table:
    """What each evaluation ran on: pairs, keypoints, resolution, feature grid, speed."""
    rows, breaks = [], []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        runs = corr.runs[corr.runs["dataset"] == dataset]
        if rows:
            breaks.append(len(rows))
        by_model = runs.set_index("model")
        for model in ordered_models(runs["model"]):
            r = by_model.loc[model]
            rows.append(
                (
                    Cell(dataset_title(dataset)),
                    Cell(model),
                    Cell(str(r["n_pairs"])),
                    Cell(str(r["n_points"])),
                    Cell(str(r["resolution"])),
                    Cell(str(r["grid"])),
                    Cell("yes" if r["cache"] else "no"),
                )
            )
    return Table(
        name="correspondence_runs",
        title="Evaluation runs",
        caption=(
            "Per dataset and model: the pairs and keypoints evaluated, the input resolution "
            "(pixels per side), the feature grid (w×h cells), and whether dense maps came from "
            "the on-disk cache (speed is in each evaluation's log; benchmarks/ measures it)."
        ),
        header=("dataset", "model", "pairs", "keypoints", "resolution", "grid", "cache"),
        rows=tuple(rows),
        numeric=(False, False, True, True, True, False, False),
        breaks=tuple(breaks),
    )


def correspondence_notes(corr: Correspondence) -> list[str]:
    """Warnings a reader must see: pairs skipped (by reason), pair counts that differ.

    ``AP-10K: 12 pairs skipped: fewer than 3 keypoints visible in both``; named per model
    when the models of a dataset disagree.
    """
    notes = []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        runs = corr.runs[corr.runs["dataset"] == dataset]
        title = dataset_title(dataset)
        models = ordered_models(runs["model"])
        skipped = corr.skipped[corr.skipped["dataset"] == dataset]
        for reason in sorted(skipped["reason"].unique()):
            counts = skipped[skipped["reason"] == reason].set_index("model")["count"]
            per_model = {m: int(counts.get(m, 0)) for m in models}
            if len(set(per_model.values())) == 1:
                notes.append(f"{title}: {_pairs(per_model[models[0]])} skipped: {reason}")
                continue
            notes += [
                f"{title} ({m}): {_pairs(n)} skipped: {reason}" for m, n in per_model.items() if n
            ]
        n_pairs = runs.set_index("model")["n_pairs"]
        if n_pairs.nunique() > 1:
            counts_text = ", ".join(f"{m} {n_pairs[m]}" for m in models)
            notes.append(
                f"{title}: the models were evaluated on different numbers of pairs "
                f"({counts_text}); their numbers are not directly comparable"
            )
    return notes


def _pairs(n: int) -> str:
    return f"{n} pair" if n == 1 else f"{n} pairs"


# --- renderers ----------------------------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def to_markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    out = [f"**{_md(table.title)}.** {_md(table.caption)}", ""]
    out.append(line([_md(h) for h in table.flat_header()]))
    out.append(line(["---:" if num else ":---" for num in table.numeric]))
    for row in table.rows:
        out.append(line([f"**{_md(c.text)}**" if c.bold else _md(c.text) for c in row]))
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "–": "--",
    "—": "---",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "α": r"\ensuremath{\alpha}",  # not $..$: next to another $..$ it would read $$
    "·": r"$\cdot$",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    spec = "".join("r" if num else "l" for num in table.numeric)
    out = [
        "% Generated by matchbench report; needs \\usepackage{booktabs}.",
        "\\begin{table}[t]",
        "  \\centering",
        f"  \\caption{{{_tex(table.caption)}}}",
        f"  \\label{{tab:{table.name}}}",
        f"  \\begin{{tabular}}{{{spec}}}",
        "    \\toprule",
        *_latex_groups(table),
        "    " + " & ".join(_tex(h) for h in table.header) + " \\\\",
        "    \\midrule",
    ]
    for i, row in enumerate(table.rows):
        if i in table.breaks:
            out.append("    \\midrule")
        cells = [f"\\textbf{{{_tex(c.text)}}}" if c.bold else _tex(c.text) for c in row]
        out.append("    " + " & ".join(cells) + " \\\\")
    out += ["    \\bottomrule", "  \\end{tabular}", "\\end{table}"]
    return "\n".join(out) + "\n"


def _latex_groups(table: Table) -> list[str]:
    """The booktabs group-header row: ``\\multicolumn`` labels, ``\\cmidrule`` under each."""
    if not table.groups:
        return []
    cells, rules, start = [], [], 1
    for label, span in table.groups:
        end = start + span - 1
        if not label:
            cells += [""] * span
        else:
            cells.append(f"\\multicolumn{{{span}}}{{c}}{{{_tex(label)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{end}}}")
        start = end + 1
    return ["    " + " & ".join(cells) + " \\\\", "    " + " ".join(rules)]


def to_csv(table: Table) -> str:
    """The table as printed (percent strings), for spreadsheets; bold has no CSV form."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.flat_header())
    for row in table.rows:
        writer.writerow([c.text for c in row])
    return buf.getvalue()


def write_table(table: Table, directory: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.tex`` and ``<name>.csv`` into ``directory``."""
    paths = []
    for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
        path = directory / f"{table.name}{suffix}"
        write_text(path, render(table))
        paths.append(path)
    return paths
