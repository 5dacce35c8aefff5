"""Track ``compose``: compositional image-text matching (SugarCrepe, ARO, DOCCI-style retrieval).

The research line: "Learning Visual Composition through Improved Semantic Guidance" (arXiv
2412.15396): plain contrastive training learns composition when captions are rich and the text
tower is strong; its ablation is text tower (scratch | pretrained) x captions (alt-text | rich),
plus a short hard-negative fine-tune.

- ``synth``: the mini-world's vision-language part (scenes of objects with attributes and
  relations; captions; SugarCrepe, ARO and DOCCI layouts).
- ``families``: the ``sugarcrepe``, ``aro``, ``docci`` and ``miniworld-vl`` dataset families.
- ``variants``: the block's training variants (``clip-<variant>`` recipes), what each starts
  from, and which checkpoint a model name loads (no torch).
- ``text``, ``negatives``: caption tables, sentence sampling, generated hard negatives.
- ``recipe``, ``mlm``: the ``clip`` recipes (contrastive training with a caption source, sentence
  sampling, a text tower from scratch or pretrained, hard negatives) and the text tower's
  masked-language-model pretraining.
- ``evaluate``: SugarCrepe, ARO and DOCCI-style retrieval metrics with bootstrap intervals;
  ``score``: the same metrics of SugarCrepe and ARO prediction files (``matchbench score``).
- ``report``: the section (the paper's ablation table, SugarCrepe per category).

Tables of a prepared dataset (``data/<dataset>/``), besides ``images.parquet``:

- ``captions.parquet``: ``image`` (an id of images.parquet), ``split``, ``alt`` (a short
  alt-text-like caption, "" when none), ``rich`` (a long description of several sentences,
  "" when none).
- ``caption_pairs.parquet``: ``id`` (unique), ``benchmark`` (``sugarcrepe``,
  ``aro_relation``, ``aro_attribution``), ``category`` (SugarCrepe's file name such as
  ``replace_obj``; ARO's relation, or attribute pair), ``image`` (an id of images.parquet; ARO's
  crops are images of their own), ``positive``, ``negative`` (captions).
"""

from __future__ import annotations

from typing import Any

from matchbench.config import check_names
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.tracks import SIDES, Recipe, Track
from matchbench.tracks.compose.variants import (
    CLIP_LOG_COLUMNS,
    CLIP_PLOT_COLUMNS,
    MLM,
    MLM_LOG_COLUMNS,
    MLM_PLOT_COLUMNS,
    PREFIX,
    check_sampling,
    recipe_name,
    resolve,
    training_dataset,
    uses_mlm,
)


def models(block: dict[str, Any]) -> list[str]:
    """Every model the track evaluates: each backbone as it is, then each trained variant."""
    tuned = [f"{b}+{recipe_name(v)}" for b in block["finetune"] for v in block["variants"]]
    return list(block["backbones"]) + tuned


def check(cfg: dict[str, Any], block: dict[str, Any], source: str) -> None:
    key = "tracks.compose"
    check_names(source, f"{key}.datasets", block["datasets"], cfg["datasets"], "datasets")
    for sub in ("backbones", "finetune"):
        check_names(source, f"{key}.{sub}", block[sub], cfg["backbones"], "backbones")
    if block["train_dataset"] is not None:
        check_names(
            source, f"{key}.train_dataset", [block["train_dataset"]], cfg["datasets"], "datasets"
        )
    if block["finetune"] and not block["variants"]:
        raise MatchbenchError(f"{source}: {key}.finetune names backbones but variants is empty")
    try:
        check_sampling(block["train"]["sentences"])  # text-mlm reads it with or without variants
        for name in block["variants"]:
            resolve(block, name)
    except MatchbenchError as e:
        raise MatchbenchError(f"{source}: {e}") from None


def reads(cfg: dict[str, Any], stage: str, opts: dict[str, Any]) -> list[str]:
    """The ``tracks.compose`` keys each of the track's jobs reads."""
    key = "tracks.compose"
    block = cfg["tracks"]["compose"]
    if stage == "finetune" and opts.get("recipe") == MLM:
        return [f"{key}.mlm", f"{key}.train.split", f"{key}.train.sentences"]
    if stage == "finetune":
        keys = [f"{key}.train", f"{key}.hard_negatives"]
        name: str | None = opts["recipe"][len(PREFIX) :]
        while name is not None:  # the variant and every variant it starts from
            keys.append(f"{key}.variants.{name}")
            name = resolve(block, name).start
        if uses_mlm(block):
            keys.append(f"{key}.mlm")
        return keys
    if stage == "evaluate":
        return [f"{key}.evaluate", f"{key}.train_dataset"]
    if stage == "report":
        return [f"{key}.variants", f"{key}.backbones", f"{key}.finetune"]
    return []


def targets(cfg: dict[str, Any], layout: Layout) -> list[str]:
    """Every model's metrics on every dataset, and the training logs of the trained models."""
    block = cfg["tracks"]["compose"]
    files = [
        layout.metrics("compose", ds, m, side)
        for ds in block["datasets"]
        for m in models(block)
        for side in SIDES
    ]
    for ds in dict.fromkeys(training_dataset(block, d) for d in block["datasets"]):
        for b in block["finetune"]:
            files += [
                layout.model(recipe_name(v), ds, b, "train_log.csv") for v in block["variants"]
            ]
    return files


TRACK = Track(
    name="compose",
    title="Compositional image-text matching",
    package=__name__,
    evaluate=f"{__name__}.evaluate:evaluate",
    recipes=(
        Recipe(
            PREFIX, f"{__name__}.recipe:train", CLIP_LOG_COLUMNS, CLIP_PLOT_COLUMNS, prefix=True
        ),
        Recipe(MLM, f"{__name__}.mlm:train", MLM_LOG_COLUMNS, MLM_PLOT_COLUMNS),
    ),
    families=(f"{__name__}.families",),
    check=f"{__name__}:check",
    reads=f"{__name__}:reads",
    targets=f"{__name__}:targets",
    report=f"{__name__}.report:section",
    checkpoint=f"{__name__}.variants:checkpoint",
    score_formats=(
        ("sugarcrepe", f"{__name__}.score:score_sugarcrepe"),
        ("aro", f"{__name__}.score:score_aro"),
    ),
    headline=("aro_relation", "aro_attribution", "sugarcrepe_avg", "t2i_r@1"),
)
