"""CIFAR-10 and STL-10, from their authors' *binary* releases.

We read the binary versions, not the Python ones: the Python releases are pickles, and
unpickling a downloaded file runs whatever code it carries. The binary layouts are plain bytes:

- CIFAR-10 (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"):
  ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``, each a sequence of
  3073-byte records: 1 label byte (0-9), then 3072 pixel bytes, the 32x32 red, green and blue
  planes in turn, each row-major. Class names: ``batches.meta.txt``, one per line.
- STL-10 (https://cs.stanford.edu/~acoates/stl10/, ``stl10_binary.tar.gz``):
  ``stl10_binary/{train,test,unlabeled}_X.bin``, 96x96x3 images of 27648 bytes, each channel
  stored **column-major** (the authors wrote them from MATLAB), so a plane needs a transpose;
  ``{train,test}_y.bin``, one label byte per image, **1-based**; ``class_names.txt``.

``prepare`` decodes them to PNG files ``images/<split>/<class>/<id>.png`` (unlabelled images:
``images/unlabeled/<id>.png``) and writes the common index ``images.parquet``. An image's id is
``<official split>-<index in the official files, from 0>`` (``train-00000`` is the first record
of ``data_batch_1.bin``), so it stays the same whether or not a val split is carved out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.data import (
    INDEX_COLUMNS,
    DatasetFamily,
    options_object,
    register_family,
    resolve_options,
)
from matchbench.data.download import DOWNLOAD_OPTIONS, fetch
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_parquet

# md5 as published on the CIFAR page (torchvision only lists the pickled "python version").
CIFAR10_SOURCE = {
    "url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
    "checksum": "md5:c32a1d4ab5d03f1284b67883e8d87530",
    "filename": "cifar-10-binary.tar.gz",
    "extract": True,
}
# md5 as in torchvision/datasets/stl10.py (STL10.tgz_md5).
STL10_SOURCE = {
    "url": "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz",
    "checksum": "md5:91f7769df0f17e558f3565bffb0c7dfb",
    "filename": "stl10_binary.tar.gz",
    "extract": True,
}

CIFAR10_SIDE = 32
CIFAR10_RECORD_BYTES = 1 + 3 * CIFAR10_SIDE * CIFAR10_SIDE  # label byte + CHW pixels
STL10_SIDE = 96
STL10_IMAGE_BYTES = 3 * STL10_SIDE * STL10_SIDE

PREPARE_OPTIONS: dict[str, dict[str, Any]] = {
    "val_fraction": {
        "type": "number",
        "minimum": 0,
        "exclusiveMaximum": 1,
        "default": 0,
        "description": "fraction of the official train split moved to split 'val'",
    },
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "seed of the val draw"},
}


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class _Options:
    mirror: str | None
    checksums: dict[str, str]
    val_fraction: float
    seed: int
    unlabeled: bool


def _parse_options(family: DatasetFamily, options: Mapping[str, Any] | None) -> _Options:
    o = resolve_options(family, options)
    return _Options(
        o["mirror"],
        dict(o["checksums"]),
        float(o["val_fraction"]),
        o["seed"],
        o.get("unlabeled", False),
    )


# --------------------------------------------------------------------------- reading


def _require(path: Path) -> Path:
    if not path.is_file():
        raise MatchbenchError(
            f"{path}: file not found (run `matchbench download` for this dataset first)"
        )
    return path


def _records(path: Path, record_bytes: int, what: str) -> np.ndarray:
    """Memory-map a file of fixed-size records as an (N, record_bytes) uint8 array."""
    size = _require(path).stat().st_size
    if size == 0 or size % record_bytes:
        raise MatchbenchError(
            f"{path}: {size} bytes is not a whole number of {record_bytes}-byte records "
            f"({what}); the file is truncated or corrupt, delete it and download again"
        )
    return np.memmap(path, dtype=np.uint8, mode="r", shape=(size // record_bytes, record_bytes))


def _class_names(path: Path) -> list[str]:
    names = [line.strip() for line in _require(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    bad = [n for n in names if "/" in n or "\\" in n or n in (".", "..")]
    if not names or bad or len(set(names)) != len(names):
        raise MatchbenchError(f"{path}: expected one distinct class name per line")
    return names


def _check_labels(path: Path, labels: np.ndarray, n_classes: int, first: int) -> np.ndarray:
    """Labels as stored (``first`` = 0 or 1) -> 0-based, or an error naming the first bad one."""
    bad = np.flatnonzero((labels < first) | (labels >= first + n_classes))
    if bad.size:
        i = int(bad[0])
        raise MatchbenchError(
            f"{path}: record {i} has label {int(labels[i])}, expected {first}..{first + n_classes - 1}"
        )
    return labels.astype(np.int64) - first


@dataclass
class _Part:
    """The images of one official split, decoded lazily (STL-10's unlabelled set is 2.7 GB)."""

    split: str
    count: int
    image: Callable[[int], np.ndarray]  # index -> (H, W, 3) uint8
    labels: np.ndarray | None  # 0-based indices into the file's class names, or None


def _cifar10_parts(raw_dir: Path) -> tuple[list[str], list[_Part]]:
    root = raw_dir / "cifar-10-binary" / "cifar-10-batches-bin"
    what = f"1 label byte + {CIFAR10_RECORD_BYTES - 1} pixel bytes"
    classes = _class_names(root / "batches.meta.txt")
    parts = []
    for split, files in (
        ("train", [f"data_batch_{i}.bin" for i in range(1, 6)]),
        ("test", ["test_batch.bin"]),
    ):
        chunks = []
        for name in files:
            rec = _records(root / name, CIFAR10_RECORD_BYTES, what)
            _check_labels(root / name, rec[:, 0], len(classes), first=0)
            chunks.append(rec)
        rec = np.concatenate(chunks)
        planes = rec[:, 1:].reshape(-1, 3, CIFAR10_SIDE, CIFAR10_SIDE)
        parts.append(
            _Part(
                split,
                len(rec),
                lambda i, p=planes: p[i].transpose(1, 2, 0),
                rec[:, 0].astype(np.int64),
            )
        )
    return classes, parts


def _stl10_parts(raw_dir: Path, unlabeled: bool) -> tuple[list[str], list[_Part]]:
    root = raw_dir / "stl10_binary" / "stl10_binary"
    what = f"3x{STL10_SIDE}x{STL10_SIDE} uint8 images"
    classes = _class_names(root / "class_names.txt")
    parts = []
    splits = ["train", "test"] + (["unlabeled"] if unlabeled else [])
    for split in splits:
        x = _records(root / f"{split}_X.bin", STL10_IMAGE_BYTES, what)
        # Each channel is column-major: bytes run down a column, so the stored axes are
        # (channel, column, row); transposing to (row, column, channel) gives the image.
        planes = x.reshape(-1, 3, STL10_SIDE, STL10_SIDE)
        labels = None
        if split != "unlabeled":
            y_path = root / f"{split}_y.bin"
            y = np.fromfile(_require(y_path), dtype=np.uint8)
            if len(y) != len(x):
                raise MatchbenchError(
                    f"{y_path}: {len(y)} labels for {len(x)} images in {split}_X.bin, "
                    "expected one label byte per image"
                )
            labels = _check_labels(y_path, y, len(classes), first=1)
        parts.append(_Part(split, len(x), lambda i, p=planes: p[i].transpose(2, 1, 0), labels))
    return classes, parts


# --------------------------------------------------------------------------- writing


def _splits_with_val(part: _Part, val_fraction: float, seed: int) -> np.ndarray:
    splits = np.full(part.count, part.split, dtype=object)
    if part.split == "train" and val_fraction > 0:
        n_val = math.floor(val_fraction * part.count + 0.5)
        chosen = np.random.default_rng(seed).permutation(part.count)[:n_val]
        splits[chosen] = "val"
    return splits


def _write_index(
    out_dir: Path, classes: list[str], parts: list[_Part], val_fraction: float, seed: int
) -> None:
    """Decode every image to PNG under ``out_dir/images`` and write ``out_dir/images.parquet``."""
    import pandas as pd
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    # An interrupted rerun must not leave an index beside images it does not describe.
    (out_dir / "images.parquet").unlink(missing_ok=True)
    # Contract: labels index the *sorted* class names, whatever order the file lists them in.
    label_of = {name: i for i, name in enumerate(sorted(classes))}
    rows = []
    with atomic_dir(out_dir / "images") as tmp:
        made: set[Path] = set()
        for part in parts:
            splits = _splits_with_val(part, val_fraction, seed)
            width = max(5, len(str(part.count - 1)))
            for i in range(part.count):
                cls = classes[int(part.labels[i])] if part.labels is not None else ""
                image_id = f"{part.split}-{i:0{width}d}"
                folder = Path(splits[i], cls) if cls else Path(splits[i])
                if folder not in made:
                    (tmp / folder).mkdir(parents=True, exist_ok=True)
                    made.add(folder)
                pixels = np.ascontiguousarray(part.image(i))
                Image.fromarray(pixels).save(tmp / folder / f"{image_id}.png")
                rows.append(
                    {
                        "id": image_id,
                        "path": (Path("images") / folder / f"{image_id}.png").as_posix(),
                        "split": splits[i],
                        "class": cls,
                        "label": label_of[cls] if cls else -1,
                        "instance": "",
                        "width": pixels.shape[1],
                        "height": pixels.shape[0],
                    }
                )
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    df = df.astype({"label": "int64", "width": "int64", "height": "int64"})
    for col in ("id", "path", "split", "class", "instance"):
        df[col] = df[col].astype(str)
    write_parquet(out_dir / "images.parquet", df)


# --------------------------------------------------------------------------- families


@register_family("cifar10")
class Cifar10:
    """CIFAR-10 (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny Images").

    Splits: ``train`` (data_batch_1..5), ``test`` (test_batch), and ``val`` when
    ``val_fraction`` > 0 (drawn uniformly from train with ``seed``).
    """

    name = "cifar10"
    options_schema = options_object(**DOWNLOAD_OPTIONS, **PREPARE_OPTIONS)
    sources = [CIFAR10_SOURCE]

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        opts = _parse_options(self, options)
        fetch(self.sources, raw_dir, base_url=opts.mirror, checksums=opts.checksums)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        opts = _parse_options(self, options)
        classes, parts = _cifar10_parts(Path(raw_dir))
        _write_index(Path(out_dir), classes, parts, opts.val_fraction, opts.seed)


@register_family("stl10")
class Stl10:
    """STL-10 (Coates, Ng, Lee 2011, "An Analysis of Single-Layer Networks in Unsupervised
    Feature Learning"), the labelled ``train`` and ``test`` splits; with ``unlabeled: true``
    also the 100,000 unlabelled images (split ``unlabeled``, label -1). The official 10-fold
    train subsets (``fold_indices.txt``) are not exposed.
    """

    name = "stl10"
    options_schema = options_object(
        **DOWNLOAD_OPTIONS,
        **PREPARE_OPTIONS,
        unlabeled={
            "type": "boolean",
            "default": False,
            "description": "also index the unlabelled images as split 'unlabeled'",
        },
    )
    sources = [STL10_SOURCE]

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        opts = _parse_options(self, options)
        fetch(self.sources, raw_dir, base_url=opts.mirror, checksums=opts.checksums)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        opts = _parse_options(self, options)
        classes, parts = _stl10_parts(Path(raw_dir), opts.unlabeled)
        _write_index(Path(out_dir), classes, parts, opts.val_fraction, opts.seed)
