"""Track ``cir``: zero-shot composed image retrieval (CIRR, CIRCO, FashionIQ).

The research line: a query is a reference image and a modification text; zero-shot methods
train no benchmark triplet. Pic2Word (Saito et al. 2023) and SEARLE (Baldrati et al. 2023) map
an image to a pseudo-word of a frozen CLIP's text tower and compose "a photo of $ that
{text}"; LinCIR (Gu et al. 2024) trains that mapping from text alone; "From Mapping to
Composing" (arXiv 2504.17990) adds a second stage of composing adapters trained on synthetic
triplets with mined hard negatives.

- ``tables``: the prepared tables (``cir_queries.parquet``, ``cir_gallery.parquet``);
- ``synth``, ``families``: the mini-world's composed-retrieval part and the ``cirr``,
  ``circo``, ``fashioniq`` and ``miniworld-cir`` families;
- ``methods``: method names, model names ``<frozen>@<method>``, recipes and checkpoints (no
  torch); ``composer``: pseudo-words, adapters, injection; ``recipe``: the four recipes;
- ``evaluate``: the three benchmarks' metrics with CIs, and the test-server files;
- ``report``: the section (the papers' tables, published baselines beside ours, examples).
"""

from __future__ import annotations

from typing import Any

from matchbench.config import check_names
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout, split_model
from matchbench.tracks import SIDES, Recipe, Track
from matchbench.tracks.cir.methods import (
    CHECKPOINT,
    LINCIR,
    LINCIR_LOG_COLUMNS,
    MAPPING_LOG_COLUMNS,
    PIC2WORD,
    RECIPES,
    STAGE1,
    STAGE1_LOG_COLUMNS,
    STAGE2,
    STAGE2_LOG_COLUMNS,
    TRAINED_ON,
    model_name,
    recipes_of,
    split_method,
)

KEY = "tracks.cir"


def models(block: dict[str, Any]) -> list[str]:
    """Every ``<frozen>@<method>`` the track evaluates."""
    return [model_name(x, m) for x in block["models"] for m in block["methods"]]


def trained(block: dict[str, Any]) -> list[str]:
    """The recipes the block's methods need, in training order."""
    return [r for r in RECIPES if any(r in recipes_of(m) for m in block["methods"])]


def check(cfg: dict[str, Any], block: dict[str, Any], source: str) -> None:
    check_names(source, f"{KEY}.datasets", block["datasets"], cfg["datasets"], "datasets")
    backbones = [split_model(x)[0] for x in block["models"]]
    check_names(source, f"{KEY}.models", backbones, cfg["backbones"], "backbones")
    for x in block["models"]:
        if "@" in x:
            raise MatchbenchError(f"{source}: {KEY}.models: {x!r} must not contain '@'")
    for recipe in trained(block):
        key = TRAINED_ON[recipe]
        if block[key] is None:
            users = [m for m in block["methods"] if recipe in recipes_of(m)]
            raise MatchbenchError(
                f"{source}: {KEY}.{key} is null, but method {users[0]!r} trains on it "
                f"(recipe {recipe}); name a dataset"
            )
        check_names(source, f"{KEY}.{key}", [block[key]], cfg["datasets"], "datasets")
        _check_prepared(cfg, f"{KEY}.{key}", block[key], source)


def _check_prepared(cfg: dict[str, Any], key: str, dataset: str, source: str) -> None:
    """A dataset with task tables is prepared by the rules of the track that brings its family
    (the compose track prepares captions): that track must run too."""
    from matchbench.data import get_family
    from matchbench.tracks import enabled, tracks

    module = type(get_family(cfg["datasets"][dataset]["family"])).__module__
    owner = next((t for t in tracks() if module in t.families), None)
    if owner is not None and owner not in enabled(cfg):
        raise MatchbenchError(
            f"{source}: {key}: dataset {dataset!r} (family "
            f"{cfg['datasets'][dataset]['family']}) is prepared by the {owner.name} track's rules; "
            f"add a tracks.{owner.name} block that runs (docs/cir.md, 'Training material')"
        )


def reads(cfg: dict[str, Any], stage: str, opts: dict[str, Any]) -> list[str]:
    """The ``tracks.cir`` keys each of the track's jobs reads."""
    if stage == "finetune":
        recipe = opts["recipe"]
        keys = [f"{KEY}.mapping", f"{KEY}.{TRAINED_ON[recipe]}"]
        if recipe == LINCIR:
            keys.append(f"{KEY}.lincir")
        if recipe == STAGE1:
            keys += [f"{KEY}.two_stage.soft_alignment", f"{KEY}.two_stage.soft_temperature"]
        if recipe == STAGE2:
            keys += [f"{KEY}.two_stage", f"{KEY}.prompt", f"{KEY}.train_dataset"]
        return keys
    if stage == "evaluate":
        keys = [f"{KEY}.evaluate"]
        method = split_method(opts["model"])[1]
        if method in CHECKPOINT:  # a trained method: its prompt and where it was trained
            keys += [f"{KEY}.prompt", *(f"{KEY}.{TRAINED_ON[r]}" for r in recipes_of(method))]
        return keys
    if stage == "report":
        return [f"{KEY}.models", f"{KEY}.methods"]
    return []


def targets(cfg: dict[str, Any], layout: Layout) -> list[str]:
    """Every method's metrics on every dataset, and the training logs of the trained parts."""
    block = cfg["tracks"]["cir"]
    files = [
        layout.metrics("cir", ds, m, side)
        for ds in block["datasets"]
        for m in models(block)
        for side in SIDES
    ]
    for recipe in trained(block):
        for x in block["models"]:
            files.append(layout.model(recipe, block[TRAINED_ON[recipe]], x, "train_log.csv"))
    return files


TRACK = Track(
    name="cir",
    title="Zero-shot composed image retrieval",
    package=__name__,
    evaluate=f"{__name__}.evaluate:evaluate",
    recipes=(
        Recipe(
            PIC2WORD,
            f"{__name__}.recipe:train_pic2word",
            MAPPING_LOG_COLUMNS,
            ("loss", "batch_acc"),
        ),
        Recipe(LINCIR, f"{__name__}.recipe:train_lincir", LINCIR_LOG_COLUMNS, ("loss", "cosine")),
        Recipe(
            STAGE1, f"{__name__}.recipe:train_stage1", STAGE1_LOG_COLUMNS, ("loss", "batch_acc")
        ),
        Recipe(
            STAGE2, f"{__name__}.recipe:train_stage2", STAGE2_LOG_COLUMNS, ("loss", "batch_acc")
        ),
    ),
    families=(f"{__name__}.families",),
    check=f"{__name__}:check",
    reads=f"{__name__}:reads",
    targets=f"{__name__}:targets",
    report=f"{__name__}.report:section",
    score_formats=(
        ("cirr", f"{__name__}.score:score_cirr"),
        ("circo", f"{__name__}.score:score_circo"),
        ("fashioniq", f"{__name__}.score:score_fashioniq"),
    ),
    headline=("recall@1", "recall_subset@1", "map@10", "recall@10"),
)
