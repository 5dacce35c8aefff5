"""Recipes ``clip-<variant>``: contrastive image-text training of an open_clip model; ``text-mlm``.

After "Learning Visual Composition through Improved Semantic Guidance" (arXiv 2412.15396):
plain CLIP training (the symmetric InfoNCE of open_clip's ``ClipLoss``, with the model's
learnable ``logit_scale``, clamped to ln 100 as open_clip's training does) on a dataset's
captions, where a variant (``tracks.compose.variants``, :mod:`.variants`) picks

- the **caption source**: ``alt`` (short) or ``rich`` (several sentences), with **sentence
  sampling** of rich captions (``train.sentences``, :mod:`.text`);
- the **text tower**: from scratch, or ``pretrained`` from ``train.text_weights`` (the
  ``text-mlm`` checkpoint by default) with all but the last ``train.unfreeze_text`` blocks and
  the embeddings frozen, and **bidirectional** attention (the causal mask dropped; padding
  after the pooled end-of-text token stays masked, ``OpenClipEncoder.text_tokens``);
- **hard negatives** (NegCLIP, Yuksekgonul et al., 2023): generated negatives of each caption
  (:mod:`.negatives`) join the texts the images are contrasted with (image-to-text direction);
  such a variant usually starts (``start``) from another variant's checkpoint.

Images get a batched random resized crop (and a flip if asked: off by default, since a
flipped image makes its "left of" captions false) on the device. AdamW with a linear warmup
and a cosine schedule; no weight decay on gains, biases, embeddings and ``logit_scale``.

The whole model is saved (``<backbone>+clip-<variant>`` loads like any model), with its text
attention in the safetensors metadata (``text_attention``) so every stage loads it as it was
trained. Every random draw comes from the run's generator: a CPU rerun writes the same bytes.
The registry declares the family once (``Recipe("clip-", ..., prefix=True)``, the track's
``__init__``); ``matchbench finetune --recipe clip-<variant>`` calls :func:`train` with
``recipe="clip-<variant>"``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from matchbench.config import backbone_spec
from matchbench.errors import MatchbenchError
from matchbench.images import load_all, normalise, read_index
from matchbench.io import sha256_file, write_json, write_log
from matchbench.layout import Layout
from matchbench.models import OpenClipEncoder, create_backbone
from matchbench.models.backbones import save_state
from matchbench.progress import bar as progress_bar
from matchbench.runtime import start
from matchbench.tracks.compose.negatives import Vocabulary, negatives
from matchbench.tracks.compose.text import (
    CAPTION_COLUMNS,
    count_truncated,
    read_table,
    sample_sentences,
    warn_truncated,
)
from matchbench.tracks.compose.variants import (
    CLIP_LOG_COLUMNS,
    Variant,
    block,
    recipe_name,
    resolve,
    text_weights,
    variant_name,
)
from matchbench.training import Progress, Resume, identity

# The text tower of open_clip's built-in CLIP (what a pretrained tower replaces).
TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.")
LOGIT_SCALE_MAX = math.log(100)  # open_clip clamps logit_scale to [0, ln 100] after each step


# --------------------------------------------------------------------------- parts


def contrastive_loss(
    image: torch.Tensor,
    text: torch.Tensor,
    scale: torch.Tensor,
    hard: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of L2-normalised (B, D) image and text features, matched by row.

    Without ``hard`` it equals open_clip's ``ClipLoss`` (mean of the image-to-text and
    text-to-image cross-entropies at ``scale``). ``hard`` (M, D): extra texts every image is
    contrasted with (NegCLIP's negatives), in the image-to-text direction only: they are no
    image's caption. Returns the loss and the image-to-text logits (B, B + M).
    """
    texts = text if hard is None or len(hard) == 0 else torch.cat([text, hard])
    logits_image = scale * image @ texts.T
    logits_text = scale * text @ image.T
    labels = torch.arange(len(image), device=image.device)
    loss = (F.cross_entropy(logits_image, labels) + F.cross_entropy(logits_text, labels)) / 2
    return loss, logits_image


