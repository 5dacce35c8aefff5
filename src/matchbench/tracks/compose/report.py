"""The ``compose`` track's report section: the paper's ablation, and SugarCrepe per category.

The ablation table follows "Learning Visual Composition through Improved Semantic Guidance"
(arXiv 2412.15396, Table 5's layout): one row per model (each backbone as it is, then each
trained variant, labelled by its text tower, caption source and hard negatives), columns ARO
VG-Relation, ARO VG-Attribution, SugarCrepe (average of its categories) and long-caption
text-to-image R@1, each with its 95% bootstrap interval. A metric a dataset does not have is
left blank. The figure draws SugarCrepe's accuracy per category, one bar per model.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from matchbench.layout import split_model
from matchbench.report.figures import Plot, figure, grouped_bars, legend, percent_axis
from matchbench.report.gather import MetricsDoc
from matchbench.report.section import Context, Section
from matchbench.report.tables import Cell, ResultKey, Table, entry_cell, marked_caption
from matchbench.tracks.compose.variants import PREFIX, resolve
from matchbench.tracks.compose.variants import block as compose_block

COLUMNS = (  # (metric, header)
    ("aro_relation", "ARO-R"),
    ("aro_attribution", "ARO-A"),
    ("sugarcrepe_avg", "SugarCrepe"),
    ("t2i_r@1", "T2I R@1"),
)
CATEGORY_PREFIX = "sugarcrepe_"


def variant_label(blk: dict[str, Any], model: str) -> str:
    """``scratch, rich (+ hard negatives)`` for a trained model; ``as is`` for a backbone."""
    recipe = split_model(model)[1]
    if recipe is None or not recipe.startswith(PREFIX):
        return "as is"
    name = recipe[len(PREFIX) :]
    if name not in blk["variants"]:
        return recipe
    v = resolve(blk, name)
    label = f"{v.text_tower} text tower, {'rich captions' if v.caption == 'rich' else 'alt-text'}"
    k = v.sentences
    if v.caption == "rich" and isinstance(k, int):  # k sentences (1 is one, not the whole)
        label += f" ({k} sentence{'s' if k > 1 else ''} a step)"
    elif v.caption == "rich" and isinstance(k, float) and k < 1:  # 1.0 keeps every sentence
        label += f" (sentences kept with p {k:g})"
    return label + (" + hard negatives" if v.hard_negatives else "")


def _cell(doc: dict[str, Any], metric: str, tied: frozenset[ResultKey]) -> Cell:
    key = (doc["task"], doc["dataset"], doc["model"], metric)
    return entry_cell(doc["metrics"].get(metric), mark=key in tied)


def ablation_table(
    blk: dict[str, Any],
    dataset: str,
    docs: list[MetricsDoc],
    tied: frozenset[ResultKey] = frozenset(),
) -> Table:
    order = {m: i for i, m in enumerate(_models(blk))}
    docs = sorted(docs, key=lambda d: (order.get(d.model, len(order)), d.model))
    present = [(m, h) for m, h in COLUMNS if any(m in d.doc["metrics"] for d in docs)]
    rows = tuple(
        (
            Cell(d.model),
            Cell(variant_label(blk, d.model)),
            *(_cell(d.doc, m, tied) for m, _ in present),
        )
        for d in docs
    )
    return Table(
        name=f"compose_ablation_{dataset}",
        title=f"Compositional matching on {dataset}",
        caption=marked_caption(
            "Accuracy (ARO, SugarCrepe: the positive caption scored above the hard negative; "
            "macro averages) and long-caption text-to-image Recall@1, in percent with 95% "
            "bootstrap intervals. Rows as the paper's ablation: text tower x caption source "
            "(+ hard negatives).",
            rows,
        ),
        header=("model", "variant", *(h for _, h in present)),
        rows=rows,
        numeric=(False, False, *(True for _ in present)),
    )


def _models(blk: dict[str, Any]) -> list[str]:
    from matchbench.tracks.compose import models

    return models(blk)


def category_bars(dataset: str, docs: list[MetricsDoc], ctx: Context) -> Plot | None:
    rows = [
        {"model": d.model, "category": name[len(CATEGORY_PREFIX) :], **values}
        for d in docs
        for name, values in d.doc["metrics"].items()
        if name.startswith(CATEGORY_PREFIX) and name != "sugarcrepe_avg"
    ]
    if not rows:
        return None
    table = pd.DataFrame(rows)
    for col in ("ci_low", "ci_high"):
        if col not in table:
            table[col] = math.nan
    table[["ci_low", "ci_high"]] = table[["ci_low", "ci_high"]].astype(float)
    categories = sorted(table["category"].unique())
    models = [d.model for d in docs]
    name = f"sugarcrepe_categories_{dataset}"
    with figure(ctx.figures / f"{name}.png", (max(6.0, 1.1 * len(categories) + 2), 3.6)) as (
        fig,
        axes,
    ):
        ax = axes[0, 0]
        top = grouped_bars(ax, categories, models, table, ctx.colors, "category")
        percent_axis(ax, top, "accuracy (%)")
        ax.axhline(50, color="#999999", linewidth=0.8, linestyle="--")
        legend(fig, n=len(models))
    return Plot(
        name=f"{name}.png",
        title=f"SugarCrepe per category on {dataset}",
        caption="Accuracy per negative type (replace, swap, add x object, attribute, relation), "
        "95% bootstrap intervals; the dashed line is chance (50%).",
    )


def section(docs: tuple[MetricsDoc, ...], ctx: Context) -> Section:
    blk = compose_block(ctx.cfg)
    tables, plots = [], []
    for dataset in sorted({d.dataset for d in docs}):
        mine = [d for d in docs if d.dataset == dataset]
        tables.append(ablation_table(blk, dataset, mine, ctx.tied))
        if plot := category_bars(dataset, mine, ctx):
            plots.append(plot)
    return Section(
        anchor="compose",
        title="Compositional image-text matching",
        tables=tuple(tables),
        plots=tuple(plots),
        in_main_results=True,
    )
