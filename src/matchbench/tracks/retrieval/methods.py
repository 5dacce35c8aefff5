"""The retrieval block's methods, model names, recipe and checkpoints (no torch here).

A method turns a model's global descriptors into a ranking of the database. Method ``<m>`` on
model ``<x>`` (a backbone or ``<backbone>+<recipe>`` trained by another track) is the model
``<x>@<m>`` of the ranked lists and metrics documents:

- ``global``: the descriptors as extracted (inner product = cosine);
- ``aqe``: ``global`` re-ranked by alpha query expansion (Radenović et al. 2018);
- ``linear``: the descriptors through the linear adaptation trained by the recipe
  ``ilias-linear`` on ``adaptation.dataset`` (ILIAS ``linear_adaptation/``);
- ``linear-aqe``: ``linear`` re-ranked by alpha query expansion.
"""

from __future__ import annotations

from typing import Any

from matchbench.layout import Layout
from matchbench.tracks import METHOD_SEP, filled_block
from matchbench.tracks import split_method as _split

TASK = "retrieval"
METHODS = ("global", "aqe", "linear", "linear-aqe")
SEP = METHOD_SEP
LINEAR = "ilias-linear"
LINEAR_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc")
ADAPTED = ("linear", "linear-aqe")
EXPANDED = ("aqe", "linear-aqe")
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
