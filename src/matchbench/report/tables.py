"""Paper-style tables, built once as data and rendered as Markdown, LaTeX (booktabs) and CSV.

Values in the input tables are fractions; tables show percent with one decimal (captions say
so) and the 95% bootstrap confidence interval in parentheses, as papers usually print them.
The generic tables (one per task and dataset, reproduced vs published) are built here; a
track's section builds its own :class:`Table` objects with the helpers below, and the frame
writes and renders every one the same way.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from matchbench.io import write_text
from matchbench.report.names import is_finetuned, stem

MISSING = "—"


MARK = "†"  # a result a paired bootstrap cannot separate from its column's best
ALPHA = 0.05  # ... at this level: p >= ALPHA (matchbench.report.paired)
ResultKey = tuple[str, str, str, str]  # (task, dataset, model, metric): one cell of results.csv


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False
    mark: bool = False  # rendered as a dagger after the text (matchbench.report.paired)


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


def main_tables(results: pd.DataFrame, tied: frozenset[ResultKey] = frozenset()) -> list[Table]:
    """One table per (task, dataset): rows are models, columns metrics, best per column bold.

    Higher is better for every metric in the contract (accuracies, recall, mAP, ...). The
    best is chosen on the printed (rounded) values, so ties a reader sees are all bold.
    ``tied`` holds the (task, dataset, model, metric) a paired test cannot separate from the
    best (:func:`matchbench.report.paired.tied_with_best`): those cells carry the mark.
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
                bold = float(percent(r["value"])) == best[metric]
                row.append(Cell(text, bold, (task, dataset, model, metric) in tied))
            rows.append(tuple(row))
        marked = any(c.mark for row in rows for c in row)
        tables.append(
            Table(
                name=stem(task, dataset),
                title=f"{task} · {dataset}",
                caption=(
                    f"Task {task} on {dataset}. Values in percent (fractions × 100, one "
                    "decimal), 95% bootstrap confidence interval in parentheses; best per "
                    "column in bold." + (f" {MARK_CAPTION}" if marked else "")
                ),
                header=("model", *metrics),
                rows=tuple(rows),
                numeric=(False, *[True] * len(metrics)),
            )
        )
    return tables


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


# --- helpers for the tracks' tables ------------------------------------------------------


MARK_CAPTION = (
    f"{MARK}: not separable from the column's best by a paired bootstrap over the same "
    f"queries (p ≥ {ALPHA}; the table 'Paired tests')."
)


def marked_caption(caption: str, rows: tuple[tuple[Cell, ...], ...] | list) -> str:
    """``caption`` with the dagger's meaning appended when a cell of ``rows`` carries it."""
    return f"{caption} {MARK_CAPTION}" if any(c.mark for row in rows for c in row) else caption


def paired_table(tests: pd.DataFrame) -> Table:
    """Every paired test against a column's best (:func:`matchbench.report.paired.versus_best`)."""
    rows = tuple(
        (
            Cell(t.task),
            Cell(t.dataset),
            Cell(t.metric),
            Cell(t.model),
            Cell(t.best),
            Cell(f"{t.delta * 100:+.1f}"),
            Cell(f"{t.ci_low * 100:+.1f} – {t.ci_high * 100:+.1f}"),
            Cell(f"{t.p:.3f}", mark=t.p >= ALPHA),
            Cell(str(t.n)),
        )
        for t in tests.itertuples()
    )
    return Table(
        name="paired",
        title="Paired tests",
        caption=(
            "Each model against the best model of its task, dataset and metric, on the same "
            "queries: Δ = model − best in points, the 95% interval of a paired percentile "
            "bootstrap (the same resampled queries for both models; macro averages resampled "
            "within each category), its two-sided p and the number of queries. "
            f"{MARK}: p ≥ {ALPHA}, the difference is not established; tables mark these results."
        ),
        header=("task", "dataset", "metric", "model", "best", "Δ", "95% CI of Δ", "p", "n"),
        rows=rows,
        numeric=(False, False, False, False, False, True, True, True, True),
    )


def bold_best(values: list[float | None]) -> list[bool]:
    """Which printed values are the best of their column; none when fewer than two values."""
    shown = [float(percent(v)) if v is not None else None for v in values]
    present = [v for v in shown if v is not None]
    if len(present) < 2:
        return [False] * len(values)
    return [v == max(present) for v in shown]


def entry_cell(entry: dict | None, bold: bool = False, mark: bool = False) -> Cell:
    """A metrics document's entry (``{value, ci_low, ci_high}``, bounds null where there is no
    interval) as a value (CI) cell; ``None`` is a missing entry."""
    if entry is None:
        return Cell(MISSING)
    low, high = entry.get("ci_low"), entry.get("ci_high")
    return Cell(
        with_ci(
            entry["value"], math.nan if low is None else low, math.nan if high is None else high
        ),
        bold,
        mark,
    )


def ci_cells(entries: list[pd.Series | None]) -> list[Cell]:
    """A column of value (CI) cells, the best value bold; ``None`` is a missing entry."""
    bold = bold_best([None if r is None else float(r["value"]) for r in entries])
    return [
        Cell(MISSING)
        if r is None
        else Cell(with_ci(r["value"], r["ci_low"], r["ci_high"]), bold=bold[i])
        for i, r in enumerate(entries)
    ]


def model_breaks(models: list[str]) -> tuple[int, ...]:
    """The row where fine-tuned models start, when frozen ones come before them."""
    first = next((i for i, m in enumerate(models) if is_finetuned(m)), 0)
    return (first,) if first else ()


# --- renderers ----------------------------------------------------------------------------

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|#])")


def _md(text: str) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _md_cell(c: Cell) -> str:
    text = f"**{_md(c.text)}**" if c.bold else _md(c.text)
    return text + MARK if c.mark else text


def to_markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    out = [f"**{_md(table.title)}.** {_md(table.caption)}", ""]
    out.append(line([_md(h) for h in table.flat_header()]))
    out.append(line(["---:" if num else ":---" for num in table.numeric]))
    for row in table.rows:
        out.append(line([_md_cell(c) for c in row]))
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
    "†": r"\textsuperscript{\dag}",
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
        cells = [
            (f"\\textbf{{{_tex(c.text)}}}" if c.bold else _tex(c.text))
            + ("\\textsuperscript{\\dag}" if c.mark else "")
            for c in row
        ]
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
        writer.writerow([c.text + (MARK if c.mark else "") for c in row])
    return buf.getvalue()


def write_table(table: Table, directory: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.tex`` and ``<name>.csv`` into ``directory``."""
    paths = []
    for suffix, render in ((".md", to_markdown), (".tex", to_latex), (".csv", to_csv)):
        path = directory / f"{table.name}{suffix}"
        write_text(path, render(table))
        paths.append(path)
    return paths
