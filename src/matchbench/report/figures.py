"""The report's figures: one style, one colour per model across figures, byte-stable PNGs.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects (the Agg renderer, no pyplot
and no global backend switch), at a fixed size and dpi, with the ``Software`` PNG metadata
removed, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from matchbench.tracks.correspondence.pairs import FLAGS
from matchbench.io import atomic_path
from matchbench.report.gather import (
    CORRESPONDENCE,
    Correspondence,
    PairSample,
    TransferSample,
    level_order,
)
from matchbench.report.names import (
    dataset_title,
    is_finetuned,
    ordered_datasets,
    ordered_models,
    slug,
    stem,
)

DPI = 120
# Okabe-Ito (colour-blind safe) first, then tab20 for long model lists.
PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#F0E442",
    "#000000",
    *[mpl.colors.to_hex(c) for c in mpl.colormaps["tab20"].colors],
]
SAME_CLASS, OTHER_CLASS, UNKNOWN_CLASS = "#1a9850", "#d73027", "#999999"
STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "lines.linewidth": 1.6,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}


@dataclass(frozen=True)
class Plot:
    """A figure written under ``figures/``: its file name and what it shows."""

    name: str
    title: str
    caption: str


def model_colors(models: Iterable[str]) -> dict[str, str]:
    """One colour per model, fixed by sorted name, so a model looks the same in every figure."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(models)))}


def text(s: str) -> str:
    """Plain text for matplotlib: a ``$`` in a name must not switch on mathtext."""
    return s.replace("$", r"\$")


@contextlib.contextmanager
def figure(
    path: Path, size: tuple[float, float], **subplots: object
) -> Iterator[tuple[Figure, np.ndarray]]:
    """Draw in the house style and save ``path`` as a deterministic PNG on success."""
    with mpl.rc_context(STYLE):
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
        axes = fig.subplots(squeeze=False, **subplots)  # type: ignore[arg-type]
        yield fig, axes
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None})


def _legend(fig: Figure, handles: list[Line2D] | None = None, n: int = 1) -> None:
    kwargs = {"handles": handles} if handles is not None else {}
    fig.legend(loc="outside lower center", ncols=max(1, min(n, 4)), **kwargs)


def bar_charts(results: pd.DataFrame, out_dir: Path, colors: dict[str, str]) -> list[Plot]:
    """Per (task, dataset): each metric by model, with 95% CI error bars where there is one."""
    plots = []
    for (task, dataset), group in results.groupby(["task", "dataset"], sort=True):
        metrics = sorted(group["metric"].unique())
        models = sorted(group["model"].unique())
        width = min(14.0, max(5.5, 1.5 + len(metrics) * (0.4 * len(models) + 0.6)))
        name = f"bars_{stem(task, dataset)}.png"
        with figure(out_dir / name, (width, 4.0)) as (fig, axes):
            ax = axes[0, 0]
            top = _grouped_bars(ax, metrics, models, group, colors, "metric")
            ax.set_ylim(0, max(1.0, min(105.0, top * 1.12)))
            ax.set_ylabel("percent")
            ax.set_title(text(f"{task} · {dataset}"))
            _legend(fig, n=len(models))
        plots.append(
            Plot(
                name=name,
                title=f"{task} · {dataset}",
                caption=(
                    f"Task {task} on {dataset}: each metric by model, in percent; error bars "
                    "are 95% bootstrap confidence intervals (none where a metric has no "
                    "per-query values)."
                ),
            )
        )
    return plots


def learning_curves(logs: pd.DataFrame, out_dir: Path, colors: dict[str, str]) -> list[Plot]:
    """Per dataset: loss by epoch for each fine-tuned model, plus any other logged series."""
    plots = []
    for dataset, group in logs.groupby("dataset", sort=True):
        series = ["loss", *sorted(s for s in group["series"].unique() if s != "loss")]
        models = sorted(group["model"].unique())
        ncols = min(3, len(series))
        nrows = math.ceil(len(series) / ncols)
        name = f"learning_curves_{slug(dataset)}.png"
        size = (3.6 * ncols + 0.6, 2.8 * nrows + 0.8)
        with figure(out_dir / name, size, nrows=nrows, ncols=ncols) as (fig, axes):
            for ax, s in zip(axes.flat, series, strict=False):
                for model in models:
                    d = group[(group["model"] == model) & (group["series"] == s)]
                    if d.empty:
                        continue
                    ax.plot(
                        d["epoch"],
                        d["value"],
                        color=colors[model],
                        marker="o" if len(d) <= 30 else None,
                        markersize=3,
                        label=text(model),
                    )
                ax.set_title(text(s))
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            for ax in axes.flat[len(series) :]:
                ax.set_visible(False)
            handles = [Line2D([], [], color=colors[m], label=text(m)) for m in models]
            _legend(fig, handles, n=len(models))
        shown = ", ".join(series)
        plots.append(
            Plot(
                name=name,
                title=f"Learning curves · {dataset}",
                caption=f"Fine-tuning on {dataset}: {shown} by epoch, one line per model.",
            )
        )
    return plots


