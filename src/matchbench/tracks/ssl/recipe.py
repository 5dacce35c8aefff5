"""Recipe `ssl`: instance discrimination, optionally with mined semantic positive pairs.

SimCLR-style (Chen et al., 2020): two augmented views per image, a projection head, and an
InfoNCE loss over the batch; with ``queue > 0`` a MoCo-style (He et al., 2020) momentum key
encoder and a queue of negatives. With a pairs file (recipe `ssl-spp`, Alkhalefi et al., 2023),
an anchor's second view is, with probability ``positive_prob``, a view of one of its mined
positives instead of itself, and any two batch images mined as a pair count as positives of
each other (never as negatives): a multi-positive InfoNCE (Khosla et al., 2020, L_out).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from matchbench.config import backbone_spec
from matchbench.errors import MatchbenchError
from matchbench.images import load_all, normalise, read_index
from matchbench.io import sha256_file, write_json, write_log
from matchbench.layout import Layout
from matchbench.metrics import accuracy, knn_classify
from matchbench.models.backbones import load_model, save_state
from matchbench.progress import bar as progress_bar
from matchbench.runtime import embed, start
from matchbench.tracks.ssl import LOG_COLUMNS
from matchbench.tracks.ssl.augment import augment
from matchbench.training import Progress, Resume, identity


class ProjectionHead(nn.Module):
    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.BatchNorm1d(dim), nn.ReLU(inplace=True), nn.Linear(dim, out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def read_pairs(path: Path, known_ids: list[str]) -> list[list[int]]:
    """Mined positives per training image (indices into ``known_ids``)."""
    try:
        pairs = pd.read_parquet(path, columns=["anchor", "positive"])
    except (FileNotFoundError, OSError, ValueError, KeyError) as e:
        raise MatchbenchError(
            f"{path}: not a readable pairs file with columns anchor, positive ({e})"
        ) from None
    if pairs.empty:
        raise MatchbenchError(
            f"{path}: no mined pairs, so ssl-spp would train as plain ssl; lower "
            "tracks.ssl.mine.threshold or raise tracks.ssl.mine.k"
        )
    pos = {x: i for i, x in enumerate(known_ids)}
    unknown = sorted((set(pairs["anchor"]) | set(pairs["positive"])) - set(pos))
    if unknown:
        raise MatchbenchError(
            f"{path}: {len(unknown)} ids are not in the training split of the dataset "
            f"(first: {unknown[:3]}); were the pairs mined on another dataset or split?"
        )
    positives: list[list[int]] = [[] for _ in known_ids]
    for a, p in zip(pairs["anchor"].map(pos), pairs["positive"].map(pos), strict=True):
        positives[a].append(int(p))
        positives[p].append(int(a))  # a mined pair is symmetric
    return [sorted(set(p)) for p in positives]


def info_nce(z: torch.Tensor, pos_mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """Multi-positive InfoNCE over rows of ``z`` (L2-normalised), self excluded from the softmax."""
    n = z.shape[0]
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = pos_mask & ~self_mask
    return -(log_prob.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp(min=1)).mean()


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def _embed(backbone: Any, images: torch.Tensor, device: torch.device, bs: int = 256) -> np.ndarray:
    """Features of in-memory uint8 images through extract's embedding path, in eval mode."""
    backbone.module.eval()
    feats = embed(backbone, (images[s : s + bs] for s in range(0, len(images), bs)), device, None)
    backbone.module.train()
    return feats


