"""Correspondence dataset families: ``spair71k``, ``pfpascal``, ``ap10k`` and ``miniworld-spair``.

Each family's ``prepare`` reads the pairs the way the official loader does (the parsers of
``data/spair.py``, ``data/pfpascal.py``, ``data/ap10k.py``; ``Visual-AI/Semantic-Correspondence``
``dataset/*.py``) and writes, under ``data/<dataset>/``:

- ``images.parquet``: one row per image some pair uses; id ``<category>/<image stem>``, path
  relative to the output folder, split the first of test, val, train whose pairs use it;
- ``pairs.parquet``: the pair table of ``matchbench.tracks.correspondence.pairs`` (docs/contracts.md);
- ``skipped.json``: ``{reason: count}`` of the pairs left out where the official code leaves
  them out (AP-10K: fewer than 3 keypoints visible in both), or where a pair cannot be
  scored at all (no keypoint visible in both; PF-PASCAL's flipped training duplicates).

Anything else that is wrong with the files is a ``MatchbenchError`` naming the file: a missing
image or annotation, keypoint arrays of different lengths, a keypoint outside its image by
more than ``kps_tolerance`` pixels (default 2: annotations made on pixel corners or with
1-based tools can sit a pixel past the last pixel centre), an unknown category.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matchbench.data import (
    INDEX_COLUMNS,
    DatasetFamily,
    options_object,
    register_family,
    resolve_options,
)
from matchbench.data.download import DOWNLOAD_OPTIONS, fetch
from matchbench.data.formats import ap10k, pfpascal, spair
from matchbench.data.imagefolder import check_image
from matchbench.data.synth.world import CATEGORIES, TEXTURES
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json, write_parquet
from matchbench.tracks.correspondence.pairs import make_row, write_pairs_table
from matchbench.tracks.correspondence.synth import SceneOptions

KPS_TOLERANCE_PX = 2.0
SPLITS = ("train", "val", "test")  # contract names; the files say trn for train
FILE_SPLIT = {"train": "trn", "val": "val", "test": "test"}

# No checksum is published for these files: the manifest records the sha256 fetched, and the
# `checksums` option pins one (docs/datasets.md).
SPAIR_SOURCE = {
    "url": "http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz",
    "checksum": None,
    "filename": "SPair-71k.tar.gz",
    "extract": True,
}
PFPASCAL_SOURCES = [
    {
        "url": "https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip",
        "checksum": None,
        "filename": "PF-dataset-PASCAL.zip",
        "extract": True,
    },
    {
        "url": "https://www.robots.ox.ac.uk/~xinghui/sd4match/pf-pascal_image_pairs.zip",
        "checksum": None,
        "filename": "pf-pascal_image_pairs.zip",
        "extract": True,
    },
]

PREPARE_OPTIONS: dict[str, dict[str, Any]] = {
    "kps_tolerance": {
        "type": "number",
        "minimum": 0,
        "default": KPS_TOLERANCE_PX,
        "description": "pixels a keypoint may lie outside its image",
    },
}
ROOT_OPTION = {
    "type": "string",
    "minLength": 1,
    "description": "the ap-10k folder prepared by GeoAware-SC's data/prepare_ap10k.sh",
}


def _counts(default: Mapping[str, int], what: str) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {s: {"type": "integer", "minimum": 0} for s in SPLITS},
        "default": dict(default),
        "description": f"{what} in each split (a split left out has none)",
    }


def _subset(default: Iterable[str], known: Iterable[str]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"enum": list(known)},
        "minItems": 1,
        "uniqueItems": True,
        "default": list(default),
    }


def _span(default: Iterable[float], item: dict[str, Any], what: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": item,
        "minItems": 2,
        "maxItems": 2,
        "default": list(default),
        "description": f"[min, max] {what}, min <= max",
    }


def _probability(default: float) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": 1, "default": default}


# The generator's options, their defaults those of SceneOptions (the demo's scenes depend on
# them). What a schema cannot say (min <= max, enough images for the pairs) scene_options checks.
_D = SceneOptions()
SCENE_OPTIONS: dict[str, dict[str, Any]] = {
    "categories": _subset(_D.categories, CATEGORIES),
    "image_size": _span(
        _D.image_size, {"type": "integer", "minimum": 16, "maximum": 4096}, "side in pixels"
    ),
    "pairs": _counts(_D.pairs, "pairs"),
    "images_per_category": _counts(_D.images_per_category, "images per category"),
    "instances_per_category": {
        "type": "integer",
        "minimum": 1,
        "default": _D.instances_per_category,
    },
    "rotation": {"type": "number", "minimum": 0, "maximum": 90, "default": _D.rotation},
    "scale": _span(
        _D.scale,
        {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "object radius as a fraction of the shorter side",
    ),
    "mirror_prob": _probability(_D.mirror_prob),
    "truncation_prob": _probability(_D.truncation_prob),
    "occlusion_prob": _probability(_D.occlusion_prob),
    "max_clutter": {"type": "integer", "minimum": 0, "default": _D.max_clutter},
    "gradient": {"type": "boolean", "default": _D.gradient},
    "textures": _subset(_D.textures, TEXTURES),
    "mark": {"type": "boolean", "default": _D.mark},
    "min_keypoints": {"type": "integer", "minimum": 1, "default": _D.min_keypoints},
    "jpeg_quality": {"type": "integer", "minimum": 1, "maximum": 95, "default": _D.jpeg_quality},
}


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class _Options:
    mirror: str | None
    checksums: dict[str, str]
    kps_tolerance: float
    root: Path | None


def _options(family: DatasetFamily, options: Mapping[str, Any] | None) -> _Options:
    o = resolve_options(family, options)
    root = o.get("root")
    return _Options(
        o.get("mirror"),
        dict(o.get("checksums", {})),
        float(o["kps_tolerance"]),
        Path(root) if root else None,
    )


# --------------------------------------------------------------------------- the tables


@dataclass
class PairRecord:
    """One pair as read from a dataset's own files, before the common checks."""

    pair: str
    split: str  # train / val / test
    category: str
    src_image: Path
    trg_image: Path
    src_kps: np.ndarray  # (K, 2), visible in both
    trg_kps: np.ndarray
    src_bbox: np.ndarray | None  # x1, y1, x2, y2
    trg_bbox: np.ndarray | None
    flags: dict[str, int]
    source: Path | str  # the annotation file (or CSV row) that defines the pair, for errors


