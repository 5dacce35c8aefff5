"""The semantic-correspondence track: dense features, keypoint transfer, PCK, the training loss.

- ``pairs``: the common pair table ``data/<dataset>/pairs.parquet`` (docs/contracts.md).
- ``dense``: dense feature maps of any timm / open_clip backbone at a square resolution, and
  the coordinate maps between an image's original frame and its feature grid.
- ``store``: the dense-map cache (``matchbench extract --dense``).
- ``match``: keypoint transfer (nn, bilinear, softmax, kernel_softmax).
- ``evaluate``: PCK per image and per point, per category and difficulty flag (task
  ``correspondence`` of ``matchbench evaluate``).
- ``loss``: the Gaussian-target softmax loss of the ``correspondence`` recipe (``recipe``).
- ``families``: the SPair-71k, PF-PASCAL, AP-10K and mini-world pair datasets; ``synth``: the
  mini-world written in those layouts.
- ``report`` (with ``report_read``, ``report_tables``, ``report_figures``,
  ``report_transfers``): the section in the unified benchmark's layout.
- ``score``: ``matchbench score`` for SPair-71k, PF-PASCAL and AP-10K prediction files.
"""

from __future__ import annotations

from typing import Any

from matchbench.config import check_names
from matchbench.layout import Layout
from matchbench.tracks import SIDES, Recipe, Track

LOG_COLUMNS = ("epoch", "step", "loss", "lr", "train_pck", "keypoints")
PLOT_COLUMNS = ("loss", "train_pck")


def models(block: dict[str, Any]) -> list[str]:
    """Every model the track evaluates: each backbone frozen, then each fine-tuned one."""
    return list(block["backbones"]) + [f"{b}+correspondence" for b in block["finetune"]]


def shown_models(block: dict[str, Any]) -> list[str]:
    """Models whose predictions the report draws: each fine-tuned backbone frozen and tuned."""
    return [m for b in block["finetune"] for m in (b, f"{b}+correspondence")] or block["backbones"][
        :1
    ]


def check(cfg: dict[str, Any], block: dict[str, Any], source: str) -> None:
    key = "tracks.correspondence"
    check_names(source, f"{key}.datasets", block["datasets"], cfg["datasets"], "datasets")
    for sub in ("backbones", "finetune"):
        check_names(source, f"{key}.{sub}", block[sub], cfg["backbones"], "backbones")
    overrides = list(block["features"]["resolutions"])
    check_names(source, f"{key}.features.resolutions", overrides, cfg["backbones"], "backbones")


def targets(cfg: dict[str, Any], layout: Layout) -> list[str]:
    """Every model's metrics on every dataset, the predictions the report draws, the training logs."""
    block = cfg["tracks"]["correspondence"]
    files = []
    for ds in block["datasets"]:
        files += [
            layout.metrics("correspondence", ds, m, side) for m in models(block) for side in SIDES
        ]
        files += [
            layout.metrics("correspondence", ds, m, "predictions.parquet")
            for m in shown_models(block)
        ]
        files += [layout.model("correspondence", ds, b, "train_log.csv") for b in block["finetune"]]
    return files


def reads(cfg: dict[str, Any], stage: str, opts: dict[str, Any]) -> list[str]:
    """The ``tracks.correspondence`` keys each of the track's jobs reads."""
    key = "tracks.correspondence"
    maps = [f"{key}.features", f"{key}.evaluate.split"]  # what a dense map depends on
    if stage == "extract":
        return maps
    if stage == "finetune":
        return [f"{key}.train", f"{key}.features"]
    if stage == "evaluate":
        return [*maps, f"{key}.match", f"{key}.evaluate"]
    if stage == "report":
        return [f"{key}.backbones", f"{key}.finetune"]  # which transfers the section draws
    return []


TRACK = Track(
    name="correspondence",
    title="Semantic correspondence",
    package=__name__,
    evaluate=f"{__name__}.evaluate:task",
    recipes=(Recipe("correspondence", f"{__name__}.recipe:train", LOG_COLUMNS, PLOT_COLUMNS),),
    families=(f"{__name__}.families",),
    check=f"{__name__}:check",
    targets=f"{__name__}:targets",
    reads=f"{__name__}:reads",
    report=f"{__name__}.report:section",
    features=(("dense", f"{__name__}.store:run_extract_dense"),),
    score_formats=tuple((b, f"{__name__}.score:score_{b}") for b in ("spair", "pfpascal", "ap10k")),
    headline=("pck@0.1",),
)
