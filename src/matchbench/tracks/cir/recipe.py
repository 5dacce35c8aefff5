"""Recipes of the cir track: the pseudo-word mappings and the composing adapters.

Every recipe trains on a frozen image-text model (the recipe's ``backbone``: an open_clip
backbone or a model another track trained) and reads its image features from the feature
store (``matchbench extract``), so images are encoded once for every method. docs/cir.md
gives the choices made where a paper leaves a detail out.

- ``cir-pic2word`` (Saito et al., CVPR 2023): the mapping turns an unlabeled image's feature
  ``v`` into a pseudo-word ``w``; "a photo of $" with ``w`` in place of ``$`` is encoded by the
  frozen text tower into ``t``; a symmetric InfoNCE between the ``v`` and ``t`` of a batch.
- ``cir-lincir`` (Gu et al., CVPR 2024), text only: a caption's text feature ``c``, with
  Gaussian noise (``lincir.noise``), is mapped to ``w``; the caption with its keyword spans
  replaced by ``$`` (:func:`mask_keywords`) is encoded with ``w`` into ``t``; the loss is
  ``1 - cos(t, c)``.
- ``cir-stage1``, the first stage of "From Mapping to Composing" (arXiv 2504.17990): the
  Pic2Word objective plus the soft text alignment (``two_stage.soft_alignment``): the
  pseudo-word prompt's feature is classified against the batch's caption features with soft
  targets, the softmax of caption-to-caption similarities at ``soft_temperature``.
- ``cir-stage2``: from stage 1's mapping (trained further unless ``two_stage.train_mapping``
  is false), composing adapters after the last text blocks and the visual semantic injection
  gain train on synthetic triplets (``triplets``): the composed query ``normalize(t + g v)`` of
  (reference, text) is contrasted with the batch's targets and, per triplet,
  ``two_stage.hard_negatives`` images mined from the triplets' own features (the reference and
  its nearest neighbours, never the target), then ``two_stage.target_negatives`` nearest the
  target.

AdamW with a cosine schedule; every random draw from the run's generator; a checkpoint per
epoch (``matchbench.training.Resume``). ``model.safetensors`` holds the :class:`Composer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from matchbench.config import backbone_spec
from matchbench.errors import MatchbenchError
from matchbench.features import read_features
from matchbench.images import read_index
from matchbench.io import sha256_file, write_json, write_log
from matchbench.layout import Layout
from matchbench.models import OpenClipEncoder
from matchbench.models.backbones import load_model
from matchbench.progress import bar as progress_bar
from matchbench.runtime import Runtime, start
from matchbench.tracks.cir.composer import (
    Composer,
    fill,
    mask_keywords,
    placeholder_id,
    prompt_tokens,
    trim,
)
from matchbench.tracks.cir.methods import (
    LINCIR,
    LINCIR_LOG_COLUMNS,
    MAPPING_LOG_COLUMNS,
    PIC2WORD,
    STAGE1,
    STAGE1_LOG_COLUMNS,
    STAGE2,
    STAGE2_LOG_COLUMNS,
    block,
    checkpoint,
)
from matchbench.tracks.cir.tables import QUERIES, read_queries
from matchbench.training import Progress, Resume, identity

TRAIN_PROMPT = "a photo of $"  # Pic2Word's training sentence


# --------------------------------------------------------------------------- inputs


def frozen_model(cfg: dict[str, Any], frozen: str, dataset: str, rt: Runtime) -> OpenClipEncoder:
    """The frozen image-text model, on the device, with no parameter to train."""
    encoder = load_model(cfg, frozen, dataset)
    if not isinstance(encoder, OpenClipEncoder) or not encoder.has_text:
        raise MatchbenchError(
            f"tracks.cir.models: {frozen!r} has no text tower; the cir methods compose text "
            "and images, so they need an image-text (open_clip) model"
        )
    encoder.module.to(rt.device).eval()
    for p in encoder.module.parameters():
        p.requires_grad_(False)
    return encoder


def store(
    cfg: dict[str, Any], dataset: str, frozen: str
) -> tuple[np.ndarray, dict[str, int], Path]:
    """A dataset's features by the frozen model: the matrix, row of each image id, folder."""
    folder = Path(Layout.of(cfg).features(dataset, frozen))
    if not (folder / "features.npy").is_file():
        raise MatchbenchError(
            f"{folder}: no features; run `matchbench extract --dataset {dataset} --model {frozen}`"
        )
    feats, ids, _ = read_features(folder)
    return feats, {x: i for i, x in enumerate(ids)}, folder


