"""Training survives a time limit (``matchbench.training``): every recipe checkpoints each epoch
into ``<out>/.resume/``, and a run stopped after an epoch resumes on rerun to the bytes of an
uninterrupted run (model, log and config.json); a checkpoint of another run is not mixed in.

In process, the stop is an exception raised just after an epoch's checkpoint is written (what
a job killed at its time limit leaves); one test kills the real CLI with SIGKILL instead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import tiny_config

from matchbench import training
from matchbench.cli import main
from matchbench.config import load_config
from matchbench.tracks import find_recipe, load_object
from matchbench.tracks.compose.recipe import train as train_clip

FILES = ("model.safetensors", "train_log.csv", "config.json")

RAW = tiny_config(
    run="resume",
    datasets={
        "mw": {
            "family": "miniworld",
            "options": {
                "seed": 0,
                "image_size": 32,
                "categories": ["triangle", "square", "star", "cross"],
                "per_class": {"train": 16, "val": 0, "test": 8},
                "instances_per_class": 4,
                "progress": False,
            },
        },
        "spair": {
            "family": "miniworld-spair",
            "options": {
                "seed": 0,
                "progress": False,
                "categories": ["arrow", "triangle"],
                "image_size": [40, 56],
                "pairs": {"train": 8, "val": 0, "test": 2},
                "images_per_category": {"train": 4, "val": 0, "test": 2},
                "instances_per_category": 2,
            },
        },
        "vl": {
            "family": "miniworld-vl",
            "options": {
                "seed": 0,
                "progress": False,
                "scenes": {
                    "train": 32,
                    "sugarcrepe": 4,
                    "aro": 4,
                    "docci_train": 0,
                    "docci_test": 4,
                },
            },
        },
    },
    backbones={
        "resnet-mini": {},
        "vit-t": {
            "source": "timm",
            "arch": "vit_small_patch14_reg4_dinov2",
            "image_size": 32,
            "kwargs": {
                "embed_dim": 32,
                "depth": 2,
                "num_heads": 2,
                "img_size": 32,
                "patch_size": 8,
            },
        },
        "clip-mini": {"source": "open_clip", "arch": "clip-mini", "image_size": 64},
    },
    tracks={
        "ssl": {
            "dataset": "mw",
            "backbones": ["resnet-mini"],
            # MoCo: the checkpoint must carry the key encoder, the queue and its pointer too.
            "train": {"epochs": 3, "batch_size": 16, "queue": 32, "eval_every": 1},
            "evaluate": {"knn_k": 3},
        },
        "correspondence": {
            "datasets": ["spair"],
            "backbones": ["vit-t"],
            "finetune": ["vit-t"],
            "features": {"resolution": 32},
            "train": {"epochs": 3, "batch_size": 4, "flip": True},
        },
        "compose": {
            "datasets": ["vl"],
            "backbones": ["clip-mini"],
            "finetune": ["clip-mini"],
            "variants": {"hn": {"caption": "rich", "hard_negatives": True}},
            "train": {"epochs": 3, "batch_size": 8, "sentences": 2},
            "mlm": {"epochs": 3, "batch_size": 16},
        },
    },
)
RUNS = {  # recipe: (dataset, backbone)
    "ssl": ("mw", "resnet-mini"),
    "correspondence": ("spair", "vit-t"),
    "clip-hn": ("vl", "clip-mini"),
    "text-mlm": ("vl", "clip-mini"),
}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    raw = {**RAW, "paths": {k: str(root / k) for k in ("data", "results", "reports")}}
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    for dataset in ("mw", "spair", "vl"):
        for stage in ("download", "prepare"):
            assert main([stage, "--config", str(path), "--dataset", dataset]) == 0
    return path


class Stopped(Exception):
    """Stands for the end of a job killed at its time limit."""


def stopped_after(
    monkeypatch: pytest.MonkeyPatch, epoch: int, cfg: dict[str, Any], recipe: str, out: Path
) -> None:
    """Run ``recipe`` into ``out`` until just after ``epoch``'s checkpoint is written."""
    save = training.Resume.save

    def save_then_stop(self: training.Resume, progress: training.Progress) -> None:
        save(self, progress)
        if progress.epoch == epoch:
            raise Stopped

    with monkeypatch.context() as m:
        m.setattr(training.Resume, "save", save_then_stop)
        with pytest.raises(Stopped):
            run(cfg, recipe, out)


