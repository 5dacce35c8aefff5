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

from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.tracks import METHOD_SEP, filled_block
from matchbench.tracks import split_method as _split

METHODS = ("image", "text", "sum", "pic2word", "lincir", "two-stage")
SEP = METHOD_SEP

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


def block(cfg: dict[str, Any]) -> dict[str, Any]:
    """``tracks.cir`` with every default filled in."""
    return filled_block(cfg, "cir")


def model_name(frozen: str, method: str) -> str:
    return f"{frozen}{SEP}{method}"


def split_method(name: str) -> tuple[str, str]:
    """``"<frozen>@<method>"`` → ``(frozen, method)``; a name without a known method is refused."""
    return _split(name, METHODS, "cir", "evaluates")


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
