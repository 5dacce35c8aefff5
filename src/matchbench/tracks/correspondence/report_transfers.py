"""Example keypoint transfers for the report: the predictions tables the correspondence
documents name (``artifacts.predictions``, docs/contracts.md), with the images of their pairs.

The same pairs are drawn for every model of a dataset, chosen without looking at the
predictions (spread over categories in a fixed order), so the figure cannot cherry-pick.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.report import checks
from matchbench.report.gather import MetricsDoc
from matchbench.tracks.correspondence.report_read import ordered_datasets

PREDICTION_COLUMNS = ["pair", "category", "src", "trg", "src_kps", "trg_kps", "pred_kps", "correct"]
PREDICTIONS = "predictions"  # the artifact role of the predictions table
TRANSFER_EXAMPLES = 4
TRANSFER_PX = 400


@dataclass(frozen=True)
class Transfer:
    """One model's predictions for one pair, in the target's original frame."""

    model: str
    pred_kps: np.ndarray  # (K, 2)
    correct: np.ndarray  # (K,) bool, at the evaluation's primary alpha


@dataclass(frozen=True)
class TransferExample:
    pair: str
    category: str
    src: str
    trg: str
    src_image: np.ndarray  # downscaled RGB; keypoints stay in the original frame below
    trg_image: np.ndarray
    src_size: tuple[int, int]  # original (width, height): the frame of the keypoints
    trg_size: tuple[int, int]
    src_kps: np.ndarray  # (K, 2)
    trg_kps: np.ndarray  # (K, 2)
    transfers: tuple[Transfer, ...]  # one per model, in the order of TransferSample.models


@dataclass(frozen=True)
class TransferSample:
    dataset: str
    models: tuple[str, ...]
    sources: tuple[Path, ...]
    n_pairs: int  # pairs present in every predictions file of the dataset
    examples: tuple[TransferExample, ...]


def select_transfer_pairs(pairs: pd.DataFrame, n: int = TRANSFER_EXAMPLES) -> list[str]:
    """``n`` pair names spread over categories: evenly spaced categories (sorted by name),
    then round-robin over them taking each category's pairs in name order.

    Deterministic, and blind to whether the predictions are right: no cherry-picking.
    """
    by_category = {
        c: sorted(g["pair"].astype(str))
        for c, g in pairs.groupby(pairs["category"].astype(str), sort=True)
    }
    categories = list(by_category)
    if not categories:
        return []
    picks = np.unique(np.linspace(0, len(categories) - 1, min(n, len(categories))).round())
    chosen = [by_category[categories[int(i)]] for i in picks]
    out: list[str] = []
    for rank in range(max(len(c) for c in chosen)):
        out += [c[rank] for c in chosen if rank < len(c)]
    return out[:n]


def predictions_files(
    docs: Iterable[MetricsDoc], models: Iterable[str] | None = None
) -> dict[str, dict[str, Path]]:
    """dataset -> model -> the predictions table each document names (``artifacts``), for
    the documents of ``models`` (all when None) that name one."""
    keep = None if models is None else set(models)
    files: dict[str, dict[str, Path]] = {}
    for d in docs:
        path = d.artifact(PREDICTIONS)
        if path is not None and (keep is None or d.model in keep):
            files.setdefault(d.dataset, {})[d.model] = path
    return files


def read_transfer_samples(
    files: dict[str, dict[str, Path]],
    layout: Layout,
    *,
    model_order: Sequence[str] = (),
    n: int = TRANSFER_EXAMPLES,
) -> list[TransferSample]:
    """Example keypoint transfers per dataset, the same pairs for every model given.

    ``files``: dataset -> model -> predictions table. Each dataset's images are its
    ``images.parquet`` in the layout, their ``path`` column relative to the dataset's folder.
    Models are drawn in ``model_order`` (then by name).
    """
    rank = {m: i for i, m in enumerate(model_order)}
    return [
        _transfer_sample(
            dataset,
            {
                m: files[dataset][m]
                for m in sorted(files[dataset], key=lambda m: (rank.get(m, len(rank)), m))
            },
            Path(layout.index(dataset)),
            Path(layout.dataset(dataset)),
            n,
        )
        for dataset in ordered_datasets(files)
        if files[dataset]
    ]


def _transfer_sample(
    dataset: str, files: dict[str, Path], index_path: Path, root: Path, n: int
) -> TransferSample:
    frames = {}
    for model, path in files.items():
        df = checks.read_parquet(path, PREDICTION_COLUMNS)
        df["pair"] = df["pair"].astype(str)
        if df["pair"].duplicated().any():
            dup = df.loc[df["pair"].duplicated(), "pair"].iloc[0]
            raise MatchbenchError(f"{path}: column 'pair': {dup!r} appears twice")
        frames[model] = df.set_index("pair", drop=False)
    common = set.intersection(*(set(df["pair"]) for df in frames.values()))
    if not common:
        raise MatchbenchError(
            f"no pair is in every predictions file of dataset {dataset!r} "
            f"({', '.join(map(str, files.values()))})"
        )
    first = next(iter(frames.values()))
    chosen = select_transfer_pairs(first[first["pair"].isin(common)], n)
    index = checks.read_parquet(index_path, ["id", "path"]).drop_duplicates("id").set_index("id")
    examples = [
        _transfer_example(
            pair, {m: df.loc[pair] for m, df in frames.items()}, files, index, index_path, root
        )
        for pair in chosen
    ]
    return TransferSample(
        dataset=dataset,
        models=tuple(frames),
        sources=tuple(files.values()),
        n_pairs=len(common),
        examples=tuple(examples),
    )


def _transfer_example(
    pair: str,
    rows: dict[str, pd.Series],
    files: dict[str, Path],
    index: pd.DataFrame,
    index_path: Path,
    root: Path,
) -> TransferExample:
    """One pair as every model predicted it; the first model's row gives the truth, which
    every other model's row must repeat."""
    first = next(iter(rows))
    ref, ref_path = rows[first], files[first]
    src_kps = _keypoints(ref_path, pair, ref, "src_kps")
    trg_kps = _keypoints(ref_path, pair, ref, "trg_kps", len(src_kps))
    transfers = []
    for model, row in rows.items():
        path = files[model]
        for side in ("src", "trg"):
            if str(row[side]) != str(ref[side]):
                raise MatchbenchError(
                    f"{path}: pair {pair!r}: column {side!r}: {str(row[side])!r} differs "
                    f"from {str(ref[side])!r} in {ref_path}"
                )
        truth = _keypoints(path, pair, row, "trg_kps")
        if truth.shape != trg_kps.shape or not np.allclose(truth, trg_kps):
            raise MatchbenchError(
                f"{path}: pair {pair!r}: column 'trg_kps' differs from {ref_path}"
            )
        transfers.append(
            Transfer(
                model=model,
                pred_kps=_keypoints(path, pair, row, "pred_kps", len(trg_kps)),
                correct=_correct(path, pair, row, len(trg_kps)),
            )
        )
    images, sizes = {}, {}
    for side in ("src", "trg"):
        image_id = str(ref[side])
        if image_id not in index.index:
            raise MatchbenchError(
                f"{ref_path}: column {side!r}: image id {image_id!r} is not in {index_path} "
                "(column 'id')"
            )
        images[side], size = checks.read_image(
            root / str(index.at[image_id, "path"]), image_id, TRANSFER_PX
        )
        sizes[side] = _frame(index, image_id, size)
    return TransferExample(
        pair=pair,
        category=str(ref["category"]),
        src=str(ref["src"]),
        trg=str(ref["trg"]),
        src_image=images["src"],
        trg_image=images["trg"],
        src_size=sizes["src"],
        trg_size=sizes["trg"],
        src_kps=src_kps,
        trg_kps=trg_kps,
        transfers=tuple(transfers),
    )


