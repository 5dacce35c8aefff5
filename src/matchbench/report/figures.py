"""The report's figures: one style, one colour per model across figures, byte-stable PNGs.

Figures are drawn on bare ``matplotlib.figure.Figure`` objects (the Agg renderer, no pyplot
and no global backend switch), at a fixed size and dpi, with the ``Software`` PNG metadata
removed, so the same inputs give the same bytes. The generic figures (bars per task and
dataset, learning curves) are drawn here; the helpers below them serve the tracks' sections.
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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from matchbench.io import atomic_path
from matchbench.report.names import slug, stem

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
# Frames and marks that say right / wrong / unknown (same class, correct keypoint, ...).
GOOD, BAD, UNKNOWN = "#1a9850", "#d73027", "#999999"
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


class Colors(dict[str, str]):
    """Model -> colour; a model first drawn by a section (a sampler that was not evaluated)
    gets the next colour of the palette, so every model has one colour across figures."""

    def __missing__(self, model: str) -> str:
        color = PALETTE[len(self) % len(PALETTE)]
        self[model] = color
        return color


def model_colors(models: Iterable[str]) -> Colors:
    """One colour per model, fixed by sorted name, so a model looks the same in every figure."""
    return Colors({m: PALETTE[i % len(PALETTE)] for i, m in enumerate(sorted(set(models)))})


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


def legend(fig: Figure, handles: list[Line2D] | None = None, n: int = 1) -> None:
    """The figure's legend below its axes, in as many columns (at most 4) as fit its width."""
    kwargs = {"handles": handles} if handles is not None else {}
    labels = (
        [str(h.get_label()) for h in handles]
        if handles is not None
        else list(
            dict.fromkeys(lab for ax in fig.axes for lab in ax.get_legend_handles_labels()[1])
        )
    )
    fig.legend(
        loc="outside lower center", ncols=legend_columns(labels, fig.get_figwidth(), n), **kwargs
    )


def legend_columns(labels: list[str], width: float, n: int) -> int:
    """Columns of a legend of ``labels`` that fit ``width`` inches: a column is as wide as its
    widest entry (handle, gap and text at the legend's font size), so the widest ``k`` entries
    side by side bound a ``k``-column legend's width."""
    size = float(STYLE["legend.fontsize"])
    entries = sorted(
        (len(label) * 0.6 * size / 72 + (2.0 + 0.8 + 2.0) * size / 72 for label in labels),
        reverse=True,
    )
    ncols = max(1, min(n, 4, len(entries) or 1))
    while ncols > 1 and sum(entries[:ncols]) > 0.95 * width:
        ncols -= 1
    return ncols


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
            top = grouped_bars(ax, metrics, models, group, colors, "metric")
            percent_axis(ax, top, "percent")
            ax.set_title(text(f"{task} · {dataset}"))
            legend(fig, n=len(models))
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
    """Per dataset: each plotted series of the recipes' logs by epoch (loss first), one line
    per fine-tuned model."""
    plots = []
    for dataset, group in logs.groupby("dataset", sort=True):
        series = sorted(group["series"].unique(), key=lambda s: (s != "loss", s))
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
            legend(fig, handles, n=len(models))
        shown = ", ".join(series)
        plots.append(
            Plot(
                name=name,
                title=f"Learning curves · {dataset}",
                caption=f"Fine-tuning on {dataset}: {shown} by epoch, one line per model.",
            )
        )
    return plots


# --- helpers for the tracks' figures -----------------------------------------------------


def grid_shape(n: int, ncols: int = 3) -> tuple[int, int]:
    """(rows, columns) of a grid of ``n`` panels at most ``ncols`` wide."""
    ncols = max(1, min(ncols, n))
    return math.ceil(n / ncols), ncols


def hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.flat[used:]:
        ax.set_visible(False)


def grouped_bars(
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


def percent_axis(ax: Axes, top: float, label: str) -> None:
    """A y axis in percent from 0 to a little above ``top`` (at most 105)."""
    ax.set_ylim(0, max(1.0, min(105.0, top * 1.12)))
    ax.set_ylabel(label)


def model_handles(models: list[str], colors: dict[str, str]) -> list[Line2D]:
    return [Line2D([], [], color=colors[m], linewidth=6, label=text(m)) for m in models]


def short(name: str, limit: int = 22) -> str:
    """A class or model name cut to ``limit`` characters for a panel title."""
    if not name:
        return "class ?"
    return name if len(name) <= limit else name[: limit - 1] + "…"


def thumbnail(ax: Axes, image: np.ndarray, frame: str, title: str) -> None:
    """An image without ticks, framed in colour ``frame`` (GOOD, BAD or UNKNOWN)."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    ax.set_title(text(title), fontsize=8)
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(frame)
        spine.set_linewidth(4)


def image_axes(ax: Axes, image: np.ndarray, size: tuple[int, int], title: str) -> None:
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


def across_tasks(grid: pd.DataFrame, rho: pd.DataFrame, out_dir: Path) -> Plot:
    """Two heatmaps: models x columns of normalised scores (matchbench.report.across), and
    the columns' Spearman rank correlations (grey: not evaluated / too few shared models)."""
    n_models, n_cols = grid.shape
    width = min(22.0, 4.0 + 0.55 * n_cols * 2 + 2.5)
    height = min(16.0, max(3.5, 1.8 + 0.28 * max(n_models, n_cols) + 0.06 * _longest(grid)))
    name = "across_tasks.png"
    with figure(out_dir / name, (width, height), ncols=2, width_ratios=[1, 1]) as (fig, axes):
        _heatmap(axes[0, 0], grid, "viridis", 0.0, 1.0, "{:.2f}")
        axes[0, 0].set_title("Normalised score (value / best of the column)")
        _heatmap(axes[0, 1], rho, "RdBu", -1.0, 1.0, "{:+.2f}")
        axes[0, 1].set_title("Spearman rank correlation between columns")
    return Plot(
        name=name,
        title="Across tasks",
        caption=(
            "Left: every model on every task, dataset and headline metric it was evaluated on, "
            "as its value divided by the column's best (grey: not evaluated). Right: Spearman's "
            "rank correlation between two columns over the models both have (grey: fewer than "
            "three shared models, or a constant column)."
        ),
    )


def _longest(grid: pd.DataFrame) -> int:
    return max((len(str(c)) for c in grid.columns), default=0)


def _heatmap(ax: Axes, df: pd.DataFrame, cmap: str, lo: float, hi: float, fmt: str) -> None:
    values = df.to_numpy(dtype=np.float64)
    colormap = mpl.colormaps[cmap].with_extremes(bad="#dddddd")
    ax.imshow(np.ma.masked_invalid(values), cmap=colormap, vmin=lo, vmax=hi, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(df.shape[1]), [text(short(str(c), 40)) for c in df.columns])
    ax.set_yticks(range(df.shape[0]), [text(short(str(r), 40)) for r in df.index])
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    ax.tick_params(axis="y", labelsize=7)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
    if values.size <= 600:
        for (i, j), v in np.ndenumerate(values):
            if not math.isnan(v):
                dark = (v - lo) / (hi - lo) < 0.5 if cmap == "viridis" else abs(v) > 0.6
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6,
                        color="white" if dark else "black")  # fmt: skip
