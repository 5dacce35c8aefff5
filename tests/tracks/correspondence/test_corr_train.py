"""The correspondence recipe: its loss, which blocks it trains, its determinism, its flips and
its errors. The recipe runs for real (a few steps of a tiny ViT on a tiny generated dataset in
SPair-71k's layout, prepared by the real family)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_config
from PIL import Image
from safetensors.torch import load_file

from matchbench.cli import main
from matchbench.config import load_config
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.models import create_backbone
from matchbench.models.backbones import save_state
from matchbench.tracks import get_recipe
from matchbench.tracks.correspondence.dense import load_square, to_grid
from matchbench.tracks.correspondence.loss import (
    choose_keypoints,
    correspondence_loss,
    gaussian_cross_entropy,
    gaussian_log_target,
    inside,
    sample_points,
)
from matchbench.tracks.correspondence.recipe import hflip, train

# --------------------------------------------------------------------------- the loss


def _uv(*points: tuple[float, float]) -> torch.Tensor:
    return torch.tensor([points], dtype=torch.float32)  # (1, K, 2)


def test_the_target_is_a_normalised_gaussian_at_the_true_location() -> None:
    uv = _uv((8.3, 7.6), (0.0, 0.0))
    p = gaussian_log_target(uv, (15, 17), 1.5).exp()
    assert p.shape == (1, 2, 15, 17)
    assert torch.allclose(p.sum((2, 3)), torch.ones(1, 2))
    ys, xs = torch.meshgrid(torch.arange(15.0), torch.arange(17.0), indexing="ij")
    centre = torch.stack([(p[0, 0] * xs).sum(), (p[0, 0] * ys).sum()])
    assert torch.allclose(centre, uv[0, 0], atol=1e-3)  # far from the border: unbiased
    # At a corner the mass stays on the grid: the target renormalises instead of losing taps.
    assert p[0, 1, 0, 0] == p[0, 1].max()


def test_logits_equal_to_the_log_target_minimise_the_loss_with_zero_gradient() -> None:
    uv = _uv((3.2, 4.7), (7.0, 1.0), (0.4, 8.4))
    log_q = gaussian_log_target(uv, (9, 9), 1.5)
    logits = log_q.clone().requires_grad_(True)
    loss = gaussian_cross_entropy(logits, uv, sigma=1.5)
    loss.backward()
    entropy = -(log_q.exp() * log_q).sum((2, 3)).mean()
    assert torch.allclose(loss, entropy, atol=1e-5)
    assert logits.grad.abs().max() < 1e-6
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):  # any other prediction costs more
        other = log_q + 0.5 * torch.randn(log_q.shape, generator=gen)
        assert gaussian_cross_entropy(other, uv, sigma=1.5) > loss + 1e-4
    # Adding a constant to the logits changes nothing (softmax).
    assert torch.allclose(gaussian_cross_entropy(log_q + 3.0, uv, sigma=1.5), loss, atol=1e-5)


def test_the_loss_falls_as_the_predicted_peak_moves_to_the_true_location() -> None:
    truth = _uv((6.0, 5.0))
    ys, xs = torch.meshgrid(torch.arange(12.0), torch.arange(12.0), indexing="ij")
    losses = []
    for px in (0.0, 2.0, 4.0, 5.0, 6.0):
        peak = -((xs - px) ** 2 + (ys - 5.0) ** 2) / 2.0
        losses.append(float(gaussian_cross_entropy(peak[None, None] / 0.3, truth)))
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False)), losses


def test_points_off_the_grid_or_masked_do_not_count() -> None:
    gen = torch.Generator().manual_seed(1)
    src, trg = torch.randn(2, 8, 6, 6, generator=gen), torch.randn(2, 8, 6, 6, generator=gen)
    src_uv = torch.tensor(
        [[[1.0, 2.0], [3.5, 4.0], [0.0, 0.0]], [[2.0, 2.0], [4.0, 1.0], [5.0, 5.0]]]
    )
    trg_uv = torch.tensor(
        [[[2.0, 1.0], [1.0, 3.0], [5.0, 0.0]], [[3.0, 3.0], [0.0, 5.0], [1.0, 1.0]]]
    )
    valid = torch.tensor([[True, True, False], [True, True, True]])
    base = correspondence_loss(src, trg, src_uv, trg_uv, valid)
    assert base.keep.tolist() == valid.tolist()
    # The padded point's coordinates are irrelevant.
    moved = src_uv.clone()
    moved[0, 2] = torch.tensor([4.0, 4.0])
    assert torch.equal(correspondence_loss(src, trg, moved, trg_uv, valid).value, base.value)
    # A point off the target grid, or off the source grid, is dropped like a masked one.
    for which in ("src", "trg"):
        s, t = src_uv.clone(), trg_uv.clone()
        (s if which == "src" else t)[1, 2] = torch.tensor([6.0, 2.0])  # past w - 0.5 = 5.5
        off = correspondence_loss(src, trg, s, t)
        assert off.keep[1].tolist() == [True, True, False]
        masked = correspondence_loss(
            src, trg, src_uv, trg_uv, torch.tensor([[1, 1, 1], [1, 1, 0]]).bool()
        )
        assert torch.allclose(off.value, masked.value)
    # The grid's edges are on it: cell centres at integers, edges at -0.5 and w - 0.5.
    assert inside(torch.tensor([[-0.5, 5.5], [-0.51, 0.0]]), (6, 6)).tolist() == [True, False]


def test_the_loss_is_the_mean_over_pairs_of_each_pairs_mean_over_points() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 5, 5, generator=gen)
    uv = torch.tensor([[[1.0, 1.0], [2.0, 3.0], [4.0, 0.0]], [[0.0, 2.0], [3.0, 3.0], [1.0, 4.0]]])
    valid = torch.tensor([[True, False, False], [True, True, True]])
    one = gaussian_cross_entropy(logits[:1, :1], uv[:1, :1])
    three = gaussian_cross_entropy(logits[1:], uv[1:])
    assert torch.allclose(gaussian_cross_entropy(logits, uv, valid), (one + three) / 2)


def test_a_batch_without_a_valid_point_gives_zero_and_a_zero_gradient() -> None:
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = gaussian_cross_entropy(logits, torch.zeros(1, 2, 2), torch.zeros(1, 2, dtype=torch.bool))
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(logits.grad.abs().sum()) == 0.0


def test_source_features_are_sampled_bilinearly_with_cell_centres_at_integers() -> None:
    fmap = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    got = sample_points(fmap, _uv((2.0, 1.0), (0.5, 0.0), (3.0, 2.0)))
    assert torch.equal(got[0, 0], fmap[0, :, 1, 2])
    assert torch.allclose(got[0, 1], (fmap[0, :, 0, 0] + fmap[0, :, 0, 1]) / 2)
    assert torch.equal(got[0, 2], fmap[0, :, 2, 3])


def test_a_map_matched_with_itself_peaks_at_each_keypoints_own_cell() -> None:
    fmap = torch.eye(12).reshape(1, 12, 3, 4)  # every cell its own direction
    uv = _uv((0.0, 0.0), (3.0, 1.0), (2.0, 2.0))
    out = correspondence_loss(fmap, fmap, uv, uv, temperature=0.03)
    best = out.logits.flatten(2).argmax(-1)[0]
    assert best.tolist() == [0, 7, 10]
    assert torch.allclose(out.logits.max(), torch.tensor(1 / 0.03))


def test_keypoints_are_a_seeded_subset_of_at_most_max_keypoints() -> None:
    assert choose_keypoints(5, 20, torch.Generator()).tolist() == [0, 1, 2, 3, 4]
    a = choose_keypoints(30, 20, torch.Generator().manual_seed(3))
    b = choose_keypoints(30, 20, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and len(a) == 20 and len(set(a.tolist())) == 20
    assert a.tolist() == sorted(a.tolist()) and max(a.tolist()) < 30


# --------------------------------------------------------------------------- flips


def test_a_flip_keeps_each_keypoint_on_its_pixel(tmp_path: Path) -> None:
    w, h, res = 60, 44, 32
    img = np.zeros((h, w, 3), np.uint8)
    xy = np.array([[7.5, 10.5], [52.5, 30.5], [30.5, 36.5]])  # pixel centres
    for k, (x, y) in enumerate(xy):
        img[int(y) - 3 : int(y) + 4, int(x) - 3 : int(x) + 4] = 80 * (k + 1)
    Image.fromarray(img).save(tmp_path / "marks.png")
    square, size = load_square(tmp_path / "marks.png", res)
    flipped, fxy = hflip(square, torch.from_numpy(xy), float(size[0]))
    assert torch.equal(flipped, square.flip(-1))
    assert torch.allclose(fxy[:, 1], torch.from_numpy(xy[:, 1]))
    # The image itself as a map on its pixel grid: each flipped keypoint lands on its marker.
    uv = torch.from_numpy(to_grid(fxy.numpy(), size, (res, res))).float()[None]
    values = sample_points(flipped[None].float(), uv)[0, :, 0]
    assert [round(float(v) / 80) for v in values] == [1, 2, 3]
    # Twice is the identity.
    again, back = hflip(flipped, fxy, float(size[0]))
    assert torch.equal(again, square) and torch.allclose(back, torch.from_numpy(xy))


# --------------------------------------------------------------------------- the recipe


def _config(**train: object) -> dict:
    return tiny_config(
        run="corr-train",
        datasets={
            "mw": {
                "family": "miniworld-spair",
                "options": {
                    "seed": 0,
                    "progress": False,
                    "categories": ["arrow", "triangle"],
                    "image_size": [40, 56],
                    "pairs": {"train": 10, "val": 0, "test": 4},
                    "images_per_category": {"train": 4, "val": 0, "test": 3},
                    "instances_per_category": 2,
                },
            },
            "plain": {"family": "miniworld", "options": {"seed": 0}},
        },
        backbones={
            "vit-t": {
                "source": "timm",
                "arch": "vit_small_patch14_reg4_dinov2",
                "image_size": 32,
                "mean": [0.5, 0.5, 0.5],
                "std": [0.25, 0.25, 0.25],
                "kwargs": {
                    "embed_dim": 32,
                    "depth": 3,
                    "num_heads": 2,
                    "img_size": 32,
                    "patch_size": 8,
                    "init_values": 1.0,
                },
            },
            "resnet-t": {"source": "timm", "arch": "test_resnet", "image_size": 32},
        },
        tracks={
            "correspondence": {
                "datasets": ["mw"],
                "backbones": ["vit-t"],
                "finetune": ["vit-t"],
                "features": {"resolution": 32},
                "train": {"epochs": 2, "batch_size": 4, "lr": 0.001, **train},
            }
        },
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared tiny miniworld-spair dataset and the tiny ViT's starting weights, made once."""
    root = tmp_path_factory.mktemp("corr-train")
    raw = _config()
    raw["paths"] = {"data": str(root / "data"), "results": str(root / "results")}
    (root / "c.yaml").write_text(yaml.safe_dump(raw))
    for stage in ("download", "prepare"):
        assert main([stage, "--config", str(root / "c.yaml"), "--dataset", "mw"]) == 0
    torch.manual_seed(0)
    save_state(create_backbone(raw["backbones"]["vit-t"]).module, root / "vit-t.safetensors")
    return root


