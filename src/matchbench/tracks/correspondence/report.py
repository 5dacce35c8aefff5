"""The correspondence track's report section, in the unified benchmark's layout (Zhang et al.
2025, "Semantic Correspondence: Unified Benchmarking and a Strong Baseline").

It replaces the generic per-task table: the main table (a column group per dataset, PCK@alpha
per image), a table of matching variants per dataset, what each run evaluated, the PCK-vs-alpha
curves, fine-tuned vs frozen, per-category and difficulty-flag bars, warnings for skipped
pairs, and example keypoint transfers from the predictions the documents name
(``artifacts.predictions``) of the models the config shows (each fine-tuned backbone frozen
and tuned, :func:`matchbench.tracks.correspondence.shown_models`).

Private parts: ``report_read`` (the documents' ``extra`` blocks, tidy), ``report_transfers``
(predictions and images), ``report_tables``, ``report_figures``.
"""

from __future__ import annotations

from matchbench.report.gather import MetricsDoc
from matchbench.report.names import ordered_models
from matchbench.report.section import Context, Section
from matchbench.tracks.correspondence import report_figures as figures
from matchbench.tracks.correspondence import report_tables as tables
from matchbench.tracks.correspondence import shown_models
from matchbench.tracks.correspondence.report_read import CORRESPONDENCE, gather_correspondence
from matchbench.tracks.correspondence.report_transfers import (
    predictions_files,
    read_transfer_samples,
)


def section(docs: list[MetricsDoc], ctx: Context) -> Section:
    """Read and check every document and the predictions they name, then draw."""
    corr = gather_correspondence(docs)
    results = ctx.results[ctx.results["task"] == CORRESPONDENCE]
    block = ctx.cfg["tracks"].get(CORRESPONDENCE)
    shown = shown_models(block) if block is not None else None
    transfers = read_transfer_samples(
        predictions_files(docs, shown),
        ctx.layout,
        model_order=ordered_models(results["model"]),
    )

    plots = [
        *figures.pck_curves(corr, ctx.figures, ctx.colors),
        *figures.finetune_bars(results, corr, ctx.figures, ctx.colors),
        *figures.category_bars(corr, ctx.figures, ctx.colors),
        *figures.flag_bars(corr, ctx.figures, ctx.colors),
    ]
    for sample in transfers:
        if plot := figures.transfer_grid(sample, corr, ctx.figures):
            plots.append(plot)
    return Section(
        anchor="correspondence",
        title="Semantic correspondence",
        warnings=tuple(tables.correspondence_notes(corr)),
        warnings_about="on skipped pairs and pair counts",
        tables=(
            tables.correspondence_table(results, corr, ctx.tied),
            *tables.variant_tables(corr),
            tables.correspondence_runs_table(corr),
        ),
        plots=tuple(plots),
    )
