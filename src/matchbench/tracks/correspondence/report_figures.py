"""The correspondence section's figures: PCK-vs-alpha curves, fine-tuned vs frozen, per
category and per difficulty flag, and example keypoint transfers (drawn with the report's
house style, :mod:`matchbench.report.figures`)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from matchbench.report.figures import (
    BAD,
    GOOD,
    Plot,
    figure,
    grid_shape,
    grouped_bars,
    hide_unused,
    image_axes,
    legend,
    model_handles,
    percent_axis,
    short,
    text,
)
from matchbench.report.names import is_finetuned, ordered_models, slug
from matchbench.tracks.correspondence.pairs import FLAGS
from matchbench.tracks.correspondence.report_read import (
    CORRESPONDENCE,
    Correspondence,
    dataset_title,
    level_order,
    ordered_datasets,
)
from matchbench.tracks.correspondence.report_transfers import TransferSample

CORRECT, WRONG = GOOD, BAD
KEYPOINT_COLORS = [mpl.colors.to_hex(c) for c in mpl.colormaps["tab20"].colors]


def _primary(corr: Correspondence, dataset: str) -> tuple[float, str]:
    runs = corr.runs[corr.runs["dataset"] == dataset]
    return float(runs["primary_alpha"].iloc[0]), str(runs["variant"].iloc[0])


def pck_curves(corr: Correspondence, out_dir: Path, colors: dict[str, str]) -> list[Plot]:
    """PCK vs alpha per model, one panel per dataset: per image solid, per point dashed."""
    if corr.curves.empty:
        return []
    datasets = ordered_datasets(corr.curves["dataset"])
    nrows, ncols = grid_shape(len(datasets))
    name = "pck_curves.png"
    size = (3.8 * ncols + 0.6, 3.0 * nrows + 1.0)
    models_all: list[str] = []
    with figure(out_dir / name, size, nrows=nrows, ncols=ncols) as (fig, axes):
        for ax, dataset in zip(axes.flat, datasets, strict=False):
            d = corr.curves[corr.curves["dataset"] == dataset]
            models = ordered_models(d["model"])
            models_all += [m for m in models if m not in models_all]
            for model in models:
                c = d[d["model"] == model]
                ax.plot(c["alpha"], c["pck"] * 100, color=colors[model])
                ax.plot(c["alpha"], c["pck_point"] * 100, color=colors[model], linestyle="--")
            alpha, _ = _primary(corr, dataset)
            ax.axvline(alpha, color="#999999", linestyle=":", linewidth=1)
            ax.set_title(text(dataset_title(dataset)))
            ax.set_xlabel("α (threshold / T)")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.set_ylabel("PCK (%)")
            ax.set_ylim(0, 100)
        hide_unused(axes, len(datasets))
        handles = [Line2D([], [], color=colors[m], label=text(m)) for m in models_all]
        handles += [
            Line2D([], [], color="#333333", label="per image"),
            Line2D([], [], color="#333333", linestyle="--", label="per point"),
        ]
        legend(fig, handles, n=len(handles))
    return [
        Plot(
            name=name,
            title="PCK vs α",
            caption=(
                "PCK of the primary matching variant as the threshold α grows (a keypoint is "
                "correct within α·T of the truth), one panel per dataset: per image (mean over "
                "pairs) solid, per point (all keypoints pooled) dashed; the dotted line marks "
                "the primary α."
            ),
        )
    ]


def category_bars(corr: Correspondence, out_dir: Path, colors: dict[str, str]) -> list[Plot]:
    """Per dataset: per-image PCK at the primary alpha by category, grouped by model."""
    plots = []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        alpha, variant = _primary(corr, dataset)
        c = corr.categories
        d = c[(c["dataset"] == dataset) & (c["kind"] == "pck") & np.isclose(c["alpha"], alpha)]
        if d.empty:
            continue
        categories = sorted(d["category"].unique())
        models = ordered_models(d["model"])
        width = min(16.0, max(6.0, 1.5 + len(categories) * (0.16 * len(models) + 0.3)))
        name = f"pck_categories_{slug(dataset)}.png"
        with figure(out_dir / name, (width, 4.2)) as (fig, axes):
            ax = axes[0, 0]
            top = grouped_bars(ax, categories, models, d, colors, "category")
            percent_axis(ax, top, f"PCK@{alpha:g} (%)")
            if len(categories) > 6:
                ax.tick_params(axis="x", labelrotation=45)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
            ax.set_title(text(f"{dataset_title(dataset)} · per category"))
            legend(fig, model_handles(models, colors), n=len(models))
        plots.append(
            Plot(
                name=name,
                title=f"Per category · {dataset_title(dataset)}",
                caption=(
                    f"{dataset_title(dataset)}: PCK@{alpha:g} per image ({variant}) for each "
                    "category, one bar per model, in percent; whiskers are 95% bootstrap "
                    "confidence intervals where the metrics file gives them."
                ),
            )
        )
    return plots


def flag_bars(corr: Correspondence, out_dir: Path, colors: dict[str, str]) -> list[Plot]:
    """Per dataset with difficulty flags: PCK at the primary alpha per flag level, by model."""
    plots = []
    for dataset in ordered_datasets(corr.flags["dataset"]):
        d = corr.flags[corr.flags["dataset"] == dataset].assign(ci_low=np.nan, ci_high=np.nan)
        order = {f: i for i, f in enumerate(FLAGS)}  # SPair-71k's order, then any other
        flags = sorted(d["flag"].unique(), key=lambda f: (order.get(f, len(order)), f))
        models = ordered_models(d["model"])
        alpha, variant = _primary(corr, dataset)
        nrows, ncols = grid_shape(len(flags))
        name = f"pck_flags_{slug(dataset)}.png"
        size = (3.4 * ncols + 0.6, 2.9 * nrows + 1.0)
        top = 0.0
        with figure(out_dir / name, size, nrows=nrows, ncols=ncols) as (fig, axes):
            for ax, flag in zip(axes.flat, flags, strict=False):
                f = d[d["flag"] == flag]
                levels = sorted(f["level"].unique(), key=level_order)
                top = max(top, grouped_bars(ax, levels, models, f, colors, "level"))
                ax.set_xticks(range(len(levels)), [_level_label(f, lv) for lv in levels])
                ax.set_title(text(flag.replace("_", " ")))
                ax.set_ylabel(f"PCK@{alpha:g} (%)")
            for ax in axes.flat[: len(flags)]:
                ax.set_ylim(0, max(1.0, min(105.0, top * 1.12)))
            hide_unused(axes, len(flags))
            legend(fig, model_handles(models, colors), n=len(models))
        plots.append(
            Plot(
                name=name,
                title=f"Difficulty flags · {dataset_title(dataset)}",
                caption=(
                    f"{dataset_title(dataset)}: PCK@{alpha:g} per image ({variant}) over the "
                    "pairs with each value of a difficulty flag (SPair-71k's annotation: "
                    "0 = none, higher = harder; mirror 1 = mirrored), one bar per model; n is "
                    "the number of pairs. Flags the dataset does not annotate are left out."
                ),
            )
        )
    return plots


def _level_label(flags: pd.DataFrame, level: str) -> str:
    n = flags.loc[flags["level"] == level, "n"].unique()
    return text(f"{level}\nn={n[0]}" if len(n) == 1 else level)


def finetune_bars(
    results: pd.DataFrame, corr: Correspondence, out_dir: Path, colors: dict[str, str]
) -> list[Plot]:
    """Per dataset: each backbone frozen beside it fine-tuned (``<backbone>+correspondence``),
    PCK at the primary alpha with 95% CIs, the gain written above."""
    rows = results[results["task"] == CORRESPONDENCE]
    panels: list[tuple[str, float, list[tuple[str, pd.Series, pd.Series]]]] = []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        alpha, _ = _primary(corr, dataset)
        d = rows[(rows["dataset"] == dataset) & (rows["metric"] == f"pck@{alpha}")]
        at = d.set_index("model")
        pairs = [
            (b, at.loc[b], at.loc[f"{b}+{CORRESPONDENCE}"])
            for b in ordered_models(d["model"])
            if not is_finetuned(b) and f"{b}+{CORRESPONDENCE}" in at.index
        ]
        if pairs:
            panels.append((dataset, alpha, pairs))
    if not panels:
        return []
    nrows, ncols = grid_shape(len(panels))
    most = max(len(p) for _, _, p in panels)
    name = "finetuned_vs_frozen.png"
    size = ((1.2 + 1.1 * most) * ncols + 0.6, 3.2 * nrows + 1.0)
    shown: list[str] = []
    with figure(out_dir / name, size, nrows=nrows, ncols=ncols) as (fig, axes):
        for ax, (dataset, alpha, pairs) in zip(axes.flat, panels, strict=False):
            top = 0.0
            for i, (backbone, frozen, tuned) in enumerate(pairs):
                model = f"{backbone}+{CORRESPONDENCE}"
                shown += [m for m in (backbone, model) if m not in shown]
                peak = max(
                    _bar_with_ci(ax, i - 0.2, frozen, colors[backbone]),
                    _bar_with_ci(ax, i + 0.2, tuned, colors[model], hatch="//"),
                )
                gain = (tuned["value"] - frozen["value"]) * 100
                ax.annotate(
                    f"{gain:+.1f}",
                    (i, peak),
                    xytext=(0, 10),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8,
                )
                top = max(top, peak)
            ax.set_xticks(range(len(pairs)), [text(b) for b, _, _ in pairs])
            ax.set_xlim(-0.6, len(pairs) - 0.4)
            ax.grid(axis="x", visible=False)
            percent_axis(ax, top * 1.08, f"PCK@{alpha:g} (%)")
            ax.set_title(text(dataset_title(dataset)))
        hide_unused(axes, len(panels))
        legend(fig, model_handles(shown, colors), n=len(shown))
    return [
        Plot(
            name=name,
            title="Fine-tuned vs frozen",
            caption=(
                "Each backbone frozen (plain bar) and fine-tuned with the correspondence recipe "
                "(hatched), PCK per image at the primary α in percent, one panel per dataset; "
                "whiskers are 95% bootstrap confidence intervals, the number above is the gain "
                "in points."
            ),
        )
    ]


def _bar_with_ci(ax: Axes, x: float, r: pd.Series, color: str, hatch: str | None = None) -> float:
    """One bar of a results row (fractions) with its CI whisker; returns its top in percent."""
    value, low, high = r["value"] * 100, r["ci_low"] * 100, r["ci_high"] * 100
    ax.bar(x, value, 0.4, color=color, hatch=hatch, edgecolor="white")
    if not (math.isnan(low) or math.isnan(high)):
        yerr = [[max(0.0, value - low)], [max(0.0, high - value)]]
        ax.errorbar(
            [x], [value], yerr=yerr, fmt="none", ecolor="#333333", elinewidth=0.8, capsize=2
        )
        return max(value, high)
    return value


def transfer_grid(sample: TransferSample, corr: Correspondence, out_dir: Path) -> Plot | None:
    """Example keypoint transfers: the source with numbered keypoints, then the target once
    per model with the truth, the prediction, and a line between them (green = correct)."""
    if not sample.examples:
        return None
    runs = corr.runs[corr.runs["dataset"] == sample.dataset]
    alpha = f"PCK@{float(runs['primary_alpha'].iloc[0]):g}" if not runs.empty else "the primary α"
    rows, cols = len(sample.examples), 1 + len(sample.models)
    name = f"transfers_{slug(sample.dataset)}.png"
    size = (2.7 * cols + 0.2, 2.6 * rows + 1.0)
    with figure(out_dir / name, size, nrows=rows, ncols=cols) as (fig, axes):
        fig.suptitle(text(f"keypoint transfers · {dataset_title(sample.dataset)}"))
        for ax_row, ex in zip(axes, sample.examples, strict=True):
            k = len(ex.src_kps)
            kp_colors = [KEYPOINT_COLORS[i % len(KEYPOINT_COLORS)] for i in range(k)]
            image_axes(ax_row[0], ex.src_image, ex.src_size, f"{short(ex.category)} · source")
            ax_row[0].scatter(
                ex.src_kps[:, 0],
                ex.src_kps[:, 1],
                s=22,
                c=kp_colors,
                edgecolors="white",
                linewidths=0.6,
                zorder=3,
            )
            for i, (x, y) in enumerate(ex.src_kps):
                ax_row[0].annotate(
                    str(i + 1),
                    (x, y),
                    xytext=(3, 3),
                    textcoords="offset points",
                    fontsize=6,
                    color="white",
                    path_effects=[patheffects.withStroke(linewidth=1.5, foreground="black")],
                )
            for ax, transfer in zip(ax_row[1:], ex.transfers, strict=True):
                ok = int(transfer.correct.sum())
                image_axes(
                    ax,
                    ex.trg_image,
                    ex.trg_size,
                    f"{short(transfer.model, 34)} · {ok}/{k} correct",
                )
                for (px, py), (tx, ty), good in zip(
                    transfer.pred_kps, ex.trg_kps, transfer.correct, strict=True
                ):
                    ax.plot(
                        [px, tx],
                        [py, ty],
                        color=CORRECT if good else WRONG,
                        linewidth=1.2,
                        zorder=2,
                    )
                ax.scatter(
                    ex.trg_kps[:, 0],
                    ex.trg_kps[:, 1],
                    s=22,
                    c=kp_colors,
                    edgecolors="white",
                    linewidths=0.6,
                    zorder=3,
                )
                ax.scatter(
                    transfer.pred_kps[:, 0],
                    transfer.pred_kps[:, 1],
                    s=18,
                    marker="x",
                    c=[CORRECT if g else WRONG for g in transfer.correct],
                    linewidths=1.2,
                    zorder=4,
                )
        handles = [
            Line2D([], [], color="#777777", marker="o", linestyle="", label="true keypoint"),
            Line2D([], [], color=CORRECT, marker="x", label=f"prediction, correct at {alpha}"),
            Line2D([], [], color=WRONG, marker="x", label="prediction, wrong"),
        ]
        legend(fig, handles, n=len(handles))
    return Plot(
        name=name,
        title=f"Keypoint transfers · {dataset_title(sample.dataset)}",
        caption=(
            f"{dataset_title(sample.dataset)}: {rows} of the {sample.n_pairs} pairs present in "
            "every predictions file given, spread over categories in a fixed order (not chosen "
            "by result). Left: the source image with its keypoints numbered; then the target "
            "image once per model (frozen first, then fine-tuned): true keypoints as dots in "
            "the source's colours, predictions as crosses, each joined to its truth by a line, "
            f"green when correct at {alpha}, red when not; the title counts the correct ones."
        ),
    )
