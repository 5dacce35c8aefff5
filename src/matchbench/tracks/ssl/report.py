"""The ``ssl`` track's report section: the positive pairs it mined, and what they look like.

The documents of ``<backbone>+ssl-spp`` models name the mined pairs they trained with
(``artifacts``: ``pairs`` = ``pairs.parquet``, ``mining_stats`` = ``stats.json``,
docs/contracts.md). The section shows the statistics at each sampler's chosen threshold (a
table), pairs kept and precision as the threshold rises (one figure per dataset), and example
pairs with their images (the first sampler's, by dataset then model). The sampler model is the
config's (``tracks.ssl.sampler``), for the document's backbone; the samplers of
``tracks.ssl.compare_samplers`` are shown beside it. The accuracies themselves stay in the
report's generic main table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from matchbench.errors import MatchbenchError
from matchbench.io import read_json
from matchbench.layout import split_model
from matchbench.report import checks
from matchbench.report.figures import (
    BAD,
    GOOD,
    UNKNOWN,
    Plot,
    figure,
    legend,
    short,
    slug,
    text,
    thumbnail,
)
from matchbench.report.gather import MetricsDoc
from matchbench.report.section import Context, Section
from matchbench.report.tables import MISSING, Cell, Table, percent
from matchbench.tracks.ssl import sampler_model

PAIRS, MINING_STATS = "pairs", "mining_stats"  # the artifact roles of the mined pairs
MINING_COLUMNS = [
    "dataset",
    "model",
    "k",
    "threshold",
    "n_anchors",
    "n_pairs",
    "anchors_with_pairs",
    "precision",
]
MINING_CURVE_COLUMNS = [
    "dataset",
    "model",
    "threshold",
    "n_pairs",
    "anchors_with_pairs",
    "precision",
]
PAIR_EXAMPLES = 8
THUMBNAIL_PX = 160


def section(docs: list[MetricsDoc], ctx: Context) -> Section:
    """Mining statistics, mining curves and an example grid of mined pairs."""
    stats = mined_files(docs, ctx.cfg, MINING_STATS)
    compared = {k: v for k, v in compared_samplers(docs, ctx).items() if k not in stats}
    summary, curves = gather_mining({**stats, **compared})
    sample = None
    if pairs := mined_files(docs, ctx.cfg, PAIRS):  # the first sampler's, by dataset, model
        (dataset, model), path = next(iter(pairs.items()))
        index, root = ctx.layout.index(dataset), ctx.layout.dataset(dataset)
        sample = read_pair_sample(path, index, root, dataset=dataset, model=model)
    # kNN and linear accuracy: the generic main table says it all (in_main_results).
    if summary.empty and sample is None:
        note = (
            "No mined pairs: no metrics document of this track names them (artifacts "
            f"{PAIRS} and {MINING_STATS}, given by the <backbone>+ssl-spp models)."
        )
        return Section(anchor="mining", title="Mining", notes=(note,), in_main_results=True)
    plots = mining_curves(summary, curves, ctx.figures, ctx.colors)
    if sample is not None and (grid := pair_grid(sample, ctx.figures)):
        plots.append(grid)
    return Section(
        anchor="mining",
        title="Mining",
        tables=(mining_table(summary, set(compared)),) if not summary.empty else (),
        plots=tuple(plots),
        in_main_results=True,
    )


def mined_files(
    docs: list[MetricsDoc], cfg: dict[str, Any], role: str
) -> dict[tuple[str, str], Path]:
    """(dataset, sampler model) -> the file of ``role`` the documents name, sorted by key.

    Several models may train with one sampler's pairs: they must name the same file.
    """
    block = cfg["tracks"].get("ssl")
    found: dict[tuple[str, str], tuple[Path, Path]] = {}
    for d in docs:
        path = d.artifact(role)
        if path is None:
            continue
        if block is None:
            raise MatchbenchError(
                f"{d.path}: artifacts.{role}: the config has no tracks.ssl block, whose "
                "'sampler' tells which model mined these pairs"
            )
        key = (d.dataset, sampler_model(block, split_model(d.model)[0]))
        if key in found and found[key][0] != path:
            other, by = found[key]
            raise MatchbenchError(
                f"{d.path}: artifacts.{role}: {path} differs from {other} in {by} (the same "
                f"sampler {key[1]} on {key[0]})"
            )
        found.setdefault(key, (path, d.path))
    return {key: found[key][0] for key in sorted(found)}


def compared_samplers(docs: list[MetricsDoc], ctx: Context) -> dict[tuple[str, str], Path]:
    """(dataset, sampler model) -> ``stats.json`` of the samplers ``tracks.ssl.compare_samplers``
    names, on the datasets whose ssl-spp models the documents show (mined, never trained with)."""
    block = ctx.cfg["tracks"].get("ssl") or {}
    found: dict[tuple[str, str], Path] = {}
    for d in docs:
        if d.artifact(MINING_STATS) is None:
            continue
        for other in block.get("compare_samplers", ()):
            key = (d.dataset, sampler_model({"sampler": other}, split_model(d.model)[0]))
            found[key] = Path(ctx.layout.mined(*key, "stats.json"))
    return found


# --- mining statistics --------------------------------------------------------------------


def gather_mining(files: dict[tuple[str, str], Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mining ``stats.json`` files by (dataset, sampler model) -> (one summary row per file,
    the by-threshold curves)."""
    summary: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for (dataset, model), path in files.items():
        doc = checks.mapping(path, read_json(path), "", "a JSON object")
        ident = {"dataset": dataset, "model": model}
        summary.append(
            {
                **ident,
                "k": checks.count(path, doc, "k"),
                "threshold": checks.number(path, doc, "threshold"),
                "n_anchors": checks.count(path, doc, "n_anchors"),
                "n_pairs": checks.count(path, doc, "n_pairs"),
                "anchors_with_pairs": checks.count(path, doc, "anchors_with_pairs"),
                "precision": checks.number(path, doc, "precision", fraction=True, nullable=True),
            }
        )
        what = "an array of {threshold, n_pairs, precision, anchors_with_pairs}"
        by_threshold = checks.field(path, doc, "by_threshold", "", what)
        if not isinstance(by_threshold, list):
            raise checks.expected(path, "by_threshold", what, by_threshold)
        for i, item in enumerate(by_threshold):
            where = f"by_threshold[{i}]."
            entry = checks.mapping(path, item, where[:-1], "an object")
            curves.append(
                {
                    **ident,
                    "threshold": checks.number(path, entry, "threshold", where),
                    "n_pairs": checks.count(path, entry, "n_pairs", where),
                    "anchors_with_pairs": checks.count(path, entry, "anchors_with_pairs", where),
                    "precision": checks.number(
                        path, entry, "precision", where, fraction=True, nullable=True
                    ),
                }
            )
    floats = {"threshold": "float64", "precision": "float64"}
    summary_df = pd.DataFrame(summary, columns=MINING_COLUMNS).astype(floats)
    curves_df = pd.DataFrame(curves, columns=MINING_CURVE_COLUMNS).astype(floats)
    return (
        summary_df.sort_values(["dataset", "model"], kind="mergesort", ignore_index=True),
        curves_df.sort_values(
            ["dataset", "model", "threshold"], kind="mergesort", ignore_index=True
        ),
    )