def train_images(
    cfg: dict[str, Any], dataset: str, frozen: str
) -> tuple[np.ndarray, list[str], Path]:
    """Features of the training dataset's ``train`` images (the unlabeled images)."""
    index_path = Layout.of(cfg).index(dataset)
    ids = read_index(index_path, split="train")["id"].tolist()
    feats, row, folder = store(cfg, dataset, frozen)
    missing = [i for i in ids if i not in row]
    if missing:
        raise MatchbenchError(
            f"{folder}: image {missing[0]!r} of {index_path} has no feature; extract again"
        )
    return feats[[row[i] for i in ids]], ids, folder


def captions_of(cfg: dict[str, Any], dataset: str) -> tuple[pd.DataFrame, Path]:
    path = Path(Layout.of(cfg).table(dataset, "captions"))
    if not path.is_file():
        raise MatchbenchError(
            f"{path}: not found; tracks.cir.train_dataset must be a dataset with captions "
            "(a compose family such as miniworld-vl or a COCO-captions corpus)"
        )
    df = pd.read_parquet(path)
    for col in ("image", "alt", "rich"):
        if col not in df.columns:
            raise MatchbenchError(f"{path}: missing column {col!r}")
    return df, path


@torch.no_grad()
def encode_plain(
    encoder: OpenClipEncoder, texts: list[str], rt: Runtime, bs: int = 256
) -> torch.Tensor:
    out = []
    for s in range(0, len(texts), bs):
        tokens = encoder.tokenize(texts[s : s + bs]).to(rt.device)
        out.append(F.normalize(encoder.encode_text(tokens).float(), dim=1))
    return torch.cat(out) if out else torch.zeros(0, encoder.dim, device=rt.device)


def lr_at(step: int, total: int, base: float) -> float:
    """Cosine decay from ``base`` to 0 over ``total`` steps."""
    return base * 0.5 * (1 + np.cos(np.pi * step / max(1, total)))


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE of matched rows of L2-normalised ``a`` and ``b``; the a-to-b accuracy."""
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    return loss, float((logits.argmax(1) == target).float().mean())


# --------------------------------------------------------------------------- the loop

Step = Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def run(
    cfg: dict[str, Any],
    recipe: str,
    frozen: str,
    out: Path,
    composer: Composer,
    record: dict[str, Any],
    n: int,
    opts: dict[str, Any],
    step_fn: Step,
    columns: tuple[str, ...],
    rt: Runtime,
) -> list[dict[str, Any]]:
    """Train ``composer``'s parameters that require grad with ``step_fn`` over ``n`` items."""
    bs, epochs = opts["batch_size"], opts["epochs"]
    if n < bs:
        raise MatchbenchError(
            f"{record['batch_size_key']}: {bs} exceeds the {n} training items of {recipe} "
            f"({record['dataset']})"
        )
    params = [p for p in composer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=opts["lr"], weight_decay=opts.get("weight_decay", 0.0))
    resume = Resume(
        out, identity(cfg, record, composer), {"model": composer, "opt": opt}, rt.generator,
        columns, what=f"finetune {recipe}",
    )  # fmt: skip
    progress = resume.restore()
    steps_per_epoch = n // bs
    total = steps_per_epoch * epochs
    log_rows, step = progress.log_rows, progress.step
    bar = progress_bar(total=total, initial=step, desc=f"finetune {recipe} {frozen}", unit="step")
    composer.train()
    for epoch in range(progress.epoch + 1, epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=rt.generator)
        losses: list[float] = []
        stats: dict[str, list[float]] = {}
        lr = opts["lr"]
        for b in range(steps_per_epoch):
            lr = lr_at(step, total, opts["lr"])
            for g in opt.param_groups:
                g["lr"] = lr
            loss, extra = step_fn(order[b * bs : (b + 1) * bs])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            for k, v in extra.items():
                stats.setdefault(k, []).append(v)
            step += 1
            bar.update(1)
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": round(float(np.mean(losses)), 6),
            "lr": round(float(lr), 10),
        }
        row |= {k: round(float(np.mean(v)), 6) for k, v in stats.items()}
        if composer.gain is not None:
            row["gain"] = round(float(composer.gain.detach()), 6)
        log_rows.append({c: row.get(c, "") for c in columns})
        resume.save(Progress(epoch, step, log_rows))
        bar.set_postfix(loss=row["loss"], s=round(time.perf_counter() - t0, 1))
    bar.close()
    composer.cpu().eval()
    composer.save(out / "model.safetensors", {"recipe": recipe, "model": frozen})
    write_log(out / "train_log.csv", columns, log_rows)
    write_json(out / "config.json", record)
    resume.finish()
    return log_rows


