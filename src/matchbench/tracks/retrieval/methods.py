"""The retrieval block's methods, model names, recipe and checkpoints (no torch here).

A method turns a model's global descriptors into a ranking of the database. Method ``<m>`` on
model ``<x>`` (a backbone or ``<backbone>+<recipe>`` trained by another track) is the model
``<x>@<m>`` of the ranked lists and metrics documents:

- ``global``: the descriptors as extracted (inner product = cosine);
- ``aqe``: ``global`` re-ranked by alpha query expansion (Radenović et al. 2018);
- ``linear``: the descriptors through the linear adaptation trained by the recipe
  ``ilias-linear`` on ``adaptation.dataset`` (ILIAS ``linear_adaptation/``);
- ``linear-aqe``: ``linear`` re-ranked by alpha query expansion;
- ``local``: ``global``'s shortlist re-ranked by the Chamfer similarity of the backbone's
  dense features (:mod:`matchbench.tracks.retrieval.local`);
- ``linear-local``: ``linear``'s shortlist re-ranked the same way.

The track's other recipe, ``ilias-embed``, fine-tunes a whole backbone on the same training
set: ``<backbone>+ilias-embed`` is a model, searched under every method like a backbone.
"""

from __future__ import annotations

from typing import Any

from matchbench.errors import MatchbenchError
from matchbench.layout import Layout, split_model
from matchbench.tracks import METHOD_SEP, filled_block
from matchbench.tracks import split_method as _split

TASK = "retrieval"
METHODS = ("global", "aqe", "linear", "linear-aqe", "local", "linear-local")
SEP = METHOD_SEP
LINEAR = "ilias-linear"
LINEAR_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc")
# The backbone fine-tuned as an instance embedding on the same training set (UnED's baseline):
# a model of its own, ``<backbone>+ilias-embed``.
EMBED = "ilias-embed"
EMBED_LOG_COLUMNS = LINEAR_LOG_COLUMNS
ADAPTED = ("linear", "linear-aqe", "linear-local")
EXPANDED = ("aqe", "linear-aqe")
LOCAL = ("local", "linear-local")
# Query kinds, as ILIAS splits them: image queries (cropped by their boxes) and text queries.
KINDS = ("image", "text")
K = 1000  # mAP@1k


def block(cfg: dict[str, Any]) -> dict[str, Any]:
    """``tracks.retrieval`` with every default filled in."""
    return filled_block(cfg, TASK)


def model_name(model: str, method: str) -> str:
    return f"{model}{SEP}{method}"


def split_method(name: str) -> tuple[str, str]:
    """``"<model>@<method>"`` → ``(model, method)``; an unknown method is refused."""
    return _split(name, METHODS, TASK, "ranks")


def checkpoint(cfg: dict[str, Any], model: str) -> str:
    """The linear adaptation of ``model`` (``model.safetensors`` of the recipe ``ilias-linear``)."""
    blk = block(cfg)
    return Layout.of(cfg).model(LINEAR, blk["adaptation"]["dataset"], model, "model.safetensors")


def embed_checkpoint(cfg: dict[str, Any], model: str, dataset: str) -> str:
    """The backbone ``<backbone>+ilias-embed`` loads, on any dataset: the one fine-tuned on
    ``adaptation.dataset`` (``Track.checkpoint``; :meth:`Layout.model_weights` asks it)."""
    backbone, recipe = split_model(model)
    if recipe != EMBED:
        raise MatchbenchError(
            f"model {model!r}: {recipe} trains a linear layer, not a backbone; "
            f"search its descriptors as the method `{model_name(backbone, 'linear')}`"
        )
    train_on = block(cfg)["adaptation"]["dataset"]
    if train_on is None:
        raise MatchbenchError(
            f"model {model!r}: {EMBED} trains on tracks.retrieval.adaptation.dataset, which is "
            "null; name the training set there"
        )
    return Layout.of(cfg).model(EMBED, train_on, backbone, "model.safetensors")


def method_checkpoint(cfg: dict[str, Any], model: str, method: str) -> str | None:
    return checkpoint(cfg, model) if method in ADAPTED else None


def shard_names(cfg: dict[str, Any], dataset: str, count: int | None = None) -> list[str]:
    """The first ``count`` (default: ``distractors.shards``) distractor shards of ``dataset``."""
    from matchbench.data import get_family

    spec = cfg["datasets"][dataset]
    n = block(cfg)["distractors"]["shards"] if count is None else count
    family = get_family(spec["family"])
    from matchbench.data import resolve_options

    return list(family.shard_names(resolve_options(family, spec["options"]), n))


def curve_points(cfg: dict[str, Any]) -> list[int]:
    """Numbers of shards the mAP-vs-distractors curve is drawn at (0 and all included)."""
    blk = block(cfg)
    n = blk["distractors"]["shards"]
    points = {0, n, *(p for p in blk["distractors"]["curve"] if p <= n)}
    return sorted(points)