def mining_curves(
    summary: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, colors: dict[str, str]
) -> list[Plot]:
    """Per dataset: pairs kept and precision vs threshold per sampler, chosen threshold marked."""
    plots = []
    for dataset, chosen in summary.groupby("dataset", sort=True):
        name = f"mining_{slug(dataset)}.png"
        with figure(out_dir / name, (8.5, 3.6), ncols=2) as (fig, axes):
            ax_n, ax_p = axes[0]
            for r in chosen.itertuples(index=False):
                c = curves[(curves["dataset"] == dataset) & (curves["model"] == r.model)]
                color = colors[r.model]
                ax_n.plot(
                    c["threshold"], c["n_pairs"], color=color, marker=".", label=text(r.model)
                )
                ax_p.plot(c["threshold"], c["precision"] * 100, color=color, marker=".")
                for ax in (ax_n, ax_p):
                    ax.axvline(r.threshold, color=color, linestyle=":", linewidth=1)
                ax_n.plot([r.threshold], [r.n_pairs], color=color, marker="*", markersize=11)
                if not math.isnan(r.precision):
                    ax_p.plot(
                        [r.threshold], [r.precision * 100], color=color, marker="*", markersize=11
                    )
            ax_n.set_title("pairs kept")
            ax_n.set_ylabel("pairs")
            ax_p.set_title("precision (same class)")
            ax_p.set_ylabel("percent")
            for ax in (ax_n, ax_p):
                ax.set_xlabel("similarity threshold")
            handles = [
                Line2D([], [], color=colors[m], marker=".", label=text(m)) for m in chosen["model"]
            ]
            handles.append(
                Line2D(
                    [],
                    [],
                    color="#333333",
                    marker="*",
                    linestyle=":",
                    markersize=9,
                    label="chosen threshold",
                )
            )
            _legend(fig, handles, n=len(handles))
        plots.append(
            Plot(
                name=name,
                title=f"Mining · {dataset}",
                caption=(
                    f"Mining on {dataset}: pairs kept and their precision (share of pairs "
                    "whose images share a class) as the similarity threshold rises, per "
                    "sampler model; the star and dotted line mark the threshold used."
                ),
            )
        )
    return plots


def pair_grid(sample: PairSample, out_dir: Path) -> Plot | None:
    """Example mined pairs, anchor | positive, framed green (same class) or red (different)."""
    if not sample.examples:
        return None
    name = "mined_pairs.png"
    rows = len(sample.examples)
    with figure(out_dir / name, (4.8, 2.0 * rows + 0.5), nrows=rows, ncols=2) as (fig, axes):
        fig.suptitle(text(f"mined pairs · {sample.dataset} · {sample.model}"))
        for (ax_a, ax_p), ex in zip(axes, sample.examples, strict=True):
            same = ex.same_class
            frame = UNKNOWN_CLASS if same is None else SAME_CLASS if same else OTHER_CLASS
            _thumbnail(ax_a, ex.anchor_image, frame, f"anchor · {_short(ex.anchor_class)}")
            _thumbnail(
                ax_p,
                ex.positive_image,
                frame,
                f"sim {ex.similarity:.3f} · {_short(ex.positive_class)}",
            )
    return Plot(
        name=name,
        title=f"Mined pairs · {sample.dataset} · {sample.model}",
        caption=(
            f"Example pairs from {sample.source} ({sample.n_pairs} pairs over "
            f"{sample.n_anchors} anchors): the highest-similarity positive of {rows} evenly "
            "spaced anchors (anchors sorted by id). Frame: green = same class, red = "
            "different class, grey = class unknown; the title gives the cosine similarity."
        ),
    )


