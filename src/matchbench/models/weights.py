"""The `weights` stage: fetch a backbone's pretrained weights once, into data/weights/.

Run on the submitting host (a Snakemake localrule), so compute nodes never need the network.
The URL is derived from the architecture's own pretrained config (timm ``hf_hub_id``, open_clip
``hf_hub``) as a Hugging Face ``resolve`` URL of its safetensors file, or given by
``weights_url`` (a mirror, or ``file://`` for weights already on disk). The file is then checked
to load into the architecture before it is renamed into place.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from matchbench.config import add_config_argument, backbone_spec, load_config
from matchbench.errors import MatchbenchError

HF_ENDPOINT = os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def _timm_url(arch: str, tag: str | None) -> str:
    import timm

    name = f"{arch}.{tag}" if tag and "." not in arch else arch
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        raise MatchbenchError(
            f"timm has no downloadable weights for {name!r}; set backbones.*.weights_url to a safetensors file"
        )
    return f"{HF_ENDPOINT}/{cfg.hf_hub_id.rstrip('/')}/resolve/main/model.safetensors"


def _open_clip_url(arch: str, tag: str | None) -> str:
    import open_clip

    if not tag:
        raise MatchbenchError(
            f"open_clip backbone {arch!r}: set weights_tag (e.g. openai, laion2b_s34b_b88k)"
        )
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    hub = cfg.get("hf_hub") if cfg else None
    if not hub:
        tags = [t for a, t in open_clip.list_pretrained() if a == arch]
        raise MatchbenchError(
            f"open_clip has no hub weights for {arch} / {tag!r} (known tags: {', '.join(tags)})"
        )
    return f"{HF_ENDPOINT}/{hub.rstrip('/')}/resolve/main/open_clip_model.safetensors"


def weights_url(spec: dict[str, Any]) -> str:
    if spec.get("weights_url"):
        return spec["weights_url"]
    if spec["source"] == "timm":
        return _timm_url(spec["arch"], spec.get("weights_tag"))
    return _open_clip_url(spec["arch"], spec.get("weights_tag"))


def fetch_weights(cfg: dict[str, Any], backbone: str, out: Path | None = None) -> Path:
    from matchbench.data.download import download_url
    from matchbench.io import atomic_path
    from matchbench.models.backbones import create_backbone, weights_path

    spec = backbone_spec(cfg, backbone)
    if spec["pretrained"] is not True:
        raise MatchbenchError(
            f"backbones.{backbone}.pretrained is {spec['pretrained']!r}: nothing to fetch"
        )
    dest = out or weights_path(cfg["paths"]["data"], backbone)
    with atomic_path(dest) as tmp:
        download_url(weights_url(spec), tmp, checksum=spec.get("weights_checksum"), resume=False)
        create_backbone(spec, tmp)  # fails clearly if the file is not for this architecture
    return dest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--backbone", required=True, help="backbone name from the config")
    parser.add_argument("--out", type=Path, help="default: <data>/weights/<backbone>.safetensors")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    dest = fetch_weights(cfg, args.backbone, args.out)
    print(f"weights: {args.backbone} -> {dest}")
    return 0
