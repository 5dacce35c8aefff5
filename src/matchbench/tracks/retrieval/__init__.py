"""Track ``retrieval``: instance-level retrieval at scale (ILIAS, mini-ILIAS).

The research line: ILIAS (Kordopatis-Zilos et al., CVPR 2025) asks a model to find 1,000
object instances among up to 100M YFCC100M distractors from an image query (cropped by its
box) or a text query, with global descriptors, inner-product kNN and mAP@1k; a linear
adaptation trained on a multi-domain set and a re-ranking of the top results lift the best
models.

- ``synth``, ``families``, ``shards``: the mini-world's instance part, the ``ilias`` and
  ``miniworld-ilias`` families, distractor tar shards (scatter: one job per shard);
- ``methods``: method names, model names ``<model>@<method>``, the linear recipe (no torch);
- ``adapt``: the ``ilias-linear`` recipe (a cosine classifier on stored descriptors);
- ``embed``: the ``ilias-embed`` recipe (a backbone fine-tuned as a cosine classifier of the
  same training set's instances: the model ``<backbone>+ilias-embed``);
- ``retrieve``: the search stage (exact sharded search or a faiss index, αQE), ranked lists
  and the ILIAS prediction JSON;
- ``local``: the local re-ranking (Chamfer similarity of dense features over the shortlist);
- ``evaluate``: mAP@1k of image and text queries with CIs, by scale and clutter, against the
  number of distractors, ANN recall;
- ``report``: the section (ILIAS table layout, the curve, examples).
"""

from __future__ import annotations

from typing import Any

from matchbench.config import check_names
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout, split_model
from matchbench.tracks import SIDES, Recipe, Track
from matchbench.tracks.retrieval.methods import (
    ADAPTED,
    EMBED,
    EMBED_LOG_COLUMNS,
    EXPANDED,
    LINEAR,
    LINEAR_LOG_COLUMNS,
    LOCAL,
    TASK,
    model_name,
    split_method,
)

KEY = "tracks.retrieval"


def models(block: dict[str, Any]) -> list[str]:
    """Every ``<model>@<method>`` the track ranks."""
    return [model_name(x, m) for x in block["models"] for m in block["methods"]]


def adapted(block: dict[str, Any]) -> bool:
    return any(m in ADAPTED for m in block["methods"])


def check(cfg: dict[str, Any], block: dict[str, Any], source: str) -> None:
    from matchbench.search import check_factory

    check_names(source, f"{KEY}.dataset", [block["dataset"]], cfg["datasets"], "datasets")
    backbones = [split_model(x)[0] for x in block["models"]]
    check_names(source, f"{KEY}.models", backbones, cfg["backbones"], "backbones")
    for x in block["models"]:
        if "@" in x:
            raise MatchbenchError(f"{source}: {KEY}.models: {x!r} must not contain '@'")
    ada = block["adaptation"]["dataset"]
    embedded = [x for x in block["models"] if split_model(x)[1] == EMBED]
    if adapted(block) or embedded:
        if ada is None:
            users = [f"method {m!r}" for m in block["methods"] if m in ADAPTED]
            users += [f"model {x!r}" for x in embedded]
            raise MatchbenchError(
                f"{source}: {KEY}.adaptation.dataset is null, but {users[0]} trains on it; "
                "name a dataset"
            )
        check_names(source, f"{KEY}.adaptation.dataset", [ada], cfg["datasets"], "datasets")
        if ada == block["dataset"]:
            raise MatchbenchError(
                f"{source}: {KEY}.adaptation.dataset must be disjoint from the test set, "
                f"not {ada!r} itself"
            )
    # The descriptors' dimension is the model's, known at search time (where the index is
    # checked again with it); here a factory string must build for some usual dimension.
    for entry in [block["index"]["factory"], *block["index"]["compare"]]:
        factory = entry.partition(" ")[0]
        errors = []
        for dim in (512, 64, 96, 384, 768, 1024, 1536):
            try:
                check_factory(factory, dim, f"{KEY}.index")
                break
            except MatchbenchError as e:
                errors.append(e)
        else:
            raise MatchbenchError(f"{source}: {errors[0]}") from None


def reads(cfg: dict[str, Any], stage: str, opts: dict[str, Any]) -> list[str]:
    """The ``tracks.retrieval`` keys each of the track's jobs reads."""
    if stage == "finetune":
        if opts.get("recipe") == EMBED:
            return [f"{KEY}.train", f"{KEY}.adaptation.dataset"]
        return [f"{KEY}.adaptation"]
    if stage == "retrieve":
        method = split_method(opts["model"])[1]
        keys = [f"{KEY}.distractors", f"{KEY}.index", f"{KEY}.k"]
        if method in ADAPTED:
            keys.append(f"{KEY}.adaptation.dataset")
        if method in EXPANDED:
            keys.append(f"{KEY}.rerank")
        if method in LOCAL:
            keys.append(f"{KEY}.local")
        return keys
    if stage == "evaluate":
        return [f"{KEY}.evaluate", f"{KEY}.k", f"{KEY}.distractors"]
    if stage == "report":
        return [f"{KEY}.models", f"{KEY}.methods"]
    return []


def targets(cfg: dict[str, Any], layout: Layout) -> list[str]:
    """Every method's metrics on the dataset, and the training logs of the linear adaptations
    and of the fine-tuned backbones."""
    block = cfg["tracks"][TASK]
    files = [
        layout.metrics(TASK, block["dataset"], m, side) for m in models(block) for side in SIDES
    ]
    for x in block["models"]:
        backbone, recipe = split_model(x)
        if recipe == EMBED:
            files.append(
                layout.model(EMBED, block["adaptation"]["dataset"], backbone, "train_log.csv")
            )
    if adapted(block):
        for x in block["models"]:
            files.append(layout.model(LINEAR, block["adaptation"]["dataset"], x, "train_log.csv"))
    return files


TRACK = Track(
    name=TASK,
    title="Instance-level retrieval",
    package=__name__,
    evaluate=f"{__name__}.evaluate:evaluate",
    retrieve=f"{__name__}.retrieve:retrieve",
    recipes=(
        Recipe(LINEAR, f"{__name__}.adapt:train", LINEAR_LOG_COLUMNS, ("loss", "batch_acc")),
        Recipe(EMBED, f"{__name__}.embed:train", EMBED_LOG_COLUMNS, ("loss", "batch_acc")),
    ),
    checkpoint=f"{__name__}.methods:embed_checkpoint",
    families=(f"{__name__}.families",),
    check=f"{__name__}:check",
    reads=f"{__name__}:reads",
    targets=f"{__name__}:targets",
    report=f"{__name__}.report:section",
    headline=("image_map@1k", "text_map@1k"),
)