def run(cfg: dict[str, Any], recipe: str, out: Path) -> None:
    dataset, backbone = RUNS[recipe]
    _, declared = find_recipe(recipe)
    named = {"recipe": recipe} if declared.prefix else {}
    load_object(declared.train)(cfg, dataset, backbone, out, **named)


def outputs(out: Path) -> dict[str, bytes]:
    return {f: (out / f).read_bytes() for f in FILES}


@pytest.mark.parametrize("recipe", list(RUNS))
def test_a_stopped_run_resumes_to_the_bytes_of_an_uninterrupted_one(
    recipe: str, config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cfg = load_config(config_file)
    run(cfg, recipe, tmp_path / "whole")
    assert not (tmp_path / "whole" / training.RESUME_DIR).exists()  # removed once done
    whole = outputs(tmp_path / "whole")
    assert whole["train_log.csv"].count(b"\n") == 1 + 3  # header + an epoch a row

    out = tmp_path / "stopped"
    stopped_after(monkeypatch, 1, cfg, recipe, out)
    # Nothing that looks complete; the checkpoint and the log so far are there.
    assert sorted(p.name for p in out.iterdir()) == [training.RESUME_DIR]
    assert (out / training.RESUME_DIR / "train_log.csv").read_text().count("\n") == 1 + 1
    capsys.readouterr()

    run(cfg, recipe, out)
    assert "resumed after epoch 1" in capsys.readouterr().err
    assert outputs(out) == whole
    assert not (out / training.RESUME_DIR).exists()


def test_a_checkpoint_of_another_run_is_not_resumed(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cfg = load_config(config_file)
    out = tmp_path / "o"
    stopped_after(monkeypatch, 2, cfg, "clip-hn", out)
    capsys.readouterr()
    cfg["tracks"]["compose"]["train"]["lr"] = 0.0005  # the config changed since
    train_clip(cfg, "vl", "clip-mini", out, recipe="clip-hn")
    assert "resumed" not in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    train_clip(cfg, "vl", "clip-mini", fresh, recipe="clip-hn")
    assert outputs(out) == outputs(fresh)


def test_a_damaged_checkpoint_is_one_line(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cfg = load_config(config_file)
    out = tmp_path / "o"
    stopped_after(monkeypatch, 1, cfg, "ssl", out)
    (out / training.RESUME_DIR / training.CHECKPOINT).write_bytes(b"not a checkpoint")
    capsys.readouterr()
    dataset, backbone = RUNS["ssl"]
    args = ["finetune", "--config", str(config_file), "--recipe", "ssl"]
    code = main([*args, "--dataset", dataset, "--backbone", backbone, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "checkpoint.pt" in err[0] and "delete" in err[0] and ".resume" in err[0]


def test_the_cli_killed_with_sigkill_resumes_to_the_same_bytes(
    config_file: Path, tmp_path: Path
) -> None:
    raw = yaml.safe_load(config_file.read_text())
    raw["tracks"]["ssl"]["train"]["epochs"] = 8  # long enough for the kill to land midway
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))

    def finetune(out: Path) -> list[str]:
        return [
            str(Path(sys.executable).parent / "matchbench"), "finetune", "--config", str(config),
            "--recipe", "ssl", "--dataset", "mw", "--backbone", "resnet-mini", "--out", str(out),
        ]  # fmt: skip

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    killed = tmp_path / "killed"
    ckpt = killed / training.RESUME_DIR / training.CHECKPOINT
    proc = subprocess.Popen(finetune(killed), env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.exists():
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists()
    epoch = torch.load(ckpt, weights_only=True)["epoch"]
    assert 1 <= epoch < 8, f"the kill landed outside the run: after epoch {epoch}"

    resumed = subprocess.run(finetune(killed), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after epoch {epoch}" in resumed.stderr
    whole = tmp_path / "whole"
    subprocess.run(finetune(whole), env=env, check=True, capture_output=True)
    assert outputs(killed) == outputs(whole)


def test_seeding_turns_on_deterministic_algorithms_without_loading_inductor() -> None:
    """Every job seeds through runtime.seed_everything: deterministic kernels (warn-only), and
    not the public call's import of torch._inductor, which costs seconds in every job."""
    code = (
        "import sys, torch\n"
        "from matchbench.runtime import seed_everything\n"
        "seed_everything(0)\n"
        "assert torch.are_deterministic_algorithms_enabled()\n"
        "assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
        "assert 'torch._inductor' not in sys.modules, 'inductor was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
