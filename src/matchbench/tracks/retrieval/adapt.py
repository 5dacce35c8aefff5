"""The ``ilias-linear`` recipe: ILIAS's linear adaptation of stored global descriptors.

As ``ilias-vrg/ilias`` ``linear_adaptation/``: one ``nn.Linear(d, dim)`` followed by L2
normalisation, trained as a cosine classifier (normalised class weights, logits ``scale *
cos``, an additive ``margin`` on the target's, 16 and 0 by default) over the instances of a
multi-domain training set disjoint from the test instances (UnED there; the mini-world's
``miniworld-uned`` here), with Adam (lr 1e-3, weight decay 1e-6) and batches of 128. It trains
on the training set's descriptors in the feature store (``extract`` of that dataset by the
same model), so it costs seconds, not an extraction: the retrieve stage applies the layer to
the stored query and database descriptors.

Writes ``model.safetensors`` (``weight`` (dim, d), ``bias`` (dim,); the classifier is dropped),
``train_log.csv`` and ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from matchbench.errors import MatchbenchError
from matchbench.features import read_features
from matchbench.images import read_index
from matchbench.io import sha256_file, write_json, write_log
from matchbench.layout import Layout
from matchbench.models.backbones import save_state
from matchbench.progress import bar as progress_bar
from matchbench.runtime import start
from matchbench.tracks.retrieval.methods import LINEAR, LINEAR_LOG_COLUMNS, block


class CosineClassifier(nn.Module):
    """Logits ``scale * cos(x, w_c)``, the target's lowered by ``margin`` (CosFace) in training."""

    def __init__(self, dim: int, classes: int, scale: float, margin: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        nn.init.normal_(self.weight, std=dim**-0.5)
        self.scale, self.margin = scale, margin

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        cos = F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).T
        if target is not None and self.margin:
            cos = cos - self.margin * F.one_hot(target, cos.shape[1]).to(cos.dtype)
        return self.scale * cos


def training_set(
    cfg: dict[str, Any], dataset: str, model: str
) -> tuple[np.ndarray, np.ndarray, Path]:
    """The training set's descriptors by ``model`` and their instance labels (0..C-1)."""
    layout = Layout.of(cfg)
    index_path = Path(layout.index(dataset))
    index = read_index(index_path)
    y, _ = instance_labels(index, index_path, LINEAR)
    folder = Path(layout.features(dataset, model))
    feats, ids, _ = read_features(folder)
    row = {x: i for i, x in enumerate(ids)}
    missing = [i for i in index["id"] if i not in row]
    if missing:
        raise MatchbenchError(
            f"{folder}: image {missing[0]!r} of {index_path} has no feature; extract again"
        )
    x = feats[[row[i] for i in index["id"]]]
    return x, y, index_path


def instance_labels(
    index: pd.DataFrame, index_path: Path, recipe: str
) -> tuple[np.ndarray, list[str]]:
    """Each image's instance as a label 0..C-1, and the instances' names (sorted): the
    classes of the cosine classifiers of ``ilias-linear`` and ``ilias-embed``."""
    # The classes are the instances; an ImageFolder of instances (UnED) has them as `class`.
    column = "instance" if (index["instance"].astype(str) != "").all() else "class"
    names_of = index[column].astype(str)
    if (names_of == "").any():
        raise MatchbenchError(
            f"{index_path}: every image needs an `instance` (or a `class`) to train "
            f"--recipe {recipe}"
        )
    names = sorted(set(names_of))
    if len(names) < 2:
        raise MatchbenchError(
            f"{index_path}: --recipe {recipe} needs at least 2 instances, got {len(names)}"
        )
    label = {n: i for i, n in enumerate(names)}
    return np.array([label[n] for n in names_of], dtype=np.int64), names


def train(
    cfg: dict[str, Any], dataset: str, backbone: str, out: Path, pairs: Path | None = None
) -> str:
    if pairs is not None:
        raise MatchbenchError(f"--recipe {LINEAR} takes no --pairs")
    a = block(cfg)["adaptation"]
    rt = start(cfg)
    x_np, y_np, index_path = training_set(cfg, dataset, backbone)
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    layer = nn.Linear(x.shape[1], a["dim"])
    head = CosineClassifier(a["dim"], int(y.max()) + 1, a["scale"], a["margin"])
    opt = torch.optim.Adam(
        [*layer.parameters(), *head.parameters()], lr=a["lr"], weight_decay=a["weight_decay"]
    )
    rows: list[dict[str, Any]] = []
    step = 0
    bar = progress_bar(total=a["epochs"], desc=f"{LINEAR} {backbone}", unit="epoch")
    for epoch in range(1, a["epochs"] + 1):
        order = torch.randperm(len(x), generator=rt.generator)
        losses, accs = [], []
        for s in range(0, len(x), a["batch_size"]):
            idx = order[s : s + a["batch_size"]]
            logits = head(F.normalize(layer(x[idx]), dim=1), y[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss))
            accs.append(float((logits.argmax(1) == y[idx]).float().mean()))
        rows.append(
            {"epoch": epoch, "step": step, "loss": round(float(np.mean(losses)), 6),
             "lr": a["lr"], "batch_acc": round(float(np.mean(accs)), 6)}
        )  # fmt: skip
        bar.update(1)
    bar.close()
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "recipe": LINEAR, "dataset": dataset, "backbone": backbone, "adaptation": a,
        "seed": cfg["seed"], "images": len(x), "instances": int(y.max()) + 1,
        "index": str(index_path), "index_sha256": sha256_file(index_path),
    }  # fmt: skip
    write_json(out / "config.json", record)
    write_log(out / "train_log.csv", LINEAR_LOG_COLUMNS, rows)
    save_state(layer, out / "model.safetensors", {"recipe": LINEAR, "model": backbone})
    return f"{len(x)} images of {int(y.max()) + 1} instances, loss {rows[-1]['loss']:.4f}, batch acc {rows[-1]['batch_acc']:.3f}"
