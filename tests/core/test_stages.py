"""The stages one by one, on a tiny mini-world generated once for this module.

download (the generator) -> prepare -> extract -> mine -> finetune, each through its real files,
plus the pieces whose answer can be worked out by hand (the mining of known neighbours, the
InfoNCE loss of a few unit vectors).
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_config as make_config

from matchbench.cli import main
from matchbench.config import resolve
from matchbench.data import INDEX_COLUMNS, get_family
from matchbench.errors import MatchbenchError
from matchbench.features import read_features
from matchbench.io import read_json, write_json, write_npy, write_parquet, write_text
from matchbench.models import create_backbone
from matchbench.stages.extract import extract
from matchbench.stages.mine import mine, mine_pairs
from matchbench.tracks.ssl.recipe import info_nce
from matchbench.tracks.ssl.recipe import train as train_ssl

CATEGORIES = ["triangle", "square", "star", "cross"]
OPTIONS = {
    "seed": 0,
    "image_size": 32,
    "categories": CATEGORIES,
    "per_class": {"train": 8, "val": 0, "test": 4},
    "instances_per_class": 3,
}
N_IMAGES = len(CATEGORIES) * (8 + 4)


def tiny_config(root: Path) -> dict[str, Any]:
    return make_config(
        root,
        run="stages",
        datasets={"miniworld": {"family": "miniworld", "options": OPTIONS}},
        backbones={"resnet-mini": {}},
        extract={"batch_size": 8, "shard_size": 16},
        tracks={
            "ssl": {
                "dataset": "miniworld",
                "backbones": ["resnet-mini"],
                "mine": {"k": 3, "threshold": 0.5},
                "train": {"epochs": 1, "batch_size": 8, "warmup_epochs": 0, "eval_every": 0},
                "evaluate": {"knn_k": 5, "bootstrap": 10},
            }
        },
    )


class World:
    """The module's mini-world: its config (raw, resolved, on disk) and its folders."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.raw = tiny_config(root)
        self.cfg = resolve(self.raw)
        self.config_path = root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.raw, sort_keys=False))
        self.data = root / "data"
        self.raw_dir = self.data / "raw" / "miniworld"
        self.dataset_dir = self.data / "miniworld"
        self.index_path = self.dataset_dir / "images.parquet"
        self.features = root / "results" / "features" / "miniworld" / "resnet-mini"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("world"))
    assert main(["download", "--config", str(w.config_path), "--dataset", "miniworld"]) == 0
    assert main(["prepare", "--config", str(w.config_path), "--dataset", "miniworld"]) == 0
    extract(w.cfg, "miniworld", "resnet-mini", w.features, progress=False)
    return w


def pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


# --------------------------------------------------------------------------- download / generate


def test_miniworld_generation_is_deterministic(world, tmp_path):
    family = get_family("miniworld")
    family.download(tmp_path / "same", OPTIONS)
    family.download(tmp_path / "other", {**OPTIONS, "seed": 1})
    ours, same, other = (
        pngs(world.raw_dir / "classes"),
        pngs(tmp_path / "same" / "classes"),
        pngs(tmp_path / "other" / "classes"),
    )
    assert len(ours) == N_IMAGES
    assert same == ours  # byte-identical PNGs from the same seed
    assert other.keys() == ours.keys()
    assert sum(other[k] != ours[k] for k in ours) == N_IMAGES  # every image differs
    manifest = read_json(world.raw_dir / "MANIFEST.json")
    assert manifest["source"] == "miniworld" and manifest["images"] == N_IMAGES
    assert manifest["options"]["seed"] == 0
    assert read_json(tmp_path / "same" / "MANIFEST.json") == manifest


# --------------------------------------------------------------------------- prepare


