"""Recipe `correspondence`: the unified benchmark's strong baseline for semantic correspondence.

Fine-tune the last ``unfreeze`` blocks of a backbone (with its final norm: timm ViT ``blocks``,
open_clip ``resblocks``, or the ``stages`` of a timm ConvNet) on the keypoint pairs of a
dataset's train split with the Gaussian-smoothed cross-entropy of
:mod:`matchbench.tracks.correspondence.loss` (``Visual-AI/Semantic-Correspondence``, ``train.py`` and
``src/loss.py``). As there, images are resized to a square ``resolution``² without a crop,
AdamW updates the unfrozen blocks only, and the learning rate is constant within an epoch and
halved after the first and the second (``MultiStepLR(milestones=[1, 2], gamma=0.5)``). Unlike
there, no checkpoint is selected on validation PCK: the last step is the model.

The whole backbone is saved, at its native input size, so ``<backbone>+correspondence`` loads
like any model; its frozen tensors are bit-identical to the weights it started from. Every
random draw (pair order, keypoint subsets, flips) comes from the one seeded generator, so a
CPU rerun writes the same bytes; on a GPU the forward pass runs under the autocast of
``extract.precision``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from matchbench.config import backbone_spec
from matchbench.errors import MatchbenchError
from matchbench.images import read_index
from matchbench.io import sha256_file, write_json, write_log
from matchbench.layout import Layout
from matchbench.models import create_backbone
from matchbench.models.backbones import load_model, save_state
from matchbench.progress import bar as progress_bar
from matchbench.runtime import loader_workers, prepare_batch, start
from matchbench.tracks.correspondence import LOG_COLUMNS
from matchbench.tracks.correspondence.dense import config_keys, load_square, to_grid
from matchbench.tracks.correspondence.loss import choose_keypoints, correspondence_loss
from matchbench.tracks.correspondence.pairs import keypoints, read_pairs_table
from matchbench.training import Progress, Resume, identity

MONITOR_ALPHA = 0.1  # train_pck: PCK@0.1 of the argmax over each step's batch, before its update


def freeze_all_but(module: nn.Module, trainable: list[tuple[str, nn.Module]]) -> list[nn.Parameter]:
    """Freeze ``module`` except ``trainable``; frozen parts in eval mode (no BatchNorm drift)."""
    module.requires_grad_(False).eval()
    params: list[nn.Parameter] = []
    for _, sub in trainable:
        sub.requires_grad_(True).train()
        params += list(sub.parameters())
    return params


def hflip(image: torch.Tensor, xy: torch.Tensor, width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror an image (..., H, W) and its keypoints (K, 2) of an original frame ``width`` wide.

    Pixel x covers [x, x + 1), so the mirror of a point x is ``width - x``; the image may be
    the square-resized one, since the resize scales x by the same factor either way.
    """
    flipped = xy.clone()
    flipped[..., 0] = width - xy[..., 0]
    return image.flip(-1), flipped


class _PairImages(Dataset):
    """Both images of a pair, square-resized uint8 (3, R, R), and their original (w, h)."""

    def __init__(self, root: Path, src: list[str], trg: list[str], resolution: int) -> None:
        self.root, self.src, self.trg, self.resolution = root, src, trg, resolution

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, s_wh = load_square(self.root / self.src[i], self.resolution)
        t, t_wh = load_square(self.root / self.trg[i], self.resolution)
        return s, t, torch.tensor([*s_wh, *t_wh], dtype=torch.float64)


def _collate(items: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.stack(col) for col in zip(*items, strict=True))


