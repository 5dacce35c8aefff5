"""Every shipped config validates, and Snakemake builds its DAG (a dry run, no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from matchbench.config import gpu_wanted, load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert cfg["datasets"] and cfg["backbones"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_snakemake_builds_the_dag(path: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--forceall",  # every job, whatever results the working tree already holds
            "--nolock",
            "--directory",
            str(ROOT),
            "--configfile",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    tracks = load_config(path)["tracks"]
    expected = ["report"]
    if "ssl" in tracks:
        expected += ["extract", "mine", "finetune_ssl_spp", "evaluate_ssl"]
    if "correspondence" in tracks:
        expected += ["prepare_pairs", "extract_dense", "evaluate_correspondence"]
        if tracks["correspondence"]["finetune"]:
            expected.append("finetune_correspondence")
    if "compose" in tracks:
        expected += ["prepare_captions", "evaluate_compose"]
        if tracks["compose"]["finetune"]:
            expected.append("finetune_clip")
    for rule in expected:
        assert f"rule {rule}:" in proc.stdout
    if load_config(path)["device"] == "auto" and not torch.cuda.is_available():
        # No job of a CPU-only machine asks a cluster for a GPU (a CPU partition rejects --gpus).
        assert "gpu=1" not in proc.stdout and "gpu=0" in proc.stdout


def test_an_unknown_architecture_fails_the_dry_run(tmp_path: Path) -> None:
    """Backbones are checked when the DAG is built, not by the first extract job."""
    raw = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    raw["backbones"]["resnet-mini"]["arch"] = "test_resnett"
    raw["backbones"]["vit-tiny"]["kwargs"]["depht"] = 2
    for name in ("arch", "kwargs"):
        cfg = dict(raw)
        if name == "arch":
            cfg = {
                **raw,
                "backbones": {
                    **raw["backbones"],
                    "vit-tiny": {**raw["backbones"]["vit-tiny"], "kwargs": {}},
                },
            }
        else:
            cfg = {
                **raw,
                "backbones": {
                    **raw["backbones"],
                    "resnet-mini": {**raw["backbones"]["resnet-mini"], "arch": "test_resnet"},
                },
            }
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--nolock", "--configfile", str(path)],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert proc.returncode != 0
        expected = "backbones.resnet-mini.arch" if name == "arch" else "backbones.vit-tiny.kwargs"
        assert expected in proc.stdout + proc.stderr


def test_device_cuda_asks_for_a_gpu_per_network_job(tmp_path: Path) -> None:
    # The other side of test_snakemake_builds_the_dag's device: auto check: cuda asks for one.
    default = ROOT / "config" / "default.yaml"
    cuda = tmp_path / "cuda.yaml"
    cuda.write_text(default.read_text().replace("device: auto", "device: cuda"))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", "--nolock"]
        + ["--directory", str(ROOT), "--configfile", str(cuda)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("gpu=1") >= 10  # extraction, training, dense evaluation
    assert (gpu_wanted("cpu"), gpu_wanted("cuda")) == (False, True)
    assert gpu_wanted("auto") == torch.cuda.is_available()


def _leaves(node: object, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Dotted paths of the numbers in a config (not inside lists: `-S` sets keys)."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, str(k)))]
    return [path] if isinstance(node, int | float) and not isinstance(node, bool) else []


@pytest.mark.parametrize("path", [*CONFIGS, ROOT / "tests/configs/tiny.yaml"], ids=lambda p: p.name)
def test_dvc_exp_set_param_changes_only_that_line(path: Path, tmp_path: Path) -> None:
    """`dvc exp run -S <file>:<key>=<value>` applies the value as a Hydra override and merges
    the result back into the file's ruamel document, writing every list it touched in block
    style and wrapping at 80 columns: a config must be the fixed point of that rewrite, or one
    value comes with a rewritten file (docs/dvc.md, "Experiments")."""
    from dvc.utils.hydra import apply_overrides

    original = path.read_text(encoding="utf-8").splitlines()
    raw = yaml.safe_load("\n".join(original))
    leaves = _leaves(raw)
    assert leaves
    for keys in leaves[:: max(1, len(leaves) // 12)]:
        value = raw
        for k in keys:
            value = value[k]
        text = str(value)  # another value of the same width: a line that fitted still fits
        new = type(value)(text[:-1] + str((int(text[-1]) + 1) % 10))
        copy = tmp_path / path.name
        copy.write_text("\n".join(original) + "\n", encoding="utf-8")
        apply_overrides(copy, [f"{'.'.join(keys)}={new}"])
        changed = copy.read_text(encoding="utf-8").splitlines()
        assert len(changed) == len(original), keys
        diff = [(a, b) for a, b in zip(original, changed, strict=True) if a != b]
        assert len(diff) == 1 and str(new) in diff[0][1], (keys, diff)