def test_prepare_writes_the_common_index(world):
    df = pd.read_parquet(world.index_path)
    assert list(df.columns) == INDEX_COLUMNS
    assert len(df) == N_IMAGES and df["id"].is_unique
    assert df["split"].value_counts().to_dict() == {"train": 32, "test": 16}
    assert sorted(df["class"].unique()) == sorted(CATEGORIES)
    # labels index the sorted class names
    assert dict(zip(df["class"], df["label"], strict=True)) == {
        c: k for k, c in enumerate(sorted(CATEGORIES))
    }
    assert str(df["label"].dtype) == "int64"
    assert (df["width"] == 32).all() and (df["height"] == 32).all()
    assert str(df["width"].dtype) == "int64" and str(df["height"].dtype) == "int64"
    per_class = {"train": 8, "test": 4}
    assert df.groupby(["split", "class"]).size().to_dict() == {
        (s, c): n for s, n in per_class.items() for c in CATEGORIES
    }
    for path in df["path"]:
        assert (world.dataset_dir / path).is_file()


def test_prepare_paths_are_relative_to_the_dataset_folder(world):
    df = pd.read_parquet(world.index_path)
    assert not any(Path(p).is_absolute() for p in df["path"])


def test_corrupt_png_in_imagefolder_is_named(world, tmp_path):
    root = tmp_path / "folder"
    shutil.copytree(world.raw_dir / "classes", root)
    victim = root / "train" / "star" / "train-star-0003.png"
    victim.write_bytes(victim.read_bytes()[:200])  # truncated mid-stream
    with pytest.raises(MatchbenchError) as e:
        get_family("imagefolder").prepare(tmp_path, tmp_path / "out", {"root": str(root)})
    assert str(victim) in str(e.value)
    assert "not a readable image" in str(e.value)
    assert not (tmp_path / "out" / "images.parquet").exists()


def test_garbage_file_with_image_suffix_is_named(world, tmp_path):
    root = tmp_path / "folder"
    (root / "train" / "cat").mkdir(parents=True)
    shutil.copy(
        next((world.raw_dir / "classes" / "train" / "star").glob("*.png")),
        root / "train" / "cat" / "a.png",
    )
    (root / "train" / "cat" / "b.png").write_bytes(b"this is not a PNG")
    with pytest.raises(MatchbenchError, match=r"b\.png: not a readable image"):
        get_family("imagefolder").prepare(tmp_path, tmp_path / "out", {"root": str(root)})


# --------------------------------------------------------------------------- extract