def _read_pairs(data_dir: Path, dataset: str, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = data_dir / "pairs.parquet"
    if not path.is_file():
        raise MatchbenchError(
            f"{path}: dataset {dataset!r} has no pair table; the correspondence recipe trains on "
            "a correspondence dataset (spair71k, pfpascal, ap10k, miniworld-spair) after prepare"
        )
    try:
        table = read_pairs_table(path, split)
    except MatchbenchError as e:
        if "no pairs in split" in str(e):
            raise MatchbenchError(
                f"{e}; tracks.correspondence.train.split names the split to train on"
            ) from None
        raise
    index = read_index(data_dir / "images.parquet")
    unknown = sorted((set(table["src"]) | set(table["trg"])) - set(index["id"]))
    if unknown:
        raise MatchbenchError(
            f"{path}: {len(unknown)} image ids are not in images.parquet (first: {unknown[:3]})"
        )
    return table, index


def _lr(base: float, epoch: int) -> float:
    """The official schedule: ``MultiStepLR(milestones=[1, 2], gamma=0.5)``, epochs from 1."""
    return base * 0.5 ** min(epoch - 1, 2)


def _batch_keypoints(
    kps: list[tuple[np.ndarray, np.ndarray]], rows: list[int], max_kp: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Padded (B, K, 2) source and target keypoints (original frame) and a (B, K) valid mask."""
    chosen = [choose_keypoints(len(kps[r][0]), max_kp, gen) for r in rows]
    k = max(1, max(len(c) for c in chosen))
    src = torch.zeros(len(rows), k, 2, dtype=torch.float64)
    trg = torch.zeros_like(src)
    valid = torch.zeros(len(rows), k, dtype=torch.bool)
    for b, (r, c) in enumerate(zip(rows, chosen, strict=True)):
        src[b, : len(c)] = torch.from_numpy(kps[r][0][c.numpy()])
        trg[b, : len(c)] = torch.from_numpy(kps[r][1][c.numpy()])
        valid[b, : len(c)] = True
    return src, trg, valid


def _to_grid(xy: torch.Tensor, wh: torch.Tensor, grid_wh: tuple[int, int]) -> torch.Tensor:
    """Original-frame keypoints (B, K, 2) of images of sizes (B, 2) → grid coordinates."""
    out = [to_grid(xy[b].numpy(), tuple(wh[b].tolist()), grid_wh) for b in range(len(xy))]
    return torch.from_numpy(np.stack(out)).float()


def _hits(
    logits: torch.Tensor,
    trg_uv: torch.Tensor,
    keep: torch.Tensor,
    trg_wh: torch.Tensor,
    t: torch.Tensor,
) -> tuple[int, int]:
    """Correct argmax transfers at PCK@MONITOR_ALPHA (target-frame pixels) and their count."""
    b, k, h, w = logits.shape
    best = logits.detach().flatten(2).argmax(-1).cpu()
    pred = torch.stack([best % w, best // w], -1).double()
    scale = trg_wh.double()[:, None, :] / torch.tensor([w, h], dtype=torch.float64)
    err = ((pred - trg_uv.double()) * scale).norm(dim=-1)
    ok = (err <= MONITOR_ALPHA * t[:, None]) & keep.cpu()
    return int(ok.sum()), int(keep.sum())


def _native_state(
    spec: dict[str, Any], trained: nn.Module, trainable: list[tuple[str, nn.Module]], start: dict
) -> nn.Module:
    """The backbone at its native input size: ``start`` with the trained blocks' tensors.

    set_resolution may have resampled the (frozen) position embeddings to the training size; the
    saved model keeps the native ones, so it loads with ``create_backbone`` like its base.
    """
    prefixes = tuple(f"{p}." for p, _ in trainable)
    state = dict(start)
    for key, value in trained.state_dict().items():
        if key.startswith(prefixes):
            state[key] = value.detach().cpu()
    fresh = create_backbone(spec).module
    fresh.load_state_dict(state, strict=True)
    return fresh.eval()


def train(
    cfg: dict[str, Any], dataset: str, backbone_name: str, out: Path, pairs: Path | None = None
) -> str:
    if pairs is not None:
        raise MatchbenchError("the correspondence recipe takes no mined pairs file")
    track = cfg["tracks"].get("correspondence")
    if track is None:
        raise MatchbenchError(
            "the correspondence recipe reads tracks.correspondence.train, which the config lacks"
        )
    tcfg, fcfg = track["train"], track["features"]
    resolution = tcfg["resolution"] or fcfg["resolution"]
    rt = start(cfg)
    gen, device, dtype = rt.generator, rt.device, rt.dtype
    spec = backbone_spec(cfg, backbone_name)

    data_dir = Path(Layout.of(cfg).dataset(dataset))
    table, index = _read_pairs(data_dir, dataset, tcfg["split"])
    path_of = dict(zip(index["id"], index["path"], strict=True))
    kps = [keypoints(row) for _, row in table.iterrows()]
    thresholds = torch.tensor(table["threshold"].to_numpy(), dtype=torch.float64)
    images = _PairImages(
        data_dir, table["src"].map(path_of).tolist(), table["trg"].map(path_of).tolist(), resolution
    )

    backbone = load_model(cfg, backbone_name, dataset)
    initial = {k: v.detach().clone() for k, v in backbone.module.state_dict().items()}
    with config_keys():
        backbone.set_resolution(resolution)
        trainable = backbone.trainable_blocks(tcfg["unfreeze"], fcfg["layer"])
    params = freeze_all_but(backbone.module, trainable)
    backbone.module.to(device)
    opt = torch.optim.AdamW(params, lr=tcfg["lr"], weight_decay=tcfg["weight_decay"])
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    n, bs = len(table), tcfg["batch_size"]
    pairs_file = data_dir / "pairs.parquet"
    record = {
        "recipe": "correspondence",
        "dataset": dataset,
        "backbone": backbone_name,
        "backbone_spec": spec,
        "train": tcfg,
        "features": fcfg,
        "resolution": resolution,
        "trainable": [p for p, _ in trainable],
        "n_pairs": n,
        "seed": cfg["seed"],
        "pairs": str(pairs_file),
        "pairs_sha256": sha256_file(pairs_file),
    }
    resume = Resume(
        out,
        identity(cfg, record, backbone.module),
        {"backbone": backbone.module, "opt": opt, "scaler": scaler},
        gen,
        LOG_COLUMNS,
        what="finetune correspondence",
    )
    progress = resume.restore()
    steps_per_epoch = -(-n // bs)  # the last batch may be short: the loss needs no full batch
    log_rows, step = progress.log_rows, progress.step
    bar = progress_bar(
        total=steps_per_epoch * tcfg["epochs"],
        initial=step,
        desc=f"finetune correspondence {backbone_name}",
        unit="step",
    )
    for epoch in range(progress.epoch + 1, tcfg["epochs"] + 1):
        t0 = time.perf_counter()
        lr = _lr(tcfg["lr"], epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        order = torch.randperm(n, generator=gen).tolist()
        batches = [order[s : s + bs] for s in range(0, n, bs)]
        loader = DataLoader(
            images,
            batch_sampler=batches,
            num_workers=loader_workers(cfg),
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
        )
        losses, hits, counted = [], 0, 0
        for rows, (src_img, trg_img, sizes) in zip(batches, loader, strict=True):
            # Every random draw of the step comes from `gen` in the main process, in one order,
            # so the run does not depend on DataLoader workers.
            src_xy, trg_xy, valid = _batch_keypoints(kps, rows, tcfg["max_keypoints"], gen)
            if tcfg["flip"]:
                for b in torch.nonzero(torch.rand(len(rows), generator=gen) < 0.5).flatten():
                    src_img[b], src_xy[b] = hflip(src_img[b], src_xy[b], float(sizes[b, 0]))
                    trg_img[b], trg_xy[b] = hflip(trg_img[b], trg_xy[b], float(sizes[b, 2]))
            x = prepare_batch(torch.cat([src_img, trg_img]), backbone, device)
            with rt.autocast():
                maps = backbone.dense(x, layer=fcfg["layer"])
            h, w = maps.shape[-2:]
            src_uv = _to_grid(src_xy, sizes[:, :2], (w, h))
            trg_uv = _to_grid(trg_xy, sizes[:, 2:], (w, h))
            out_ = correspondence_loss(
                maps[: len(rows)],
                maps[len(rows) :],
                src_uv.to(device),
                trg_uv.to(device),
                valid.to(device),
                temperature=tcfg["temperature"],
                sigma=tcfg["sigma"],
            )
            opt.zero_grad(set_to_none=True)
            scaler.scale(out_.value).backward()
            scaler.step(opt)
            scaler.update()
            h_, c_ = _hits(out_.logits, trg_uv, out_.keep, sizes[:, 2:], thresholds[rows])
            hits, counted = hits + h_, counted + c_
            losses.append(out_.value.item())
            step += 1
            bar.update(1)
        log_rows.append(
            {
                "epoch": epoch,
                "step": step,
                "loss": round(float(np.mean(losses)), 6),
                "lr": round(lr, 10),
                "train_pck": round(hits / counted, 6) if counted else "",
                "keypoints": counted,
            }
        )
        resume.save(Progress(epoch, step, log_rows))
        bar.set_postfix(
            loss=log_rows[-1]["loss"],
            train_pck=log_rows[-1]["train_pck"],
            s=round(time.perf_counter() - t0, 1),
        )
    bar.close()

    backbone.module.cpu()
    model = _native_state(spec, backbone.module, trainable, initial)
    save_state(
        model, out / "model.safetensors", metadata={"backbone": backbone_name, "arch": spec["arch"]}
    )
    write_log(out / "train_log.csv", LOG_COLUMNS, log_rows)
    write_json(out / "config.json", record)
    resume.finish()
    last = log_rows[-1]
    return f"loss {last['loss']:.4f}, train PCK@{MONITOR_ALPHA} {last['train_pck']}"
