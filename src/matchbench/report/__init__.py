"""The report stage: gather metrics, mining statistics and training logs into one report.

``reports/<run>/`` holds ``results.csv`` (the tidy table), ``tables/`` (Markdown, LaTeX,
CSV), ``figures/`` (PNG) and ``index.html``. Every input is read and validated before
anything is written, and the whole folder is built in a temporary directory and renamed
into place, so a failed report leaves no half report (and an older report stays whole).

Metrics of task ``correspondence`` get their own section instead of the generic per-task
table: the unified benchmark's main table (a column group per dataset, PCK@alpha per image),
a table of matching variants per dataset, the PCK-vs-alpha curves, per-category and
difficulty-flag bars, fine-tuned vs frozen, warnings for skipped pairs, and, from
``--predictions`` with ``--predictions-index``, example keypoint transfers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_text
from matchbench.report import html, tables
from matchbench.report.gather import (
    CORRESPONDENCE,
    Correspondence,
    PairSample,
    TransferSample,
    gather_correspondence,
    gather_metrics,
    gather_mining,
    gather_train_logs,
    metrics_table,
    read_metrics_docs,
    read_pair_sample,
    read_published,
    read_transfer_samples,
)
from matchbench.report.names import ordered_models

__all__ = ["ReportInputs", "add_arguments", "gather_metrics", "read_inputs", "run", "write_report"]

DEFAULT_TITLE = "matchbench report"
DEFAULT_REPRODUCE = "snakemake --cores 2"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # --mining-stats and --train-logs take zero or more files, so a rule may pass a list that
    # its config left empty (a track without fine-tuning) without special-casing the flag.
    parser.add_argument("--out", required=True, type=Path, help="report folder (reports/<run>)")
    parser.add_argument("--title", default=DEFAULT_TITLE, help="title of the report page")
    parser.add_argument(
        "--metrics",
        nargs="+",
        required=True,
        type=Path,
        metavar="FILE",
        help="metrics JSON files (results/metrics/<task>/<dataset>/<model>.json)",
    )
    parser.add_argument(
        "--mining-stats",
        nargs="*",
        default=[],
        type=Path,
        metavar="FILE",
        help="mining statistics (results/pairs/<dataset>/<model>/stats.json)",
    )
    parser.add_argument(
        "--train-logs",
        nargs="*",
        default=[],
        type=Path,
        metavar="FILE",
        help="training logs (results/models/<recipe>/<dataset>/<backbone>/train_log.csv)",
    )
    parser.add_argument(
        "--pairs", type=Path, metavar="FILE", help="pairs.parquet to draw example mined pairs from"
    )
    parser.add_argument(
        "--index", type=Path, metavar="FILE", help="images.parquet of the dataset of --pairs"
    )
    parser.add_argument(
        "--images-root",
        type=Path,
        metavar="DIR",
        help="folder the path column of --index is relative to (default: the folder of --index)",
    )
    parser.add_argument(
        "--predictions",
        nargs="*",
        default=[],
        type=Path,
        metavar="FILE",
        help="correspondence predictions to draw example keypoint transfers from "
        "(results/metrics/correspondence/<dataset>/<model>.predictions.parquet); the same "
        "pairs are drawn for every model of a dataset",
    )
    parser.add_argument(
        "--predictions-index",
        nargs="*",
        default=[],
        type=Path,
        metavar="FILE",
        help="images.parquet of each dataset of --predictions (data/<dataset>/images.parquet; "
        "matched by its folder name)",
    )
    parser.add_argument(
        "--predictions-root",
        nargs="*",
        default=[],
        type=Path,
        metavar="DIR",
        help="folder each --predictions-index's path column is relative to, one per index in "
        "the same order (default: the folder of each index)",
    )
    parser.add_argument(
        "--published",
        type=Path,
        metavar="FILE",
        help="published numbers, YAML or JSON: a list of {task, dataset, model, metric, value, source}",
    )
    parser.add_argument(
        "--reproduce",
        default=DEFAULT_REPRODUCE,
        metavar="CMD",
        help=f"command shown under 'How to reproduce' (default: {DEFAULT_REPRODUCE!r})",
    )


@dataclass(frozen=True)
class ReportInputs:
    results: pd.DataFrame
    mining: pd.DataFrame
    mining_curves: pd.DataFrame
    train_logs: pd.DataFrame
    published: pd.DataFrame | None = None
    pairs: PairSample | None = None
    correspondence: Correspondence | None = None
    transfers: tuple[TransferSample, ...] = ()


def read_inputs(args: argparse.Namespace) -> ReportInputs:
    """Read and validate every input; raises MatchbenchError before anything is written."""
    if args.pairs is None and (args.index is not None or args.images_root is not None):
        raise MatchbenchError("--index and --images-root need --pairs")
    if args.pairs is not None and args.index is None:
        raise MatchbenchError("--pairs needs --index (the images.parquet of its dataset)")
    if args.predictions and not args.predictions_index:
        raise MatchbenchError("--predictions needs --predictions-index (images.parquet files)")
    docs = read_metrics_docs(args.metrics)
    results = metrics_table(docs)
    correspondence = gather_correspondence(docs)
    if args.predictions and correspondence.empty:
        raise MatchbenchError(
            f"--predictions needs the metrics of task {CORRESPONDENCE} they came with (--metrics)"
        )
    mining, mining_curves = gather_mining(args.mining_stats)
    return ReportInputs(
        results=results,
        mining=mining,
        mining_curves=mining_curves,
        train_logs=gather_train_logs(args.train_logs),
        published=read_published(args.published) if args.published is not None else None,
        pairs=(
            read_pair_sample(args.pairs, args.index, args.images_root)
            if args.pairs is not None
            else None
        ),
        correspondence=None if correspondence.empty else correspondence,
        transfers=tuple(
            read_transfer_samples(
                args.predictions,
                args.predictions_index,
                args.predictions_root,
                model_order=ordered_models(results["model"]),
            )
        ),
    )


def write_report(inputs: ReportInputs, out_dir: Path, *, title: str, reproduce: str) -> None:
    """Write results.csv, tables/, figures/ and index.html into ``out_dir`` (an empty folder)."""
    # Imported here so that `from matchbench.report.gather import gather_metrics` stays light.
    from matchbench.report import figures

    results = inputs.results
    # Correspondence has its own section; every other task gets the generic table and bars.
    generic = results[results["task"] != CORRESPONDENCE].reset_index(drop=True)
    table_dir, figure_dir = out_dir / "tables", out_dir / "figures"
    table_dir.mkdir(parents=True, exist_ok=True)
    figure_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "results.csv", tables.results_csv(results))

    main = tables.main_tables(generic)
    mining = tables.mining_table(inputs.mining) if not inputs.mining.empty else None
    published = (
        tables.published_table(inputs.published, results) if inputs.published is not None else None
    )
    for table in [*main, mining, published]:
        if table is not None:
            tables.write_table(table, table_dir)

    colors = figures.model_colors(
        [
            *results["model"],
            *inputs.train_logs["model"],
            *inputs.mining["model"],
            *(m for sample in inputs.transfers for m in sample.models),
        ]
    )
    mining_plots = figures.mining_curves(inputs.mining, inputs.mining_curves, figure_dir, colors)
    if inputs.pairs is not None and (grid := figures.pair_grid(inputs.pairs, figure_dir)):
        mining_plots.append(grid)

    page = html.Page(
        title=title,
        tasks=sorted(results["task"].unique()),
        datasets=sorted(results["dataset"].unique()),
        models=sorted(results["model"].unique()),
        n_results=len(results),
        main_tables=main,
        published=published,
        bar_plots=figures.bar_charts(generic, figure_dir, colors),
        mining=mining,
        mining_plots=mining_plots,
        curve_plots=figures.learning_curves(inputs.train_logs, figure_dir, colors),
        reproduce=reproduce,
        correspondence=_correspondence_part(inputs, table_dir, figure_dir, colors),
    )
    write_text(out_dir / "index.html", html.render_page(page))


def _correspondence_part(
    inputs: ReportInputs, table_dir: Path, figure_dir: Path, colors: dict[str, str]
) -> html.CorrespondencePart | None:
    from matchbench.report import figures

    corr = inputs.correspondence
    if corr is None:
        return None
    main = tables.correspondence_table(inputs.results, corr)
    more = [*tables.variant_tables(corr), tables.correspondence_runs_table(corr)]
    for table in (main, *more):
        tables.write_table(table, table_dir)
    plots = [
        *figures.pck_curves(corr, figure_dir, colors),
        *figures.finetune_bars(inputs.results, corr, figure_dir, colors),
        *figures.category_bars(corr, figure_dir, colors),
        *figures.flag_bars(corr, figure_dir, colors),
    ]
    for sample in inputs.transfers:
        if plot := figures.transfer_grid(sample, corr, figure_dir):
            plots.append(plot)
    return html.CorrespondencePart(
        notes=tables.correspondence_notes(corr), main_table=main, tables=more, plots=plots
    )


def run(args: argparse.Namespace) -> int:
    inputs = read_inputs(args)
    out = Path(args.out)
    with atomic_dir(out) as tmp:
        write_report(inputs, tmp, title=args.title, reproduce=args.reproduce)
    print(f"report: {out / 'index.html'}")
    return 0
