"""One factory for every backbone: timm or open_clip by name, weights from a local file.

As in open_clip, *which architecture* and *which weights* are separate: the config names the
architecture; weights are either none (random init, the demo), a file fetched beforehand by
the `weights` stage into ``data/weights/<backbone>.safetensors``, or a fine-tuned checkpoint.
Compute jobs never touch the network.
"""

from __future__ import annotations

import difflib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from matchbench.errors import MatchbenchError


@dataclass
class Backbone:
    """A network mapping a normalised image batch (B, 3, H, W) to global features (B, D)."""

    module: nn.Module
    dim: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _unknown(arch: str, known: list[str], source: str) -> MatchbenchError:
    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    return MatchbenchError(f"unknown {source} architecture {arch!r}{hint}")


Norm = tuple[float, float, float]
IMAGENET: tuple[Norm, Norm] = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _timm(spec: dict[str, Any]) -> tuple[nn.Module, int, tuple[Norm, Norm]]:
    import timm

    arch = spec["arch"]
    base, _, tag = arch.partition(".")
    if not timm.is_model(base):
        raise _unknown(arch, timm.list_models(), "timm")
    tag = tag or spec.get("weights_tag") or ""
    name = f"{base}.{tag}" if tag else base
    model = timm.create_model(name, pretrained=False, num_classes=0, **spec.get("kwargs", {}))
    # The normalisation the weights were trained with (a CLIP-trained ViT differs from ImageNet).
    cfg = getattr(model, "pretrained_cfg", None) or {}
    norm = (tuple(cfg.get("mean", IMAGENET[0])), tuple(cfg.get("std", IMAGENET[1])))
    return model, int(model.num_features), norm  # type: ignore[return-value]


class _OpenClipVisual(nn.Module):
    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _open_clip(spec: dict[str, Any]) -> tuple[nn.Module, int, tuple[Norm, Norm]]:
    import open_clip

    arch = spec["arch"]
    if arch not in open_clip.list_models():
        raise _unknown(arch, open_clip.list_models(), "open_clip")
    model = open_clip.create_model(arch, pretrained=None)
    visual = _OpenClipVisual(model.visual)
    dim = int(getattr(model.visual, "output_dim", 0) or model.text_projection.shape[1])
    pre = getattr(model.visual, "preprocess_cfg", None) or {}
    norm = (
        tuple(pre.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        tuple(pre.get("std", open_clip.OPENAI_DATASET_STD)),
    )
    return visual, dim, norm  # type: ignore[return-value]


def load_state(module: nn.Module, path: str | Path, *, prefix: str = "") -> None:
    """Load safetensors weights into ``module``; keys the backbone lacks (a classifier head) are dropped.

    Missing backbone keys are an error: a silently half-loaded network is worse than none.
    """
    p = Path(path)
    # The suffix first: a .pth path is refused for what it is, whether or not it exists.
    if p.suffix != ".safetensors":
        raise MatchbenchError(
            f"{p}: weights must be a .safetensors file (pickled checkpoints such as .pth/.pt/.bin "
            "can run arbitrary code when loaded; convert it with safetensors.torch.save_file)"
        )
    if not p.is_file():
        raise MatchbenchError(
            f"{p}: weights file not found (run `matchbench weights` or snakemake's weights rule)"
        )
    try:
        state = load_file(str(p))
    except (SafetensorError, OSError) as e:
        raise MatchbenchError(
            f"{p}: not a readable safetensors file ({e}); truncated, or a renamed pickle?"
        ) from None
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise MatchbenchError(
            f"{p}: {len(missing)} backbone tensors missing from the weights (first: {missing[:3]}); "
            "is this file for another architecture?"
        )
    bad = [k for k, v in usable.items() if v.shape != own[k].shape]
    if bad:
        raise MatchbenchError(
            f"{p}: shape mismatch for {bad[:3]} (another architecture or image size?)"
        )
    module.load_state_dict(usable, strict=True)


def _canonical_header(blob: bytes) -> tuple[bytes, int]:
    """The header of a serialised safetensors file with its ``__metadata__`` keys sorted.

    safetensors keeps the metadata in a Rust ``HashMap`` whose order changes from call to
    call, so two saves of equal weights would differ in their header bytes. Returns the new
    8-byte length + header, and where the tensor data starts in ``blob``. The sorted header is
    padded (with spaces, as the format allows) to the original length, so the tensor offsets
    are unchanged.
    """
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    if meta is not None:
        header = {"__metadata__": dict(sorted(meta.items())), **header}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > n:  # cannot happen for a reordering; keep the library's header if it does
        return bytes(blob[: 8 + n]), 8 + n
    return blob[:8] + text + b" " * (n - len(text)), 8 + n


def save_state(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``module``'s weights as safetensors, byte-identical for equal weights and metadata."""
    from matchbench.io import atomic_path

    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    blob = save(state, metadata=metadata or {})
    head, start = _canonical_header(blob)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(head)
        f.write(memoryview(blob)[start:])  # the tensors, without another copy


def create_backbone(spec: dict[str, Any], weights: str | Path | None = None) -> Backbone:
    """Build the backbone ``spec`` describes (a resolved config entry) and load ``weights`` if given."""
    source = spec["source"]
    if source == "timm":
        module, dim, norm = _timm(spec)
    elif source == "open_clip":
        module, dim, norm = _open_clip(spec)
    else:  # the schema forbids it; keep the error for programmatic use
        raise MatchbenchError(f"backbone source {source!r}: expected timm or open_clip")
    if weights is None and isinstance(spec.get("pretrained"), str):
        weights = spec["pretrained"]
    if weights is not None:
        load_state(module, weights)
    return Backbone(
        module=module,
        dim=dim,
        image_size=int(spec.get("image_size", 224)),
        mean=tuple(spec.get("mean") or norm[0]),  # type: ignore[arg-type]
        std=tuple(spec.get("std") or norm[1]),  # type: ignore[arg-type]
    )


def load_model(
    cfg: dict[str, Any], model: str, dataset: str, weights: str | Path | None = None
) -> Backbone:
    """The one door from a config's model name to a network with its weights.

    ``model`` is ``<backbone>`` or ``<backbone>+<recipe>`` (the recipe's checkpoint trained on
    ``dataset``); ``weights`` overrides the layout's file (docs/contracts.md).
    """
    from matchbench.config import backbone_spec
    from matchbench.layout import Layout, split_model

    spec = backbone_spec(cfg, split_model(model)[0])
    if weights is None:
        weights = Layout.of(cfg).model_weights(cfg, model, dataset)
    return create_backbone(spec, weights)
