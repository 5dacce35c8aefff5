"""The ``miniworld`` family: the generator is its download, the image-folder parser its prepare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matchbench.data import options_object, register_family, resolve_options
from matchbench.data.imagefolder import index_image_folder
from matchbench.data.synth import CATEGORIES
from matchbench.data.synth.classes import SPLITS, write_class_folders
from matchbench.data.synth.world import TEXTURES
from matchbench.io import atomic_dir, write_json, write_parquet

GENERATOR_VERSION = 1


def _subset(known: tuple[str, ...] | list[str], what: str) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"enum": list(known)},
        "minItems": 1,
        "uniqueItems": True,
        "default": list(known),
        "description": f"{what}, a non-empty subset of {', '.join(known)}",
    }


# The demo's images are a function of these defaults: changing one changes every mini-world.
OPTIONS = options_object(
    seed={"type": "integer", "minimum": 0, "default": 0, "description": "the generator's seed"},
    image_size={
        "type": "integer",
        "minimum": 8,
        "maximum": 4096,
        "default": 64,
        "description": "side of the square images in pixels",
    },
    categories=_subset(CATEGORIES, "shape categories"),
    per_class={
        "type": "object",
        "additionalProperties": False,
        "properties": {s: {"type": "integer", "minimum": 0} for s in SPLITS},
        "default": {"train": 80, "val": 0, "test": 40},
        "description": "images per category in each split (a split left out has none)",
    },
    instances_per_class={
        "type": "integer",
        "minimum": 1,
        "default": 24,
        "description": "objects per category and split; the images cycle through them",
    },
    max_clutter={
        "type": "integer",
        "minimum": 0,
        "default": 3,
        "description": "distractor discs per image, at most",
    },
    gradient={
        "type": "boolean",
        "default": True,
        "description": "gradient (true) or flat (false) backgrounds",
    },
    textures=_subset(TEXTURES, "object textures"),
    progress={"type": "boolean", "description": "show a progress bar (default true)"},
)


@register_family("miniworld")
class MiniWorld:
    name = "miniworld"
    options_schema = OPTIONS

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        opts = resolve_options(self, options)
        with atomic_dir(raw_dir) as tmp:
            n = write_class_folders(
                tmp / "classes",
                seed=int(opts["seed"]),
                image_size=int(opts["image_size"]),
                categories=list(opts["categories"]),
                per_class={k: int(v) for k, v in opts["per_class"].items()},
                instances_per_class=int(opts["instances_per_class"]),
                max_clutter=int(opts["max_clutter"]),
                gradient=opts["gradient"],
                textures=tuple(opts["textures"]),
                progress=opts.get("progress", True),
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
        resolve_options(self, options)
        write_parquet(out_dir / "images.parquet", index_image_folder(raw_dir / "classes", out_dir))
