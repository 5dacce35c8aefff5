"""Recipe ``text-mlm``: the text tower pretrained alone as a masked language model (BERT-style).

The offline stand-in for "a pretrained language model as text tower" (arXiv 2412.15396): the
open_clip text transformer, with bidirectional attention (padding after the end-of-text token
masked, ``OpenClipEncoder.text_tokens``), learns to predict masked word tokens of the training
captions (``tracks.compose.mlm.captions``: alt and rich, rich ones sentence-sampled as
``train.sentences``). As BERT (Devlin et al., 2019): ``mask_prob`` of the word tokens are
chosen (at least one per text); 80% of them become a mask token, 10% a random corpus token, 10%
stay. The head is small: dense + GELU + LayerNorm, then a decoder tied to the token embedding,
restricted to the corpus's token ids (a few hundred, not open_clip's 49,408).

The mask token is an id of the tokenizer's vocabulary that the corpus never uses (the largest
below start-of-text), so the end-of-text token stays the argmax that open_clip pools. The whole
model is saved (its image tower as initialised), with ``text_attention: bidirectional``; the
``clip`` variants with ``text_tower: pretrained`` read its text tower.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from matchbench.config import backbone_spec
from matchbench.errors import MatchbenchError
from matchbench.io import sha256_file, write_json, write_log
from matchbench.models import OpenClipEncoder, create_backbone
from matchbench.models.backbones import save_state
from matchbench.progress import bar as progress_bar
from matchbench.runtime import start
from matchbench.tracks.compose.recipe import (
    lr_at,
    param_groups,
    read_captions,
    tokenize,
)
from matchbench.tracks.compose.text import sample_sentences, warn_truncated
from matchbench.tracks.compose.variants import MLM, MLM_LOG_COLUMNS, block, check_sampling
from matchbench.training import Progress, Resume, identity

IGNORE = -100


class MlmHead(nn.Module):
    """Dense + GELU + LayerNorm, then logits over ``vocab`` ids by the tied token embedding."""

    def __init__(self, width: int, vocab: torch.Tensor) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.register_buffer("vocab", vocab, persistent=False)
        self.bias = nn.Parameter(torch.zeros(len(vocab)))

    def forward(self, h: torch.Tensor, embedding: nn.Embedding) -> torch.Tensor:
        h = self.norm(F.gelu(self.dense(h)))
        return h @ embedding.weight[self.vocab].T + self.bias


def corpus_ids(encoder: OpenClipEncoder, texts: list[str], tokens: torch.Tensor) -> torch.Tensor:
    """Sorted word-token ids of the corpus (whole texts, beyond the context too when the
    tokenizer can say), without padding, start and end of text."""
    tok = getattr(encoder, "_tokenizer", None)
    if hasattr(tok, "encode"):
        ids = {i for t in texts for i in tok.encode(t)}
    else:
        ids = set(tokens.flatten().tolist())
    special = {0, int(tokens[0, 0]), int(tokens[0].max())}  # pad, start, end of text
    return torch.tensor(sorted(ids - special), dtype=torch.long)


def mask_tokens(
    tokens: torch.Tensor, vocab: torch.Tensor, mask_id: int, prob: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of word positions (between start and end of text): returns the inputs and
    the targets (the original id at chosen positions, :data:`IGNORE` elsewhere)."""
    n, length = tokens.shape
    pos = torch.arange(length)[None, :]
    words = (pos > 0) & (pos < tokens.argmax(-1, keepdim=True))
    u = torch.rand(n, length, generator=gen)
    chosen = words & (u < prob)
    # At least one per text with a word: its word of lowest draw.
    none = ~chosen.any(1) & words.any(1)
    first = torch.where(words, u, torch.full_like(u, 2.0)).argmin(1)
    chosen[none, first[none]] = True
    targets = torch.where(chosen, tokens, torch.full_like(tokens, IGNORE))
    how = torch.rand(n, length, generator=gen)
    rand_ids = vocab[torch.randint(len(vocab), (n, length), generator=gen)]
    inputs = torch.where(chosen & (how < 0.8), torch.full_like(tokens, mask_id), tokens)
    inputs = torch.where(chosen & (how >= 0.8) & (how < 0.9), rand_ids, inputs)
    return inputs, targets


