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
import posixpath
from pathlib import Path
from typing import Any

from matchbench.config import add_config_argument, backbone_spec, load_config
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout

# Hugging Face's own names for a repository's weights file and its safetensors twin
# (as timm's and open_clip's hub loaders pair them).
_SAFE_TWINS = {
    "pytorch_model.bin": "model.safetensors",
    "open_clip_pytorch_model.bin": "open_clip_model.safetensors",
}


def hf_endpoint() -> str:
    """The Hugging Face endpoint (``HF_ENDPOINT``, as huggingface_hub reads it), read per call."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _safe_filename(filename: str) -> str:
    if filename.endswith(".safetensors"):
        return filename
    if filename in _SAFE_TWINS:
        return _SAFE_TWINS[filename]
    stem, dot, _ = filename.rpartition(".")
    return f"{stem}.safetensors" if dot else f"{filename}.safetensors"


def hf_resolve_url(repo: str, filename: str) -> str:
    """``<endpoint>/<repo>/resolve/<revision>/<filename>``; ``repo@rev`` names a revision (timm)."""
    repo_id, _, revision = repo.strip("/").partition("@")
    return f"{hf_endpoint()}/{repo_id}/resolve/{revision or 'main'}/{filename}"


def _timm_url(arch: str, tag: str | None) -> str:
    import timm

    base, _, arch_tag = arch.partition(".")
    if tag and arch_tag and tag != arch_tag:
        raise MatchbenchError(
            f"arch {arch!r} names the pretrained tag {arch_tag!r} but weights_tag is {tag!r}; "
            "give the tag in one place"
        )
    if not timm.is_model(base):
        raise MatchbenchError(f"timm has no architecture {base!r} (backbones.*.arch)")
    name = f"{base}.{arch_tag or tag}" if (arch_tag or tag) else base
    try:
        cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:  # timm raises for a tag it does not know
        cfg = None
    if cfg is None or not getattr(cfg, "hf_hub_id", None):
        tags = [t for t in timm.list_pretrained(f"{base}.*") if t != name]
        known = f" (its other pretrained names: {', '.join(tags)})" if tags else ""
        raise MatchbenchError(
            f"timm has no Hugging Face weights for {name!r}{known}; "
            "set backbones.*.weights_url to a safetensors file"
        )
    filename = _safe_filename(getattr(cfg, "hf_hub_filename", None) or "model.safetensors")
    return hf_resolve_url(cfg.hf_hub_id, filename)


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
    # As open_clip reads it: 'org/repo/' = its default file, 'org/repo/<file>' = a named file.
    repo, filename = posixpath.split(hub)
    return hf_resolve_url(repo, _safe_filename(filename or "open_clip_pytorch_model.bin"))


def weights_url(spec: dict[str, Any]) -> str:
    """Where the `weights` stage downloads ``spec``'s weights from (no network involved here)."""
    if spec.get("weights_url"):
        return spec["weights_url"]
    if spec["source"] == "timm":
        return _timm_url(spec["arch"], spec.get("weights_tag"))
    return _open_clip_url(spec["arch"], spec.get("weights_tag"))


def fetch_weights(cfg: dict[str, Any], backbone: str, out: Path | None = None) -> Path:
    """Download ``backbone``'s weights, verify them, check they load, then rename into place.

    The file is staged beside the destination under a hidden ``.safetensors`` name (resumable
    across runs: weights can be gigabytes); nothing appears at the destination unless the
    checksum matched and the weights load into the architecture.
    """
    from matchbench.data.download import download_url, file_digest, parse_checksum
    from matchbench.models.backbones import create_backbone

    spec = backbone_spec(cfg, backbone)
    if spec["pretrained"] is not True:
        raise MatchbenchError(
            f"backbones.{backbone}.pretrained is {spec['pretrained']!r}: nothing to fetch"
        )
    url = weights_url(spec)
    checksum = spec.get("weights_checksum")
    dest = Path(out or Layout.of(cfg).weights(backbone))
    if dest.suffix != ".safetensors":
        raise MatchbenchError(f"{dest}: the weights file must end in .safetensors")
    if checksum and dest.is_file():
        algo, want = parse_checksum(checksum)
        if file_digest(dest, algo) == want:
            return dest  # already fetched and verified: no request
    staged = dest.with_name(f".{dest.stem}.download.safetensors")
    staged.unlink(missing_ok=True)  # a whole but unverified leftover: never trust it
    download_url(url, staged, checksum=checksum)
    try:
        create_backbone(spec, staged)  # fails clearly if the file is not for this architecture
    except MatchbenchError as e:
        staged.unlink(missing_ok=True)
        raise MatchbenchError(
            f"{url}: the downloaded weights do not fit backbones.{backbone} "
            f"({spec['source']} {spec['arch']}): {e}"
        ) from None
    os.replace(staged, dest)
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
