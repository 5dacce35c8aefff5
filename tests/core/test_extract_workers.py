"""The `extract` stage with DataLoader workers: the promises of ``extract.workers``.

The features are the same bytes with 0 workers and with 2, a run killed with workers running
resumes to those bytes, ``auto`` is sized to the CPUs the job may use, the config refuses what
is neither, and a caller's own image source (here: PNGs inside a tar file) gives the features
the dataset's index does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_config
from PIL import Image
from torch.utils.data import Dataset

import matchbench.stages.extract as extract_stage
from matchbench.cli import main
from matchbench.config import resolve
from matchbench.errors import MatchbenchError
from matchbench.images import to_uint8_tensor
from matchbench.io import read_json
from matchbench.runtime import loader_workers
from matchbench.stages.extract import extract, shard_batches, shard_bounds

OPTIONS = {
    "seed": 0,
    "image_size": 32,
    "categories": ["triangle", "square", "star", "cross"],
    "per_class": {"train": 5, "val": 0, "test": 1},
    "instances_per_class": 2,
}
N_IMAGES = 24  # 4 categories x 6: shards of 10, 10 and 4 images, batches of 4, 4, 2 in each


def raw_config(root: Path, workers: int | str = 0) -> dict[str, Any]:
    return tiny_config(
        root,
        datasets={"mw": {"family": "miniworld", "options": OPTIONS}},
        backbones={"resnet-mini": {}},
        tracks={},
        extract={"batch_size": 4, "shard_size": 10, "workers": workers},
    )


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_path = root / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(raw_config(root), sort_keys=False))
        self.dataset_dir = root / "data" / "mw"
        self.index = pd.DataFrame()  # read once prepare has written it

    def cfg(self, workers: int | str) -> dict[str, Any]:
        return resolve(raw_config(self.root, workers))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    w = World(tmp_path_factory.mktemp("workers"))
    for stage in ("download", "prepare"):
        assert main([stage, "--config", str(w.config_path), "--dataset", "mw"]) == 0
    w.index = pd.read_parquet(w.dataset_dir / "images.parquet")
    assert len(w.index) == N_IMAGES
    return w


@pytest.fixture(scope="module")
def reference(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The feature store of an uninterrupted run with the images decoded in the main process."""
    out = tmp_path_factory.mktemp("reference")
    extract(world.cfg(0), "mw", "resnet-mini", out, progress=False)
    return out


def same_store(a: Path, b: Path) -> bool:
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in ("features.npy", "ids.txt"))


# --------------------------------------------------------------------------- batches and bytes


def test_batches_never_cross_a_shard_boundary() -> None:
    bounds = shard_bounds(N_IMAGES, 10)
    assert bounds == [(0, 10), (10, 20), (20, 24)]
    assert [len(b) for b in shard_batches(bounds, 4)] == [4, 4, 2, 4, 4, 2, 4]
    # Only the missing shards' batches, each as an uninterrupted run makes it.
    assert shard_batches([bounds[0], bounds[2]], 4) == [
        [0, 1, 2, 3], [4, 5, 6, 7], [8, 9], [20, 21, 22, 23],
    ]  # fmt: skip


def test_features_are_the_same_bytes_with_and_without_workers(world, reference, tmp_path):
    info = extract(world.cfg(2), "mw", "resnet-mini", tmp_path, progress=False)
    assert info["images_computed"] == N_IMAGES and info["resumed_shards"] == 0
    assert same_store(tmp_path, reference)
    assert (tmp_path / "meta.json").read_bytes() == (reference / "meta.json").read_bytes()


def test_a_run_that_fails_with_workers_running_resumes_to_the_same_bytes(
    world, reference, tmp_path, monkeypatch
):
    real_write = extract_stage.write_npy
    written: list[str] = []

    def fail_on_the_third_shard(path: Path, array: np.ndarray) -> None:
        if len(written) == 2:
            raise OSError("disk full")
        real_write(path, array)
        written.append(Path(path).name)

    monkeypatch.setattr(extract_stage, "write_npy", fail_on_the_third_shard)
    with pytest.raises(OSError, match="disk full"):
        extract(world.cfg(2), "mw", "resnet-mini", tmp_path, progress=False)
    monkeypatch.undo()
    shards = tmp_path / ".shards"
    assert written == ["00000.npy", "00001.npy"]
    # Take the first shard away too: the resumed run computes shards 0 and 2, not 1.
    (shards / "00000.npy").unlink()
    info = extract(world.cfg(2), "mw", "resnet-mini", tmp_path, progress=False)
    assert info["resumed_shards"] == 1 and info["images_computed"] == 14
    assert same_store(tmp_path, reference) and not shards.exists()


