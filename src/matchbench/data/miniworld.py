"""The ``miniworld`` family: the generator is its download, the image-folder parser its prepare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.data import register_family
from matchbench.data.imagefolder import index_image_folder
from matchbench.data.synth import CATEGORIES
from matchbench.data.synth.classes import write_class_folders
from matchbench.data.synth.world import TEXTURES
from matchbench.io import atomic_dir, write_json, write_parquet

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "image_size": 64,
    "categories": list(CATEGORIES),
    "per_class": {"train": 80, "val": 0, "test": 40},
    "instances_per_class": 24,
    "max_clutter": 3,
    "gradient": True,
    "textures": list(TEXTURES),
}

GENERATOR_VERSION = 1


def options_with_defaults(options: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, **options}


@register_family("miniworld")
class MiniWorld:
    name = "miniworld"

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        opts = options_with_defaults(options)
        with atomic_dir(raw_dir) as tmp:
            n = write_class_folders(
                tmp / "classes",
                seed=int(opts["seed"]),
                image_size=int(opts["image_size"]),
                categories=list(opts["categories"]),
                per_class=dict(opts["per_class"]),
                instances_per_class=int(opts["instances_per_class"]),
                max_clutter=int(opts["max_clutter"]),
                gradient=bool(opts["gradient"]),
                textures=tuple(opts["textures"]),
                progress=bool(opts.get("progress", True)),
            )
            write_json(
                tmp / "MANIFEST.json",
                {
                    "source": "miniworld",
                    "generator_version": GENERATOR_VERSION,
                    "options": opts,
                    "images": n,
                },
            )

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        write_parquet(out_dir / "images.parquet", index_image_folder(raw_dir / "classes", out_dir))
