"""Correspondence evaluation end to end: a tiny pair table and images written here, a timm
``test_vit`` (random init, 8x8 map at 64 px), the dense-map cache through `matchbench extract
--dense`, and `matchbench evaluate --task correspondence` with and without the cache.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_config
from PIL import Image

from matchbench import per_query
from matchbench.cli import main
from matchbench.config import resolve
from matchbench.data import INDEX_COLUMNS
from matchbench.errors import MatchbenchError
from matchbench.io import read_json, write_json, write_parquet, write_text
from matchbench.tracks.correspondence.evaluate import PREDICTION_COLUMNS, evaluate
from matchbench.tracks.correspondence.pairs import FLAGS, make_row, write_pairs_table
from matchbench.tracks.correspondence.store import read_dense

torch.set_num_threads(1)

DS, MODEL = "tiny-spair", "vit-tiny"
# id -> (width, height, split); "cat/c" is used only by a train pair
IMAGES = {
    "cat/a": (80, 60, "test"),
    "cat/b": (64, 64, "test"),
    "cat/c": (70, 50, "train"),
    "dog/d": (96, 48, "test"),
    "dog/e": (60, 90, "test"),
    "dog/f": (72, 72, "test"),
}
TEST_PAIRS = 5
ALPHAS = [0.05, 0.1, 0.15]


def raw_config(root: Path, cache: bool = True) -> dict[str, Any]:
    return tiny_config(
        root,
        run="corr",
        datasets={DS: {"family": "miniworld-spair"}},
        backbones={MODEL: {}},
        tracks={
            "correspondence": {
                "datasets": [DS],
                "backbones": [MODEL],
                "features": {"resolution": 64, "batch_size": 3, "cache": cache},
                "evaluate": {"alphas": ALPHAS, "bootstrap": 20},
            }
        },
    )


def write_world(root: Path) -> None:
    """Each category's images are one random pattern resized to different sizes, and keypoints
    sit at the same relative positions, so even a random network transfers some correctly."""
    g = np.random.default_rng(0)
    data = root / "data" / DS
    rows = []
    patterns = {c: g.integers(0, 256, size=(6, 6, 3), dtype=np.uint8) for c in ("cat", "dog")}
    for img_id, (w, h, split) in IMAGES.items():
        path = f"images/{img_id}.png"
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        cat = img_id.split("/")[0]
        Image.fromarray(patterns[cat]).resize((w, h), Image.Resampling.BILINEAR).save(data / path)
        rows.append([img_id, path, split, cat, int(cat == "dog"), "", w, h])
    write_parquet(data / "images.parquet", pd.DataFrame(rows, columns=INDEX_COLUMNS))

    def kps(img_id: str, rel: np.ndarray) -> np.ndarray:
        w, h, _ = IMAGES[img_id]
        return rel * [w, h]

    specs = [  # (src, trg, keypoints, viewpoint_variation)
        ("cat/a", "cat/b", 3, 0),
        ("cat/b", "cat/a", 4, 1),
        ("cat/a", "cat/b", 2, 1),
        ("dog/d", "dog/e", 5, 2),
        ("dog/e", "dog/f", 1, None),
    ]
    pairs = []
    for k, (s, t, n, vp) in enumerate(specs):
        cat = s.split("/")[0]
        tw, th, _ = IMAGES[t]
        box = [2.0, 3.0, tw - 5.0, th - 2.0]
        rel = g.uniform(0.1, 0.9, size=(n, 2))
        trg_rel = 1 - rel if k == 2 else rel  # one pair with wrong ground truth
        pairs.append(
            make_row(
                pair=f"{k:06d}-{s}-{t}:{cat}", split="test", category=cat, src=s, trg=t,
                src_kps=kps(s, rel), trg_kps=kps(t, trg_rel), src_bbox=None, trg_bbox=box,
                threshold=max(box[2] - box[0], box[3] - box[1]),
                flags={"viewpoint_variation": vp, "occlusion": k % 2},
            )
        )  # fmt: skip
    pairs.append(
        make_row(
            pair="000099-cat/c-cat/a:cat", split="train", category="cat", src="cat/c",
            trg="cat/a", src_kps=kps("cat/c", np.full((2, 2), 0.5)), trg_kps=kps("cat/a", np.full((2, 2), 0.5)), src_bbox=None,
            trg_bbox=None, threshold=80.0,
        )
    )  # fmt: skip
    write_pairs_table(data / "pairs.parquet", pairs)
    write_json(data / "skipped.json", {"fewer than 1 keypoint": 2})


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        write_world(root)
        self.config_path = root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(raw_config(root)))
        self.cfg = resolve(raw_config(root))
        self.dense = root / "results" / "dense" / DS / MODEL
        self.metrics = root / "results" / "metrics" / "correspondence" / DS / f"{MODEL}.json"
        self.predictions = self.metrics.with_suffix(".predictions.parquet")

    def evaluate_args(self, *extra: str) -> list[str]:
        return ["evaluate", "--config", str(self.config_path), "--task", "correspondence",
                "--dataset", DS, "--model", MODEL, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("corr"))
    assert main(["extract", "--dense", "--config", str(w.config_path), "--dataset", DS,
                 "--model", MODEL]) == 0  # fmt: skip
    assert main(w.evaluate_args("--features", str(w.dense), "--out", str(w.metrics))) == 0
    return w


def test_dense_cache_holds_the_evaluated_images_in_float16(world):
    maps, ids, meta = read_dense(world.dense)
    assert ids == ["cat/a", "cat/b", "dog/d", "dog/e", "dog/f"]  # index order, no train image
    assert isinstance(maps, np.memmap) and maps.dtype == np.float16
    assert maps.shape == (5, 64, 8, 8)
    assert meta["grid"] == [8, 8] and meta["resolution"] == 64 and meta["layer"] == -1
    assert meta["model"] == MODEL and meta["count"] == 5 and meta["precision"] == "fp32"
    assert sorted(p.name for p in world.dense.parent.iterdir()) == [MODEL]  # no temp folder left


def test_metrics_json_has_every_contract_key(world):
    doc = read_json(world.metrics)
    assert {k: doc[k] for k in ("task", "dataset", "model", "split")} == {
        "task": "correspondence", "dataset": DS, "model": MODEL, "split": "test",
    }  # fmt: skip
    keys = {f"pck@{a}" for a in ALPHAS} | {f"pck_point@{a}" for a in ALPHAS}
    assert set(doc["metrics"]) == keys and set(doc["per_category"]) == keys
    for v in doc["metrics"].values():
        assert set(v) == {"value", "ci_low", "ci_high", "n"}
        assert 0 <= v["ci_low"] <= v["value"] <= v["ci_high"] <= 1
    assert doc["metrics"]["pck@0.1"]["n"] == TEST_PAIRS
    assert doc["metrics"]["pck_point@0.1"]["n"] == 15
    assert set(doc["per_category"]["pck@0.1"]) == {"cat", "dog"}
    extra = doc["extra"]
    assert set(extra) == {
        "variant", "primary_alpha", "variants", "flags", "curve", "n_pairs", "n_points",
        "resolution", "grid", "cache", "skipped",
    }  # fmt: skip
    assert extra["variant"] == "kernel_softmax" and extra["primary_alpha"] == 0.1
    assert set(extra["variants"]) == {"nn", "bilinear", "softmax", "kernel_softmax"}
    assert extra["variants"]["kernel_softmax"] == doc["metrics"]
    assert all(set(m) == keys for m in extra["variants"].values())
    assert extra["curve"]["alpha"] == [round(0.01 * i, 2) for i in range(1, 21)]
    assert len(extra["curve"]["pck"]) == len(extra["curve"]["pck_point"]) == 20
    assert extra["curve"]["pck"][9] == doc["metrics"]["pck@0.1"]["value"]
    assert np.all(np.diff(extra["curve"]["pck_point"]) >= 0)
    assert extra["n_pairs"] == TEST_PAIRS and extra["n_points"] == 15
    assert extra["resolution"] == 64 and extra["grid"] == [8, 8] and extra["cache"] is True
    assert extra["skipped"] == {"fewer than 1 keypoint": 2}


def test_flag_breakdown_counts_pairs_per_flag_value(world):
    doc = read_json(world.metrics)
    flags = doc["extra"]["flags"]
    assert set(flags) == {"viewpoint_variation", "occlusion"}  # the others are all -1
    assert {v: f["n"] for v, f in flags["viewpoint_variation"].items()} == {"0": 1, "1": 2, "2": 1}
    assert {v: f["n"] for v, f in flags["occlusion"].items()} == {"0": 3, "1": 2}
    pred = pd.read_parquet(world.predictions)
    per_pair = pred["correct"].map(np.mean).to_numpy()
    assert flags["occlusion"]["1"]["value"] == pytest.approx(per_pair[[1, 3]].mean())
    assert doc["metrics"]["pck@0.1"]["value"] == pytest.approx(per_pair.mean())


def test_predictions_table(world):
    pred = pd.read_parquet(world.predictions)
    assert list(pred.columns) == PREDICTION_COLUMNS
    assert len(pred) == TEST_PAIRS
    for _, row in pred.iterrows():
        n = len(row["trg_kps"])
        assert len(row["pred_kps"]) == n and len(row["correct"]) == n // 2
        tw, th, _ = IMAGES[row["trg"]]
        xy = np.asarray(row["pred_kps"]).reshape(-1, 2)
        assert (xy >= 0).all() and (xy <= [tw, th]).all()  # the target's original frame
        dist = np.linalg.norm(xy - np.asarray(row["trg_kps"]).reshape(-1, 2), axis=1)
        assert list(row["correct"]) == (dist <= 0.1 * row["threshold"]).tolist()


def test_cache_and_no_cache_give_the_same_metrics(world, tmp_path):
    cached, pred_cached, speed = evaluate(world.cfg, DS, MODEL, world.dense, progress=False)
    assert speed > 0
    live_cfg = resolve(raw_config(world.root, cache=False))
    live, pred_live, _ = evaluate(live_cfg, DS, MODEL, progress=False)
    assert live["extra"].pop("cache") is False and cached["extra"].pop("cache") is True
    assert live == cached
    pd.testing.assert_frame_equal(pred_live, pred_cached)
    on_disk = read_json(world.metrics)
    assert on_disk["metrics"] == cached["metrics"]  # deterministic across runs


def test_cli_without_cache(world, tmp_path, capsys):
    cfg = tmp_path / "live.yaml"
    cfg.write_text(yaml.safe_dump(raw_config(world.root, cache=False)))
    out = tmp_path / "m.json"
    args = ["evaluate", "--config", str(cfg), "--task", "correspondence", "--dataset", DS,
            "--model", MODEL]  # fmt: skip
    assert main([*args, "--out", str(out)]) == 0
    assert "pck@0.1" in capsys.readouterr().out
    assert read_json(out)["metrics"] == read_json(world.metrics)["metrics"]
    assert (tmp_path / "m.predictions.parquet").is_file()  # the side file, beside the document
    assert read_json(out)["artifacts"] == {
        "predictions": str(tmp_path / "m.predictions.parquet"),
        "per_query": str(tmp_path / "m.per_query.parquet"),
    }
    # Per pair, the share of its keypoints correct: their mean is the document's pck@0.1.
    values = per_query.read(tmp_path / "m.per_query.parquet")
    assert values["metric"].unique().tolist() == ["pck@0.1"]
    assert values["value"].mean() == pytest.approx(read_json(out)["metrics"]["pck@0.1"]["value"])
    # --features makes no sense without the cache: refused, nothing written
    assert main([*args, "--features", str(world.dense), "--out", str(tmp_path / "x.json")]) == 2
    assert "cache is false" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    assert not (tmp_path / "x.predictions.parquet").exists()


def cli_error(world: World, capsys, *extra: str) -> str:
    code = main(world.evaluate_args(*extra))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_missing_options_and_folders_are_named(world, tmp_path, capsys):
    out = ["--out", str(tmp_path / "m.json")]
    err = cli_error(world, capsys, "--features", str(tmp_path / "nowhere"), *out)
    assert "nowhere: not a dense-map cache" in err and "extract --dense" in err
    assert not (tmp_path / "m.json").exists()
    assert not (tmp_path / "m.predictions.parquet").exists()


def test_ids_missing_from_the_cache_are_named(world, tmp_path):
    short = tmp_path / "short"
    maps, ids, meta = read_dense(world.dense)
    short.mkdir()
    np.save(short / "maps.npy", np.asarray(maps[:-1]))
    write_text(short / "ids.txt", "\n".join(ids[:-1]) + "\n")
    write_json(short / "meta.json", meta)
    with pytest.raises(MatchbenchError, match=r"ids.txt: the cache lacks 1 images .*dog/f"):
        evaluate(world.cfg, DS, MODEL, short, progress=False)
    write_json(short / "meta.json", {**meta, "resolution": 128})
    with pytest.raises(MatchbenchError, match="resolution 128 but the evaluation wants 64"):
        evaluate(world.cfg, DS, MODEL, short, progress=False)


def test_unknown_dataset_and_model_are_named(world):
    with pytest.raises(MatchbenchError, match="unknown dataset 'spair'"):
        evaluate(world.cfg, "spair", MODEL, world.dense, progress=False)
    with pytest.raises(MatchbenchError, match="unknown backbone 'vit-huge'"):
        evaluate(world.cfg, DS, "vit-huge", world.dense, progress=False)
    cfg = copy.deepcopy(world.cfg)
    del cfg["tracks"]["correspondence"]
    with pytest.raises(MatchbenchError, match="no tracks.correspondence"):
        evaluate(cfg, DS, MODEL, world.dense, progress=False)


def test_bad_pair_table_is_named(world, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(world.root / "data", root / "data")
    cfg = resolve(raw_config(root, cache=False))
    pairs_path = root / "data" / DS / "pairs.parquet"
    df = pd.read_parquet(pairs_path)
    df.loc[1, "trg_kps"] = df.loc[1, "trg_kps"][:-2]
    write_parquet(pairs_path, df)
    with pytest.raises(MatchbenchError, match="differ in length in pairs"):
        evaluate(cfg, DS, MODEL, progress=False)


def test_dense_extract_refuses_a_folder_of_other_files(world, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    code = main(["extract", "--dense", "--config", str(world.config_path), "--dataset", DS,
                 "--model", MODEL, "--out", str(out)])  # fmt: skip
    assert code == 2 and "not a dense-map cache" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"


def test_flags_absent_from_a_dataset_are_left_out(world):
    assert set(FLAGS) - set(read_json(world.metrics)["extra"]["flags"]) == {
        "scale_variation", "truncation", "mirror",
    }  # fmt: skip