def _image_id(category: str, path: Path) -> str:
    return f"{category}/{path.stem}"


def _check_inside(rec: PairRecord, side: str, size: tuple[int, int], tol: float) -> None:
    w, h = size
    kps = rec.src_kps if side == "src" else rec.trg_kps
    out = (kps[:, 0] < -tol) | (kps[:, 0] > w - 1 + tol)
    out |= (kps[:, 1] < -tol) | (kps[:, 1] > h - 1 + tol)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        image = rec.src_image if side == "src" else rec.trg_image
        raise MatchbenchError(
            f"{rec.source}: {side} keypoint {i} at ({kps[i, 0]:g}, {kps[i, 1]:g}) lies outside "
            f"the {w}x{h} image {image} (tolerance {tol:g} px, option kps_tolerance)"
        )


def write_tables(
    out_dir: Path,
    records: Iterable[PairRecord],
    *,
    categories: Iterable[str],
    threshold: str,
    skipped: Counter[str],
    kps_tolerance: float = KPS_TOLERANCE_PX,
    min_keypoints: int = 1,
    min_keypoints_reason: str = "no keypoint visible in both images",
) -> None:
    """Check ``records`` and write ``images.parquet``, ``pairs.parquet`` and ``skipped.json``.

    ``threshold`` is the PCK normaliser: ``"bbox"`` (longer side of the target box: SPair-71k,
    AP-10K) or ``"image"`` (longer side of the target image: PF-PASCAL).
    """
    kept = []
    for rec in records:
        if rec.src_kps.shape != rec.trg_kps.shape:
            raise MatchbenchError(
                f"{rec.source}: {len(rec.src_kps)} source keypoints but {len(rec.trg_kps)} "
                "target keypoints; expected the same keypoints in both"
            )
        if len(rec.src_kps) < min_keypoints:
            skipped[min_keypoints_reason] += 1
            continue
        kept.append(rec)
    if not kept:
        raise MatchbenchError(f"{out_dir}: no usable pair (skipped: {dict(skipped)})")
    sizes: dict[Path, tuple[int, int]] = {}
    images: dict[str, dict[str, Any]] = {}
    for rec in kept:
        for side, path in (("src", rec.src_image), ("trg", rec.trg_image)):
            if path not in sizes:
                if not path.is_file():
                    raise MatchbenchError(f"{path}: image not found (pair in {rec.source})")
                sizes[path] = check_image(path)
            _check_inside(rec, side, sizes[path], kps_tolerance)
            image_id = _image_id(rec.category, path)
            row = images.setdefault(
                image_id, {"path": path, "category": rec.category, "splits": set()}
            )
            if row["path"] != path:
                raise MatchbenchError(
                    f"{rec.source}: image id {image_id!r} names two files, {row['path']} and {path}"
                )
            row["splits"].add(rec.split)
    names = sorted(set(categories) | {r["category"] for r in images.values()})
    label = {c: k for k, c in enumerate(names)}
    index = pd.DataFrame(
        [
            {
                "id": image_id,
                "path": os.path.relpath(r["path"], out_dir),
                "split": next(s for s in ("test", "val", "train") if s in r["splits"]),
                "class": r["category"],
                "label": label[r["category"]],
                "instance": "",
                "width": sizes[r["path"]][0],
                "height": sizes[r["path"]][1],
            }
            for image_id, r in sorted(images.items())
        ],
        columns=INDEX_COLUMNS,
    ).astype({"label": "int64", "width": "int64", "height": "int64"})
    rows = []
    for rec in kept:
        if threshold == "bbox":
            if rec.trg_bbox is None:
                raise MatchbenchError(f"{rec.source}: no target box for the PCK threshold")
            x1, y1, x2, y2 = rec.trg_bbox
            t = max(x2 - x1, y2 - y1)
        else:
            t = max(sizes[rec.trg_image])
        rows.append(
            make_row(
                pair=rec.pair,
                split=rec.split,
                category=rec.category,
                src=_image_id(rec.category, rec.src_image),
                trg=_image_id(rec.category, rec.trg_image),
                src_kps=rec.src_kps,
                trg_kps=rec.trg_kps,
                src_bbox=rec.src_bbox,
                trg_bbox=rec.trg_bbox,
                threshold=float(t),
                flags=rec.flags,
            )
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(out_dir / "images.parquet", index)
    write_pairs_table(out_dir / "pairs.parquet", rows)
    write_json(out_dir / "skipped.json", dict(sorted(skipped.items())))


# --------------------------------------------------------------------------- SPair-71k


def spair_records(root: Path) -> tuple[list[PairRecord], list[str]]:
    """Every pair of ``Layout/large/{trn,val,test}.txt``, read as the official loader does
    (``spair.read_pairs``, the reader ``matchbench score`` uses too)."""
    categories = spair.categories(root)
    images = root / "JPEGImages"
    records = []
    for split in SPLITS:
        for ann in spair.read_pairs(root, FILE_SPLIT[split], known=categories):
            category = ann["category"]
            records.append(
                PairRecord(
                    pair=ann["name"],
                    split=split,
                    category=category,
                    src_image=images / category / ann["src_imname"],
                    trg_image=images / category / ann["trg_imname"],
                    src_kps=ann["src_kps"],
                    trg_kps=ann["trg_kps"],
                    src_bbox=ann["src_bbox"],
                    trg_bbox=ann["trg_bbox"],
                    flags={k: int(v) for k, v in ann["flags"].items()},
                    source=ann["path"],
                )
            )
    return records, categories


def prepare_spair(raw_dir: Path, out_dir: Path, tolerance: float) -> None:
    try:
        root = spair.release_root(raw_dir)
    except MatchbenchError as e:
        raise MatchbenchError(f"{e}; run `matchbench download` for this dataset first") from None
    records, categories = spair_records(root)
    write_tables(
        out_dir,
        records,
        categories=categories,
        threshold="bbox",
        skipped=Counter(),
        kps_tolerance=tolerance,
    )


@register_family("spair71k")
class Spair71k:
    """SPair-71k (Min et al. 2019) from its official tarball."""

    name = "spair71k"
    tables = ("pairs.parquet", "skipped.json")  # written by prepare beside images.parquet
    options_schema = options_object(**DOWNLOAD_OPTIONS, **PREPARE_OPTIONS)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        o = _options(self, options)
        fetch([SPAIR_SOURCE], raw_dir, base_url=o.mirror, checksums=o.checksums)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = _options(self, options)
        prepare_spair(Path(raw_dir), Path(out_dir), o.kps_tolerance)


@register_family("miniworld-spair")
class MiniWorldSpair:
    """The mini-world's correspondence pairs, generated in SPair-71k's layout (no network)."""

    name = "miniworld-spair"
    tables = ("pairs.parquet", "skipped.json")  # written by prepare beside images.parquet
    options_schema = options_object(
        seed={"type": "integer", "minimum": 0, "default": 0},
        **SCENE_OPTIONS,
        **PREPARE_OPTIONS,
        progress={"type": "boolean", "description": "show a progress bar (default true)"},
    )
    GENERATOR_VERSION = 1

    def check_options(self, options: dict[str, Any], where: str) -> None:
        from matchbench.tracks.correspondence.synth import scene_options

        skip = ("seed", "kps_tolerance")
        scene_options({k: v for k, v in options.items() if k not in skip}, where)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        from matchbench.tracks.correspondence.synth import write_spair

        opts = resolve_options(self, options)
        self.check_options(opts, self.name)  # before anything is written
        seed = opts.pop("seed")
        tol = opts.pop("kps_tolerance")
        progress = opts.pop("progress", True)
        with atomic_dir(raw_dir) as tmp:
            summary = write_spair(tmp, seed=seed, progress=progress, **opts)
            write_json(
                tmp / "MANIFEST.json",
                {
                    "source": self.name,
                    "generator_version": self.GENERATOR_VERSION,
                    "options": {"seed": seed, **opts, "kps_tolerance": tol},
                    **summary,
                },
            )

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        prepare_spair(Path(raw_dir), Path(out_dir), _options(self, options).kps_tolerance)


# --------------------------------------------------------------------------- PF-PASCAL


def pfpascal_roots(raw_dir: Path) -> tuple[Path, Path]:
    """(root holding ``PF-dataset-PASCAL/``, folder holding the ``<split>_pairs.csv`` lists)."""
    data = next(
        (
            r
            for r in (raw_dir, raw_dir / "PF-dataset-PASCAL", raw_dir / "pf-pascal")
            if (r / "PF-dataset-PASCAL" / "JPEGImages").is_dir()
        ),
        None,
    )
    if data is None:
        raise MatchbenchError(
            f"{raw_dir}: PF-PASCAL not found (expected PF-dataset-PASCAL/JPEGImages in it or "
            "in PF-dataset-PASCAL/ under it; run `matchbench download` for this dataset first)"
        )
    candidates = [data, data / "PF-dataset-PASCAL"]
    candidates += sorted(p for p in raw_dir.glob("pf-pascal_image_pairs*") if p.is_dir())
    candidates += [c / "pf-pascal_image_pairs" for c in list(candidates)]
    for folder in candidates:
        if any((folder / n).is_file() for s in FILE_SPLIT.values() for n in _pf_names(s)):
            return data, folder
    raise MatchbenchError(
        f"{raw_dir}: no PF-PASCAL pair list ({{trn,val,test}}_pairs.csv) found in "
        f"{', '.join(str(c) for c in candidates)}"
    )


def _pf_names(split: str) -> tuple[str, str]:
    return (f"{split}_pairs.csv", f"{split}_pairs_pf_pascal.csv")


def pfpascal_records(raw_dir: Path, skipped: Counter[str]) -> list[PairRecord]:
    data, lists = pfpascal_roots(raw_dir)
    images = data / "PF-dataset-PASCAL" / "JPEGImages"
    records = []
    for split in SPLITS:
        if not any((lists / n).is_file() for n in _pf_names(FILE_SPLIT[split])):
            continue
        for p in pfpascal.read_pairs(data, FILE_SPLIT[split], lists=lists, image_sizes=False):
            if p["flip"]:
                # The training list repeats pairs with flip = 1: the loader mirrors both
                # images on the fly. It is augmentation, not data; trainers augment themselves.
                skipped["flipped duplicate of a training pair (augmentation)"] += 1
                continue
            records.append(
                PairRecord(
                    pair=p["name"],
                    split=split,
                    category=p["category"],
                    src_image=images / f"{p['src']}.jpg",
                    trg_image=images / f"{p['trg']}.jpg",
                    src_kps=p["src_kps"],
                    trg_kps=p["trg_kps"],
                    src_bbox=p["src_bbox"],
                    trg_bbox=p["trg_bbox"],
                    flags={},
                    source=p["source"],
                )
            )
    return records


@register_family("pfpascal")
class PfPascal:
    """PF-PASCAL (Ham et al. 2017) images + the unified benchmark's pair lists."""

    name = "pfpascal"
    tables = ("pairs.parquet", "skipped.json")  # written by prepare beside images.parquet
    options_schema = options_object(**DOWNLOAD_OPTIONS, **PREPARE_OPTIONS)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        o = _options(self, options)
        fetch(PFPASCAL_SOURCES, raw_dir, base_url=o.mirror, checksums=o.checksums)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = _options(self, options)
        skipped: Counter[str] = Counter()
        records = pfpascal_records(Path(raw_dir), skipped)
        write_tables(
            Path(out_dir),
            records,
            categories=pfpascal.CLASSES,
            threshold="image",
            skipped=skipped,
            kps_tolerance=o.kps_tolerance,
        )


# --------------------------------------------------------------------------- AP-10K

AP10K_MIN_KEYPOINTS = 3  # GeoAware-SC keeps a pair only with >= 3 keypoints visible in both


def ap10k_records(root: Path) -> list[PairRecord]:
    records = []
    for split in SPLITS:
        folder = root / "PairAnnotation" / FILE_SPLIT[split]
        if not folder.is_dir():
            continue
        for p in ap10k.read_pairs(root, FILE_SPLIT[split]):
            records.append(
                PairRecord(
                    pair=p["name"],
                    split=split,
                    category=p["category"],
                    src_image=p["src_image"],
                    trg_image=p["trg_image"],
                    src_kps=p["src_kps"],
                    trg_kps=p["trg_kps"],
                    src_bbox=p["src_bbox"],
                    trg_bbox=p["trg_bbox"],
                    flags={},
                    source=p["source"],
                )
            )
    if not records:
        raise MatchbenchError(
            f"{root / 'PairAnnotation'}: no pair folder among {', '.join(FILE_SPLIT.values())}"
        )
    return records


@register_family("ap10k")
class Ap10k:
    """AP-10K as GeoAware-SC's ``data/prepare_ap10k.sh`` leaves it (brought by the user)."""

    name = "ap10k"
    tables = ("pairs.parquet", "skipped.json")  # written by prepare beside images.parquet
    options_schema = options_object(root=ROOT_OPTION, **PREPARE_OPTIONS)

    def _root(self, raw_dir: Path, options: dict[str, Any]) -> Path:
        o = _options(self, options)
        root = o.root or raw_dir
        if not (root / "PairAnnotation").is_dir() or not (root / "ImageAnnotation").is_dir():
            raise MatchbenchError(
                f"datasets.*.options.root: {root} is not a prepared AP-10K folder (expected "
                "ImageAnnotation/, JPEGImages/ and PairAnnotation/; AP-10K cannot be downloaded "
                "automatically, see docs/datasets.md)"
            )
        return root

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        self._root(Path(raw_dir), options)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        root = self._root(Path(raw_dir), options)
        records = ap10k_records(root)
        categories = sorted(
            d.name for fam in (root / "ImageAnnotation").iterdir() if fam.is_dir()
            for d in fam.iterdir() if d.is_dir()
        )  # fmt: skip
        write_tables(
            Path(out_dir),
            records,
            categories=categories,
            threshold="bbox",
            skipped=Counter(),
            kps_tolerance=_options(self, options).kps_tolerance,
            min_keypoints=AP10K_MIN_KEYPOINTS,
            min_keypoints_reason=(
                f"fewer than {AP10K_MIN_KEYPOINTS} keypoints visible in both images (GeoAware-SC)"
            ),
        )
