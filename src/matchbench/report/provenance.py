"""What a report was made from, so that it can be cited and rerun: the command, the config file
and its hash, the commit, the hash of ``dvc.lock`` (when there is one), the seed and device, the
versions of what computed the numbers, and each job's wall time and peak memory.

Written beside the page as ``provenance.json`` and shown under "How to reproduce". The commit
is read with ``git`` from the working directory (absent outside a git checkout); ``dirty`` says
that tracked files differ from it, so the numbers may not come from that commit alone.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import shlex
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from matchbench.layout import Layout

DEFAULT_CONFIG = "config/default.yaml"
# The distributions whose versions decide the numbers (the ones installed are listed).
PACKAGES = (
    "matchbench",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "faiss-cpu",
    "faiss-gpu",
    "faiss-gpu-cu12",
    "numpy",
    "pillow",
    "snakemake",
    "dvc",
)


def reproduce_command(config: str | Path, cores: int) -> str:
    """The command that reruns the DAG of ``config`` (its path as the stages were given it)."""
    path = str(config)
    if Path(config).is_absolute() and Path(config).is_relative_to(Path.cwd()):
        path = os.path.relpath(config)  # as the rules pass it: relative to the repository
    base = f"snakemake --cores {max(1, cores)}"
    return base if path == DEFAULT_CONFIG else f"{base} --configfile {shlex.quote(path)}"


def git_commit(cwd: Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout around ``cwd``, or None."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    if not sha:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": sha, "dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def file_sha256(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:  # "NA" where the platform does not measure it
        return None
    return value if math.isfinite(value) else None


def job_costs(folder: Path) -> list[dict[str, Any]]:
    """Wall time (s) and peak resident memory (MB) of each job, from the ``benchmark:`` files
    Snakemake wrote under ``folder`` (``<logs>/benchmarks/``; none when the jobs ran
    under ``dvc repro``, which runs the commands without Snakemake).

    A job the warm server ran (``matchbench.warm``) is a client process to Snakemake, so its
    memory is the server's record of the forked job instead (``warm-server.jobs.tsv`` beside
    ``folder``): the row whose stderr is the job's log (``<logs>/<job>.log``, the benchmark
    file's path with the log's suffix) and which ended within a minute of that file's writing."""
    from matchbench.warm import jobs_file, read_jobs

    warm: dict[str, dict[str, str]] = {}
    for row in read_jobs(jobs_file(folder.parent / "warm-server.log")):
        warm[row.get("stderr", "")] = row  # the latest run of a job wins
    costs = []
    for path in sorted(folder.rglob("*.tsv")) if folder.is_dir() else []:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        if len(lines) < 2:
            continue  # a job that was killed before Snakemake wrote its numbers
        row = dict(zip(lines[0].split("\t"), lines[-1].split("\t"), strict=False))
        job = path.relative_to(folder).with_suffix("").as_posix()
        rss = _number(row.get("max_rss", ""))
        forked = warm.get(os.path.realpath(folder.parent / f"{job}.log"), {})
        ended = _number(forked.get("ended", ""))
        if ended is not None and abs(ended - path.stat().st_mtime) < 60:
            rss = _number(forked.get("max_rss_mb", ""))
        costs.append({"job": job, "seconds": _number(row.get("s", "")), "max_rss_mb": rss})
    return costs


def provenance(cfg: dict[str, Any], config: str | Path) -> dict[str, Any]:
    """The report's ``provenance.json``."""
    return {
        "command": reproduce_command(config, cfg["threads"]),
        "config": str(config),
        "config_sha256": file_sha256(Path(config)),
        "dvc_lock_sha256": file_sha256(Path("dvc.lock")),
        "git": git_commit(),
        "run": cfg["run"],
        "seed": cfg["seed"],
        "device": cfg["device"],
        "threads": cfg["threads"],
        "versions": versions(),
        "jobs": job_costs(Path(Layout.of(cfg).benchmarks())),
    }
