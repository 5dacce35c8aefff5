"""The report stage: every metrics document of a run in one report.

``matchbench report --config <config.yaml> --out reports/<run> --metrics <doc.json ...>``
writes ``results.csv`` (the tidy table), ``tables/`` (Markdown, LaTeX, CSV), ``figures/``
(PNG) and ``index.html``. The documents are all it is given: each is validated against the
metrics schema, names its identity (task, dataset, model) and its side files
(``artifacts``: training logs, predictions, mined pairs); the config gives the published
numbers (``report.published``) and where the data lives (``matchbench.layout``).

This package is the generic frame: the tidy table, the published-vs-ours table, learning
curves from the training logs (the recipe's ``plot_columns``), the page. Each track with a
``report`` section (``matchbench.tracks``) adds its own part, in registry order; a task whose
track has none (or that is no track, a ``score`` benchmark) gets the generic table and bar
chart per dataset. The report is drawn in a scratch folder and lands in ``--out`` whole
(``io.atomic_dir``), so a bad input, found by the frame or by a section, leaves no half report
and no new folder (an older report stays whole).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from matchbench.config import add_config_argument, load_config
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json, write_text
from matchbench.layout import Layout
from matchbench.report import across, html, paired, tables
from matchbench.report.gather import (
    MetricsDoc,
    gather_train_logs,
    metrics_table,
    read_metrics_docs,
    read_published,
)
from matchbench.report.provenance import provenance
from matchbench.report.section import Context, Section

__all__ = [
    "Context",
    "ReportInputs",
    "Section",
    "add_arguments",
    "read_inputs",
    "run",
    "write_report",
]

T = TypeVar("T")
DEFAULT_TITLE = "matchbench report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--out", required=True, type=Path, help="report folder (reports/<run>)")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="title of the report page")
    parser.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        type=Path,
        metavar="FILE",
        help="metrics documents (results/metrics/<task>/<dataset>/<model>.json); their "
        "'artifacts' name the side files the report also reads",
    )
    parser.add_argument(
        "--reproduce",
        default=None,
        metavar="CMD",
        help="command shown under 'How to reproduce' (default: the snakemake command of "
        "--config: `snakemake --cores <threads>`, with `--configfile <path>` unless it is "
        "config/default.yaml)",
    )


@dataclass(frozen=True)
class ReportInputs:
    """What the frame reads and checks before drawing anything."""

    cfg: dict[str, Any]
    docs: tuple[MetricsDoc, ...]  # by (task, dataset, model), whatever the order given
    results: pd.DataFrame
    train_logs: pd.DataFrame
    published: pd.DataFrame | None = None
    # The documents' per-query values (report.paired.read_values), and the paired bootstrap
    # tests of each model against its column's best
    values: pd.DataFrame = field(default_factory=pd.DataFrame)
    tests: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=paired.COLUMNS))


def read_inputs(cfg: dict[str, Any], metrics: list[Path]) -> ReportInputs:
    """Read and validate the documents, the training logs they name and the published numbers."""
    docs = sorted(read_metrics_docs(metrics), key=lambda d: (d.task, d.dataset, d.model))
    published = cfg["report"]["published"]
    results = metrics_table(docs)
    values = paired.read_values(docs)
    n_boot = cfg["report"]["paired_bootstrap"]
    return ReportInputs(
        cfg=cfg,
        docs=tuple(docs),
        results=results,
        train_logs=gather_train_logs(docs),
        published=read_published(published) if published else None,
        values=values,
        tests=paired.versus_best(results, values, n_boot, cfg["seed"]),
    )


def write_report(
    inputs: ReportInputs, out_dir: Path, *, title: str, origin: dict[str, Any]
) -> None:
    """Write results.csv, tables/, figures/, provenance.json and index.html into ``out_dir``
    (an empty folder); ``origin`` is the provenance (:mod:`matchbench.report.provenance`)."""
    # Imported here: matplotlib is paid for only when a report is drawn.
    from matchbench.report import figures

    results = inputs.results
    table_dir, figure_dir = out_dir / "tables", out_dir / "figures"
    table_dir.mkdir(parents=True, exist_ok=True)
    figure_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "results.csv", tables.results_csv(results))
    write_text(out_dir / "paired.csv", tables.results_csv(inputs.tests))
    tied = paired.tied_with_best(inputs.tests)

    colors = figures.model_colors(results["model"])
    ctx = Context(
        cfg=inputs.cfg,
        layout=Layout.of(inputs.cfg),
        tables=table_dir,
        figures=figure_dir,
        colors=colors,
        results=results,
        tied=tied,
        values=inputs.values,
    )
    by_task = track_sections(inputs.docs, ctx)
    replaced = {task for task, s in by_task if not s.in_main_results}
    generic = results[~results["task"].isin(replaced)].reset_index(drop=True)
    sections = [s for _, s in by_task]
    overview = across.section(results, inputs.tests, ctx)
    if overview is not None:
        sections.append(overview)

    main = tables.main_tables(generic, tied)
    published = (
        tables.published_table(inputs.published, results) if inputs.published is not None else None
    )
    bar_plots = figures.bar_charts(generic, figure_dir, colors)
    curve_plots = figures.learning_curves(inputs.train_logs, figure_dir, colors)
    every_table = [*main, *([published] if published else []), *_all(s.tables for s in sections)]
    every_plot = [*bar_plots, *curve_plots, *_all(s.plots for s in sections)]
    _unique("table", [t.name for t in every_table])
    _unique("figure", [p.name for p in every_plot])
    for table in every_table:
        tables.write_table(table, table_dir)

    page = html.Page(
        title=title,
        tasks=sorted(results["task"].unique()),
        datasets=sorted(results["dataset"].unique()),
        models=sorted(results["model"].unique()),
        n_results=len(results),
        main_tables=main,
        published=published,
        bar_plots=bar_plots,
        curve_plots=curve_plots,
        sections=sections,
        provenance=origin,
    )
    write_json(out_dir / "provenance.json", origin)
    write_text(out_dir / "index.html", html.render_page(page))


def track_sections(docs: tuple[MetricsDoc, ...], ctx: Context) -> list[tuple[str, Section]]:
    """(task, section) for each task present whose track has a report section, in registry
    order; each section gets the documents of its task only."""
    from matchbench.tracks import tasks

    found = []
    for task, track in tasks().items():
        mine = [d for d in docs if d.task == task]
        if mine and track.report is not None:
            found.append((task, track.fn("report")(mine, ctx)))
    return found


def _all(parts: Iterable[Iterable[T]]) -> list[T]:
    return [x for part in parts for x in part]


def _unique(kind: str, names: list[str]) -> None:
    """Two tables (or figures) of one name would overwrite each other's files."""
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:
        raise MatchbenchError(
            f"two report {kind}s would both be written as {twice[0]!r} (a task or dataset "
            "name clashes with a track's own file names); rename one of them"
        )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    inputs = read_inputs(cfg, args.metrics)
    out = Path(args.out)
    # Sections read their side files while drawing: draw in a scratch folder, so that one
    # refusing its input leaves nothing under the reports folder.
    with tempfile.TemporaryDirectory(prefix="matchbench-report-") as scratch:
        drawn = Path(scratch) / "report"  # made with the umask's mode, which copytree copies
        drawn.mkdir()
        origin = provenance(cfg, args.config)
        if args.reproduce is not None:
            origin["command"] = args.reproduce
        write_report(inputs, drawn, title=args.title, origin=origin)
        with atomic_dir(out) as tmp:
            shutil.copytree(drawn, tmp, dirs_exist_ok=True)
    print(f"report: {out / 'index.html'}")
    return 0