def _cfg(root: Path, **train: object) -> dict:
    """The resolved config of a run on ``root``'s dataset, from ``root``'s starting weights."""
    raw = _config(**train)
    raw["paths"] = {"data": str(root / "data"), "results": str(root / "results")}
    raw["backbones"]["vit-t"]["pretrained"] = str(root / "vit-t.safetensors")
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_config(path)


def test_the_recipe_is_registered() -> None:
    recipe = get_recipe("correspondence")
    assert recipe.train == "matchbench.tracks.correspondence.recipe:train"
    assert not recipe.takes_pairs


def test_only_the_last_blocks_and_the_final_norm_change(workdir: Path, tmp_path: Path) -> None:
    cfg = _cfg(workdir, unfreeze=1, flip=True)
    spec = cfg["backbones"]["vit-t"]
    start = load_file(str(workdir / "vit-t.safetensors"))
    summary = train(cfg, "mw", "vit-t", tmp_path)
    assert summary.startswith("loss ")
    trained = load_file(str(tmp_path / "model.safetensors"))
    assert set(trained) == set(start)
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    trainable = {k for k in start if k.startswith(("blocks.2.", "norm."))}
    assert changed and changed <= trainable  # frozen tensors bit-identical
    assert {k.split(".")[0] + "." + k.split(".")[1] for k in changed if k.startswith("blocks")} == {
        "blocks.2"
    }
    # The saved model is the model <backbone>+correspondence: extract's convention finds it
    # and it loads like any backbone.
    cfg["paths"]["results"] = str(tmp_path.parent)
    weights = Path(Layout.of(cfg).model_weights(cfg, "vit-t+correspondence", "mw"))
    assert (
        weights
        == tmp_path.parent / "models" / "correspondence" / "mw" / "vit-t" / "model.safetensors"
    )
    create_backbone(spec, tmp_path / "model.safetensors")