def _keypoints(
    path: Path, pair: str, row: pd.Series, column: str, k: int | None = None
) -> np.ndarray:
    """A flat ``[x0, y0, x1, y1, ...]`` cell as (K, 2); K must be ``k`` when given."""
    expected = "a flat list of x, y numbers" + (f" ({k} points)" if k is not None else "")
    try:
        flat = np.asarray(row[column], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        flat = None
    if (
        flat is None
        or len(flat) % 2
        or not np.isfinite(flat).all()
        or (k is not None and len(flat) != 2 * k)
    ):
        raise MatchbenchError(f"{path}: pair {pair!r}: column {column!r}: expected {expected}")
    return flat.reshape(-1, 2)


def _correct(path: Path, pair: str, row: pd.Series, k: int) -> np.ndarray:
    try:
        values = np.asarray(row["correct"]).reshape(-1)
    except (TypeError, ValueError):
        values = np.asarray([None])
    if values.dtype != np.bool_ or len(values) != k:
        raise MatchbenchError(
            f"{path}: pair {pair!r}: column 'correct': expected {k} booleans (one per keypoint)"
        )
    return values


def _frame(index: pd.DataFrame, image_id: str, size: tuple[int, int]) -> tuple[int, int]:
    """The original frame of an image's keypoints: the index's width and height, else the file's."""
    if {"width", "height"} <= set(index.columns):
        try:
            w, h = float(index.at[image_id, "width"]), float(index.at[image_id, "height"])
        except (TypeError, ValueError):
            return size
        if math.isfinite(w) and math.isfinite(h) and w > 0 and h > 0:
            return round(w), round(h)
    return size
