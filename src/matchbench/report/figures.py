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
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from matchbench.io import atomic_path
from matchbench.report.gather import PairSample
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
            bar = 0.8 / len(models)
            x = np.arange(len(metrics))
            top = 0.0
            for i, model in enumerate(models):
                rows = group[group["model"] == model].set_index("metric").reindex(metrics)
                value = rows["value"].to_numpy() * 100
                low, high = rows["ci_low"].to_numpy() * 100, rows["ci_high"].to_numpy() * 100
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
                        elinewidth=0.9,
                        capsize=2.5,
                    )
                top = max(top, np.nanmax(np.r_[value, high, 0.0]))
            ax.set_xticks(x, [text(m) for m in metrics])
            ax.set_ylim(0, max(1.0, min(105.0, top * 1.12)))
            ax.set_ylabel("percent")
            ax.set_title(text(f"{task} · {dataset}"))
            ax.grid(axis="x", visible=False)
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