def _new_composer(blk: dict[str, Any], encoder: OpenClipEncoder, **kw: Any) -> Composer:
    m = blk["mapping"]
    return Composer(encoder.dim, encoder.text_width, m["hidden"], m["dropout"], **kw)


def _record(
    cfg: dict[str, Any], recipe: str, dataset: str, frozen: str, blk: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    return {
        "recipe": recipe,
        "dataset": dataset,
        "model": frozen,
        "model_spec": backbone_spec(cfg, frozen.partition("+")[0]),
        "mapping": blk["mapping"],
        "seed": cfg["seed"],
        "batch_size_key": "tracks.cir.mapping.batch_size",
        **kw,
    }


def _no_pairs(recipe: str, pairs: Path | None) -> None:
    if pairs is not None:
        raise MatchbenchError(f"recipe {recipe!r} takes no mined pairs file")


# --------------------------------------------------------------------------- the recipes


def _mapping_recipe(cfg: dict[str, Any], dataset: str, frozen: str, out: Path, recipe: str) -> str:
    """Pic2Word (and stage 1, with the soft text alignment)."""
    blk = block(cfg)
    m, ts = blk["mapping"], blk["two_stage"]
    soft = recipe == STAGE1 and ts["soft_alignment"] > 0
    rt = start(cfg)
    encoder = frozen_model(cfg, frozen, dataset, rt)
    feats, ids, folder = train_images(cfg, dataset, frozen)
    extra: dict[str, Any] = {}
    captions = None
    if soft:
        df, cap_path = captions_of(cfg, dataset)
        text = (
            df["rich"]
            .fillna("")
            .where(df["rich"].fillna("").str.strip() != "", df["alt"].fillna(""))
        )
        by_image: dict[str, str] = {}
        for image, caption in zip(df["image"], text, strict=True):
            if caption.strip():  # an image's first caption (its rich one where it has one)
                by_image.setdefault(image, caption)
        keep = [i for i, x in enumerate(ids) if by_image.get(x, "").strip()]
        if not keep:
            raise MatchbenchError(f"{cap_path}: no caption for any train image of {dataset}")
        feats, ids = feats[keep], [ids[i] for i in keep]
        captions = encode_plain(encoder, [by_image[x] for x in ids], rt)
        extra = {"captions": str(cap_path), "captions_sha256": sha256_file(cap_path)}
    v_all = torch.from_numpy(feats).to(rt.device)
    pid = placeholder_id(encoder)
    tokens, slots = prompt_tokens(encoder, [TRAIN_PROMPT], pid)
    tokens, slots = tokens.to(rt.device), slots.to(rt.device)
    composer = _new_composer(blk, encoder).to(rt.device)

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        v = v_all[idx]
        b = len(idx)
        t = composer.compose(encoder, v, tokens.expand(b, -1), slots.expand(b, -1))
        loss, acc = info_nce(v, t, m["temperature"])
        stats = {"batch_acc": acc}
        if captions is not None:
            c = captions[idx]
            target = F.softmax(c @ c.T / ts["soft_temperature"], dim=1)
            soft_loss = -(target * F.log_softmax(t @ c.T / m["temperature"], dim=1)).sum(1).mean()
            loss = loss + ts["soft_alignment"] * soft_loss
            stats["soft_loss"] = soft_loss.item()
        return loss, stats

    record = _record(
        cfg, recipe, dataset, frozen, blk,
        prompt=TRAIN_PROMPT, n_images=len(ids), features=str(folder),
        features_sha256=sha256_file(folder / "features.npy"),
        two_stage={k: ts[k] for k in ("soft_alignment", "soft_temperature")} if recipe == STAGE1 else None,
        **extra,
    )  # fmt: skip
    columns = STAGE1_LOG_COLUMNS if recipe == STAGE1 else MAPPING_LOG_COLUMNS
    rows = run(cfg, recipe, frozen, out, composer, record, len(ids), m, step, columns, rt)
    return f"loss {rows[-1]['loss']:.4f}, in-batch accuracy {rows[-1]['batch_acc']:.3f}"


def train_pic2word(
    cfg: dict[str, Any], dataset: str, backbone: str, out: Path, pairs: Path | None = None
) -> str:
    _no_pairs(PIC2WORD, pairs)
    return _mapping_recipe(cfg, dataset, backbone, Path(out), PIC2WORD)


def train_stage1(
    cfg: dict[str, Any], dataset: str, backbone: str, out: Path, pairs: Path | None = None
) -> str:
    _no_pairs(STAGE1, pairs)
    return _mapping_recipe(cfg, dataset, backbone, Path(out), STAGE1)


def train_lincir(
    cfg: dict[str, Any], dataset: str, backbone: str, out: Path, pairs: Path | None = None
) -> str:
    _no_pairs(LINCIR, pairs)
    blk = block(cfg)
    m, lc = blk["mapping"], blk["lincir"]
    rt = start(cfg)
    encoder = frozen_model(cfg, backbone, dataset, rt)
    df, cap_path = captions_of(cfg, dataset)
    texts: list[str] = []
    for col in lc["captions"]:
        for t in df[col].fillna(""):
            # A rich caption's sentences are texts of their own (each names a few things).
            texts += [s.strip() for s in t.split(".") if s.strip()] if col == "rich" else [t]
    texts = sorted({t for t in texts if t.strip()})
    if not texts:
        raise MatchbenchError(f"{cap_path}: no caption in columns {lc['captions']}")
    target = encode_plain(encoder, texts, rt)
    pid = placeholder_id(encoder)
    tokens, slots = prompt_tokens(encoder, [mask_keywords(t) for t in texts], pid)
    tokens, slots = tokens.to(rt.device), slots.to(rt.device)
    composer = _new_composer(blk, encoder).to(rt.device)
    dim = target.shape[1]

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        c = target[idx]
        scale = torch.rand(len(idx), 1, generator=rt.generator) * lc["noise"] / dim**0.5
        noise = torch.randn(c.shape, generator=rt.generator) * scale
        word = composer.mapping(c + noise.to(c.device))
        tok, slot = trim(tokens[idx], slots[idx])
        emb = encoder.token_embeddings(tok)
        emb = torch.where(slot[..., None], word[:, None, :].to(emb.dtype), emb)
        t = F.normalize(encoder.encode_text(tok, emb).float(), dim=1)
        cos = (t * c).sum(1)
        return (1 - cos).mean(), {"cosine": float(cos.mean())}

    record = _record(
        cfg, LINCIR, dataset, backbone, blk, lincir=lc, n_texts=len(texts),
        captions=str(cap_path), captions_sha256=sha256_file(cap_path),
    )  # fmt: skip
    rows = run(
        cfg,
        LINCIR,
        backbone,
        Path(out),
        composer,
        record,
        len(texts),
        m,
        step,
        LINCIR_LOG_COLUMNS,
        rt,
    )
    return f"loss {rows[-1]['loss']:.4f}, cosine {rows[-1]['cosine']:.3f}"


def mine_negatives(
    feats: np.ndarray, refs: np.ndarray, targets: np.ndarray, k: int, k_target: int = 0
) -> np.ndarray:
    """Per triplet, ``k + k_target`` row indices of ``feats``: the reference, then the images
    nearest to it (``k`` in all), then the ``k_target`` images nearest to the target that are
    not among those; never the triplet's target (ties by index)."""
    out = np.zeros((len(refs), k + k_target), dtype=np.int64)
    if k + k_target == 0:
        return out
    if k + k_target > len(feats) - 1:
        raise MatchbenchError(
            f"tracks.cir.two_stage.hard_negatives + target_negatives: {k} + {k_target}, but the "
            f"triplets have {len(feats)} images"
        )
    for s in range(0, len(refs), 1024):
        part = slice(s, s + 1024)
        rows = np.arange(len(refs[part]))
        if k:
            sim = feats[refs[part]] @ feats.T
            sim[rows, refs[part]] = np.inf  # the reference first
            sim[rows, targets[part]] = -np.inf  # never the target
            out[part, :k] = np.argsort(-sim, axis=1, kind="stable")[:, :k]
        if k_target:
            sim = feats[targets[part]] @ feats.T
            sim[rows, targets[part]] = -np.inf
            sim[rows[:, None], out[part, :k]] = -np.inf  # not twice
            out[part, k:] = np.argsort(-sim, axis=1, kind="stable")[:, :k_target]
    return out


def train_stage2(
    cfg: dict[str, Any], dataset: str, backbone: str, out: Path, pairs: Path | None = None
) -> str:
    _no_pairs(STAGE2, pairs)
    blk = block(cfg)
    ts, m = blk["two_stage"], blk["mapping"]
    rt = start(cfg)
    encoder = frozen_model(cfg, backbone, dataset, rt)
    qpath = Path(Layout.of(cfg).table(dataset, QUERIES))
    q = read_queries(qpath)
    q = q[q["split"] == "train"].reset_index(drop=True)
    q = q[[len(t) > 0 for t in q["targets"]]].reset_index(drop=True)
    if q.empty:
        raise MatchbenchError(f"{qpath}: no training triplet (split 'train' with a target)")
    feats, row, folder = store(cfg, dataset, backbone)
    for col, values in (("reference", q["reference"]), ("targets", [t[0] for t in q["targets"]])):
        missing = [x for x in values if x not in row]
        if missing:
            raise MatchbenchError(f"{qpath}: {col} image {missing[0]!r} has no feature in {folder}")
    refs = np.array([row[x] for x in q["reference"]])
    tgts = np.array([row[t[0]] for t in q["targets"]])
    negs = mine_negatives(feats, refs, tgts, ts["hard_negatives"], ts["target_negatives"])

    start_path = Path(checkpoint(cfg, STAGE1, backbone))
    stage1 = Composer.load(start_path)
    gain = ts["injection"] if ts["injection"] > 0 else None
    composer = _new_composer(
        blk,
        encoder,
        adapter_layers=ts["adapter_layers"],
        adapter_rank=ts["adapter_rank"],
        gain=gain,
    )
    composer.mapping.load_state_dict(stage1.mapping.state_dict())
    composer.mapping.requires_grad_(ts["train_mapping"])
    composer.to(rt.device)
    f_all = torch.from_numpy(feats).to(rt.device)
    pid = placeholder_id(encoder)
    tokens, slots = prompt_tokens(encoder, [fill(blk["prompt"], c) for c in q["caption"]], pid)
    tokens, slots = tokens.to(rt.device), slots.to(rt.device)
    r_t, t_t, n_t = (torch.from_numpy(a).to(rt.device) for a in (refs, tgts, negs))

    def step(idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if not ts["train_mapping"]:
            composer.mapping.eval()  # frozen: no dropout
        query = composer.compose(encoder, f_all[r_t[idx]], tokens[idx], slots[idx])
        rows = torch.cat([t_t[idx], n_t[idx].reshape(-1)])
        logits = query @ f_all[rows].T / m["temperature"]
        target = torch.arange(len(idx), device=logits.device)
        # Another triplet's target or negative may be this triplet's target: not a negative.
        same = rows[None, :] == t_t[idx][:, None]
        same[target, target] = False
        logits = logits.masked_fill(same, float("-inf"))
        acc = float((logits.argmax(1) == target).float().mean())
        return F.cross_entropy(logits, target), {"batch_acc": acc}

    record = _record(
        cfg, STAGE2, dataset, backbone, blk, two_stage=ts, prompt=blk["prompt"],
        n_triplets=len(q), triplets=str(qpath), triplets_sha256=sha256_file(qpath),
        features=str(folder), features_sha256=sha256_file(folder / "features.npy"),
        start=str(start_path), start_sha256=sha256_file(start_path),
        batch_size_key="tracks.cir.two_stage.batch_size",
    )  # fmt: skip
    rows = run(
        cfg, STAGE2, backbone, Path(out), composer, record, len(q), ts, step, STAGE2_LOG_COLUMNS, rt
    )
    return f"loss {rows[-1]['loss']:.4f}, in-batch accuracy {rows[-1]['batch_acc']:.3f}"