def test_extract_writes_the_feature_store(world):
    feats = np.load(world.features / "features.npy")
    ids = (world.features / "ids.txt").read_text().splitlines()
    meta = read_json(world.features / "meta.json")
    index = pd.read_parquet(world.index_path)
    assert feats.dtype == np.float16
    assert feats.shape == (N_IMAGES, meta["dim"])
    np.testing.assert_allclose(np.linalg.norm(feats.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert ids == index["id"].tolist()
    assert meta["count"] == N_IMAGES and meta["dtype"] == "float16"
    assert meta["image_size"] == 32 and meta["precision"] == "fp32" and meta["device"] == "cpu"
    assert meta["model"] == "resnet-mini" and meta["backbone"]["arch"] == "test_resnet"
    # Throughput is printed, never stored: a rerun writes the same bytes.
    assert not {"seconds", "images_per_s", "images_computed", "resumed_shards"} & set(meta)
    assert not (world.features / ".shards").exists()


def test_extract_is_deterministic(world, tmp_path):
    again = tmp_path / "again"
    extract(world.cfg, "miniworld", "resnet-mini", again, progress=False)
    assert (again / "features.npy").read_bytes() == (world.features / "features.npy").read_bytes()
    assert (again / "ids.txt").read_bytes() == (world.features / "ids.txt").read_bytes()


def test_extract_cli(world, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["extract", "--config", str(world.config_path), "--dataset", "miniworld",
                 "--model", "resnet-mini", "--out", str(out)])  # fmt: skip
    assert code == 0
    assert f"extract: {N_IMAGES} images" in capsys.readouterr().out
    assert (out / "features.npy").read_bytes() == (world.features / "features.npy").read_bytes()


def test_unknown_backbone_arch_suggests_timm_names():
    spec = {"source": "timm", "arch": "resnet5O", "image_size": 32}
    with pytest.raises(MatchbenchError) as e:
        create_backbone(spec)
    msg = str(e.value)
    assert "unknown timm architecture 'resnet5O'" in msg
    assert "close names:" in msg and "resnet50" in msg


def test_unknown_arch_through_extract_cli(world, tmp_path, capsys):
    raw = tiny_config(world.root)
    raw["backbones"]["resnet-mini"]["arch"] = "test_resnt"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    code = main(["extract", "--config", str(cfg), "--dataset", "miniworld", "--model",
                 "resnet-mini", "--out", str(tmp_path / "f")])  # fmt: skip
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert "unknown timm architecture 'test_resnt'" in err[0] and "test_resnet" in err[0]
    assert not (tmp_path / "f" / "features.npy").exists()


# --------------------------------------------------------------------------- mine

# Six unit vectors on a circle, at these angles (degrees): class a = 0, 20, 50; class b = 120,
# 150, 200. Cosine similarities are cos(angle difference), so each anchor's neighbours are known:
#   p0: p1 .940, p2 .643, p3 -.5    p1: p0 .940, p2 .866, p3 -.174   p2: p1 .866, p0 .643, p3 .342
#   p3: p4 .866, p2 .342, p5 .174   p4: p3 .866, p5 .643, p2 -.174   p5: p4 .643, p3 .174, p2 -.940
ANGLES = [0, 20, 50, 120, 150, 200]
IDS = [f"p{i}" for i in range(6)]
CLASSES = ["a", "a", "a", "b", "b", "b"]


def circle() -> np.ndarray:
    rad = np.deg2rad(ANGLES)
    return np.stack([np.cos(rad), np.sin(rad), np.zeros(6)], 1).astype(np.float32)


def cos(i: int, j: int) -> float:
    return math.cos(math.radians(ANGLES[j] - ANGLES[i]))


def hand_made_store(root: Path) -> tuple[Path, Path]:
    feats = root / "features"
    write_npy(feats / "features.npy", circle().astype(np.float16))
    write_text(feats / "ids.txt", "\n".join(IDS) + "\n")
    write_json(feats / "meta.json", {"dataset": "hand", "model": "hand"})
    index = pd.DataFrame(
        {
            "id": IDS,
            "path": [f"{i}.png" for i in IDS],
            "split": ["train"] * 6,
            "class": CLASSES,
            "label": np.array([0 if c == "a" else 1 for c in CLASSES], dtype=np.int64),
            "instance": [""] * 6,
            "width": np.full(6, 8, dtype=np.int64),
            "height": np.full(6, 8, dtype=np.int64),
        }
    )
    write_parquet(root / "images.parquet", index)
    return feats, root / "images.parquet"


def test_mine_pairs_on_known_neighbours():
    pairs = mine_pairs(circle(), IDS, k=2, threshold=0.5)
    got = list(zip(pairs["anchor"], pairs["positive"], pairs["rank"], strict=True))
    assert got == [
        ("p0", "p1", 1), ("p0", "p2", 2),
        ("p1", "p0", 1), ("p1", "p2", 2),
        ("p2", "p1", 1), ("p2", "p0", 2),
        ("p3", "p4", 1),  # p2 (.342, rank 2) is below the threshold
        ("p4", "p3", 1), ("p4", "p5", 2),
        ("p5", "p4", 1),  # p3 (.174) too
    ]  # fmt: skip
    expected = [cos(IDS.index(a), IDS.index(p)) for a, p, _ in got]
    np.testing.assert_allclose(pairs["similarity"], expected, atol=1e-6)
    assert pairs["similarity"].dtype == np.float32 and pairs["rank"].dtype == np.int64


def test_mine_pairs_k_and_threshold():
    # k = 1: only the nearest neighbour, whatever its similarity (threshold -1).
    nearest = mine_pairs(circle(), IDS, k=1, threshold=-1.0)
    assert dict(zip(nearest["anchor"], nearest["positive"], strict=True)) == {
        "p0": "p1", "p1": "p0", "p2": "p1", "p3": "p4", "p4": "p3", "p5": "p4"
    }  # fmt: skip
    assert (nearest["rank"] == 1).all()
    # k larger than the dataset: every other point, self never included.
    everything = mine_pairs(circle(), IDS, k=10, threshold=-1.0)
    assert len(everything) == 6 * 5
    assert not (everything["anchor"] == everything["positive"]).any()
    assert (
        everything.groupby("anchor")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4, 5]).all()
    )
    # The threshold is inclusive: x . y == 0.5 exactly in float32.
    xy = np.array([[1, 0, 0], [0.5, 0.5, math.sqrt(0.5)]], dtype=np.float32)
    assert len(mine_pairs(xy, ["x", "y"], k=1, threshold=0.5)) == 2
    assert len(mine_pairs(xy, ["x", "y"], k=1, threshold=0.5001)) == 0