def test_a_run_killed_with_workers_running_resumes_to_the_same_bytes(world, reference, tmp_path):
    # The killed run sleeps after each shard it writes, so the kill lands between the first
    # shard and the last whatever the machine's load.
    out = tmp_path / "killed"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw_config(world.root, 2), sort_keys=False))
    script = (
        "import sys, time\n"
        "import matchbench.stages.extract as x\n"
        "from matchbench.cli import main\n"
        "write = x.write_npy\n"
        "x.write_npy = lambda p, a: (write(p, a), time.sleep(30))\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    argv = ["extract", "--config", str(config), "--dataset", "mw", "--model", "resnet-mini"]
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *argv, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / ".shards" / "00000.npy").exists():
            assert proc.poll() is None, f"extract exited ({proc.returncode}) before a shard"
            assert time.monotonic() < deadline, "no shard after 120 s"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(p.name for p in out.iterdir()) == [".shards"]
    info = extract(world.cfg(2), "mw", "resnet-mini", out, progress=False)
    assert info["resumed_shards"] == 1 and info["images_computed"] == N_IMAGES - 10
    assert same_store(out, reference)


# --------------------------------------------------------------------------- auto


@pytest.mark.parametrize(
    ("cpus", "threads", "workers"),
    [(2, 1, 1), (1, 1, 1), (2, 2, 1), (4, 1, 3), (8, 2, 6), (16, 2, 8), (64, 4, 8)],
)
def test_auto_leaves_the_jobs_threads_to_the_forward_pass(monkeypatch, cpus, threads, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    cfg = {"threads": threads, "extract": {"workers": "auto"}}
    assert loader_workers(cfg) == workers


def test_auto_without_an_affinity_mask_counts_the_machines_cpus(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert loader_workers({"threads": 2, "extract": {"workers": "auto"}}) == 4


def test_a_number_of_workers_is_taken_as_given(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    for n in (0, 3, 12):
        assert loader_workers({"threads": 1, "extract": {"workers": n}}) == n


# --------------------------------------------------------------------------- the config


def test_the_config_takes_auto_by_default(tmp_path):
    raw = raw_config(tmp_path)
    del raw["extract"]["workers"]
    assert resolve(raw)["extract"]["workers"] == "auto"
    assert resolve(raw_config(tmp_path, "auto"))["extract"]["workers"] == "auto"
    assert resolve(raw_config(tmp_path, 3))["extract"]["workers"] == 3


@pytest.mark.parametrize("bad", [-1, "many", 1.5, True])
def test_the_config_refuses_what_is_neither_a_count_nor_auto(tmp_path, bad):
    with pytest.raises(MatchbenchError) as e:
        resolve(raw_config(tmp_path, bad))
    lines = [line for line in str(e.value).splitlines() if "extract.workers" in line]
    assert len(lines) == 1 and repr(bad) in lines[0], str(e.value)


# --------------------------------------------------------------------------- a caller's images


class TarImages(Dataset):
    """PNGs inside a tar file, as uint8 (3, size, size): picklable (a path and names); each
    worker opens the tar on its first item."""

    def __init__(self, tar: Path, names: list[str], size: int) -> None:
        self.tar, self.names, self.size = tar, names, size
        self._open: tarfile.TarFile | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_open": None}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> torch.Tensor:
        if self._open is None:
            self._open = tarfile.open(self.tar)  # noqa: SIM115 - open for the worker's life
        member = self._open.extractfile(self.names[i])
        assert member is not None
        with Image.open(member) as im:
            return to_uint8_tensor(im.convert("RGB"), self.size)


def tar_of(world: World, tmp_path: Path) -> tuple[Path, list[str], list[str]]:
    tar = tmp_path / "images.tar"
    with tarfile.open(tar, "w") as t:
        for path in world.index["path"]:
            t.add(world.dataset_dir / path, arcname=path)
    return tar, world.index["path"].tolist(), world.index["id"].tolist()


def test_a_callers_own_images_give_the_features_of_the_index(world, reference, tmp_path):
    tar, names, ids = tar_of(world, tmp_path)
    out = tmp_path / "tar"
    info = extract(
        world.cfg(2), "mw", "resnet-mini", out, progress=False,
        images=TarImages(tar, names, 32), ids=ids,
    )  # fmt: skip
    assert info["count"] == N_IMAGES and read_json(out / "meta.json")["dataset"] == "mw"
    assert same_store(out, reference)


def test_a_callers_images_are_checked(world, tmp_path):
    tar, names, ids = tar_of(world, tmp_path)
    cfg = world.cfg(0)
    with pytest.raises(MatchbenchError, match="both images and ids"):
        extract(cfg, "mw", "resnet-mini", tmp_path / "a", images=TarImages(tar, names, 32))
    with pytest.raises(MatchbenchError, match="24 images but 23 ids"):
        extract(cfg, "mw", "resnet-mini", tmp_path / "b", images=TarImages(tar, names, 32),
                ids=ids[:-1], progress=False)  # fmt: skip
    with pytest.raises(MatchbenchError, match=r"uint8 tensors \(3, 32, 32\).*\(4, 3, 48, 48\)"):
        extract(cfg, "mw", "resnet-mini", tmp_path / "c", images=TarImages(tar, names, 48),
                ids=ids, progress=False)  # fmt: skip
