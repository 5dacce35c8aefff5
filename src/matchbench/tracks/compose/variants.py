"""The compose block's training variants, recipe names and checkpoint paths (no torch here).

A variant is a named entry of ``tracks.compose.variants`` (``{caption: alt|rich, text_tower:
scratch|pretrained, bidirectional, hard_negatives, start, epochs, lr, sentences}``); variant
``<v>`` is the recipe ``clip-<v>`` and the model ``<backbone>+clip-<v>``. ``text-mlm`` pretrains the text tower
that ``text_tower: pretrained`` variants start from. :func:`resolve` a variant with its inherited and default settings;
:func:`needs` the checkpoints a recipe starts from (what the DAG must build first);
:func:`checkpoint` the checkpoint a model name loads on a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.layout import Layout, split_model
from matchbench.tracks import filled_block, get_track

PREFIX = "clip-"
MLM = "text-mlm"

# Log columns, declared once: the recipes write exactly these (in this order).
CLIP_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc", "hn_acc", "logit_scale")
CLIP_PLOT_COLUMNS = ("loss", "batch_acc")
MLM_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "mlm_acc")
MLM_PLOT_COLUMNS = ("loss", "mlm_acc")


def schema() -> dict[str, Any]:
    return get_track("compose").schema


def block(cfg: dict[str, Any]) -> dict[str, Any]:
    """``tracks.compose`` with every default filled in (the loader already does so once the
    track is registered; a config built by hand gets the same values)."""
    return filled_block(cfg, "compose")


@dataclass(frozen=True)
class Variant:
    """A variant with its inherited and default settings resolved."""

    name: str
    caption: str  # alt | rich
    text_tower: str  # scratch | pretrained
    bidirectional: bool
    hard_negatives: bool
    start: str | None  # the variant whose checkpoint this one starts from
    epochs: int
    lr: float
    sentences: int | float | None  # sentence sampling of rich captions (text.sample_sentences)

    @property
    def recipe(self) -> str:
        return f"{PREFIX}{self.name}"


def recipe_name(variant: str) -> str:
    return f"{PREFIX}{variant}"


def variant_name(recipe: str, blk: dict[str, Any]) -> str:
    """``clip-<v>`` → ``<v>``, which must be a variant of the block."""
    known = [recipe_name(v) for v in blk["variants"]]
    if not recipe.startswith(PREFIX) or recipe[len(PREFIX) :] not in blk["variants"]:
        raise MatchbenchError(
            f"recipe {recipe!r} is not a variant of tracks.compose.variants (recipes: "
            f"{', '.join(known) or 'none'}){did_you_mean(recipe, known)}"
        )
    return recipe[len(PREFIX) :]


def resolve(blk: dict[str, Any], name: str, _seen: tuple[str, ...] = ()) -> Variant:
    """Variant ``name`` of the block, defaults and inheritance applied.

    A variant with ``start`` continues that variant's checkpoint, so it inherits its text tower
    and attention; setting them differently is an error (the weights would not fit).
    """
    variants = blk["variants"]
    key = f"tracks.compose.variants.{name}"
    if name not in variants:
        raise MatchbenchError(
            f"tracks.compose.variants: no variant {name!r} ({', '.join(variants)})"
            f"{did_you_mean(name, variants)}"
        )
    if name in _seen:
        raise MatchbenchError(f"{key}.start: a cycle ({' -> '.join((*_seen, name))})")
    v = variants[name]
    train = blk["train"]
    text_tower, bidirectional = v.get("text_tower"), v.get("bidirectional")
    start = v.get("start")
    if start is not None:
        if start not in variants:
            raise MatchbenchError(
                f"{key}.start: {start!r} is not a variant ({', '.join(variants)})"
                f"{did_you_mean(start, variants)}"
            )
        base = resolve(blk, start, (*_seen, name))
        for field, mine, theirs in (
            ("text_tower", text_tower, base.text_tower),
            ("bidirectional", bidirectional, base.bidirectional),
        ):
            if mine is not None and mine != theirs:
                raise MatchbenchError(
                    f"{key}.{field}: {mine!r}, but it starts from variant {start!r} whose "
                    f"{field} is {theirs!r}; leave it unset to inherit"
                )
        text_tower, bidirectional = base.text_tower, base.bidirectional
    text_tower = text_tower or "scratch"
    if bidirectional is None:
        bidirectional = text_tower == "pretrained"
    own = v.get("sentences")
    sentences = train["sentences"] if own is None else own
    check_sampling(
        sentences, "tracks.compose.train.sentences" if own is None else f"{key}.sentences"
    )
    return Variant(
        name=name,
        caption=v["caption"],
        text_tower=text_tower,
        bidirectional=bool(bidirectional),
        hard_negatives=bool(v.get("hard_negatives", False)),
        start=start,
        epochs=int(v.get("epochs") or train["epochs"]),
        lr=float(v.get("lr") or train["lr"]),
        sentences=sentences,
    )


def check_sampling(setting: Any, key: str = "tracks.compose.train.sentences") -> None:
    """``null``, an integer k >= 1, or a probability in (0, 1]."""
    if setting is None:
        return
    if isinstance(setting, bool) or not isinstance(setting, int | float):
        raise MatchbenchError(f"{key}: {setting!r}; expected null, an integer k or a probability")
    if isinstance(setting, int) and setting < 1:
        raise MatchbenchError(f"{key}: {setting}; an integer keeps k >= 1 sentences")
    if isinstance(setting, float) and not 0 < setting <= 1:
        raise MatchbenchError(f"{key}: {setting}; a probability is in (0, 1]")


def uses_mlm(blk: dict[str, Any]) -> bool:
    """Whether a variant needs the text-mlm checkpoint (a pretrained text tower from it)."""
    return blk["train"]["text_weights"] == MLM and any(
        resolve(blk, v).text_tower == "pretrained" and resolve(blk, v).start is None
        for v in blk["variants"]
    )


def training_dataset(blk: dict[str, Any], dataset: str) -> str:
    """The dataset a fine-tuned model evaluated on ``dataset`` was trained on."""
    return blk["train_dataset"] or dataset


def needs(cfg: dict[str, Any], recipe: str, dataset: str, backbone: str) -> list[str]:
    """Checkpoints recipe ``recipe`` reads before training ``backbone`` on ``dataset``:
    the start variant's model, or the text-mlm model for a pretrained text tower."""
    blk = block(cfg)
    if recipe == MLM:
        return []
    v = resolve(blk, variant_name(recipe, blk))
    layout = Layout.of(cfg)
    if v.start is not None:
        return [layout.model(recipe_name(v.start), dataset, backbone, "model.safetensors")]
    if v.text_tower == "pretrained":
        return [text_weights(cfg, blk, dataset, backbone)]
    return []


def text_weights(cfg: dict[str, Any], blk: dict[str, Any], dataset: str, backbone: str) -> str:
    """The file a pretrained text tower is read from (``train.text_weights``)."""
    src = blk["train"]["text_weights"]
    if src == MLM:
        return Layout.of(cfg).model(MLM, dataset, backbone, "model.safetensors")
    return src


def checkpoint(cfg: dict[str, Any], model: str, dataset: str) -> str:
    """The checkpoint a compose model (``<backbone>+clip-<v>`` or ``+text-mlm``) loads when used
    on ``dataset``: the one trained on ``train_dataset``, or on ``dataset`` when that is null
    (``Track.checkpoint``; :meth:`Layout.model_weights` asks it)."""
    backbone, recipe = split_model(model)
    assert recipe is not None, model
    blk = block(cfg)
    if blk["train_dataset"] is None and dataset not in blk["datasets"]:
        raise MatchbenchError(
            f"model {model!r} used on dataset {dataset!r}: compose models train on the compose "
            "track's captions; set tracks.compose.train_dataset to the dataset they train on"
        )
    train_on = training_dataset(blk, dataset)
    return Layout.of(cfg).model(recipe, train_on, backbone, "model.safetensors")
