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

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml

from matchbench.errors import MatchbenchError, did_you_mean
from matchbench.layout import Layout

PACKAGE = "matchbench.tracks.retrieval"
TASK = "retrieval"
METHODS = ("global", "aqe", "linear", "linear-aqe")
SEP = "@"
LINEAR = "ilias-linear"
LINEAR_LOG_COLUMNS = ("epoch", "step", "loss", "lr", "batch_acc")
ADAPTED = ("linear", "linear-aqe")
EXPANDED = ("aqe", "linear-aqe")
# Query kinds, as ILIAS splits them: image queries (cropped by their boxes) and text queries.
KINDS = ("image", "text")
K = 1000  # mAP@1k


@cache
def schema() -> dict[str, Any]:
    text = resources.files(PACKAGE).joinpath("schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def block(cfg: dict[str, Any]) -> dict[str, Any]:
    """``tracks.retrieval`` with every default filled in."""
    from matchbench.config import fill_defaults

    raw = cfg.get("tracks", {}).get(TASK)
    if raw is None:
        raise MatchbenchError("the retrieval track reads tracks.retrieval, which the config lacks")
    return fill_defaults(copy.deepcopy(raw), schema())


def model_name(model: str, method: str) -> str:
    return f"{model}{SEP}{method}"


def split_method(name: str) -> tuple[str, str]:
    """``"<model>@<method>"`` → ``(model, method)``; an unknown method is refused."""
    model, sep, method = name.rpartition(SEP)
    if not sep or not model:
        raise MatchbenchError(
            f"model {name!r}: the retrieval task ranks `<model>{SEP}<method>` "
            f"(methods: {', '.join(METHODS)})"
        )
    if method not in METHODS:
        raise MatchbenchError(
            f"model {name!r}: unknown retrieval method {method!r} (known: {', '.join(METHODS)})"
            f"{did_you_mean(method, METHODS)}"
        )
    return model, method


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
