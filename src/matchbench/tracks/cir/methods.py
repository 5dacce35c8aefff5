"""The cir block's methods, their model names, recipes and checkpoints (no torch here).

A method composes a query (reference image + modification text) into one feature of a frozen
image-text model. Method ``<m>`` on frozen model ``<x>`` is the model ``<x>@<m>`` of the
metrics documents. The trained methods' parts are recipes of this track, trained on the
frozen model (its name is the recipe's ``backbone``):

- ``pic2word``: ``cir-pic2word`` on ``train_dataset`` (unlabeled images);
- ``lincir``: ``cir-lincir`` on ``train_dataset`` (captions only);
- ``two-stage``: ``cir-stage1`` on ``train_dataset``, then ``cir-stage2`` on ``triplets``,
  which starts from stage 1's checkpoint and holds both stages.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml

from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.layout import Layout

PACKAGE = "matchbench.tracks.cir"
METHODS = ("image", "text", "sum", "pic2word", "lincir", "two-stage")
SEP = "@"

PIC2WORD, LINCIR, STAGE1, STAGE2 = "cir-pic2word", "cir-lincir", "cir-stage1", "cir-stage2"
RECIPES = (PIC2WORD, LINCIR, STAGE1, STAGE2)
# The recipe whose checkpoint a method loads, and the block key naming its training dataset.
CHECKPOINT = {"pic2word": PIC2WORD, "lincir": LINCIR, "two-stage": STAGE2}
TRAINED_ON = {PIC2WORD: "train_dataset", LINCIR: "train_dataset", STAGE1: "train_dataset"}
TRAINED_ON[STAGE2] = "triplets"

# Log columns, declared once: the recipes write exactly these (in this order).
MAPPING_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc")
LINCIR_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "cosine")
STAGE1_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc", "soft_loss")
STAGE2_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc", "gain")


@cache
def schema() -> dict[str, Any]:
    text = resources.files(PACKAGE).joinpath("schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def block(cfg: dict[str, Any]) -> dict[str, Any]:
    """``tracks.cir`` with every default filled in."""
    from matchbench.config import fill_defaults

    raw = cfg.get("tracks", {}).get("cir")
    if raw is None:
        raise MatchbenchError("the cir track reads tracks.cir, which the config lacks")
    return fill_defaults(copy.deepcopy(raw), schema())


def model_name(frozen: str, method: str) -> str:
    return f"{frozen}{SEP}{method}"


def split_method(name: str) -> tuple[str, str]:
    """``"<frozen>@<method>"`` → ``(frozen, method)``; a name without a known method is refused."""
    frozen, sep, method = name.rpartition(SEP)
    if not sep or not frozen:
        raise MatchbenchError(
            f"model {name!r}: the cir task evaluates `<model>{SEP}<method>` "
            f"(methods: {', '.join(METHODS)})"
        )
    if method not in METHODS:
        raise MatchbenchError(
            f"model {name!r}: unknown cir method {method!r} (known: {', '.join(METHODS)})"
            f"{did_you_mean(method, METHODS)}"
        )
    return frozen, method


def recipes_of(method: str) -> tuple[str, ...]:
    """The recipes a method's checkpoint needs, in training order."""
    if method == "two-stage":
        return (STAGE1, STAGE2)
    return (CHECKPOINT[method],) if method in CHECKPOINT else ()


def training_dataset(blk: dict[str, Any], recipe: str) -> str:
    key = TRAINED_ON[recipe]
    name = blk[key]
    if name is None:
        raise MatchbenchError(
            f"tracks.cir.{key} is null, but recipe {recipe!r} trains on it; name a dataset"
        )
    return str(name)


def checkpoint(cfg: dict[str, Any], recipe: str, frozen: str) -> str:
    """The checkpoint (``model.safetensors``) of ``recipe`` trained on ``frozen``."""
    blk = block(cfg)
    return Layout.of(cfg).model(recipe, training_dataset(blk, recipe), frozen, "model.safetensors")


def method_checkpoint(cfg: dict[str, Any], frozen: str, method: str) -> str | None:
    recipe = CHECKPOINT.get(method)
    return None if recipe is None else checkpoint(cfg, recipe, frozen)


def feature_datasets(blk: dict[str, Any], recipe: str | None = None) -> list[str]:
    """Datasets whose feature store a job of the track reads: a recipe's training dataset,
    or (``None``) every evaluation dataset."""
    if recipe is None:
        return list(blk["datasets"])
    return [training_dataset(blk, recipe)]