def test_a_model_trained_at_another_resolution_is_saved_at_its_native_size(
    workdir: Path, tmp_path: Path
) -> None:
    cfg = _cfg(workdir, resolution=48, epochs=1)
    train(cfg, "mw", "vit-t", tmp_path)
    backbone = create_backbone(cfg["backbones"]["vit-t"], tmp_path / "model.safetensors")
    start = load_file(str(workdir / "vit-t.safetensors"))
    assert torch.equal(backbone.module.pos_embed, start["pos_embed"])  # not resampled
    cfg_json = (tmp_path / "config.json").read_text()
    assert '"resolution": 48' in cfg_json


def test_two_runs_write_the_same_bytes(workdir: Path, tmp_path: Path) -> None:
    cfg = _cfg(workdir, flip=True, max_keypoints=3)
    train(cfg, "mw", "vit-t", tmp_path / "a")
    train(cfg, "mw", "vit-t", tmp_path / "b")
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name

    def log(d: Path) -> list[dict[str, str]]:
        rows = list(csv.DictReader(io.StringIO((d / "train_log.csv").read_text())))
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    rows = log(tmp_path / "a")
    assert rows == log(tmp_path / "b")
    assert list(rows[0]) == ["epoch", "step", "loss", "lr", "train_pck", "keypoints"]
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[1]["step"] == "6"  # 10 pairs / 4
    assert [float(r["lr"]) for r in rows] == [0.001, 0.0005]  # halved after epoch 1
    assert all(int(r["keypoints"]) <= 3 * 10 for r in rows)
    # Another seed is another run.
    other = _cfg(workdir, flip=True, max_keypoints=3)
    other["seed"] = 1
    train(other, "mw", "vit-t", tmp_path / "c")
    assert (tmp_path / "c" / "model.safetensors").read_bytes() != (
        tmp_path / "a" / "model.safetensors"
    ).read_bytes()


