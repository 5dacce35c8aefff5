"""The ``retrieval`` track's report section, in the ILIAS paper's layout.

- mAP@1k of every model (rows) under every method (no adaptation, αQE, linear adaptation,
  both, local re-ranking, linear + local), image and text queries in separate column groups,
  each with its 95% bootstrap interval, the best of a column in bold;
- paired tests over the same queries: each method against the same model's global descriptor,
  and a fine-tuned backbone (``+ilias-embed``) against the backbone it started from;
- the breakdown by the positives' scale and clutter;
- approximate search: recall@k of each faiss index against exact search on the same queries;
- a figure of mAP@1k against the number of distractors (one line per model and method);
- a figure of example queries with their top 10, positives framed in green.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from matchbench.images import read_index
from matchbench.layout import split_model
from matchbench.report import paired
from matchbench.report.figures import BAD, GOOD, Plot, figure, short, text, thumbnail
from matchbench.report.gather import MetricsDoc
from matchbench.report.section import Context, Section
from matchbench.report.tables import Cell, ResultKey, Table, bold_best, entry_cell, marked_caption
from matchbench.tracks.retrieval.evaluate import metric_key
from matchbench.tracks.retrieval.methods import EMBED, KINDS, LOCAL, block, split_method
from matchbench.tracks.retrieval.shards import ShardImages, members

NAMES = {
    "global": "none",
    "aqe": "αQE",
    "linear": "linear",
    "linear-aqe": "linear + αQE",
    "local": "local",
    "linear-local": "linear + local",
}


def _key(kind: str, doc: dict[str, Any]) -> str:
    """The document's mAP key: its cut-off is the run's ``k`` (1,000 in ILIAS, smaller in tests)."""
    return metric_key(kind, doc.get("extra", {}).get("k", 1000))


def main_table(
    blk: dict[str, Any], dataset: str, docs: list[MetricsDoc], tied: frozenset[ResultKey]
) -> Table:
    by = {(split_method(d.model)): d for d in docs}
    models = [m for m in blk["models"] if any(split_method(d.model)[0] == m for d in docs)]
    methods = [m for m in blk["methods"] if any(split_method(d.model)[1] == m for d in docs)]
    kinds = [k for k in KINDS if any(_key(k, d.doc) in d.doc["metrics"] for d in docs)]
    columns: list[list[Cell]] = []
    for kind in kinds:
        for method in methods:
            entries = []
            for model in models:
                d = by.get((model, method))
                entries.append((d, None if d is None else d.doc["metrics"].get(_key(kind, d.doc))))
            bold = bold_best([None if e is None else e["value"] for _, e in entries])
            columns.append(
                [
                    entry_cell(
                        e,
                        b,
                        d is not None and (d.task, d.dataset, d.model, _key(kind, d.doc)) in tied,
                    )
                    for (d, e), b in zip(entries, bold, strict=True)
                ]
            )
    rows = [(Cell(m), *(c[i] for c in columns)) for i, m in enumerate(models)]
    return Table(
        name=f"retrieval_ilias_{dataset}",
        title=f"Instance-level retrieval on {dataset}: mAP@1k",
        caption=marked_caption(
            "mAP@1k over the positives and every distractor, in percent with 95% bootstrap "
            "intervals, by adaptation / re-ranking method (ILIAS's layout); image queries are "
            "cropped by their boxes; text queries need a text tower. The best of a column in bold.",
            rows,
        ),
        header=("model", *(NAMES[m] for _ in kinds for m in methods)),
        rows=tuple(rows),
        numeric=(False, *(True for _ in kinds for _ in methods)),
        groups=(("", 1), *((f"{k} queries", len(methods)) for k in kinds)),
    )


def gains_table(dataset: str, docs: list[MetricsDoc], ctx: Context) -> Table | None:
    """Paired bootstrap tests (``report.paired_bootstrap`` draws): what each method adds to
    the same model's global descriptor, and what ``ilias-embed`` adds to its backbone."""
    n_boot = ctx.cfg["report"]["paired_bootstrap"]
    by = {split_method(d.model): d for d in docs}
    pairs = [((m, method), (m, "global")) for m, method in by if method != "global"]
    pairs += [
        ((m, "global"), (split_model(m)[0], "global"))
        for m, method in by
        if method == "global" and split_model(m)[1] == EMBED
    ]
    rows = []
    for a, b in pairs:
        da, db = by.get(a), by.get(b)
        if da is None or db is None:
            continue
        for kind in KINDS:
            key = _key(kind, da.doc)
            if key not in da.doc["metrics"] or key not in db.doc["metrics"]:
                continue
            if kind == "text" and a[1] in LOCAL:
                continue  # text queries keep the global lists under a local method
            test = paired.compare(
                ctx.values,
                (da.task, da.dataset, da.model, key),
                (db.task, db.dataset, db.model, key),
                n_boot,
                ctx.cfg["seed"],
            )
            if test is None:
                continue
            rows.append(
                (
                    Cell(da.model),
                    Cell(db.model),
                    Cell(kind),
                    Cell(f"{test['delta'] * 100:+.2f}"),
                    Cell(f"{test['ci_low'] * 100:+.2f} to {test['ci_high'] * 100:+.2f}"),
                    Cell(f"{test['p']:.3f}"),
                )
            )
    if not rows:
        return None
    return Table(
        name=f"retrieval_gains_{dataset}",
        title=f"What each step adds on {dataset}: paired tests",
        caption="mAP@1k of a method minus the same model's global descriptor (and of a "
        "fine-tuned backbone minus the backbone), in points, with the paired bootstrap's 95% "
        "interval and p over the same queries: a gain whose interval excludes 0 is one the "
        "queries agree on, even where the two models' own intervals overlap (text queries "
        "keep their global lists under a local method: not tested).",
        header=("model", "against", "queries", "Δ mAP@1k", "95% CI", "p"),
        rows=tuple(rows),
        numeric=(False, False, False, True, False, True),
    )


