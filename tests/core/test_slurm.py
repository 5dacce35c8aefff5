"""The DAG on a real SLURM cluster: Debian's slurm-wlm and munge on loopback, one node, no
accounting database (``scripts/local-slurm.sh``, which installs them when ``sbatch`` is missing),
driven by Snakemake's SLURM executor plugin through ``workflow/profiles/slurm``.

One run of the tiny config's ssl track (11 jobs) goes through SLURM while a fine-tune job is
cancelled with ``scancel`` after its first epoch's checkpoint: the profile's retry resubmits it,
it resumes from the checkpoint, and every result equals a local run's, byte for byte.

The profile is used as shipped but for three things a one-node test cluster needs: memory
requests that fit the node, ``squeue`` as the status command (no ``sacct`` without accounting),
and no account. docs/cluster.md says the same for a real cluster without accounting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local-slurm.sh"


def _env(workspace: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = str(workspace / "src")
    e["MATCHBENCH_PROGRESS_SECONDS"] = "1"
    e.update(extra or {})
    return e


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode} in {cwd}:\n{tail}")
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    if os.geteuid() != 0:
        pytest.skip("starting slurmd and munged needs root (CI runs as root)")
    state = tmp_path_factory.mktemp("slurm")
    out = subprocess.run(
        ["bash", str(SCRIPT), "start", str(state)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    conf = out.stdout.strip().splitlines()[-1].removeprefix("SLURM_CONF=")
    yield {"SLURM_CONF": conf}
    subprocess.run(["bash", str(SCRIPT), "stop", str(state)], check=False)


def _workspace(dest: Path) -> Path:
    for name in ("workflow", "envs", "tests/configs"):
        shutil.copytree(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    cfg = yaml.safe_load((ROOT / "tests/configs/tiny.yaml").read_text())
    cfg["run"] = "tiny-ssl"
    cfg["tracks"] = {"ssl": cfg["tracks"]["ssl"]}
    cfg["tracks"]["ssl"]["train"]["epochs"] = 8  # long enough to cancel a job midway
    # Mine with the backbone itself: mining waits for no fine-tune, so the chain of jobs (each
    # waits for the plugin's status checks, 1 s, then 10 s more each time) is shorter.
    cfg["tracks"]["ssl"]["sampler"] = "backbone"
    cfg["datasets"] = {"miniworld": cfg["datasets"]["miniworld"]}
    cfg["backbones"] = {"resnet-mini": cfg["backbones"]["resnet-mini"]}
    (dest / "ssl.yaml").write_text(yaml.safe_dump(cfg))
    return dest


def _test_profile(dest: Path) -> Path:
    """workflow/profiles/slurm with memory that fits the test node, squeue, no account."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/profile.yaml").read_text())
    profile["default-resources"]["mem_mb"] = 500
    for resources in profile["set-resources"].values():
        resources["mem_mb"] = 500
    profile["slurm-status-command"] = "squeue"
    profile["slurm-no-account"] = True
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["latency-wait"] = 5
    dest.mkdir()
    (dest / "profile.yaml").write_text(yaml.safe_dump(profile))
    return dest


def _squeue(env: dict[str, str]) -> list[tuple[str, str, str]]:
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i|%k|%T"], env=env, capture_output=True, text=True, check=False
    )
    return [tuple(line.split("|", 2)) for line in out.stdout.splitlines() if line.count("|") == 2]


def _results(workspace: Path) -> dict[str, bytes]:
    files = sorted(p for p in (workspace / "results").rglob("*") if p.is_file())
    out = {str(p.relative_to(workspace)): p.read_bytes() for p in files}
    out["reports/tiny-ssl/results.csv"] = (workspace / "reports/tiny-ssl/results.csv").read_bytes()
    return out


def test_the_dag_runs_on_slurm_survives_a_scancel_and_equals_a_local_run(
    cluster: dict[str, str], tmp_path: Path
) -> None:
    local = _workspace(tmp_path / "local")
    _run(["snakemake", "--cores", "2", "--configfile", "ssl.yaml"], local, _env(local))

    ws = _workspace(tmp_path / "slurm")
    profile = _test_profile(tmp_path / "profile")
    env = _env(ws, cluster)
    log = (tmp_path / "snakemake-slurm.log").open("w")
    proc = subprocess.Popen(
        ["snakemake", "--workflow-profile", str(profile), "--configfile", "ssl.yaml"],
        cwd=ws,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    checkpoint = ws / "results/tiny-ssl/models/ssl/miniworld/resnet-mini/.resume/checkpoint.pt"
    cancelled = None
    try:
        deadline = time.monotonic() + 600
        while cancelled is None:
            assert proc.poll() is None, "snakemake ended before the fine-tune's first checkpoint"
            assert time.monotonic() < deadline, "no fine-tune checkpoint after 600 s"
            if checkpoint.exists():
                running = [
                    i
                    for i, comment, state in _squeue(env)
                    if "finetune_ssl" in comment and "spp" not in comment and state == "RUNNING"
                ]
                if running:
                    subprocess.run(["scancel", running[0]], env=env, check=True)
                    cancelled = running[0]
            time.sleep(0.05)
        assert proc.wait(timeout=900) == 0, (tmp_path / "snakemake-slurm.log").read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()

    text = (tmp_path / "snakemake-slurm.log").read_text()
    assert "slurm" in text.lower() and f"SLURM jobid {cancelled}" in text
    finetune_log = (ws / "logs/tiny-ssl/finetune/ssl/miniworld/resnet-mini.log").read_text()
    assert "resumed after epoch" in finetune_log  # the retry went on from the checkpoint
    assert (ws / "logs/slurm/rule_report").is_dir()  # job logs kept, successful ones too

    assert _results(ws) == _results(local)
