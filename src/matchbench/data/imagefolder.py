"""Image folders: ``<root>/<split>/<class>/<image>``, the layout torchvision's ImageFolder reads.

The ``imagefolder`` family lets users bring their own data: ``download`` only checks that
the folder exists (track it with ``dvc add``); ``prepare`` indexes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image, UnidentifiedImageError

from matchbench.data import INDEX_COLUMNS, options_object, register_family, resolve_options
from matchbench.errors import MatchbenchError
from matchbench.io import write_parquet

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm"}
SPLITS = ("train", "val", "test")


def check_image(path: Path) -> tuple[int, int]:
    """Decode ``path`` fully (a truncated file fails here, not in the middle of training)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise MatchbenchError(
            f"{path}: not a readable image ({e}); re-download or remove it"
        ) from None


class ImageRows:
    """The ``images.parquet`` rows of a task dataset's images (no class, label or instance):
    one per id, each file decoded once; a track's ``prepare`` adds them as its readers meet
    them, relative to ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.rows: dict[str, dict[str, Any]] = {}

    def add(self, image_id: str, path: Path, split: str, source: str | Path) -> str:
        """Index ``path`` as ``image_id`` (again: the same file, or an error naming ``source``)."""
        row = self.rows.get(image_id)
        rel = os.path.relpath(path, self.out_dir)
        if row is None:
            if not path.is_file():
                raise MatchbenchError(f"{source}: image {image_id!r}: {path} not found")
            width, height = check_image(path)
            self.rows[image_id] = {
                "id": image_id,
                "path": rel,
                "split": split,
                "class": "",
                "label": -1,
                "instance": "",
                "width": width,
                "height": height,
            }
        elif row["path"] != rel:
            raise MatchbenchError(f"{source}: image id {image_id!r} names two files")
        return image_id

    def frame(self) -> pd.DataFrame:
        """The rows by id, with the index's columns and dtypes."""
        return pd.DataFrame(
            [self.rows[k] for k in sorted(self.rows)], columns=INDEX_COLUMNS
        ).astype({"label": "int64", "width": "int64", "height": "int64"})


def index_image_folder(root: Path, base: Path) -> pd.DataFrame:
    """Index ``root/<split>/<class>/*``; paths are written relative to ``base``."""
    if not root.is_dir():
        raise MatchbenchError(
            f"{root}: image folder not found (expected <root>/<split>/<class>/<image>)"
        )
    splits = [s for s in SPLITS if (root / s).is_dir()]
    if not splits:
        raise MatchbenchError(f"{root}: no split folder; expected one of {', '.join(SPLITS)}")
    classes = sorted({d.name for s in splits for d in (root / s).iterdir() if d.is_dir()})
    label = {c: k for k, c in enumerate(classes)}
    rows = []
    for split in splits:
        for cls in sorted(d.name for d in (root / split).iterdir() if d.is_dir()):
            for f in sorted((root / split / cls).iterdir()):
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                w, h = check_image(f)
                rows.append(
                    {
                        "id": f"{split}/{cls}/{f.stem}",
                        # Relative even outside ``base`` (data/raw/<dataset>/...), so the index
                        # survives a moved checkout or a `dvc pull` elsewhere.
                        "path": os.path.relpath(f, base),
                        "split": split,
                        "class": cls,
                        "label": label[cls],
                        "instance": "",
                        "width": w,
                        "height": h,
                    }
                )
    if not rows:
        raise MatchbenchError(f"{root}: no images found (suffixes {sorted(IMAGE_SUFFIXES)})")
    df = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    return df.astype({"label": "int64", "width": "int64", "height": "int64"})


@register_family("imagefolder")
class ImageFolder:
    name = "imagefolder"
    options_schema = options_object(
        root={
            "type": "string",
            "minLength": 1,
            "description": "the folder <root>/<split>/<class>/<image> (default: the raw folder)",
        }
    )

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        root = Path(resolve_options(self, options).get("root", raw_dir))
        if not root.is_dir():
            raise MatchbenchError(
                f"datasets.*.options.root: {root} is not a folder; imagefolder data is brought by "
                "the user (see docs/datasets.md)"
            )

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        root = Path(resolve_options(self, options).get("root", raw_dir))
        write_parquet(out_dir / "images.parquet", index_image_folder(root, out_dir))
