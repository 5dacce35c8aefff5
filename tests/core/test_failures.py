"""Failures a person can act on: each ends in one line naming the file or key and what to do,
and exit code 2, whether the stage runs by hand or Snakemake reads the config."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import strip_progress, tiny_config

from matchbench.cli import main

ROOT = Path(__file__).resolve().parents[2]

RAW = tiny_config(
    run="failures",
    datasets={
        "mw": {
            "family": "miniworld",
            "options": {
                "seed": 0,
                "image_size": 32,
                "categories": ["triangle", "square"],
                "per_class": {"train": 8, "val": 0, "test": 4},
                "instances_per_class": 2,
                "progress": False,
            },
        }
    },
    backbones={"resnet-mini": {}},
    tracks={"ssl": {"dataset": "mw", "backbones": ["resnet-mini"], "train": {"batch_size": 8}}},
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("failures")
    raw = {**RAW, "paths": {k: str(root / k) for k in ("data", "results", "reports")}}
    (root / "c.yaml").write_text(yaml.safe_dump(raw))
    for stage in ("download", "prepare"):
        assert main([stage, "--config", str(root / "c.yaml"), "--dataset", "mw"]) == 0
    return root


def one_line(capsys: pytest.CaptureFixture[str], code: int) -> str:
    err = strip_progress(capsys.readouterr().err).strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (errno.EACCES, "permission denied"),
        (errno.ENOSPC, "no space left"),
        (errno.EROFS, "read-only"),
    ],
)
def test_a_folder_that_cannot_be_written_is_one_line(
    number: int, words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    raw = {**RAW, "paths": {k: str(tmp_path / k) for k in ("data", "results", "reports")}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    target = tmp_path / "data" / "raw"

    def refuse(*args: object, dir: str | None = None, **kwargs: object) -> str:  # noqa: A002
        # What the OS says when the atomic write makes its temporary file in `dir`.
        raise OSError(number, os.strerror(number), str(Path(dir or target) / ".mw.x.tmp"))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    code = main(["download", "--config", str(tmp_path / "c.yaml"), "--dataset", "mw"])
    line = one_line(capsys, code)
    assert line.startswith("matchbench download: error: ") and words in line
    assert ".tmp" not in line and str(target) in line  # the folder, not the temporary file


def test_a_missing_fine_tuned_checkpoint_says_how_to_train_it(prepared: Path, capsys) -> None:
    args = ["extract", "--config", str(prepared / "c.yaml"), "--dataset", "mw"]
    line = one_line(capsys, main([*args, "--model", "resnet-mini+ssl"]))
    assert "model.safetensors" in line and "matchbench finetune" in line
    assert "--recipe ssl --dataset mw --backbone resnet-mini" in line
    assert "matchbench weights" not in line


def test_an_error_in_a_dataloader_worker_is_one_line(prepared: Path, tmp_path: Path, capsys):
    raw = yaml.safe_load((prepared / "c.yaml").read_text())
    raw["extract"] = {"workers": 1, "batch_size": 4}
    raw["paths"]["data"] = str(tmp_path / "data")
    import shutil

    shutil.copytree(prepared / "data", tmp_path / "data")
    index = pd.read_parquet(tmp_path / "data/mw/images.parquet")
    bad = tmp_path / "data" / "mw" / index["path"].iloc[3]
    bad.write_bytes(b"not an image")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    args = ["extract", "--config", str(tmp_path / "c.yaml"), "--dataset", "mw"]
    line = one_line(capsys, main([*args, "--model", "resnet-mini", "--out", str(tmp_path / "f")]))
    assert bad.name in line and "DataLoader" not in line and "Traceback" not in line


def test_an_empty_pairs_file_is_refused(prepared: Path, tmp_path: Path, capsys) -> None:
    pairs = tmp_path / "pairs.parquet"
    pd.DataFrame(
        {"anchor": pd.Series([], dtype=str), "positive": pd.Series([], dtype=str)}
    ).to_parquet(pairs)
    args = ["finetune", "--config", str(prepared / "c.yaml"), "--recipe", "ssl-spp"]
    args += ["--dataset", "mw", "--backbone", "resnet-mini", "--pairs", str(pairs)]
    line = one_line(capsys, main([*args, "--out", str(tmp_path / "m")]))
    assert str(pairs) in line and "no mined pairs" in line and "tracks.ssl.mine.threshold" in line
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_check_gives_the_line_of_a_yaml_mistake(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: x\nseed: [1\n")
    line = one_line(capsys, main(["check", "--config", str(bad)]))
    assert str(bad) in line and "line 3" in line
    good = ROOT / "tests/configs/tiny.yaml"
    assert main(["check", "--config", str(good)]) == 0
    assert "valid" in capsys.readouterr().out


def test_snakemake_reports_a_config_error_in_one_line(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    raw["seed"] = "abc"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["snakemake", "-n", "--configfile", str(bad)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"matchbench: error: {os.path.relpath(bad, ROOT)}: invalid config:"], errors
    assert "seed: 'abc' is not of type 'integer'" in proc.stderr
    assert "Traceback" not in proc.stderr and 'File "' not in proc.stderr