GROUP_ORDER = ("small", "medium", "large", "none", "1-2", "3+")


def _category_order(cat: str) -> tuple[str, int]:
    kind, _, group = cat.partition(": ")
    return kind, GROUP_ORDER.index(group) if group in GROUP_ORDER else len(GROUP_ORDER)


def breakdown_table(dataset: str, docs: list[MetricsDoc]) -> Table | None:
    found = [(d, d.doc.get("per_category", {}).get(_key("image", d.doc))) for d in docs]
    found = [(d, f) for d, f in found if f]
    if not found:
        return None
    cats = sorted({c for _, f in found for c in f}, key=_category_order)
    kinds = list(dict.fromkeys(c.partition(": ")[0] for c in cats))
    rows = [
        (Cell(d.model), *(Cell("" if f.get(c) is None else f"{f[c] * 100:.1f}") for c in cats))
        for d, f in found
    ]
    return Table(
        name=f"retrieval_breakdown_{dataset}",
        title=f"Image queries on {dataset}, by the positives' scale and clutter: mAP@1k",
        caption="mAP@1k (percent) with only the positives of a group relevant and the others "
        "removed from the lists; scale: tertiles of the object's share of the image; clutter: "
        "other objects in the image.",
        header=("model", *(c.partition(": ")[2] for c in cats)),
        rows=tuple(rows),
        numeric=(False, *(True for _ in cats)),
        groups=(("", 1), *((k, sum(c.startswith(f"{k}: ") for c in cats)) for k in kinds)),
    )


def ann_table(dataset: str, docs: list[MetricsDoc]) -> Table | None:
    rows = []
    for d in docs:
        for factory, found in sorted(d.doc.get("extra", {}).get("ann", {}).items()):
            for key, value in found.items():
                rows.append((Cell(d.model), Cell(factory), Cell(key), Cell(f"{value * 100:.1f}")))
    if not rows:
        return None
    return Table(
        name=f"retrieval_ann_{dataset}",
        title=f"Approximate search on {dataset}: recall against exact search",
        caption="Share (percent) of the exact top-k that each faiss index returns, same queries "
        "and database (benchmarks/README.md measures the same at millions of vectors).",
        header=("model", "index", "measure", "recall"),
        rows=tuple(rows),
        numeric=(False, False, False, True),
    )


def curve_figure(dataset: str, docs: list[MetricsDoc], ctx: Context) -> Plot | None:
    lines = [(d, d.doc.get("extra", {}).get("curve", [])) for d in docs]
    lines = [(d, c) for d, c in lines if len(c) >= 2]
    if not lines:
        return None
    name = f"retrieval_curve_{dataset}"
    kinds = [k for k in KINDS if any(_key(k, d.doc) in c[0] for d, c in lines)]
    with figure(
        ctx.figures / f"{name}.png", (4.2 * len(kinds), 3.2), nrows=1, ncols=len(kinds)
    ) as (fig, axes):
        axes = np.atleast_1d(axes).ravel()
        for ax, kind in zip(axes, kinds, strict=True):
            for d, c in lines:
                xs = [p["distractors"] for p in c if _key(kind, d.doc) in p]
                ys = [p[_key(kind, d.doc)] * 100 for p in c if _key(kind, d.doc) in p]
                if xs:
                    model, method = split_method(d.model)
                    ax.plot(
                        [max(x, 1) for x in xs], ys, marker="o", ms=3,
                        color=ctx.colors.get(d.model), label=text(f"{short(model)} {NAMES[method]}"),
                        linestyle="-" if "linear" in method else "--",
                    )  # fmt: skip
            ax.set_xscale("log")
            ax.set_xlabel("distractors (0 drawn at 1)")
            ax.set_ylabel("mAP@1k (%)")
            ax.set_title(f"{kind} queries", fontsize=9)
        axes[0].legend(fontsize=6)
    return Plot(
        name=f"{name}.png",
        title=f"mAP@1k against the number of distractors on {dataset}",
        caption="Exact search over the positives and the first shards of distractors (one pass: "
        "each shard's top-k merged into every point).",
    )


