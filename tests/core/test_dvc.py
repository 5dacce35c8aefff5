"""DVC runs the DAG that Snakemake runs, and shares its results.

In two temporary git + DVC repositories the tiny config runs once through `snakemake` and once
through `dvc repro` of the exported dvc.yaml (side by side). Their metrics must be the same bytes;
DVC must list the metrics and draw the learning curves; and results pushed to a DVC remote and
pulled back into an emptied workspace must leave both DVC and Snakemake with nothing to do: the
mtime pitfall of treeverse/dvc#8602 (docs/dvc.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests/configs/tiny.yaml"
TRACKED = ("results", "reports", "logs")  # what the DAG writes besides data/ (see round trip)


@dataclass
class Workspaces:
    env: dict[str, str]
    snakemake: Path  # results made by `snakemake`, recorded with `dvc commit`
    dvc: Path  # results made by `dvc repro`
    tmp: Path


def make_env(home: Path) -> dict[str, str]:
    """Keep git, DVC and Snakemake away from the real home, caches and network."""
    (home / "dvc-global").mkdir(parents=True)
    (home / "dvc-global" / "config").write_text(
        "[core]\n    analytics = false\n    check_update = false\n"
    )
    e = dict(os.environ)
    e.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}",
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_CONFIG_HOME=str(home / ".config"),
        DVC_NO_ANALYTICS="1",
        DVC_GLOBAL_CONFIG_DIR=str(home / "dvc-global"),
        DVC_SYSTEM_CONFIG_DIR=str(home / "dvc-system"),
        DVC_SITE_CACHE_DIR=str(home / "dvc-site-cache"),
        GIT_CONFIG_NOSYSTEM="1",
    )
    return e


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode} in {cwd}:\n{tail}")
    return proc.stdout + proc.stderr


def new_repo(dest: Path, env: dict[str, str]) -> Path:
    """A git + DVC repository holding the workflow, its configs, the package's sources (each
    stage depends on the modules it runs) and dvc.yaml for the tiny config."""
    for name in ("workflow", "config", "envs", "tests/configs"):
        shutil.copytree(ROOT / name, dest / name)
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "src", dest / "src", ignore=ignore)
    for name in (".gitignore", ".dvcignore"):
        shutil.copy2(ROOT / name, dest / name)
    run(["git", "init", "-q"], dest, env)
    run(["dvc", "init", "-q"], dest, env)
    run(["matchbench", "dvc-export", "--configfile", TINY], dest, env)
    return dest


def age_outputs_downstream(ws: Path) -> None:
    """The worst order a checkout can leave: every output older than the inputs it came from."""
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]  # producers first
    now = time.time()
    for i, stage in enumerate(stages.values()):
        for path in (*stage.get("outs", []), *stage.get("metrics", [])):
            os.utime(ws / path, (now - 10 * i, now - 10 * i))


def metrics(ws: Path) -> dict[str, bytes]:
    return {
        p.relative_to(ws).as_posix(): p.read_bytes()
        for p in sorted((ws / "results" / "metrics").rglob("*.json"))
    }


@pytest.fixture(scope="module")
def workspaces(tmp_path_factory: pytest.TempPathFactory) -> Workspaces:
    tmp = tmp_path_factory.mktemp("dvc")
    env = make_env(tmp / "home")
    smk = new_repo(tmp / "snakemake", env)
    dvc = new_repo(tmp / "dvc", env)
    # One core each: the two runs share the machine's two.
    argv = ["snakemake", "--cores", "1", "--configfile", TINY]
    proc = subprocess.Popen(argv, cwd=smk, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        run(["dvc", "repro"], dvc, env)
    finally:
        out, _ = proc.communicate()
    if proc.returncode != 0:
        pytest.fail(f"snakemake exited {proc.returncode}:\n" + "\n".join(out.splitlines()[-40:]))
    # Results made by Snakemake enter DVC without rerunning anything.
    run(["dvc", "commit", "--force"], smk, env)
    return Workspaces(env=env, snakemake=smk, dvc=dvc, tmp=tmp)


def test_dvc_repro_reproduces_snakemake_metrics(workspaces: Workspaces) -> None:
    by_snakemake, by_dvc = metrics(workspaces.snakemake), metrics(workspaces.dvc)
    assert len(by_snakemake) == 9  # ssl: 3 models; correspondence: 2; compose: 1 + 3 variants
    assert by_dvc.keys() == by_snakemake.keys()
    for path in by_snakemake:
        assert by_dvc[path] == by_snakemake[path], f"{path} differs between snakemake and dvc repro"


def test_both_workspaces_are_clean_for_dvc(workspaces: Workspaces) -> None:
    for ws in (workspaces.snakemake, workspaces.dvc):
        status = run(["dvc", "status", "--json"], ws, workspaces.env)
        assert json.loads(status) == {}, f"{ws.name}: {status}"


def changed_stages(ws: Path, env: dict[str, str]) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], ws, env)))


def test_dvc_status_follows_exactly_what_a_stage_reads(workspaces: Workspaces) -> None:
    ws, env = workspaces.dvc, workspaces.env
    config = ws / TINY
    text = config.read_text()
    try:
        # One training key of one track: only the stage that reads it.
        config.write_text(text.replace("lr: 0.001", "lr: 0.002"))
        assert changed_stages(ws, env) == {"finetune_correspondence--mini-spair--vit-tiny"}
        config.write_text(text)
        # One stage's module: every stage that runs it, and nothing else.
        module = ws / "src/matchbench/stages/mine.py"
        source = module.read_text()
        module.write_text(source + "\n# an edit\n")
        try:
            assert changed_stages(ws, env) == {"mine--miniworld--resnet-mini_ssl"}
        finally:
            module.write_text(source)
    finally:
        config.write_text(text)
    assert changed_stages(ws, env) == set()


def test_dvc_metrics_show_lists_the_metrics(workspaces: Workspaces) -> None:
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], workspaces.dvc, workspaces.env))
    files = shown[""]["data"]
    assert sorted(files) == sorted(metrics(workspaces.dvc))
    for path, entry in files.items():
        key = {"correspondence": "pck@0.1", "compose": "sugarcrepe_avg"}.get(
            path.split("/")[2], "knn_acc"
        )
        assert 0 <= entry["data"]["metrics"][key]["value"] <= 1, path


def test_dvc_plots_show_draws_learning_curves(workspaces: Workspaces) -> None:
    shown = json.loads(run(["dvc", "plots", "show", "--json"], workspaces.dvc, workspaces.env))
    assert {"train-loss", "train-knn_acc", "train-train_pck", "train-batch_acc"} <= set(
        shown["data"]
    )
    ssl_logs = {
        "ssl/miniworld/resnet-mini/train_log.csv",
        "ssl-spp/miniworld/resnet-mini/train_log.csv",
    }
    corr_log = "correspondence/mini-spair/vit-tiny/train_log.csv"
    clip_logs = {f"clip-{v}/mini-vl/clip-mini/train_log.csv" for v in ("alt", "rich", "rich-hn")}
    epochs_of = {corr_log: [1], **{log: [1] for log in clip_logs}}
    epochs_of["clip-rich-hn/mini-vl/clip-mini/train_log.csv"] = [1, 2]  # the variant's own epochs
    # Each figure draws the logs that have its column: knn_acc is ssl's, train_pck
    # correspondence's, batch_acc the clip variants'.
    for plot, logs in (
        ("train-loss", ssl_logs | {corr_log} | clip_logs),
        ("train-knn_acc", ssl_logs),
        ("train-train_pck", {corr_log}),
        ("train-batch_acc", clip_logs),
    ):
        rows = shown["data"][plot][0]["content"]["data"]["values"]
        # DVC names each row's file only when a figure draws several.
        (only,) = logs if len(logs) == 1 else (None,)
        assert {r.get("filename", only) for r in rows} == logs
        epochs: dict[str, set[int]] = {name: set() for name in logs}
        for r in rows:
            epochs[r.get("filename", only)].add(int(r["epoch"]))
        for name, seen in epochs.items():
            assert sorted(seen) == epochs_of.get(name, [1, 2]), name
    html = workspaces.tmp / "plots"
    run(["dvc", "plots", "show", "--out", str(html)], workspaces.dvc, workspaces.env)
    assert "Training loss per epoch" in (html / "index.html").read_text()


@pytest.mark.parametrize("made_by", ["snakemake", "dvc"])
def test_results_round_trip_through_a_remote(workspaces: Workspaces, made_by: str) -> None:
    ws, env = getattr(workspaces, made_by), workspaces.env
    before = metrics(ws)
    run(["dvc", "remote", "add", "-d", "local", str(workspaces.tmp / f"remote-{made_by}")], ws, env)
    run(["dvc", "push"], ws, env)
    for name in (*TRACKED, ".dvc/cache"):
        shutil.rmtree(ws / name)
    run(["dvc", "pull"], ws, env)
    age_outputs_downstream(ws)
    assert json.loads(run(["dvc", "status", "--json"], ws, env)) == {}
    assert metrics(ws) == before
    # Where Snakemake made the results, it recognises the pulled files by the input checksums it
    # recorded (max-checksum-file-size in the profile), whatever their mtimes.
    if made_by == "dvc":
        # Snakemake never ran here (as in a fresh clone): it has no checksums to recognise the
        # pulled files by, only their mtimes. `dvc status` has just vouched for every file, so
        # touching them in DAG order is safe: the step docs/dvc.md gives after a pull.
        run(["snakemake", "--touch", "--cores", "1", "--configfile", TINY], ws, env)
        assert json.loads(run(["dvc", "status", "--json"], ws, env)) == {}
    out = run(["snakemake", "-n", "--configfile", TINY], ws, env)
    assert "Nothing to be done" in out, out
