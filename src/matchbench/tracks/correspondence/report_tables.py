"""The correspondence section's tables: the unified benchmark's main table, the matching
variants per dataset, what each evaluation ran on, and the warnings a reader must see."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from matchbench.report.names import ordered_models, slug
from matchbench.report.tables import (
    MISSING,
    Cell,
    ResultKey,
    Table,
    bold_best,
    ci_cells,
    marked_caption,
    model_breaks,
    percent,
)
from matchbench.tracks.correspondence.report_read import (
    CORRESPONDENCE,
    Correspondence,
    dataset_title,
    ordered_datasets,
    parse_pck,
)

# The matching variants from the plainest to the unified benchmark's default, as its paper
# lists them; a variant the report does not know comes after them, by name.
VARIANT_ORDER = ("nn", "bilinear", "softmax", "kernel_softmax")
PCK_CAPTION = (
    "a keypoint is correct when the prediction lies within α·T of the truth, T the pair's "
    "threshold (the target box's longer side; the target image's for PF-PASCAL)"
)


def ordered_variants(variants: pd.Series | list[str]) -> list[str]:
    rank = {v: i for i, v in enumerate(VARIANT_ORDER)}
    return sorted(set(variants), key=lambda v: (rank.get(v, len(rank)), v))


def _alpha(alpha: float) -> str:
    """An alpha as the metric names print it (``pck@0.1``)."""
    return str(float(alpha))


def _variant_names(corr: Correspondence) -> str:
    """The primary matching variant, or which one each dataset used when they differ."""
    per_dataset = corr.runs.drop_duplicates("dataset").set_index("dataset")["variant"]
    if per_dataset.nunique() == 1:
        return str(per_dataset.iloc[0])
    return ", ".join(
        f"{per_dataset[d]} ({dataset_title(d)})" for d in ordered_datasets(per_dataset.index)
    )


def correspondence_table(
    results: pd.DataFrame,
    corr: Correspondence,
    tied: frozenset[ResultKey] = frozenset(),
) -> Table:
    """The unified benchmark's main table (Zhang et al. 2025, "Semantic Correspondence:
    Unified Benchmarking and a Strong Baseline", Tab. 1): rows are models, frozen backbones
    then fine-tuned ones; a column group per dataset with per-image PCK at every alpha.
    """
    rows = results[results["task"] == CORRESPONDENCE]
    parsed = rows["metric"].map(parse_pck)
    pck = rows[parsed.map(lambda p: p is not None and p[0] == "pck")].assign(
        alpha=parsed.map(lambda p: p[1] if p is not None else math.nan)
    )
    datasets = ordered_datasets(pck["dataset"])
    alphas = {ds: sorted(pck.loc[pck["dataset"] == ds, "alpha"].unique()) for ds in datasets}
    columns = [(ds, a) for ds in datasets for a in alphas[ds]]
    models = ordered_models(pck["model"])
    value = pck.set_index(["model", "dataset", "alpha"])["value"]
    metric = dict(zip(zip(pck["dataset"], pck["alpha"], strict=True), pck["metric"], strict=True))
    grid = [[value.get((m, ds, a)) for ds, a in columns] for m in models]
    bold = [bold_best([grid[i][j] for i in range(len(models))]) for j in range(len(columns))]
    body = tuple(
        (
            Cell(m),
            *(
                Cell(
                    MISSING if v is None else percent(v),
                    bold=bold[j][i],
                    mark=(CORRESPONDENCE, columns[j][0], m, metric.get(columns[j])) in tied,
                )
                for j, v in enumerate(grid[i])
            ),
        )
        for i, m in enumerate(models)
    )
    return Table(
        name="correspondence",
        title="Unified benchmark · PCK@α per image",
        caption=marked_caption(
            f"PCK@α per image (the mean over pairs of each pair's share of correct keypoints) "
            f"in percent, one decimal; {PCK_CAPTION}. Matching variant {_variant_names(corr)}. "
            "Frozen backbones first, then fine-tuned models (<backbone>+<recipe>); best per "
            "column in bold. The 95% bootstrap confidence intervals and PCK per point are in "
            "the per-dataset tables and results.csv.",
            body,
        ),
        header=("model", *[f"PCK@{_alpha(a)}" for _, a in columns]),
        rows=body,
        numeric=(False, *[True] * len(columns)),
        groups=(("", 1), *[(dataset_title(ds), len(alphas[ds])) for ds in datasets]),
        breaks=model_breaks(models),
    )


def variant_tables(corr: Correspondence) -> list[Table]:
    """Per dataset: every matching variant of every model at the primary alpha, per image and
    per point, with 95% bootstrap CIs."""
    tables = []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        runs = corr.runs[corr.runs["dataset"] == dataset]
        alpha = float(runs["primary_alpha"].iloc[0])
        primary = str(runs["variant"].iloc[0])
        d = corr.variants[
            (corr.variants["dataset"] == dataset) & np.isclose(corr.variants["alpha"], alpha)
        ]
        cells = d.set_index(["model", "variant", "kind"])
        models = ordered_models(runs["model"])
        variants = ordered_variants(d["variant"]) or [primary]
        keys = [(m, v) for m in models for v in variants]
        per_image, per_point = (
            ci_cells(
                [cells.loc[(m, v, kind)] if (m, v, kind) in cells.index else None for m, v in keys]
            )
            for kind in ("pck", "pck_point")
        )
        body = tuple(
            (Cell(m), Cell(f"{v} (primary)" if v == primary else v), per_image[i], per_point[i])
            for i, (m, v) in enumerate(keys)
        )
        title = dataset_title(dataset)
        tables.append(
            Table(
                name=f"correspondence_variants_{slug(dataset)}",
                title=f"Matching variants · {title}",
                caption=(
                    f"{title}: PCK@{_alpha(alpha)} of every matching variant, per image (mean "
                    "over pairs) and per point (all keypoints pooled), in percent with the "
                    f"95% bootstrap confidence interval over pairs; {PCK_CAPTION}. The primary "
                    f"variant ({primary}) gives the main table; best per column in bold."
                ),
                header=(
                    "model",
                    "variant",
                    f"PCK@{_alpha(alpha)} per image",
                    f"PCK@{_alpha(alpha)} per point",
                ),
                rows=body,
                numeric=(False, False, True, True),
                breaks=tuple(range(len(variants), len(keys), len(variants))),
            )
        )
    return tables


def correspondence_runs_table(corr: Correspondence) -> Table:
    """What each evaluation ran on: pairs, keypoints, resolution, feature grid, speed."""
    rows, breaks = [], []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        runs = corr.runs[corr.runs["dataset"] == dataset]
        if rows:
            breaks.append(len(rows))
        by_model = runs.set_index("model")
        for model in ordered_models(runs["model"]):
            r = by_model.loc[model]
            rows.append(
                (
                    Cell(dataset_title(dataset)),
                    Cell(model),
                    Cell(str(r["n_pairs"])),
                    Cell(str(r["n_points"])),
                    Cell(str(r["resolution"])),
                    Cell(str(r["grid"])),
                    Cell("yes" if r["cache"] else "no"),
                )
            )
    return Table(
        name="correspondence_runs",
        title="Evaluation runs",
        caption=(
            "Per dataset and model: the pairs and keypoints evaluated, the input resolution "
            "(pixels per side), the feature grid (w×h cells), and whether dense maps came from "
            "the on-disk cache (speed is in each evaluation's log; benchmarks/ measures it)."
        ),
        header=("dataset", "model", "pairs", "keypoints", "resolution", "grid", "cache"),
        rows=tuple(rows),
        numeric=(False, False, True, True, True, False, False),
        breaks=tuple(breaks),
    )


def correspondence_notes(corr: Correspondence) -> list[str]:
    """Warnings a reader must see: pairs skipped (by reason), pair counts that differ.

    ``AP-10K: 12 pairs skipped: fewer than 3 keypoints visible in both``; named per model
    when the models of a dataset disagree.
    """
    notes = []
    for dataset in ordered_datasets(corr.runs["dataset"]):
        runs = corr.runs[corr.runs["dataset"] == dataset]
        title = dataset_title(dataset)
        models = ordered_models(runs["model"])
        skipped = corr.skipped[corr.skipped["dataset"] == dataset]
        for reason in sorted(skipped["reason"].unique()):
            counts = skipped[skipped["reason"] == reason].set_index("model")["count"]
            per_model = {m: int(counts.get(m, 0)) for m in models}
            if len(set(per_model.values())) == 1:
                notes.append(f"{title}: {_pairs(per_model[models[0]])} skipped: {reason}")
                continue
            notes += [
                f"{title} ({m}): {_pairs(n)} skipped: {reason}" for m, n in per_model.items() if n
            ]
        n_pairs = runs.set_index("model")["n_pairs"]
        if n_pairs.nunique() > 1:
            counts_text = ", ".join(f"{m} {n_pairs[m]}" for m in models)
            notes.append(
                f"{title}: the models were evaluated on different numbers of pairs "
                f"({counts_text}); their numbers are not directly comparable"
            )
    return notes


def _pairs(n: int) -> str:
    return f"{n} pair" if n == 1 else f"{n} pairs"