def test_mine_stage_pairs_and_stats(tmp_path):
    feats, index = hand_made_store(tmp_path)
    cfg = resolve(
        {
            **tiny_config(tmp_path),
            "tracks": {
                "ssl": {
                    "dataset": "miniworld",
                    "backbones": ["resnet-mini"],
                    "mine": {"k": 2, "threshold": 0.5, "thresholds": [0.0, 0.9]},
                }
            },
        }
    )
    out = tmp_path / "pairs"
    stats = mine(cfg, "ssl", feats, index, out)
    pairs = pd.read_parquet(out / "pairs.parquet")
    assert list(pairs.columns) == ["anchor", "positive", "similarity", "rank"]
    assert len(pairs) == 10 and (pairs["similarity"] >= 0.5).all()
    # float16 storage: similarities within 1e-3 of the exact cosines
    exact = [
        cos(IDS.index(a), IDS.index(p))
        for a, p in zip(pairs["anchor"], pairs["positive"], strict=True)
    ]
    np.testing.assert_allclose(pairs["similarity"], exact, atol=2e-3)
    assert read_json(out / "stats.json") == stats
    by = {row["threshold"]: row for row in stats["by_threshold"]}
    assert stats["k"] == 2 and stats["threshold"] == 0.5 and stats["n_anchors"] == 6
    assert stats["n_pairs"] == 10 and stats["anchors_with_pairs"] == 6
    assert stats["precision"] == 1.0  # every pair at 0.5 stays within its class
    assert sorted(by) == [0.0, 0.5, 0.9]
    # At 0.0 two more pairs: p3->p2 (.342, across classes) and p5->p3 (.174, within b).
    assert by[0.0]["n_pairs"] == 12 and by[0.0]["precision"] == pytest.approx(11 / 12)
    assert by[0.9] == {"threshold": 0.9, "n_pairs": 2, "anchors_with_pairs": 2, "precision": 1.0}
    assert by[0.5]["n_pairs"] == stats["n_pairs"]


def test_mine_stage_without_labels_has_no_precision(tmp_path):
    feats, index = hand_made_store(tmp_path)
    df = pd.read_parquet(index)
    df["label"] = np.int64(-1)
    df["class"] = ""
    write_parquet(index, df)
    stats = mine(resolve(tiny_config(tmp_path)), "ssl", feats, index, tmp_path / "pairs")
    assert stats["precision"] is None
    assert all(row["precision"] is None for row in stats["by_threshold"])


def test_mine_on_the_world_cli(world, tmp_path, capsys):
    out = tmp_path / "pairs"
    code = main(["mine", "--config", str(world.config_path), "--track", "ssl", "--dataset",
                 "miniworld", "--model", "resnet-mini", "--out", str(out)])  # fmt: skip
    assert code == 0
    pairs = pd.read_parquet(out / "pairs.parquet")
    train_ids = set(pd.read_parquet(world.index_path).query("split == 'train'")["id"])
    assert set(pairs["anchor"]) <= train_ids and set(pairs["positive"]) <= train_ids
    assert (pairs["rank"].between(1, 3)).all() and (pairs["similarity"] >= 0.5).all()
    assert read_json(out / "stats.json")["n_anchors"] == 32


