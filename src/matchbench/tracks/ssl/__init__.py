"""Track ``ssl``: semantic positive pairs for self-supervised learning.

Mine semantically similar images with a sampler's embeddings (faiss kNN + a similarity
threshold, the shared ``mine`` stage) and add them as positives to instance-discrimination
training (SimCLR / MoCo style); evaluate kNN and linear-probe accuracy of frozen features.

- ``recipe``: the ``ssl`` and ``ssl-spp`` recipes; ``augment``: batched augmentations.
- ``evaluate``: kNN and linear-probe accuracy (task ``ssl``).
- ``report``: the section (mining statistics, example mined pairs).
"""

from __future__ import annotations

from typing import Any

from matchbench.config import check_names
from matchbench.layout import Layout
from matchbench.tracks import SIDES, Recipe, Track

LOG_COLUMNS = ("epoch", "step", "loss", "lr", "knn_acc")
PLOT_COLUMNS = ("loss", "knn_acc")


def models(block: dict[str, Any]) -> list[str]:
    """Every model the track evaluates: untrained, baseline SSL, SSL + semantic positive pairs."""
    return [m for b in block["backbones"] for m in (b, f"{b}+ssl", f"{b}+ssl-spp")]


def sampler_model(block: dict[str, Any], backbone: str) -> str:
    """The model whose features mine the positive pairs of ``backbone``'s ssl-spp training."""
    sampler = block["sampler"]
    return {"ssl": f"{backbone}+ssl", "backbone": backbone}.get(sampler, sampler)


def check_sampler(cfg: dict[str, Any], sampler: str, key: str, source: str) -> None:
    """A sampler is ``ssl``, ``backbone``, a backbone of the config, or ``<backbone>+<recipe>``
    with a recipe of a track the config runs (e.g. the compose track's ``clip-mini+clip-rich``,
    trained on that track's dataset)."""
    from matchbench.errors import MatchbenchError
    from matchbench.layout import split_model
    from matchbench.tracks import enabled, find_recipe

    if sampler in ("ssl", "backbone", *cfg["backbones"]):
        return
    backbone, recipe = split_model(sampler)
    why = None
    if recipe is None or backbone not in cfg["backbones"]:
        why = "is not 'ssl', 'backbone', a backbone of the config or <backbone>+<recipe>"
    else:
        try:
            track = find_recipe(recipe)[0]
        except MatchbenchError as e:
            why = f"names {e}"
        else:
            if track.name != "ssl" and track not in enabled(cfg):
                why = f"needs track {track.name!r} (its recipe {recipe!r}) in the config"
    if why is not None:
        raise MatchbenchError(
            f"{source}: {key}: {sampler!r} {why} (backbones: {', '.join(cfg['backbones'])})"
        )


def check(cfg: dict[str, Any], block: dict[str, Any], source: str) -> None:
    check_names(source, "tracks.ssl.dataset", [block["dataset"]], cfg["datasets"], "datasets")
    check_names(source, "tracks.ssl.backbones", block["backbones"], cfg["backbones"], "backbones")
    check_sampler(cfg, block["sampler"], "tracks.ssl.sampler", source)
    for i, other in enumerate(block["compare_samplers"]):
        check_sampler(cfg, other, f"tracks.ssl.compare_samplers[{i}]", source)


def targets(cfg: dict[str, Any], layout: Layout) -> list[str]:
    """The metrics documents of every model, and the side files they name (mined pairs, logs)."""
    block = cfg["tracks"]["ssl"]
    ds = block["dataset"]
    files = [layout.metrics("ssl", ds, m, side) for m in models(block) for side in SIDES]
    for b in block["backbones"]:
        files += [
            layout.mined(ds, sampler_model(block, b), f) for f in ("pairs.parquet", "stats.json")
        ]
        files += [
            layout.mined(ds, sampler_model({"sampler": s}, b), "stats.json")
            for s in block["compare_samplers"]
        ]
        files += [layout.model(r, ds, b, "train_log.csv") for r in ("ssl", "ssl-spp")]
    return files


def reads(cfg: dict[str, Any], stage: str, opts: dict[str, Any]) -> list[str]:
    """The ``tracks.ssl`` keys each of the track's jobs reads."""
    if stage == "finetune":
        return ["tracks.ssl.train", "tracks.ssl.evaluate"]  # evaluate: the kNN monitor's split
    if stage == "evaluate":
        return ["tracks.ssl.evaluate"]
    if stage == "report":
        return ["tracks.ssl.sampler", "tracks.ssl.compare_samplers"]  # whose mining statistics
    return []


TRACK = Track(
    name="ssl",
    title="Semantic positive pairs for self-supervised learning",
    package=__name__,
    evaluate=f"{__name__}.evaluate:evaluate",
    recipes=(
        Recipe("ssl", f"{__name__}.recipe:train", LOG_COLUMNS, PLOT_COLUMNS),
        Recipe("ssl-spp", f"{__name__}.recipe:train", LOG_COLUMNS, PLOT_COLUMNS, takes_pairs=True),
    ),
    check=f"{__name__}:check",
    targets=f"{__name__}:targets",
    reads=f"{__name__}:reads",
    report=f"{__name__}.report:section",
    headline=("knn_acc", "linear_acc"),
)
