"""Can the compose track's image tower learn which shapes a scene holds, in the demo's budget?

SugarCrepe's replace-object, replace-relation and swap categories need the objects' shapes;
every compose probe (``compose_probes.py``) leaves them near chance. This script asks the
image tower alone, with the strongest signal there is: direct supervision. It writes the
mini-world's training scenes (``--options``: the ``miniworld-vl`` generator's options, as in a
config), and trains ``clip-mini``'s image tower (``--tower vit``: the config's 64 px ViT, or
``cnn``: timm's ``test_resnet`` inside open_clip, as the ``cnn`` probe) with a linear head on a
multi-label target: which shapes (and, as a control, which colours) the scene holds. 80% of
the scenes train, with the recipe's random resized crop, AdamW schedule and batch size; the
rest are scored: per-label accuracy, beside the all-absent guess.

    python benchmarks/compose_shapes.py --epochs 8 30 --tower vit cnn
    python benchmarks/compose_shapes.py --epochs 8 30 --tower vit cnn \
        --options '{"shapes": ["square", "triangle", "cross", "crescent"], "textures": ["solid"]}'

Accuracies, not timings; one thread, seed 0: a CPU rerun prints the same numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from matchbench.images import normalise
from matchbench.models import create_backbone
from matchbench.tracks.compose.recipe import crop_flip, lr_at
from matchbench.tracks.compose.synth import COLOURS, SHAPES, write_miniworld_vl

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "default.yaml"  # its backbones.clip-mini is the tower probed
CNN = {
    "timm_model_name": "test_resnet",
    "timm_pool": "avg",
    "timm_proj": "linear",
    "timm_model_pretrained": False,
}
OBJECT = re.compile(r"A (?:small|large) (\w+) \w+ (\w+) is")  # "A large red plain star is ..."


def scenes(root: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """uint8 images (N, 3, 64, 64) and 0/1 labels (N, shapes + colours) of the training scenes,
    read back from the files the generator writes (the rich descriptions name every object)."""
    coco = root / "coco"
    lines = (coco / "annotations" / "descriptions_train2017.jsonlines").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    colours = list(COLOURS)
    y = torch.zeros(len(records), len(SHAPES) + len(colours))
    images = []
    for i, r in enumerate(records):
        for colour, shape in OBJECT.findall(r["description"]):
            y[i, SHAPES.index(shape)] = 1
            y[i, len(SHAPES) + colours.index(colour)] = 1
        with Image.open(coco / "train2017" / r["image_file"]) as im:
            rgb = im.convert("RGB").resize((64, 64), Image.BICUBIC)
        images.append(torch.from_numpy(np.array(rgb)).permute(2, 0, 1))
    keep = y.sum(0) > 0  # labels of the names this world uses
    return torch.stack(images), y[:, keep], int(keep[: len(SHAPES)].sum())


def probe(images: torch.Tensor, y: torch.Tensor, n_shapes: int, tower: str, epochs: int) -> str:
    torch.manual_seed(0)
    spec = yaml.safe_load(DEMO.read_text())["backbones"]["clip-mini"]
    spec.setdefault("kwargs", {})
    if tower == "cnn":
        spec["kwargs"]["vision_cfg"] = CNN
    encoder = create_backbone(spec, name="clip-mini")
    visual = encoder.module.visual
    head = torch.nn.Linear(encoder.module.text_projection.shape[1], y.shape[1])
    n_train, bs, lr = int(0.8 * len(images)), 64, 1e-3
    params = [*visual.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    gen = torch.Generator().manual_seed(0)
    per_epoch = n_train // bs
    total, step, t0 = epochs * per_epoch, 0, time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(n_train, generator=gen)
        for b in range(per_epoch):
            idx = order[b * bs : (b + 1) * bs]
            x = crop_flip(images[idx].float() / 255, gen, (0.7, 1.0), False)
            logits = head(visual(normalise(x, encoder.mean, encoder.std)))
            loss = F.binary_cross_entropy_with_logits(logits, y[idx])
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, per_epoch, lr)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    visual.eval()
    with torch.no_grad():
        x = normalise(images[n_train:].float() / 255, encoder.mean, encoder.std)
        pred = (head(visual(x)) > 0).float()
    truth = y[n_train:]
    shape_acc = (pred[:, :n_shapes] == truth[:, :n_shapes]).float().mean()
    colour_acc = (pred[:, n_shapes:] == truth[:, n_shapes:]).float().mean()
    return (
        f"{tower} | {epochs} epochs ({step} steps, {time.perf_counter() - t0:.0f} s) | shapes "
        f"{100 * shape_acc:.1f} (all-absent {100 * (1 - truth[:, :n_shapes].mean()):.1f}) | "
        f"colours {100 * colour_acc:.1f} (all-absent {100 * (1 - truth[:, n_shapes:].mean()):.1f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=1000, help="training scenes (the demo's 1,000)")
    ap.add_argument("--options", default="{}", help="generator options, a JSON object")
    ap.add_argument("--epochs", type=int, nargs="+", default=[8, 30])
    ap.add_argument("--tower", nargs="+", choices=["vit", "cnn"], default=["vit", "cnn"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    none = {"sugarcrepe": 0, "aro": 0, "docci_train": 0, "docci_test": 0}
    options = json.loads(args.options)
    with tempfile.TemporaryDirectory() as tmp:
        write_miniworld_vl(
            tmp,
            seed=0,
            progress=False,
            **{**options, "scenes": {"train": args.scenes, **none}},
        )
        images, y, n_shapes = scenes(Path(tmp))
    print(f"{len(images)} scenes, options {options}")
    for tower in args.tower:
        for epochs in args.epochs:
            print(probe(images, y, n_shapes, tower, epochs), flush=True)


if __name__ == "__main__":
    main()
