"""The ``cir`` track's report section: the three benchmarks' tables, and example queries.

Tables in the papers' layouts (Pic2Word, SEARLE, LinCIR, arXiv 2504.17990): CIRR Recall@{1,
5,10,50} and Recall_subset@{1,2,3}; CIRCO mAP@{5,10,25,50}; FashionIQ Recall@{10,50} per
category and their average. One row per method on each frozen model, in the block's method
order, each value with its 95% bootstrap interval; the best of a column in bold. A note per
dataset says by how much the two-stage recipe beats the Pic2Word-style mapping on the
dataset's headline metric, and whether its interval clears those of the zero-training
baselines. A figure per dataset draws example queries: the reference, the modification
text, and the top 5 of the best trained method with its targets framed in green.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from matchbench.images import read_index
from matchbench.report import paired
from matchbench.report.figures import BAD, GOOD, Plot, figure, short, text, thumbnail
from matchbench.report.gather import MetricsDoc
from matchbench.report.section import Context, Section
from matchbench.report.tables import (
    Cell,
    ResultKey,
    Table,
    bold_best,
    entry_cell,
    marked_caption,
)
from matchbench.tracks.cir.methods import block, split_method

LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {  # benchmark -> ((metric, header), ...)
    "cirr": (
        ("recall@1", "R@1"),
        ("recall@5", "R@5"),
        ("recall@10", "R@10"),
        ("recall@50", "R@50"),
        ("recall_subset@1", "Rs@1"),
        ("recall_subset@2", "Rs@2"),
        ("recall_subset@3", "Rs@3"),
    ),
    "circo": (("map@5", "mAP@5"), ("map@10", "mAP@10"), ("map@25", "mAP@25"), ("map@50", "mAP@50")),
    "fashioniq": tuple(
        (f"{c}_recall@{k}", f"{c} R@{k}") for c in ("dress", "shirt", "toptee") for k in (10, 50)
    )
    + (("recall@10", "avg R@10"), ("recall@50", "avg R@50")),
}
HEADLINE = {"cirr": "recall@1", "circo": "map@10", "fashioniq": "recall@10"}
BASELINES = ("image", "text", "sum")
NAMES = {
    "image": "image only",
    "text": "text only",
    "sum": "image + text",
    "pic2word": "Pic2Word-style",
    "lincir": "LinCIR-style",
    "two-stage": "two-stage",
}


def benchmark_of(doc: dict[str, Any]) -> str | None:
    queries = doc.get("extra", {}).get("queries", {})
    return next(iter(queries)) if len(queries) == 1 else None


def _order(blk: dict[str, Any], docs: list[MetricsDoc]) -> list[MetricsDoc]:
    def key(d: MetricsDoc) -> tuple[int, int, str]:
        frozen, method = split_method(d.model)
        models = list(blk["models"])
        methods = list(blk["methods"])
        return (
            models.index(frozen) if frozen in models else len(models),
            methods.index(method) if method in methods else len(methods),
            d.model,
        )

    return sorted(docs, key=key)


def _value(doc: dict[str, Any], metric: str) -> dict[str, Any] | None:
    return doc["metrics"].get(metric)


def benchmark_table(
    blk: dict[str, Any],
    dataset: str,
    bench: str,
    docs: list[MetricsDoc],
    tied: frozenset[ResultKey] = frozenset(),
) -> Table:
    """The benchmark's table in its papers' layout; ``tied`` marks what a paired test cannot
    separate from a column's best (``Context.tied``)."""
    docs = _order(blk, docs)
    cols = [(m, h) for m, h in LAYOUTS[bench] if any(m in d.doc["metrics"] for d in docs)]
    columns = []
    for metric, _ in cols:
        values = [(_value(d.doc, metric) or {}).get("value") for d in docs]
        bold = bold_best(values)
        cells = [
            entry_cell(_value(d.doc, metric), b, (d.task, d.dataset, d.model, metric) in tied)
            for d, b in zip(docs, bold, strict=True)
        ]
        columns.append(cells)
    rows = []
    for i, d in enumerate(docs):
        frozen, method = split_method(d.model)
        rows.append((Cell(frozen), Cell(NAMES.get(method, method)), *(c[i] for c in columns)))
    title = {"cirr": "CIRR", "circo": "CIRCO", "fashioniq": "FashionIQ"}[bench]
    what = {
        "cirr": "Recall@K over the split's gallery without the reference; Recall_subset@K over "
        "the query's image set",
        "circo": "mAP@K over the whole gallery, every image that satisfies the edit a ground truth",
        "fashioniq": "Recall@K per category over its gallery, and their plain mean",
    }[bench]
    return Table(
        name=f"cir_{bench}_{dataset}",
        title=f"{title} on {dataset}",
        caption=marked_caption(
            f"{what}, in percent with 95% bootstrap intervals; zero-shot methods on a "
            "frozen image-text model, the best of a column in bold.",
            rows,
        ),
        header=("model", "method", *(h for _, h in cols)),
        rows=tuple(rows),
        numeric=(False, False, *(True for _ in cols)),
    )


