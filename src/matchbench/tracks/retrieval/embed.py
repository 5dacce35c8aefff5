"""The ``ilias-embed`` recipe: a backbone fine-tuned end to end as a universal instance embedding.

ILIAS's strongest adapted models are backbones trained for instance-level embedding on a
multi-domain set of instances (UnED, Ypsilantis et al., ICCV 2023: its baseline is a backbone
and an L2-normalised embedding trained as a normalised-softmax classifier of the training
instances). This recipe is that baseline on the training set of the linear adaptation
(``adaptation.dataset``: disjoint from the test instances; the mini-world's ``mini-uned``):
the backbone's global descriptor, L2-normalised, feeds a cosine classifier (the
``ilias-linear`` recipe's :class:`~matchbench.tracks.retrieval.adapt.CosineClassifier`:
logits ``scale * cos``, the target's lowered by ``margin``), and the whole backbone trains
with AdamW. The classifier is dropped: ``<backbone>+ilias-embed`` is extracted, searched,
adapted and evaluated like any model.

Writes ``model.safetensors`` (the backbone), ``train_log.csv`` and ``config.json``; per-epoch
checkpoints let an interrupted run resume (``matchbench.training``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from matchbench.config import backbone_spec
from matchbench.errors import MatchbenchError
from matchbench.images import load_all, read_index
from matchbench.io import sha256_file, write_json, write_log
from matchbench.layout import Layout
from matchbench.models.backbones import load_model, save_state
from matchbench.progress import bar as progress_bar
from matchbench.runtime import prepare_batch, start
from matchbench.tracks.retrieval.adapt import CosineClassifier, instance_labels
from matchbench.tracks.retrieval.methods import EMBED, EMBED_LOG_COLUMNS, block
from matchbench.training import Progress, Resume, identity


def train(
    cfg: dict[str, Any], dataset: str, backbone_name: str, out: Path, pairs: Path | None = None
) -> str:
    blk = block(cfg)
    tcfg = blk["train"]
    if dataset != blk["adaptation"]["dataset"]:
        raise MatchbenchError(
            f"--recipe {EMBED} trains on tracks.retrieval.adaptation.dataset "
            f"({blk['adaptation']['dataset']!r}), not on {dataset!r}"
        )
    rt = start(cfg)
    gen, device = rt.generator, rt.device
    layout = Layout.of(cfg)
    index_path = Path(layout.index(dataset))
    index = read_index(index_path)
    labels, names = instance_labels(index, index_path, EMBED)
    if len(index) < tcfg["batch_size"]:
        raise MatchbenchError(
            f"tracks.retrieval.train.batch_size: {tcfg['batch_size']} exceeds the "
            f"{len(index)} images of {index_path}"
        )

    backbone = load_model(cfg, backbone_name, dataset)
    backbone.module.to(device).train()
    head = CosineClassifier(backbone.dim, len(names), tcfg["scale"], tcfg["margin"]).to(device)
    opt = torch.optim.AdamW(
        [*backbone.module.parameters(), *head.parameters()],
        lr=tcfg["lr"],
        weight_decay=tcfg["weight_decay"],
    )
    images = load_all(Path(layout.dataset(dataset)), index["path"].tolist(), backbone.image_size)
    y = torch.from_numpy(labels)
    record = {
        "recipe": EMBED,
        "dataset": dataset,
        "backbone": backbone_name,
        "backbone_spec": backbone_spec(cfg, backbone_name),
        "train": tcfg,
        "seed": cfg["seed"],
        "images": len(index),
        "instances": len(names),
        "index": str(index_path),
        "index_sha256": sha256_file(index_path),
    }
    resume = Resume(
        out,
        identity(cfg, record, backbone.module),
        {"backbone": backbone.module, "head": head, "opt": opt},
        gen,
        EMBED_LOG_COLUMNS,
        what=f"finetune {EMBED}",
    )
    progress = resume.restore()
    n, bs = len(images), tcfg["batch_size"]
    steps_per_epoch = n // bs  # the last partial batch is dropped (BatchNorm wants full ones)
    log_rows, step = progress.log_rows, progress.step
    bar = progress_bar(
        total=steps_per_epoch * tcfg["epochs"],
        initial=step,
        desc=f"finetune {EMBED} {backbone_name}",
        unit="step",
    )
    for epoch in range(progress.epoch + 1, tcfg["epochs"] + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        losses, accs = [], []
        for b in range(steps_per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            x = prepare_batch(images[idx], backbone, device)
            target = y[idx].to(device)
            logits = head(F.normalize(backbone(x), dim=1), target)
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
            accs.append(float((logits.argmax(1) == target).float().mean()))
            bar.update(1)
        row = {
            "epoch": epoch,
            "step": step,
            "loss": round(float(np.mean(losses)), 6),
            "lr": tcfg["lr"],
            "batch_acc": round(float(np.mean(accs)), 6),
        }
        log_rows.append(row)
        resume.save(Progress(epoch, step, log_rows, {}))
        bar.set_postfix(
            loss=row["loss"], acc=row["batch_acc"], s=round(time.perf_counter() - t0, 1)
        )
    bar.close()

    backbone.module.eval()
    save_state(
        backbone.module,
        out / "model.safetensors",
        metadata={"backbone": backbone_name, "recipe": EMBED},
    )
    write_log(out / "train_log.csv", EMBED_LOG_COLUMNS, log_rows)
    write_json(out / "config.json", record)
    resume.finish()
    last = log_rows[-1]
    return (
        f"{n} images of {len(names)} instances, loss {last['loss']:.4f}, "
        f"batch acc {last['batch_acc']:.3f}"
    )