def test_the_finetune_cli_runs_the_recipe(workdir: Path, tmp_path: Path, monkeypatch) -> None:
    cfg_file = tmp_path / "c.yaml"
    raw = _config(epochs=1)
    raw["paths"] = {"data": str(workdir / "data"), "results": str(tmp_path / "results")}
    raw["backbones"]["vit-t"]["pretrained"] = str(workdir / "vit-t.safetensors")
    cfg_file.write_text(yaml.safe_dump(raw))
    args = ["finetune", "--config", str(cfg_file), "--recipe", "correspondence"]
    assert main([*args, "--dataset", "mw", "--backbone", "vit-t"]) == 0
    out = tmp_path / "results" / "models" / "correspondence" / "mw" / "vit-t"
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "train_log.csv", "config.json"}


# --------------------------------------------------------------------------- errors


def test_a_dataset_without_a_pair_table_is_refused(workdir: Path, tmp_path: Path) -> None:
    cfg = _cfg(workdir)
    (workdir / "data" / "plain").mkdir(exist_ok=True)
    with pytest.raises(MatchbenchError, match=r"pairs\.parquet.*'plain' has no pair table"):
        train(cfg, "plain", "vit-t", tmp_path)


def test_a_split_without_pairs_is_refused(workdir: Path, tmp_path: Path) -> None:
    cfg = _cfg(workdir, split="val")
    with pytest.raises(MatchbenchError, match=r"no pairs in split 'val'.*train\.split"):
        train(cfg, "mw", "vit-t", tmp_path)