def train(
    cfg: dict[str, Any], dataset: str, backbone_name: str, out: Path, pairs: Path | None = None
) -> str:
    if pairs is not None:
        raise MatchbenchError(f"recipe {MLM!r} takes no mined pairs file")
    blk = block(cfg)
    mcfg, tcfg = blk["mlm"], blk["train"]
    check_sampling(tcfg["sentences"])
    rt = start(cfg)
    gen, device = rt.generator, rt.device
    spec = backbone_spec(cfg, backbone_name)

    rows, captions_path = read_captions(cfg, dataset, tcfg["split"])
    corpus = [
        (t, src == "rich") for src in mcfg["captions"] for t in rows[src].fillna("") if t.strip()
    ]
    if not corpus:
        raise MatchbenchError(
            f"{captions_path}: no {' or '.join(mcfg['captions'])} captions in split "
            f"{tcfg['split']!r} (tracks.compose.mlm.captions)"
        )
    encoder = create_backbone(spec, name=backbone_name)
    if not isinstance(encoder, OpenClipEncoder) or not encoder.has_text:
        raise MatchbenchError(
            f"backbone {backbone_name!r} ({spec['source']} {spec['arch']}): text-mlm trains a "
            "text tower; use an open_clip backbone"
        )
    encoder.set_text_bidirectional(True)
    texts = [t for t, _ in corpus]
    all_tokens = encoder.tokenize(texts)
    vocab = corpus_ids(encoder, texts, all_tokens)
    sot = int(all_tokens[0, 0])
    mask_id = next(i for i in range(sot - 1, 0, -1) if i not in set(vocab.tolist()))
    lookup = torch.full((int(all_tokens.max()) + 1,), IGNORE, dtype=torch.long)
    lookup[vocab] = torch.arange(len(vocab))

    module = encoder.module
    module.visual.requires_grad_(False)
    module.logit_scale.requires_grad_(False)
    if module.text_projection is not None:
        module.text_projection.requires_grad_(False)
    head = MlmHead(module.transformer.width, vocab)
    module.to(device).train()
    head.to(device).train()
    params = param_groups(module, mcfg["weight_decay"])
    params += param_groups(head, mcfg["weight_decay"])
    opt = torch.optim.AdamW(params, lr=mcfg["lr"])

    n, bs = len(corpus), min(mcfg["batch_size"], len(corpus))
    record = {
        "recipe": MLM,
        "dataset": dataset,
        "backbone": backbone_name,
        "backbone_spec": spec,
        "mlm": mcfg,
        "sentences": tcfg["sentences"],
        "n_texts": n,
        "vocabulary": len(vocab),
        "mask_id": mask_id,
        "seed": cfg["seed"],
        "captions": str(captions_path),
        "captions_sha256": sha256_file(captions_path),
    }
    resume = Resume(
        out, identity(cfg, record, module), {"model": module, "head": head, "opt": opt}, gen,
        MLM_LOG_COLUMNS, what=f"finetune {MLM}",
    )  # fmt: skip
    progress = resume.restore()
    steps_per_epoch = -(-n // bs)
    total = steps_per_epoch * mcfg["epochs"]
    warmup = max(1, total // 10)
    log_rows, step = progress.log_rows, progress.step
    seen, truncated = progress.values.get("seen", 0), progress.values.get("truncated", 0)
    bar = progress_bar(
        total=total, initial=step, desc=f"finetune {MLM} {backbone_name}", unit="step"
    )
    for epoch in range(progress.epoch + 1, mcfg["epochs"] + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen).tolist()
        losses, hits, counted = [], 0, 0
        for s in range(0, n, bs):
            batch = [
                sample_sentences(corpus[i][0], tcfg["sentences"] if corpus[i][1] else None, gen)
                for i in order[s : s + bs]
            ]
            tokens, cut = tokenize(encoder, batch)
            truncated, seen = truncated + cut, seen + len(batch)
            inputs, targets = mask_tokens(tokens, vocab, mask_id, mcfg["mask_prob"], gen)
            keep = targets != IGNORE
            labels = lookup[targets[keep].clamp(max=len(lookup) - 1)]
            lr = lr_at(step, total, warmup, mcfg["lr"])
            for g in opt.param_groups:
                g["lr"] = lr
            with rt.autocast():
                h = encoder.text_tokens(inputs.to(device))[keep.to(device)]
                logits = head(h, module.token_embedding).float()
            loss = F.cross_entropy(logits, labels.to(device), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                ok = labels.to(device) != IGNORE
                hits += int((logits.argmax(1) == labels.to(device))[ok].sum())
                counted += int(ok.sum())
            losses.append(loss.item())
            step += 1
            bar.update(1)
        log_rows.append(
            {
                "epoch": epoch,
                "step": step,
                "loss": round(float(np.mean(losses)), 6),
                "lr": round(lr, 10),
                "mlm_acc": round(hits / counted, 6) if counted else "",
            }
        )
        resume.save(Progress(epoch, step, log_rows, {"seen": seen, "truncated": truncated}))
        bar.set_postfix(
            loss=log_rows[-1]["loss"],
            acc=log_rows[-1]["mlm_acc"],
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
            "recipe": MLM,
            "text_attention": "bidirectional",
        },
    )
    write_log(out / "train_log.csv", MLM_LOG_COLUMNS, log_rows)
    write_json(out / "config.json", record)
    resume.finish()
    last = log_rows[-1]
    return f"loss {last['loss']:.4f}, masked-token accuracy {last['mlm_acc']}"