def _short(name: str, limit: int = 22) -> str:
    if not name:
        return "class ?"
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _thumbnail(ax: Axes, image: np.ndarray, frame: str, title: str) -> None:
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(text(title), fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(frame)
        spine.set_linewidth(4)


# --- semantic correspondence --------------------------------------------------------------

CORRECT, WRONG = SAME_CLASS, OTHER_CLASS
KEYPOINT_COLORS = [mpl.colors.to_hex(c) for c in mpl.colormaps["tab20"].colors]


def _grid_shape(n: int, ncols: int = 3) -> tuple[int, int]:
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def _grouped_bars(
    ax: Axes,
    groups: list[str],
    models: list[str],
    table: pd.DataFrame,
    colors: dict[str, str],
    key: str,
) -> float:
    """Bars of ``table`` (value, ci_low, ci_high as fractions) at ``key`` values ``groups``,
    one bar per model in each group, 95% CI whiskers where there is one; returns the top."""
    bar = 0.8 / max(1, len(models))
    x = np.arange(len(groups))
    top = 0.0
    for i, model in enumerate(models):
        rows = table[table["model"] == model].set_index(key).reindex(groups)
        value = rows["value"].to_numpy(dtype=float) * 100
        low = rows["ci_low"].to_numpy(dtype=float) * 100
        high = rows["ci_high"].to_numpy(dtype=float) * 100
        pos = x + (i - (len(models) - 1) / 2) * bar
        ax.bar(pos, np.nan_to_num(value), bar, color=colors[model], label=text(model))
        has_ci = np.isfinite(value) & np.isfinite(low) & np.isfinite(high)
        if has_ci.any():
            err = np.clip([value - low, high - value], 0, None)[:, has_ci]
            ax.errorbar(
                pos[has_ci],
                value[has_ci],
                yerr=err,
                fmt="none",
                ecolor="#333333",
                elinewidth=0.8,
                capsize=2,
            )
        top = max(top, float(np.nanmax(np.r_[value, high, 0.0])))
    ax.set_xticks(x, [text(g) for g in groups])
    ax.grid(axis="x", visible=False)
    return top


def _percent_axis(ax: Axes, top: float, label: str = "PCK (%)") -> None:
    ax.set_ylim(0, max(1.0, min(105.0, top * 1.12)))
    ax.set_ylabel(label)


def _model_handles(models: list[str], colors: dict[str, str]) -> list[Line2D]:
    return [Line2D([], [], color=colors[m], linewidth=6, label=text(m)) for m in models]


def _primary(corr: Correspondence, dataset: str) -> tuple[float, str]:
    runs = corr.runs[corr.runs["dataset"] == dataset]
    return float(runs["primary_alpha"].iloc[0]), str(runs["variant"].iloc[0])


def pck_curves(corr: Correspondence, out_dir: Path, colors: dict[str, str]) -> list[Plot]:
    """PCK vs alpha per model, one panel per dataset: per image solid, per point dashed."""
    if corr.curves.empty:
        return []
    datasets = ordered_datasets(corr.curves["dataset"])
    nrows, ncols = _grid_shape(len(datasets))
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
        _hide_unused(axes, len(datasets))
        handles = [Line2D([], [], color=colors[m], label=text(m)) for m in models_all]
        handles += [
            Line2D([], [], color="#333333", label="per image"),
            Line2D([], [], color="#333333", linestyle="--", label="per point"),
        ]
        _legend(fig, handles, n=len(handles))
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
            top = _grouped_bars(ax, categories, models, d, colors, "category")
            _percent_axis(ax, top, f"PCK@{alpha:g} (%)")
            if len(categories) > 6:
                ax.tick_params(axis="x", labelrotation=45)
                for label in ax.get_xticklabels():
                    label.set_horizontalalignment("right")
            ax.set_title(text(f"{dataset_title(dataset)} · per category"))
            _legend(fig, _model_handles(models, colors), n=len(models))
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
        nrows, ncols = _grid_shape(len(flags))
        name = f"pck_flags_{slug(dataset)}.png"
        size = (3.4 * ncols + 0.6, 2.9 * nrows + 1.0)
        top = 0.0
        with figure(out_dir / name, size, nrows=nrows, ncols=ncols) as (fig, axes):
            for ax, flag in zip(axes.flat, flags, strict=False):
                f = d[d["flag"] == flag]
                levels = sorted(f["level"].unique(), key=level_order)
                top = max(top, _grouped_bars(ax, levels, models, f, colors, "level"))
                ax.set_xticks(range(len(levels)), [_level_label(f, lv) for lv in levels])
                ax.set_title(text(flag.replace("_", " ")))
                ax.set_ylabel(f"PCK@{alpha:g} (%)")
            for ax in axes.flat[: len(flags)]:
                ax.set_ylim(0, max(1.0, min(105.0, top * 1.12)))
            _hide_unused(axes, len(flags))
            _legend(fig, _model_handles(models, colors), n=len(models))
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
    nrows, ncols = _grid_shape(len(panels))
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
            _percent_axis(ax, top * 1.08, f"PCK@{alpha:g} (%)")
            ax.set_title(text(dataset_title(dataset)))
        _hide_unused(axes, len(panels))
        _legend(fig, _model_handles(shown, colors), n=len(shown))
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
            _image_axes(ax_row[0], ex.src_image, ex.src_size, f"{_short(ex.category)} · source")
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
                _image_axes(
                    ax,
                    ex.trg_image,
                    ex.trg_size,
                    f"{_short(transfer.model, 34)} · {ok}/{k} correct",
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
        _legend(fig, handles, n=len(handles))
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


def _image_axes(ax: Axes, image: np.ndarray, size: tuple[int, int], title: str) -> None:
    """Show a downscaled image in its original pixel frame, where the keypoints live."""
    w, h = size
    ax.imshow(image, extent=(0, w, h, 0), interpolation="antialiased")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(text(title), fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(False)