def test_unknown_image_ids_are_refused(workdir: Path, tmp_path: Path) -> None:
    data = tmp_path / "data" / "mw"
    data.mkdir(parents=True)
    index = pd.read_parquet(workdir / "data" / "mw" / "images.parquet")
    used = pd.read_parquet(workdir / "data" / "mw" / "pairs.parquet")["src"].iloc[0]
    index[index["id"] != used].to_parquet(data / "images.parquet")
    (data / "pairs.parquet").write_bytes((workdir / "data" / "mw" / "pairs.parquet").read_bytes())
    cfg = _cfg(workdir)
    cfg["paths"]["data"] = str(tmp_path / "data")
    with pytest.raises(MatchbenchError, match="not in images.parquet"):
        train(cfg, "mw", "vit-t", tmp_path / "out")


def test_more_blocks_than_the_backbone_has_is_refused(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(MatchbenchError, match=r"train\.unfreeze: 4 blocks.*has 3"):
        train(_cfg(workdir, unfreeze=4), "mw", "vit-t", tmp_path)


def test_a_backbone_without_blocks_or_stages_is_refused(workdir: Path, tmp_path: Path) -> None:
    with pytest.raises(MatchbenchError, match=r"'resnet-t' \(ResNet\).*none of them"):
        train(_cfg(workdir), "mw", "resnet-t", tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_a_pairs_file_or_a_missing_track_is_refused(workdir: Path, tmp_path: Path) -> None:
    cfg = _cfg(workdir)
    with pytest.raises(MatchbenchError, match="takes no mined pairs"):
        train(cfg, "mw", "vit-t", tmp_path, pairs=tmp_path / "p.parquet")
    del cfg["tracks"]["correspondence"]
    with pytest.raises(MatchbenchError, match=r"tracks\.correspondence"):
        train(cfg, "mw", "vit-t", tmp_path)


def test_blocks_are_found_in_vits_open_clip_towers_and_convnets() -> None:
    def blocks(arch: str, unfreeze: int, layer: int, source: str = "timm", **spec) -> list[str]:
        encoder = create_backbone({"source": source, "arch": arch, **spec}, name="b")
        return [n for n, _ in encoder.trainable_blocks(unfreeze, layer)]

    depth = len(create_backbone({"source": "timm", "arch": "test_vit"}).module.blocks)
    assert blocks("test_vit", 2, -1) == [f"blocks.{depth - 2}", f"blocks.{depth - 1}", "norm"]
    # A dense map taken at an earlier block trains the blocks that end there.
    assert blocks("test_vit", 1, -2) == [f"blocks.{depth - 2}", "norm"]
    with pytest.raises(MatchbenchError, match=r"^layer: 9 is out of range"):
        blocks("test_vit", 1, 9)

    clip = {"source": "open_clip", "image_size": 64, "kwargs": {"vision_cfg": {"layers": 3}}}
    assert blocks("clip-mini", 2, -1, **clip) == [
        "visual.transformer.resblocks.1",
        "visual.transformer.resblocks.2",
        "visual.ln_post",
    ]

    assert blocks("test_convnext", 1, -1) == ["stages.3"]
    # Where forward_intermediates counts the stem (ByobNet, RepVGG), layer indexes it too; a
    # map taken after the stages trains what makes it.
    assert blocks("test_byobnet", 2, 2) == ["stages.0", "stages.1"]
    assert blocks("test_byobnet", 1, -1) == ["stages.3", "final_conv"]
    with pytest.raises(MatchbenchError, match=r"layer: 0 is 'stem'.*before any trainable block"):
        blocks("test_byobnet", 1, 0)