def crop_flip(
    x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float], flip: bool
) -> torch.Tensor:
    """Random resized crop (area in ``scale``, aspect 3/4 to 4/3) and optional h-flip of a
    float batch (B, C, H, W), one affine warp per image on the batch's device."""
    b = x.shape[0]
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(b, generator=gen)
    ratio = torch.exp(math.log(3 / 4) + math.log(16 / 9) * torch.rand(b, generator=gen))
    sx = torch.sqrt(area * ratio).clamp(max=1.0)
    sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - sx) * (2 * torch.rand(b, generator=gen) - 1)
    ty = (1 - sy) * (2 * torch.rand(b, generator=gen) - 1)
    sign = torch.ones(b)
    if flip:
        sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    zero = torch.zeros(b)
    theta = torch.stack(
        [torch.stack([sx * sign, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1
    ).to(x)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters, without weight decay on gains, biases, embeddings, logit_scale
    (open_clip's ``exclude``)."""
    decay, rest = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim < 2 or any(s in name for s in ("ln", "bias", "embedding", "logit_scale"))
        (rest if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def read_state(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if p.suffix != ".safetensors":
        raise MatchbenchError(f"{p}: {what} must be a .safetensors file")
    if not p.is_file():
        raise MatchbenchError(f"{p}: {what} not found")
    try:
        return load_file(str(p))
    except (SafetensorError, OSError) as e:
        raise MatchbenchError(f"{p}: not a readable safetensors file ({e})") from None


def load_text_tower(encoder: OpenClipEncoder, path: str | Path) -> None:
    """Copy the text tower (:data:`TEXT_KEYS`) of a whole-model file into ``encoder``."""
    module = encoder.module
    own = module.state_dict()
    wanted = [k for k in own if k.startswith(TEXT_KEYS)]
    if not wanted:
        raise MatchbenchError(
            f"backbone {encoder.name!r}: only open_clip's built-in text tower can be pretrained"
        )
    state = read_state(path, "text tower weights (tracks.compose.train.text_weights)")
    missing = [k for k in wanted if k not in state]
    bad = [k for k in wanted if k in state and state[k].shape != own[k].shape]
    if missing or bad:
        raise MatchbenchError(
            f"{path}: not a text tower of backbone {encoder.name!r} ("
            + (f"missing {missing[:3]}" if missing else f"shape mismatch for {bad[:3]}")
            + ")"
        )
    module.load_state_dict(own | {k: state[k] for k in wanted}, strict=True)


def freeze_text(encoder: OpenClipEncoder, unfreeze: int) -> list[str]:
    """Freeze the embeddings and all but the last ``unfreeze`` text blocks; names frozen."""
    module = encoder.module
    blocks = module.transformer.resblocks
    if unfreeze >= len(blocks):
        return []
    frozen = ["token_embedding", "positional_embedding"]
    frozen += [f"transformer.resblocks.{i}" for i in range(len(blocks) - unfreeze)]
    for name in frozen:
        part = module.get_submodule(name) if name != "positional_embedding" else None
        if part is None:
            module.positional_embedding.requires_grad_(False)
        else:
            part.requires_grad_(False).eval()
    return frozen


def read_captions(cfg: dict[str, Any], dataset: str, split: str) -> tuple[pd.DataFrame, Path]:
    """The ``split`` rows of ``captions.parquet`` joined with their image paths."""
    layout = Layout.of(cfg)
    path = Path(layout.table(dataset, "captions"))
    if not path.is_file():
        raise MatchbenchError(
            f"{path}: dataset {dataset!r} has no captions table; the compose recipes train on "
            "a captioned dataset (a compose family such as miniworld-vl or docci)"
        )
    captions = read_table(path, CAPTION_COLUMNS)
    rows = captions[captions["split"] == split].reset_index(drop=True)
    if rows.empty:
        raise MatchbenchError(
            f"{path}: no captions in split {split!r} (tracks.compose.train.split)"
        )
    index = read_index(layout.index(dataset))
    path_of = dict(zip(index["id"], index["path"], strict=True))
    unknown = sorted(set(rows["image"]) - set(path_of))
    if unknown:
        raise MatchbenchError(
            f"{path}: image {unknown[0]!r} is not in images.parquet ({len(unknown)} missing)"
        )
    return rows.assign(path=rows["image"].map(path_of)), path


def tokenize(encoder: OpenClipEncoder, texts: list[str]) -> tuple[torch.Tensor, int]:
    tokens = encoder.tokenize(texts)
    return tokens, count_truncated(encoder, texts, tokens)


# --------------------------------------------------------------------------- the recipe


def build(
    cfg: dict[str, Any], blk: dict[str, Any], v: Variant, dataset: str, backbone: str
) -> tuple[OpenClipEncoder, dict[str, Any]]:
    """The model a variant starts from, and what it was built from (for config.json)."""
    spec = backbone_spec(cfg, backbone)
    sources: dict[str, Any] = {}
    if v.start is not None:
        weights = Layout.of(cfg).model(recipe_name(v.start), dataset, backbone, "model.safetensors")
        if not Path(weights).is_file():
            raise MatchbenchError(
                f"{weights}: variant {v.name!r} starts from variant {v.start!r} "
                f"(tracks.compose.variants.{v.name}.start); train {recipe_name(v.start)} first"
            )
        encoder = create_backbone(spec, weights, name=backbone)
        sources["start"] = {"path": weights, "sha256": sha256_file(Path(weights))}
    else:
        encoder = create_backbone(spec, name=backbone)
    if not isinstance(encoder, OpenClipEncoder) or not encoder.has_text:
        raise MatchbenchError(
            f"backbone {backbone!r} ({spec['source']} {spec['arch']}): the compose recipes "
            "train an image-text model; use an open_clip backbone"
        )
    if v.text_tower == "pretrained" and v.start is None:
        path = text_weights(cfg, blk, dataset, backbone)
        load_text_tower(encoder, path)
        sources["text_weights"] = {"path": path, "sha256": sha256_file(Path(path))}
    encoder.set_text_bidirectional(v.bidirectional)
    return encoder, sources


def train(
    cfg: dict[str, Any],
    dataset: str,
    backbone_name: str,
    out: Path,
    pairs: Path | None = None,
    *,
    recipe: str,
) -> str:
    if pairs is not None:
        raise MatchbenchError(f"recipe {recipe!r} takes no mined pairs file")
    blk = block(cfg)
    v = resolve(blk, variant_name(recipe, blk))
    tcfg, hcfg = blk["train"], blk["hard_negatives"]
    rt = start(cfg)
    gen, device = rt.generator, rt.device

    rows, captions_path = read_captions(cfg, dataset, tcfg["split"])
    rows = rows[rows[v.caption].fillna("").str.strip() != ""].reset_index(drop=True)
    bs = tcfg["batch_size"]
    if len(rows) < bs:
        raise MatchbenchError(
            f"tracks.compose.train.batch_size: {bs} exceeds the {len(rows)} images of split "
            f"{tcfg['split']!r} of {dataset} with a {v.caption!r} caption"
        )
    encoder, sources = build(cfg, blk, v, dataset, backbone_name)
    module = encoder.module
    module.to(device).train()
    frozen = freeze_text(encoder, tcfg["unfreeze_text"]) if v.text_tower == "pretrained" else []
    opt = torch.optim.AdamW(param_groups(module, tcfg["weight_decay"]), lr=v.lr)

    images = load_all(captions_path.parent, rows["path"].tolist(), encoder.image_size)
    texts = rows[v.caption].tolist()
    vocab = None
    if v.hard_negatives:
        corpus = [t for col in ("alt", "rich") for t in rows[col].fillna("") if t]
        vocab = Vocabulary.from_captions(corpus)
    sampling = v.sentences if v.caption == "rich" else None

    n = len(rows)
    spec = backbone_spec(cfg, backbone_name)
    record = {
        "recipe": recipe,
        "variant": v.__dict__,
        "dataset": dataset,
        "backbone": backbone_name,
        "backbone_spec": spec,
        "train": tcfg,
        "hard_negatives": hcfg if v.hard_negatives else None,
        "frozen": frozen,
        "n_images": n,
        "seed": cfg["seed"],
        "captions": str(captions_path),
        "captions_sha256": sha256_file(captions_path),
        **sources,
    }
    resume = Resume(
        out, identity(cfg, record, module), {"model": module, "opt": opt}, gen, CLIP_LOG_COLUMNS,
        what=f"finetune {recipe}",
    )  # fmt: skip
    progress = resume.restore()
    steps_per_epoch = n // bs  # full batches: the loss's negatives are the batch
    total = steps_per_epoch * v.epochs
    warmup = min(total, round(tcfg["warmup_epochs"] * steps_per_epoch))
    log_rows, step = progress.log_rows, progress.step
    seen, truncated = progress.values.get("seen", 0), progress.values.get("truncated", 0)
    bar = progress_bar(
        total=total, initial=step, desc=f"finetune {recipe} {backbone_name}", unit="step"
    )
    for epoch in range(progress.epoch + 1, v.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        losses, accs, hn_accs = [], [], []
        for b in range(steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            x = crop_flip(
                images[idx].to(device).float().div_(255), gen, tcfg["crop_scale"], tcfg["flip"]
            )
            x = normalise(x, encoder.mean, encoder.std)
            batch = [sample_sentences(texts[i], sampling, gen) for i in idx.tolist()]
            hard, owner = [], []
            if vocab is not None:
                for r, t in enumerate(batch):
                    negs = negatives(t, vocab, gen, hcfg["kinds"], hcfg["per_caption"])
                    hard += negs
                    owner += [r] * len(negs)
            tokens, cut = tokenize(encoder, batch + hard)
            truncated, seen = truncated + cut, seen + len(tokens)

            lr = lr_at(step, total, warmup, v.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            with rt.autocast():
                img = F.normalize(encoder.encode_image(x).float(), dim=1)
                txt = F.normalize(encoder.encode_text(tokens.to(device)).float(), dim=1)
            scale = module.logit_scale.exp()
            loss, logits = contrastive_loss(img, txt[:bs], scale, txt[bs:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                module.logit_scale.clamp_(0, LOGIT_SCALE_MAX)
                diag = torch.arange(bs, device=device)
                accs.append(float((logits[:, :bs].argmax(1) == diag).float().mean()))
                if owner:
                    o = torch.tensor(owner, device=device)
                    j = bs + torch.arange(len(o), device=device)
                    hn_accs.append(float((logits[o, o] > logits[o, j]).float().mean()))
            losses.append(loss.item())
            step += 1
            bar.update(1)
        log_rows.append(
            {
                "epoch": epoch,
                "step": step,
                "loss": round(float(np.mean(losses)), 6),
                "lr": round(lr, 10),
                "batch_acc": round(float(np.mean(accs)), 6),
                "hn_acc": round(float(np.mean(hn_accs)), 6) if hn_accs else "",
                "logit_scale": round(float(module.logit_scale.detach().exp()), 6),
            }
        )
        resume.save(Progress(epoch, step, log_rows, {"seen": seen, "truncated": truncated}))
        bar.set_postfix(
            loss=log_rows[-1]["loss"],
            acc=log_rows[-1]["batch_acc"],
            s=round(time.perf_counter() - t0, 1),
        )
    bar.close()
    warn_truncated(truncated, seen, encoder.context_length, "training texts")

    module.cpu().eval()
    save_state(
        module,
        out / "model.safetensors",
        metadata={
            "backbone": backbone_name,
            "arch": spec["arch"],
            "recipe": recipe,
            "text_attention": "bidirectional" if v.bidirectional else "causal",
        },
    )
    write_log(out / "train_log.csv", CLIP_LOG_COLUMNS, log_rows)
    write_json(out / "config.json", record)
    resume.finish()
    last = log_rows[-1]
    return f"loss {last['loss']:.4f}, in-batch accuracy {last['batch_acc']:.3f}"