def train(
    cfg: dict[str, Any], dataset: str, backbone_name: str, out: Path, pairs: Path | None = None
) -> str:
    track = cfg["tracks"]["ssl"]
    tcfg, ecfg = track["train"], track["evaluate"]
    rt = start(cfg)
    gen, device = rt.generator, rt.device
    spec = backbone_spec(cfg, backbone_name)

    layout = Layout.of(cfg)
    data_dir = Path(layout.dataset(dataset))
    index = read_index(Path(layout.index(dataset)))
    train_df = index[index["split"] == tcfg["split"]].reset_index(drop=True)
    if len(train_df) < tcfg["batch_size"]:
        raise MatchbenchError(
            f"tracks.ssl.train.batch_size: {tcfg['batch_size']} exceeds the {len(train_df)} images of split "
            f"{tcfg['split']!r} of {dataset}"
        )
    positives = read_pairs(pairs, train_df["id"].tolist()) if pairs else None
    # Every mined (anchor, positive) as one sorted int64 code, both directions: the batch's
    # positive mask is then one vectorised membership test per step.
    pair_codes = (
        np.unique([a * len(train_df) + p for a, ps in enumerate(positives) for p in ps]).astype(
            np.int64
        )
        if positives is not None
        else None
    )

    backbone = load_model(cfg, backbone_name, dataset)
    backbone.module.to(device).train()
    head = ProjectionHead(backbone.dim, tcfg["proj_dim"]).to(device)
    params = list(backbone.module.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])

    use_queue = tcfg["queue"] > 0
    if use_queue:
        key_backbone, key_head = copy.deepcopy(backbone), copy.deepcopy(head)
        for p in [*key_backbone.module.parameters(), *key_head.parameters()]:
            p.requires_grad_(False)
        queue = F.normalize(torch.randn(tcfg["queue"], tcfg["proj_dim"], generator=gen), dim=1).to(
            device
        )
        queue_ptr = 0

    images = load_all(data_dir, train_df["path"].tolist(), backbone.image_size)
    monitor = None
    if tcfg["eval_every"]:
        test_df = index[index["split"] == ecfg["test_split"]].reset_index(drop=True)
        if len(test_df):
            monitor = (
                load_all(data_dir, test_df["path"].tolist(), backbone.image_size),
                test_df["label"].to_numpy(),
            )
    train_labels = train_df["label"].to_numpy()

    recipe = "ssl-spp" if positives is not None else "ssl"
    record = {
        "recipe": recipe,
        "dataset": dataset,
        "backbone": backbone_name,
        "backbone_spec": spec,
        "train": tcfg,
        "seed": cfg["seed"],
        "pairs": str(pairs) if pairs else None,
        "pairs_sha256": sha256_file(pairs) if pairs else None,
    }
    objects: dict[str, Any] = {"backbone": backbone.module, "head": head, "opt": opt}
    tensors = {}
    if use_queue:
        objects |= {"key_backbone": key_backbone.module, "key_head": key_head}
        tensors["queue"] = queue
    resume = Resume(
        out,
        identity(cfg, {**record, "evaluate": ecfg}, backbone.module),
        objects,
        gen,
        LOG_COLUMNS,
        tensors,
        what=f"finetune {recipe}",
    )
    progress = resume.restore()
    if use_queue:
        queue_ptr = int(progress.values.get("queue_ptr", 0))

    n, bs = len(images), tcfg["batch_size"]
    steps_per_epoch = n // bs  # drop the last partial batch: InfoNCE wants full batches
    total = steps_per_epoch * tcfg["epochs"]
    warmup = steps_per_epoch * tcfg["warmup_epochs"]
    log_rows, step = progress.log_rows, progress.step
    bar = progress_bar(
        total=total, initial=step, desc=f"finetune {recipe} {backbone_name}", unit="step"
    )
    for epoch in range(progress.epoch + 1, tcfg["epochs"] + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            second = idx.clone()
            if positives is not None:
                draws = torch.rand(len(idx), generator=gen)
                for r, i in enumerate(idx.tolist()):
                    if positives[i] and draws[r] < tcfg["positive_prob"]:
                        c = int(torch.randint(len(positives[i]), (1,), generator=gen))
                        second[r] = positives[i][c]
            views = images[torch.cat([idx, second])].to(device).float() / 255
            x = normalise(augment(views, gen, tcfg), backbone.mean, backbone.std)

            lr = _lr_at(step, total, warmup, tcfg["lr"])
            for g in opt.param_groups:
                g["lr"] = lr
            if use_queue:
                q = F.normalize(head(backbone(x[:bs])), dim=1)
                with torch.no_grad():
                    m = tcfg["momentum"]
                    for pk, pq in zip(
                        [*key_backbone.module.parameters(), *key_head.parameters()],
                        params,
                        strict=True,
                    ):
                        pk.mul_(m).add_(pq.detach(), alpha=1 - m)
                    k = F.normalize(key_head(key_backbone(x[bs:])), dim=1)
                logits = (
                    torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], 1) / tcfg["temperature"]
                )
                loss = F.cross_entropy(logits, torch.zeros(bs, dtype=torch.long, device=device))
            else:
                z = F.normalize(head(backbone(x)), dim=1)
                ids2 = torch.cat([idx, idx])  # both views belong to the anchor
                pos_mask = ids2[:, None] == ids2[None, :]
                if pair_codes is not None:
                    ids = idx.numpy().astype(np.int64)
                    codes = ids[:, None] * len(train_df) + ids[None, :]
                    mined = torch.from_numpy(np.isin(codes, pair_codes))
                    pos_mask |= mined.repeat(2, 2)
                loss = info_nce(z, pos_mask.to(device), tcfg["temperature"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if use_queue:  # enqueue after backward: the loss read the queue as it was
                with torch.no_grad():
                    slots = torch.arange(queue_ptr, queue_ptr + bs) % queue.shape[0]
                    queue[slots.to(device)] = k
                    queue_ptr = int((queue_ptr + bs) % queue.shape[0])
            losses.append(loss.item())
            step += 1
            bar.update(1)
        row: dict[str, Any] = {
            "epoch": epoch,
            "step": step,
            "loss": round(float(np.mean(losses)), 6),
            "lr": round(lr, 8),
        }
        seconds = time.perf_counter() - t0
        if monitor is not None and (epoch % tcfg["eval_every"] == 0 or epoch == tcfg["epochs"]):
            train_f = _embed(backbone, images, device)
            test_f = _embed(backbone, monitor[0], device)
            pred = knn_classify(
                train_f, train_labels, test_f, k=ecfg["knn_k"], temperature=ecfg["knn_temperature"]
            )
            row["knn_acc"] = round(accuracy(pred, monitor[1]), 6)
        log_rows.append(row)
        resume.save(Progress(epoch, step, log_rows, {"queue_ptr": queue_ptr} if use_queue else {}))
        bar.set_postfix(loss=row["loss"], knn=row.get("knn_acc", "-"), s=round(seconds, 1))
    bar.close()

    backbone.module.eval()
    save_state(
        backbone.module,
        out / "model.safetensors",
        metadata={"backbone": backbone_name, "arch": spec["arch"]},
    )
    write_log(out / "train_log.csv", LOG_COLUMNS, log_rows)
    write_json(out / "config.json", record)
    resume.finish()
    last = log_rows[-1]
    return f"loss {last['loss']:.4f}" + (
        f", kNN acc {last['knn_acc']:.3f}" if "knn_acc" in last else ""
    )
