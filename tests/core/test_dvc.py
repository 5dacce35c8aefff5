"""DVC runs the DAG that Snakemake runs, and shares its results.

In two temporary git + DVC repositories the tiny config runs once through `snakemake` and once
through `dvc repro` of the exported dvc.yaml (side by side: the session's `tiny_runs`). Their metrics must be the same bytes;
DVC must list the metrics and draw the learning curves; and results pushed to a DVC remote and
pulled back into an emptied workspace must leave both DVC and Snakemake with nothing to do: the
mtime pitfall of treeverse/dvc#8602 (docs/dvc.md).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import TinyRuns
from conftest import run_in as run

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


def age_outputs_downstream(ws: Path) -> None:
    """The worst order a checkout can leave: every output older than the inputs it came from."""
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]  # producers first
    now = time.time()
    for i, stage in enumerate(stages.values()):
        for path in (*stage.get("outs", []), *stage.get("metrics", [])):
            os.utime(ws / path, (now - 10 * i, now - 10 * i))


def metrics(ws: Path) -> dict[str, bytes]:
    """Every JSON and Parquet file under the metrics folder: the documents, their per-query
    values and predictions, and cir's test-server files."""
    return {
        p.relative_to(ws).as_posix(): p.read_bytes()
        for p in sorted((ws / "results" / "tiny" / "metrics").rglob("*"))
        if p.suffix in (".json", ".parquet")
    }


def documents(ws: Path) -> list[str]:
    return [p for p in metrics(ws) if p.endswith(".json") and ".submission/" not in p]


@pytest.fixture(scope="module")
def workspaces(tiny_runs: TinyRuns) -> Workspaces:
    """The session's two runs of the tiny DAG (conftest.tiny_runs: `snakemake` and `dvc repro`
    side by side); results made by Snakemake enter DVC without rerunning anything."""
    run(["dvc", "commit", "--force"], tiny_runs.snakemake, tiny_runs.env)
    return Workspaces(
        env=tiny_runs.env, snakemake=tiny_runs.snakemake, dvc=tiny_runs.dvc, tmp=tiny_runs.tmp
    )


def test_dvc_repro_reproduces_snakemake_metrics(workspaces: Workspaces) -> None:
    by_snakemake, by_dvc = metrics(workspaces.snakemake), metrics(workspaces.dvc)
    # ssl: 3 models; correspondence: 2; compose: 1 + 3 variants; cir: 6 methods; retrieval: 2
    # models x 3 methods (global, linear-aqe, local)
    assert len(documents(workspaces.snakemake)) == 21
    assert len(by_snakemake) > 15  # and cir's submission files, compared byte for byte too
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


def test_dvc_metrics_show_lists_the_headline_metrics(workspaces: Workspaces) -> None:
    ws, env = workspaces.dvc, workspaces.env
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], ws, env))
    files = shown[""]["data"]
    summaries = sorted(
        p.relative_to(ws).as_posix() for p in (ws / "results/tiny/summary").rglob("*.json")
    )
    assert sorted(files) == summaries and len(summaries) == len(documents(ws))
    headline = {
        "ssl": ["knn_acc", "linear_acc"],
        "correspondence": ["pck@0.1"],
        "cir": ["recall@1", "recall_subset@1", "recall@10"],  # CIRR's (no map@10)
        # tiny's k is 50: no mAP@1k, so every metric of the document is its headline
        "retrieval": ["image_map@50", "text_map@50"],
    }
    for path, entry in files.items():
        # The track's headline values of the full document, under keys unique to the file.
        doc = json.loads((ws / path.replace("/summary/", "/metrics/", 1)).read_text())
        names = headline.get(doc["task"], ["aro_relation", "aro_attribution", "sugarcrepe_avg", "t2i_r@1"])  # fmt: skip
        if doc["task"] == "retrieval" and not doc["model"].startswith("clip-"):
            names = ["image_map@50"]  # a ResNet has no text tower: no text queries
        values = {n: doc["metrics"][n]["value"] for n in names}
        assert entry["data"] == {doc["dataset"]: {doc["model"]: values}}, path