# --------------------------------------------------------------------------- finetune


def finetune(world: World, *extra: str) -> int:
    return main(["finetune", "--config", str(world.config_path), "--dataset", "miniworld",
                 "--backbone", "resnet-mini", *extra])  # fmt: skip


def test_pairs_with_unknown_ids_are_refused_naming_the_file(world, tmp_path, capsys):
    pairs = tmp_path / "pairs.parquet"
    write_parquet(pairs, pd.DataFrame({"anchor": ["train/star/train-star-0000"],
                                       "positive": ["elsewhere/cat/0001"],
                                       "similarity": np.float32([0.9]), "rank": [1]}))  # fmt: skip
    code = finetune(
        world, "--recipe", "ssl-spp", "--pairs", str(pairs), "--out", str(tmp_path / "m")
    )
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(
        f"matchbench finetune: error: {pairs}: 1 ids are not in the training split"
    )
    assert "elsewhere/cat/0001" in err[0]
    assert not (tmp_path / "m").exists()


def test_pairs_from_the_test_split_are_refused(world, tmp_path, capsys):
    test_id = pd.read_parquet(world.index_path).query("split == 'test'")["id"].iloc[0]
    pairs = tmp_path / "pairs.parquet"
    write_parquet(pairs, pd.DataFrame({"anchor": [test_id], "positive": [test_id]}))
    assert (
        finetune(world, "--recipe", "ssl-spp", "--pairs", str(pairs), "--out", str(tmp_path / "m"))
        == 2
    )
    assert str(pairs) in capsys.readouterr().err


def test_unreadable_pairs_file_is_named(world, tmp_path, capsys):
    pairs = tmp_path / "pairs.parquet"
    pairs.write_text("anchor,positive\n")
    assert (
        finetune(world, "--recipe", "ssl-spp", "--pairs", str(pairs), "--out", str(tmp_path / "m"))
        == 2
    )
    assert f"{pairs}: not a readable pairs file" in capsys.readouterr().err


def test_info_nce_closed_form_two_pairs():
    # z = [e1, e1, e2, e2]; rows 0,1 are positives of each other, rows 2,3 too. For every row the
    # positive has logit 1/T and the two others 0: loss = -log(e^(1/T) / (e^(1/T) + 2)).
    t = 0.5
    e1, e2 = torch.eye(2)
    z = torch.stack([e1, e1, e2, e2])
    group = torch.tensor([0, 0, 1, 1])
    loss = info_nce(z, group[:, None] == group[None, :], t)
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_info_nce_closed_form_orthogonal_and_multi_positive():
    t = 0.1
    e = torch.eye(3)
    # Two orthogonal vectors that are each other's only candidate: log-softmax over one logit = 0.
    pair = torch.ones(2, 2, dtype=torch.bool)
    assert float(info_nce(e[:2], pair, t)) == pytest.approx(0.0, abs=1e-7)
    # Three orthonormal vectors, all positives of each other (L_out): each row averages the
    # log-probabilities of its two positives, each log(1/2).
    assert float(info_nce(e, torch.ones(3, 3, dtype=torch.bool), t)) == pytest.approx(math.log(2))
    # One positive among orthonormal others: -log(1/2) again, whatever the temperature.
    z = torch.stack([e[0], e[1], e[2]])
    only01 = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.bool)
    # row 2 has no positive: it contributes 0 to the mean over 3 rows
    assert float(info_nce(z, only01, t)) == pytest.approx(2 * math.log(2) / 3)


def test_info_nce_gradient_is_finite_with_self_masked():
    z = torch.nn.functional.normalize(
        torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1
    )
    z.requires_grad_(True)
    group = torch.tensor([0, 0, 1, 1, 2, 2])
    info_nce(z, group[:, None] == group[None, :], 0.2).backward()
    assert torch.isfinite(z.grad).all()


