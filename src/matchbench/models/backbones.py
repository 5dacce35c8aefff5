"""One factory for every backbone: timm or open_clip by name, weights from a local file.

As in open_clip, *which architecture* and *which weights* are separate: the config names the
architecture; weights are either none (random init, the demo), a file fetched beforehand by
the `weights` stage into ``data/weights/<backbone>.safetensors``, or a fine-tuned checkpoint.
Compute jobs never touch the network.

An open_clip backbone is the whole model, image and text towers, with open_clip's own
state-dict keys (``visual.*``, ``transformer.*``, ...). Its architecture is one of open_clip's
``model_configs/*.json`` or one of ours in ``configs/`` (tiny CLIPs for the mini-world),
registered with ``open_clip.add_model_config``; a backbone's ``kwargs`` are deep-merged into that
config, as timm's ``create_model(name, **kwargs)`` overrides a model's arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import json
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from matchbench.errors import MatchbenchError
from matchbench.models.encoders import Encoder, Norm, OpenClipEncoder

CONFIGS = Path(__file__).parent / "configs"
IMAGENET: tuple[Norm, Norm] = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def _unknown(name: str, arch: str, known: list[str], source: str) -> MatchbenchError:
    close = difflib.get_close_matches(arch, known, n=5, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    return MatchbenchError(f"backbones.{name}.arch: unknown {source} architecture {arch!r}{hint}")


def _rejected(name: str, arch: str, error: Exception) -> MatchbenchError:
    """A constructor's complaint about ``kwargs`` as one line naming the config key."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    bad = re.search(r"unexpected keyword argument '(\w+)'", text)
    if bad:
        return MatchbenchError(
            f"backbones.{name}.kwargs.{bad.group(1)}: {arch} takes no argument {bad.group(1)!r}"
        )
    return MatchbenchError(f"backbones.{name}.kwargs: {arch} rejects them ({text})")


@contextmanager
def _building(name: str, spec: dict[str, Any], meta: bool) -> Iterator[None]:
    """Build under a constructor-error guard; on the meta device without touching the RNG."""
    try:
        if meta:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                yield
        else:
            yield
    except (TypeError, ValueError, AssertionError) as e:
        if not spec.get("kwargs"):
            raise
        raise _rejected(name, spec["arch"], e) from None


# --------------------------------------------------------------------------- timm


def _timm(spec: dict[str, Any], name: str, meta: bool = False) -> Encoder:
    import timm

    arch = spec["arch"]
    base, _, tag = arch.partition(".")
    if not timm.is_model(base):
        raise _unknown(name, arch, timm.list_models(), "timm")
    tag = tag or spec.get("weights_tag") or ""
    full = f"{base}.{tag}" if tag else base
    with _building(name, spec, meta):
        model = timm.create_model(full, pretrained=False, num_classes=0, **spec.get("kwargs", {}))
    # The normalisation the weights were trained with (a CLIP-trained ViT differs from ImageNet).
    cfg = getattr(model, "pretrained_cfg", None) or {}
    norm = (tuple(cfg.get("mean", IMAGENET[0])), tuple(cfg.get("std", IMAGENET[1])))
    return _encoder(Encoder, spec, name, model, int(model.num_features), norm)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- open_clip


@functools.cache
def _open_clip() -> Any:
    """open_clip, with our architectures (``configs/*.json``) registered beside its own."""
    import open_clip

    open_clip.add_model_config(CONFIGS)
    return open_clip


def _config_fields(open_clip: Any) -> dict[str, set[str]]:
    """The fields an open_clip model config may hold: top level, and in each tower's config."""
    from open_clip.coca_model import MultimodalCfg

    top = {"custom_text"}
    for cls in (open_clip.CLIP, open_clip.CustomTextCLIP, open_clip.CoCa):
        top |= set(inspect.signature(cls.__init__).parameters) - {"self", "cast_dtype"}
    towers = {
        "vision_cfg": open_clip.CLIPVisionCfg,
        "text_cfg": open_clip.CLIPTextCfg,
        "multimodal_cfg": MultimodalCfg,
    }
    return {"": top} | {k: {f.name for f in dataclasses.fields(c)} for k, c in towers.items()}


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over