def test_dvc_plots_show_renders_offline(workspaces: Workspaces) -> None:
    """The project's own figures as image plots: a page with no script and no remote URL."""
    html = workspaces.tmp / "plots"
    run(["dvc", "plots", "show", "--out", str(html)], workspaces.dvc, workspaces.env)
    page = (html / "index.html").read_text()
    assert "<script" not in page and "http" not in page
    images = re.findall(r'<img src="([^"]+)"', page)
    figures = sorted((workspaces.dvc / "reports/tiny/figures").glob("*.png"))
    assert len(images) == len(figures) > 0
    for src in images:
        assert (html / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert any("learning_curves" in src for src in images)


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


def test_a_queued_sweep_of_a_training_key_reruns_only_its_track(workspaces: Workspaces) -> None:
    """`dvc exp run --queue -S <file>:<key>=<value>` twice, `dvc queue start -j 2`: each
    experiment reruns the ssl track's training and what uses it, nothing else, sets that one
    line of the config, and `dvc exp show --only-changed` has one column per changed value."""
    ws = workspaces.dvc  # after the round trip: results pulled back, dvc status clean
    env = {**workspaces.env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "add", "-A"], ws, env)
    run(["git", "commit", "-qm", "baseline"], ws, env)
    key = f"{TINY}:tracks.ssl.train.batch_size"
    for value in (16, 64):
        # Queued experiments run in temporary clones: git and the DVC cache give them
        # everything but the raw downloads, which `-C data` copies (docs/dvc.md).
        run(["dvc", "exp", "run", "--queue", "-n", f"bs{value}", "-C", "data", "-S", f"{key}={value}"], ws, env)  # fmt: skip
    run(["dvc", "queue", "start", "-j", "2"], ws, env)
    deadline = time.monotonic() + 900
    while re.search(r"\b(Queued|Running)\b", status := run(["dvc", "queue", "status"], ws, env)):
        assert time.monotonic() < deadline, status
        time.sleep(2)
    ssl_track = {
        "finetune_ssl--miniworld--resnet-mini",
        "finetune_ssl_spp--miniworld--resnet-mini",
        "extract--miniworld--resnet-mini_ssl",
        "extract--miniworld--resnet-mini_ssl-spp",
        "mine--miniworld--resnet-mini_ssl",
        "evaluate_ssl--miniworld--resnet-mini_ssl",
        "evaluate_ssl--miniworld--resnet-mini_ssl-spp",
        "report--tiny",
    }
    for name in ("bs16", "bs64"):
        assert re.search(rf"\b{name}\b.*\bSuccess\b", status), status
        logs = run(["dvc", "queue", "logs", name], ws, env)
        assert set(re.findall(r"Running stage '([^']+)'", logs)) == ssl_track, logs
    table = run(["dvc", "exp", "show", "--only-changed", "--drop", ".*/", "--csv"], ws, env)
    header = table.splitlines()[0].split(",")
    changed = {f"miniworld.resnet-mini+{r}.{m}" for r in ("ssl", "ssl-spp") for m in ("knn_acc", "linear_acc")}  # fmt: skip
    # Only the values that differ, each named by its own short key (no `<file>:` prefix).
    assert set(header) - {"Experiment", "rev", "typ", "Created", "State", "Executor"} <= {
        "tracks.ssl.train.batch_size",
        *changed,
    }
    assert "tracks.ssl.train.batch_size" in header and len(set(header) & changed) >= 2
    params = run(["dvc", "params", "diff", "HEAD", "bs16"], ws, env).splitlines()
    assert [r.split() for r in params[1:]] == [[TINY, "tracks.ssl.train.batch_size", "32", "16"]]
    rows = [
        r.split() for r in run(["dvc", "metrics", "diff", "HEAD", "bs16"], ws, env).splitlines()
    ]
    assert rows[0] == ["Path", "Metric", "HEAD", "bs16", "Change"]
    assert {r[1] for r in rows[1:]} <= changed and rows[1:], rows  # a row per changed value
    # The experiment's commit changed that one line of the config, nothing else in it.
    run(["dvc", "exp", "apply", "bs16"], ws, env)
    assert run(["git", "diff", "--numstat", "--", TINY], ws, env).split()[:2] == ["1", "1"]