def test_ssl_training_is_deterministic_on_cpu(world, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    summary = train_ssl(world.cfg, "miniworld", "resnet-mini", a)
    train_ssl(world.cfg, "miniworld", "resnet-mini", b)
    assert summary.startswith("loss ")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    log = pd.read_csv(a / "train_log.csv")
    assert list(log.columns) == ["epoch", "step", "loss", "lr", "knn_acc"]  # no timings
    assert log["epoch"].tolist() == [1] and log["step"].tolist() == [32 // 8]
    assert np.isfinite(log["loss"]).all()
    conf = read_json(a / "config.json")
    assert conf["recipe"] == "ssl" and conf["pairs"] is None and conf["seed"] == 0
    # The fine-tuned model is a model like any other: it loads into the backbone and differs
    # from the random initialisation it started from.
    spec = world.cfg["backbones"]["resnet-mini"]
    tuned = create_backbone(spec, a / "model.safetensors").module.state_dict()
    torch.manual_seed(0)
    init = create_backbone(spec).module.state_dict()
    assert any(not torch.equal(tuned[k], init[k]) for k in init if init[k].is_floating_point())


def test_ssl_spp_trains_on_mined_pairs(world, tmp_path):
    pairs_dir = tmp_path / "pairs"
    mine(world.cfg, "ssl", world.features, world.index_path, pairs_dir)
    out = tmp_path / "spp"
    train_ssl(world.cfg, "miniworld", "resnet-mini", out, pairs=pairs_dir / "pairs.parquet")
    conf = read_json(out / "config.json")
    assert conf["recipe"] == "ssl-spp"
    assert conf["pairs"] == str(pairs_dir / "pairs.parquet") and len(conf["pairs_sha256"]) == 64
    feats, ids, meta = read_features(world.features)
    extract(
        world.cfg,
        "miniworld",
        "resnet-mini+ssl-spp",
        tmp_path / "f",
        weights=out / "model.safetensors",
        progress=False,
    )
    tuned, tuned_ids, tuned_meta = read_features(tmp_path / "f")
    assert tuned_ids == ids and tuned.shape == feats.shape
    assert tuned_meta["weights"] == str(out / "model.safetensors")
    assert not np.array_equal(tuned, feats)


def test_ssl_moco_queue_trains_and_is_deterministic(world, tmp_path):
    """The MoCo-style path (momentum key encoder + queue of negatives) runs and reproduces."""
    cfg = copy.deepcopy(world.cfg)
    cfg["tracks"]["ssl"]["train"].update({"queue": 16, "momentum": 0.9})
    a, b = tmp_path / "a", tmp_path / "b"
    train_ssl(cfg, "miniworld", "resnet-mini", a)
    train_ssl(cfg, "miniworld", "resnet-mini", b)
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    log = pd.read_csv(a / "train_log.csv")
    # InfoNCE over 1 positive + 16 queued negatives starts near log(17).
    assert 0 < log["loss"].iloc[0] < 2 * math.log(17)
    # A different queue gives a different model: the queue really is in the loss.
    cfg["tracks"]["ssl"]["train"]["queue"] = 8
    train_ssl(cfg, "miniworld", "resnet-mini", tmp_path / "c")
    assert (a / "model.safetensors").read_bytes() != (
        tmp_path / "c" / "model.safetensors"
    ).read_bytes()


def test_dvc_summary_holds_the_headline_metrics_under_keys_unique_to_the_file() -> None:
    from matchbench.stages.evaluate import headline

    def m(v: float) -> dict[str, Any]:
        return {"value": v, "ci_low": v, "ci_high": v, "n": 3}

    doc = {"dataset": "d", "model": "b+r", "metrics": {"a": m(0.1), "b": m(0.2), "c": m(0.3)}}
    assert headline(doc, ("c", "a", "zz")) == {"d": {"b+r": {"c": 0.3, "a": 0.1}}}
    # A document with none of the track's headline metrics shows all of its own.
    assert headline(doc, ("zz",)) == {"d": {"b+r": {"a": 0.1, "b": 0.2, "c": 0.3}}}