def open_clip_config(spec: dict[str, Any], name: str) -> dict[str, Any]:
    """The open_clip model config of ``spec``: its architecture's, with ``kwargs`` deep-merged.

    Unknown fields are refused by name (open_clip would raise a ``TypeError`` deep in a tower).
    """
    open_clip = _open_clip()
    arch = spec["arch"]
    if arch not in open_clip.list_models():
        raise _unknown(name, arch, open_clip.list_models(), "open_clip")
    base = open_clip.get_model_config(arch)
    kwargs = spec.get("kwargs") or {}
    fields = _config_fields(open_clip)
    for key, value in kwargs.items():
        _check_field(name, arch, key, fields[""])
        if key in fields and key != "":
            if not isinstance(value, dict):
                raise MatchbenchError(
                    f"backbones.{name}.kwargs.{key}: expected a mapping of {key} fields, "
                    f"got {value!r}"
                )
            for sub in value:
                _check_field(name, arch, f"{key}.{sub}", fields[key])
    return _merge(base, kwargs)


def _check_field(name: str, arch: str, key: str, known: set[str]) -> None:
    field = key.rpartition(".")[2]
    if field not in known:
        close = difflib.get_close_matches(field, sorted(known), n=3, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise MatchbenchError(
            f"backbones.{name}.kwargs.{key}: not a field of open_clip model configs "
            f"(open_clip {arch}){hint}"
        )


def _clip(spec: dict[str, Any], name: str, meta: bool = False) -> OpenClipEncoder:
    open_clip = _open_clip()
    arch = spec["arch"]
    cfg = open_clip_config(spec, name)
    # create_model builds the architecture's config, then replaces each top-level field we
    # pass: the deep-merged ones. `custom_text` picks the class, so it travels as its flag.
    over = {k: cfg[k] for k in spec.get("kwargs") or {} if k != "custom_text"}
    with _building(name, spec, meta):
        model = open_clip.create_model(
            arch,
            pretrained=None,
            pretrained_text=False,  # a Hugging Face text tower: its config only, no download
            force_custom_text=bool(cfg.get("custom_text")),
            device="meta" if meta else "cpu",
            **over,
        )
    visual = model.visual
    native = getattr(visual, "image_size", None)
    size = int(spec.get("image_size", 224))
    if native is not None and tuple(native) != (size, size):
        raise MatchbenchError(
            f"backbones.{name}.image_size: {size}, but open_clip {arch} takes "
            f"{native[0]}x{native[1]} images; set image_size: {native[0]} (or "
            f"kwargs.vision_cfg.image_size: {size})"
        )
    # The joint embedding's width: the config's embed_dim (a timm visual tower, as SigLIP's,
    # has no output_dim attribute, and a CustomTextCLIP no text_projection).
    dim = int(getattr(visual, "output_dim", 0) or cfg["embed_dim"])
    pre = getattr(visual, "preprocess_cfg", None) or {}
    norm = (
        tuple(pre.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        tuple(pre.get("std", open_clip.OPENAI_DATASET_STD)),
    )
    return _encoder(OpenClipEncoder, spec, name, model, dim, norm)  # type: ignore[arg-type,return-value]


def _encoder(
    cls: type[Encoder],
    spec: dict[str, Any],
    name: str,
    module: nn.Module,
    dim: int,
    norm: tuple[Norm, Norm],
) -> Encoder:
    return cls(
        module=module,
        dim=dim,
        image_size=int(spec.get("image_size", 224)),
        mean=tuple(spec.get("mean") or norm[0]),  # type: ignore[arg-type]
        std=tuple(spec.get("std") or norm[1]),  # type: ignore[arg-type]
        name=name,
        arch=spec["arch"],
    )


_BUILDERS = {"timm": _timm, "open_clip": _clip}


def _build(spec: dict[str, Any], name: str, meta: bool = False) -> Encoder:
    builder = _BUILDERS.get(spec["source"])
    if builder is None:  # the schema forbids it; keep the error for programmatic use
        raise MatchbenchError(
            f"backbones.{name}.source: {spec['source']!r}; expected timm or open_clip"
        )
    return builder(spec, name, meta)


def check_backbones(cfg: dict[str, Any]) -> None:
    """Every backbone of a resolved config exists and accepts its ``kwargs``: built on the meta
    device (no memory, no random numbers), so a DAG fails when it is built, not at its first
    extract job. Raises :class:`MatchbenchError` naming ``backbones.<name>.<key>``."""
    for name, spec in cfg["backbones"].items():
        _build(spec, name, meta=True)


# --------------------------------------------------------------------------- weights


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    # The suffix first: a .pth path is refused for what it is, whether or not it exists.
    if p.suffix != ".safetensors":
        raise MatchbenchError(
            f"{p}: weights must be a .safetensors file (pickled checkpoints such as .pth/.pt/.bin "
            "can run arbitrary code when loaded; convert it with safetensors.torch.save_file)"
        )
    if not p.is_file():
        parts = p.parts  # a fine-tuned model: <results>/models/<recipe>/<dataset>/<backbone>/
        if p.name == "model.safetensors" and len(parts) >= 5 and parts[-5] == "models":
            recipe, dataset, backbone = parts[-4], parts[-3], parts[-2]
            raise MatchbenchError(
                f"{p}: no checkpoint of {backbone}+{recipe}; train it first: matchbench "
                f"finetune --config <this config> --recipe {recipe} --dataset {dataset} "
                f"--backbone {backbone} (or run snakemake, which does)"
            )
        raise MatchbenchError(
            f"{p}: weights file not found (run `matchbench weights` or snakemake's weights rule)"
        )
    try:
        return load_file(str(p))
    except (SafetensorError, OSError) as e:
        raise MatchbenchError(
            f"{p}: not a readable safetensors file ({e}); truncated, or a renamed pickle?"
        ) from None


def _apply_state(module: nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own}
    missing = sorted(set(own) - set(usable))
    if missing:
        raise MatchbenchError(
            f"{path}: {len(missing)} backbone tensors missing from the weights (first: "
            f"{missing[:3]}); is this file for another architecture?"
        )
    bad = [k for k, v in usable.items() if v.shape != own[k].shape]
    if bad:
        raise MatchbenchError(
            f"{path}: shape mismatch for {bad[:3]} (another architecture or image size?)"
        )
    module.load_state_dict(usable, strict=True)


def load_state(module: nn.Module, path: str | Path, *, prefix: str = "") -> None:
    """Load safetensors weights into ``module``; keys the backbone lacks (a classifier head) are dropped.

    Missing backbone keys are an error: a silently half-loaded network is worse than none.
    """
    state = _read_state(path)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    _apply_state(module, state, path)


def load_weights(encoder: Encoder, path: str | Path) -> None:
    """Load ``path`` into the whole encoder (both towers of an open_clip model).

    An open_clip file that holds the image tower only (``visual.*``, as matchbench saved them
    before encoders kept their text tower) loads into the image tower, and the encoder then
    refuses text rather than answer with a text tower the file never held.
    """
    state = _read_state(path)
    module = encoder.module
    if isinstance(encoder, OpenClipEncoder):
        own = module.state_dict()
        text = [k for k in own if not k.startswith("visual.")]
        if text and not any(k in state for k in text):
            visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
            _apply_state(module.visual, visual, path)
            encoder.text_unavailable = f"{path} holds the image tower only"
            return
    _apply_state(module, state, path)
    # A checkpoint trained with another text attention than the architecture's says so
    # (metadata ``text_attention``), so every stage loads it the way it was trained.
    attention = _read_metadata(path).get("text_attention")
    if isinstance(encoder, OpenClipEncoder) and attention in ("causal", "bidirectional"):
        encoder.set_text_bidirectional(attention == "bidirectional")


def _read_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return f.metadata() or {}


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


def create_backbone(
    spec: dict[str, Any], weights: str | Path | None = None, *, name: str | None = None
) -> Encoder:
    """Build the encoder ``spec`` describes (a resolved config entry) and load ``weights`` if given.

    ``name`` is the backbone's name in the config, used in messages (default: its arch).
    """
    encoder = _build(spec, name or spec["arch"])
    if weights is None and isinstance(spec.get("pretrained"), str):
        weights = spec["pretrained"]
    if weights is not None:
        load_weights(encoder, weights)
    return encoder


def load_model(
    cfg: dict[str, Any], model: str, dataset: str, weights: str | Path | None = None
) -> Encoder:
    """The one door from a config's model name to a network with its weights.

    ``model`` is ``<backbone>`` or ``<backbone>+<recipe>`` (the recipe's checkpoint trained on
    ``dataset``); ``weights`` overrides the layout's file (docs/contracts.md).
    """
    from matchbench.config import backbone_spec
    from matchbench.layout import Layout, split_model

    backbone = split_model(model)[0]
    spec = backbone_spec(cfg, backbone)
    if weights is None:
        weights = Layout.of(cfg).model_weights(cfg, model, dataset)
    return create_backbone(spec, weights, name=backbone)