def gain_note(
    bench: str,
    dataset: str,
    docs: list[MetricsDoc],
    values: pd.DataFrame | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> str | None:
    """By how much the two-stage recipe beats Pic2Word, whether its interval clears the
    baselines', and (with ``n_boot`` draws) the paired test against each baseline on the same
    queries."""
    metric = HEADLINE[bench]
    for frozen in dict.fromkeys(split_method(d.model)[0] for d in docs):
        mine = {
            split_method(d.model)[1]: d
            for d in docs
            if split_method(d.model)[0] == frozen and metric in d.doc["metrics"]
        }
        by = {method: d.doc["metrics"][metric] for method, d in mine.items()}
        two = by.get("two-stage")
        if two is None:
            continue
        parts = []
        if "pic2word" in by:
            delta = (two["value"] - by["pic2word"]["value"]) * 100
            parts.append(f"{delta:+.1f} points over the Pic2Word-style mapping")
        base = [m for m in BASELINES if m in by]
        if base:
            clear = [
                m
                for m in base
                if two.get("ci_low") is not None
                and two["ci_low"] > (by[m].get("ci_high") or math.inf)
            ]
            parts.append(
                f"its interval clears those of {', '.join(NAMES[m] for m in clear)}"
                if len(clear) == len(base)
                else f"its interval overlaps those of {', '.join(NAMES[m] for m in base if m not in clear)}"
            )
            key = {m: (d.task, d.dataset, d.model, metric) for m, d in mine.items()}
            tests = [
                (m, paired.compare(values, key["two-stage"], key[m], n_boot, seed))
                for m in base
                if values is not None
            ]
            shown = [
                f"{NAMES[m]} {t['delta'] * 100:+.1f} points (95% CI {t['ci_low'] * 100:+.1f} to "
                f"{t['ci_high'] * 100:+.1f}, p = {t['p']:.3f})"
                for m, t in tests
                if t is not None
            ]
            if shown:
                parts.append("paired over the same queries, against " + ", ".join(shown))
        return (
            f"{dataset} ({frozen}): two-stage {metric} {two['value'] * 100:.1f}%, "
            + "; ".join(parts)
            + "."
        )
    return None


def _load(ctx: Context, dataset: str) -> dict[str, Path]:
    index = read_index(ctx.layout.index(dataset))
    root = Path(ctx.layout.dataset(dataset))
    return {i: root / p for i, p in zip(index["id"], index["path"], strict=True)}


def _image(path: Path | None) -> np.ndarray:
    if path is None or not path.is_file():
        return np.full((32, 32, 3), 200, dtype=np.uint8)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def examples_figure(dataset: str, docs: list[MetricsDoc], ctx: Context) -> Plot | None:
    trained = [d for d in docs if split_method(d.model)[1] in ("two-stage", "pic2word", "lincir")]
    pick = next(
        (
            d
            for m in ("two-stage", "pic2word", "lincir")
            for d in trained
            if split_method(d.model)[1] == m
        ),
        None,
    )
    if pick is None or not pick.doc.get("extra", {}).get("examples"):
        return None
    examples = pick.doc["extra"]["examples"]
    paths = _load(ctx, dataset)
    name = f"cir_examples_{dataset}"
    n = len(examples)
    with figure(ctx.figures / f"{name}.png", (8.0, 1.55 * n + 0.3), nrows=n, ncols=6) as (
        fig,
        axes,
    ):
        for r, ex in enumerate(examples):
            thumbnail(axes[r, 0], _image(paths.get(ex["reference"])), "#444444", "reference")
            axes[r, 0].set_xlabel(text(short(ex["caption"], 48)), fontsize=7)
            for c in range(5):
                ax = axes[r, c + 1]
                if c < len(ex["top"]):
                    hit = ex["hit"][c]
                    thumbnail(
                        ax, _image(paths.get(ex["top"][c])), GOOD if hit else BAD, f"#{c + 1}"
                    )
                else:
                    ax.set_axis_off()
    return Plot(
        name=f"{name}.png",
        title=f"Example queries on {dataset} ({pick.model})",
        caption="Each row: the reference image with its modification text, then the top 5 "
        "of the gallery (the reference excluded); green frames are ground-truth targets.",
    )


def section(docs: tuple[MetricsDoc, ...], ctx: Context) -> Section:
    blk = block(ctx.cfg)
    tables, plots, notes = [], [], []
    for dataset in sorted({d.dataset for d in docs}):
        mine = [d for d in docs if d.dataset == dataset]
        for bench in LAYOUTS:
            part = [d for d in mine if benchmark_of(d.doc) == bench]
            if not part:
                continue
            tables.append(benchmark_table(blk, dataset, bench, part, ctx.tied))
            n_boot = ctx.cfg["report"]["paired_bootstrap"]
            if note := gain_note(bench, dataset, part, ctx.values, n_boot, ctx.cfg["seed"]):
                notes.append(note)
        if plot := examples_figure(dataset, mine, ctx):
            plots.append(plot)
    return Section(
        anchor="cir",
        title="Zero-shot composed image retrieval",
        notes=tuple(notes),
        tables=tuple(tables),
        plots=tuple(plots),
        in_main_results=True,
    )