class _Images:
    """Images by id: the index's files, and distractors read from their tar shards (one pass
    over a shard's headers, then a seek per image: ``shards.members``)."""

    def __init__(self, ctx: Context, dataset: str) -> None:
        index = read_index(ctx.layout.index(dataset))
        root = Path(ctx.layout.dataset(dataset))
        self.paths = {i: root / p for i, p in zip(index["id"], index["path"], strict=True)}
        self.ctx, self.dataset = ctx, dataset
        self.shards: dict[str, tuple[ShardImages, dict[str, int]]] = {}

    def get(self, image_id: str) -> np.ndarray:
        path = self.paths.get(image_id)
        if path is not None and path.is_file():
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB"))
        shard, _, key = image_id.partition("/")
        tar_path = Path(self.ctx.layout.shard(self.dataset, shard.removesuffix(".tar")))
        if key and tar_path.is_file():
            if shard not in self.shards:
                found = members(tar_path)
                self.shards[shard] = (
                    ShardImages(tar_path, found, 0),
                    {m.key: i for i, m in enumerate(found)},
                )
            images, where = self.shards[shard]
            if key in where:
                with Image.open(io.BytesIO(images.read(where[key]))) as im:
                    return np.asarray(im.convert("RGB"))
        return np.full((32, 32, 3), 200, dtype=np.uint8)


def examples_figure(dataset: str, docs: list[MetricsDoc], ctx: Context) -> Plot | None:
    scored = [
        d
        for d in docs
        if _key("image", d.doc) in d.doc["metrics"] and d.doc.get("extra", {}).get("examples")
    ]
    if not scored:
        return None
    best = max(scored, key=lambda d: d.doc["metrics"][_key("image", d.doc)]["value"])
    examples = best.doc["extra"]["examples"]
    images = _Images(ctx, dataset)
    name = f"retrieval_examples_{dataset}"
    n = len(examples)
    with figure(ctx.figures / f"{name}.png", (11.0, 1.3 * n + 0.3), nrows=n, ncols=11) as (
        fig,
        axes,
    ):
        axes = np.atleast_2d(axes)
        for r, ex in enumerate(examples):
            ax = axes[r, 0]
            if ex["kind"] == "image":
                thumbnail(ax, images.get(ex["query"]), "#444444", "query")
            else:
                ax.set_axis_off()
                ax.text(
                    0.5,
                    0.5,
                    text(short(ex["text"], 60)),
                    ha="center",
                    va="center",
                    wrap=True,
                    fontsize=6,
                )
            for c in range(10):
                ax = axes[r, c + 1]
                if c < len(ex["top"]):
                    thumbnail(
                        ax, images.get(ex["top"][c]), GOOD if ex["hit"][c] else BAD, f"#{c + 1}"
                    )
                else:
                    ax.set_axis_off()
    return Plot(
        name=f"{name}.png",
        title=f"Example queries on {dataset} ({best.model})",
        caption="Each row: a query (the image crop, or the text) and its top 10 in the full "
        "database; green frames are positives of the query's instance, red ones are not.",
    )


def section(docs: tuple[MetricsDoc, ...], ctx: Context) -> Section:
    blk = block(ctx.cfg)
    tables, plots = [], []
    for dataset in sorted({d.dataset for d in docs}):
        mine = sorted((d for d in docs if d.dataset == dataset), key=lambda d: d.model)
        tables.append(main_table(blk, dataset, mine, ctx.tied))
        extra = (
            gains_table(dataset, mine, ctx),
            breakdown_table(dataset, mine),
            ann_table(dataset, mine),
        )
        for t in extra:
            if t is not None:
                tables.append(t)
        for p in (curve_figure(dataset, mine, ctx), examples_figure(dataset, mine, ctx)):
            if p is not None:
                plots.append(p)
    return Section(
        anchor="retrieval",
        title="Instance-level retrieval",
        tables=tuple(tables),
        plots=tuple(plots),
        in_main_results=True,
    )
