"""Class folders of the mini-world, for self-supervised training and probing.

Layout (ImageFolder, as torchvision and most SSL code read it):
``classes/<split>/<category>/<split>-<category>-<nnnn>.png``. Instances are disjoint across
splits, so a test image never shows an object seen in training: kNN and linear-probe accuracy
measure the category (shape), not instance recognition. Colour and texture are drawn
independently of the category, so a random network, which mostly sees colour, scores near
chance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matchbench.data.synth.world import CATEGORIES, TEXTURES, make_instance, render, sample_view
from matchbench.progress import bar as progress_bar

SPLITS = ("train", "val", "test")


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def write_class_folders(
    root: Path,
    *,
    seed: int,
    image_size: int,
    categories: list[str],
    per_class: dict[str, int],
    instances_per_class: int,
    max_clutter: int = 3,
    gradient: bool = True,
    textures: tuple[str, ...] = TEXTURES,
    progress: bool = True,
) -> int:
    """Render every split into ``root``; returns the number of images written."""
    bad = sorted(set(textures) - set(TEXTURES))
    if bad or not textures:
        raise ValueError(
            f"mini-world textures {bad or '[]'}: expected a non-empty subset of {list(TEXTURES)}"
        )
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"unknown mini-world categories {unknown}; known: {sorted(CATEGORIES)}")
    jobs = [
        (s, c, i)
        for s, split in enumerate(SPLITS)
        for c, _ in enumerate(categories)
        for i in range(per_class.get(split, 0))
    ]
    pools: dict[tuple[int, str], list] = {}
    for s, c, i in progress_bar(jobs, desc="mini-world classes", unit="img", disable=not progress):
        split, category = SPLITS[s], categories[c]
        if (s, category) not in pools:
            pool = _rng(seed, 1, s, CATEGORIES_INDEX[category])
            pools[s, category] = [
                make_instance(pool, category, textures) for _ in range(instances_per_class)
            ]
        instances = pools[s, category]
        rng = _rng(seed, 2, s, CATEGORIES_INDEX[category], i)
        inst = instances[int(rng.integers(len(instances)))]
        img, _, _ = render(
            inst, sample_view(rng, max_clutter=max_clutter, gradient=gradient), image_size, rng
        )
        out = root / split / category / f"{split}-{category}-{i:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, format="PNG", optimize=False)
    return len(jobs)


CATEGORIES_INDEX = {name: k for k, name in enumerate(CATEGORIES)}