def mining_table(summary: pd.DataFrame, compared: set[tuple[str, str]] | None = None) -> Table:
    """The mining statistics at each sampler's chosen threshold; ``compared`` (dataset, model)
    are samplers mined for comparison only (``tracks.ssl.compare_samplers``)."""
    rows = []
    for r in summary.itertuples(index=False):
        only = (r.dataset, r.model) in (compared or set())
        rows.append(
            (
                Cell(r.dataset),
                Cell(f"{r.model} (compared only)" if only else r.model),
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
            f"of pairs whose two images share a class, in percent ({MISSING} without labels). "
            "A sampler marked 'compared only' mined pairs that no model trained with."
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
            legend(fig, handles, n=len(handles))
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


# --- example mined pairs ------------------------------------------------------------------


@dataclass(frozen=True)
class PairExample:
    anchor: str
    positive: str
    similarity: float
    anchor_class: str
    positive_class: str
    anchor_image: np.ndarray
    positive_image: np.ndarray

    @property
    def same_class(self) -> bool | None:
        """Whether both images share a class; None when either class is unknown."""
        if not self.anchor_class or not self.positive_class:
            return None
        return self.anchor_class == self.positive_class


@dataclass(frozen=True)
class PairSample:
    source: Path
    dataset: str
    model: str  # the sampler model
    n_pairs: int
    n_anchors: int
    examples: tuple[PairExample, ...]


def select_pairs(pairs: pd.DataFrame, n: int = PAIR_EXAMPLES) -> pd.DataFrame:
    """The highest-similarity pair of each of ``n`` evenly spaced anchors (anchors sorted by id).

    Deterministic: the same pairs.parquet always gives the same rows, in anchor order; ties in
    similarity go to the better rank, then the smaller positive id.
    """
    anchors = sorted(pairs["anchor"].unique())
    if not anchors:
        return pairs.iloc[:0]
    picks = np.unique(np.linspace(0, len(anchors) - 1, min(n, len(anchors))).round().astype(int))
    chosen = {anchors[i] for i in picks}
    order = ["anchor", "similarity", "positive"]
    ascending = [True, False, True]
    if "rank" in pairs.columns:
        order.insert(2, "rank")
        ascending.insert(2, True)
    ranked = pairs[pairs["anchor"].isin(chosen)].sort_values(
        order, ascending=ascending, kind="mergesort"
    )
    return ranked.drop_duplicates("anchor", keep="first").reset_index(drop=True)


def read_pair_sample(
    pairs_path: str | Path,
    index_path: str | Path,
    images_root: str | Path,
    *,
    dataset: str,
    model: str,
    n: int = PAIR_EXAMPLES,
) -> PairSample:
    """Example mined pairs of ``model`` on ``dataset`` with their thumbnails, ready to draw.

    ``images_root`` is what the ``path`` column of images.parquet is relative to (the
    dataset's folder, docs/contracts.md).
    """
    pairs_path, index_path, root = Path(pairs_path), Path(index_path), Path(images_root)
    pairs = checks.read_parquet(pairs_path, ["anchor", "positive", "similarity"])
    index = checks.read_parquet(index_path, ["id", "path"])
    if not pd.api.types.is_numeric_dtype(pairs["similarity"]):
        raise MatchbenchError(f"{pairs_path}: column 'similarity': expected numbers")
    index = index.drop_duplicates("id").set_index("id")
    classes = (
        index["class"].fillna("").astype(str)
        if "class" in index.columns
        else pd.Series("", index=index.index)
    )
    examples = []
    for row in select_pairs(pairs, n).itertuples(index=False):
        ids = (str(row.anchor), str(row.positive))
        for image_id in ids:
            if image_id not in index.index:
                raise MatchbenchError(
                    f"{pairs_path}: image id {image_id!r} is not in {index_path} (column 'id')"
                )
        anchor, positive = (
            checks.read_image(root / str(index.at[i, "path"]), i, THUMBNAIL_PX)[0] for i in ids
        )
        examples.append(
            PairExample(
                anchor=ids[0],
                positive=ids[1],
                similarity=float(row.similarity),
                anchor_class=str(classes[ids[0]]),
                positive_class=str(classes[ids[1]]),
                anchor_image=anchor,
                positive_image=positive,
            )
        )
    return PairSample(
        source=pairs_path,
        dataset=dataset,
        model=model,
        n_pairs=len(pairs),
        n_anchors=int(pairs["anchor"].nunique()),
        examples=tuple(examples),
    )


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
            frame = UNKNOWN if same is None else GOOD if same else BAD
            thumbnail(ax_a, ex.anchor_image, frame, f"anchor · {short(ex.anchor_class)}")
            thumbnail(
                ax_p,
                ex.positive_image,
                frame,
                f"sim {ex.similarity:.3f} · {short(ex.positive_class)}",
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
