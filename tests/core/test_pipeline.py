"""The whole DAG on the tiny config, for real: Snakemake runs every stage, the report lands where
docs/contracts.md says, a second run has nothing to do, a job reruns exactly when a config value
or code it reads changes (never for the config file's name), and an extraction killed with
SIGKILL leaves nothing that looks complete and resumes to the same bytes as an uninterrupted run.

The workspace is a copy of the session's Snakemake run (``conftest.tiny_runs``) and holds its own
copy of the package (``src/``, first on ``PYTHONPATH``) so that a test can edit a stage's module
as a developer would."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import TinyRuns

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TINY = "tests/configs/tiny.yaml"


def env(cwd: Path | None = None) -> dict[str, str]:
    """This interpreter's `snakemake` and `matchbench` first on PATH (the rules call them), and
    the workspace's copy of the package first on PYTHONPATH."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    if cwd is not None and (cwd / "src").is_dir():
        e["PYTHONPATH"] = str(cwd / "src")
    return e


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env(cwd), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode} in {cwd}:\n{tail}")
    return proc


@pytest.fixture(scope="module")
def workspace(tiny_runs: TinyRuns, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the workflow after one full `snakemake` run of the tiny config: the session's
    (conftest.tiny_runs, also compared with `dvc repro` by test_dvc), copied with its mtimes
    and Snakemake's records so that this module's edits and kills stay its own."""
    ws = tmp_path_factory.mktemp("pipeline") / "ws"
    shutil.copytree(tiny_runs.pristine, ws, symlinks=True)
    return ws


def test_report_is_written(workspace: Path) -> None:
    report = workspace / "reports" / "tiny"
    assert (report / "index.html").stat().st_size > 0
    table = pd.read_csv(report / "results.csv")
    assert list(table.columns[:4]) == ["task", "dataset", "model", "metric"]
    models = ["resnet-mini", "resnet-mini+ssl", "resnet-mini+ssl-spp"]
    ssl = table[table["task"] == "ssl"]
    assert sorted(zip(ssl["model"], ssl["metric"], strict=True)) == sorted(
        (m, k) for m in models for k in ("knn_acc", "linear_acc")
    )
    corr = table[table["task"] == "correspondence"]
    alphas = ("0.01", "0.05", "0.1", "0.15")
    assert sorted(zip(corr["model"], corr["metric"], strict=True)) == sorted(
        (m, f"{kind}@{a}")
        for m in ("vit-tiny", "vit-tiny+correspondence")
        for kind in ("pck", "pck_point")
        for a in alphas
    )
    compose = table[table["task"] == "compose"]
    variants = ("clip-mini+clip-alt", "clip-mini+clip-rich", "clip-mini+clip-rich-hn")
    assert set(compose["model"]) == {"clip-mini", *variants}
    for m in ("sugarcrepe_avg", "aro_relation", "aro_attribution", "t2i_r@1"):
        assert set(compose.loc[compose["metric"] == m, "model"]) == {"clip-mini", *variants}, m
    cir = table[table["task"] == "cir"]
    methods = ("image", "text", "sum", "pic2word", "lincir", "two-stage")
    assert set(cir["model"]) == {f"clip-mini+clip-rich@{m}" for m in methods}
    for m in ("recall@1", "recall@50", "recall_subset@3"):
        assert len(cir[cir["metric"] == m]) == len(methods), m
    retrieval = table[table["task"] == "retrieval"]
    assert set(retrieval["model"]) == {
        f"{x}@{m}"
        for x in ("clip-mini+clip-rich", "resnet-mini+ilias-embed")
        for m in ("global", "linear-aqe", "local")
    }
    assert set(retrieval["metric"]) == {"image_map@50", "text_map@50"}
    # A ResNet has no text tower: its text queries are not run.
    resnet = retrieval[retrieval["model"].str.startswith("resnet-mini")]
    assert set(resnet["metric"]) == {"image_map@50"}
    assert set(table["task"]) == {"ssl", "correspondence", "compose", "cir", "retrieval"}
    assert table["value"].between(0, 1).all()
    for figure in (
        "pck_curves",
        "finetuned_vs_frozen",
        "transfers_mini-spair",
        "sugarcrepe_categories_mini-vl",
        "cir_examples_mini-cirr",
        "retrieval_curve_mini-ilias",
        "retrieval_examples_mini-ilias",
        "across_tasks",
    ):
        assert (report / "figures" / f"{figure}.png").stat().st_size > 0
    # Every track writes per-query values: the report tests its models pairwise.
    tests = pd.read_csv(report / "paired.csv")
    assert set(tests["task"]) == {"ssl", "correspondence", "compose", "cir", "retrieval"}
    assert tests["p"].between(0, 1).all() and (tests["n"] > 0).all()
    # Each job's time and peak memory, from the benchmark files Snakemake wrote for this run
    # (the report's own is written after it).
    jobs = json.loads((report / "provenance.json").read_text())["jobs"]
    logs = sorted(
        p
        for p in (workspace / "logs").rglob("*.log")
        if "report" not in p.parts and p.name != "warm-server.log"  # the server's, not a job's
    )
    assert len(jobs) == len(logs) > 10
    assert {j["job"].split("/")[0] for j in jobs} >= {"download", "extract", "finetune", "evaluate"}
    assert all(j["seconds"] > 0 and j["max_rss_mb"] > 10 for j in jobs), jobs
    assert "Time and memory per job" in (report / "index.html").read_text()


def test_every_job_of_the_run_was_forked_by_the_warm_server(tiny_runs: TinyRuns) -> None:
    # warm_start (default): Snakemake's onstart started matchbench.warm's server, and each job's
    # `matchbench` handed its command to it. test_dvc compares these metrics with dvc repro's.
    log = (tiny_runs.pristine / "logs/tiny/warm-server.log").read_text()
    assert "serving at" in log and "warm: stopped" in log
    jobs = list((tiny_runs.pristine / "logs/tiny/benchmarks").rglob("*.tsv"))
    served = re.findall(r"pid \d+: exit 0 after [\d.]+ s, peak \d+ MB \(matchbench ", log)
    assert len(served) == len(jobs) > 20
    # The report's memory per job is the forked job's (the server's record), not the client's.
    costs = json.loads((tiny_runs.pristine / "reports/tiny/provenance.json").read_text())["jobs"]
    extract = [c for c in costs if c["job"].startswith("extract/")]
    assert extract and all(c["max_rss_mb"] > 150 for c in extract), extract


def test_second_run_has_nothing_to_do(workspace: Path) -> None:
    out = run(["snakemake", "-n", "--configfile", TINY], workspace)
    assert "Nothing to be done" in out.stdout + out.stderr


def planned_jobs(workspace: Path, configfile: str) -> dict[str, int]:
    """The jobs `snakemake -n` would run: rule -> count (its job stats table)."""
    out = run(["snakemake", "-n", "--configfile", configfile], workspace)
    text = out.stdout + out.stderr
    if "Nothing to be done" in text:
        return {}
    lines = text.splitlines()
    start = lines.index("Job stats:") + 3
    jobs = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        jobs[parts[0]] = int(parts[1])
    return jobs


def test_an_unchanged_config_under_another_name_reruns_nothing(workspace: Path) -> None:
    shutil.copy2(workspace / TINY, workspace / "tiny_copy.yaml")
    assert planned_jobs(workspace, "tiny_copy.yaml") == {}


def test_more_loader_workers_rerun_nothing(workspace: Path) -> None:
    """extract.workers decides how many processes decode images, not the features: a job's
    rerun key leaves it out (a batch size, which may, reruns every extraction)."""
    cfg = yaml.safe_load((workspace / TINY).read_text())
    cfg.setdefault("extract", {})["workers"] = 3
    (workspace / "workers.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_jobs(workspace, "workers.yaml") == {}
    cfg["extract"]["batch_size"] = 7
    (workspace / "batch.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_jobs(workspace, "batch.yaml").get("extract", 0) > 0


def test_cir_submissions_score_against_the_held_ground_truth(workspace: Path) -> None:
    """The test-server files evaluate writes for CIRR's hidden test1 split are what the server
    reads: `matchbench score` scores them against the mini-world's held ground truth, and a
    trained method's rankings score as its document says they rank."""
    model = "clip-mini+clip-rich@two-stage"
    side = workspace / f"results/tiny/metrics/cir/mini-cirr/{model}.submission"
    files = json.loads((side / "index.json").read_text())["files"]
    assert files == ["cirr_test1_recall.json", "cirr_test1_recall_subset.json"]
    recall = json.loads((side / files[0]).read_text())
    assert recall["version"] == "rc2" and recall["metric"] == "recall"
    assert len(recall) == 2 + 4 and all(
        len(v) == 50 for k, v in recall.items() if k not in ("version", "metric")
    )
    out = workspace / "scored.json"
    run(
        [
            "matchbench", "score", "--benchmark", "cirr", "--split", "test1",
            "--annotations", "data/tiny/raw/mini-cirr/cirr/server",
            "--predictions", *(str(side / f) for f in files),
            "--model", model, "--out", str(out),
        ],
        workspace,
    )  # fmt: skip
    scored = json.loads(out.read_text())
    assert scored["extra"]["queries"] == 4
    assert {"recall@50", "recall_subset@3"} <= set(scored["metrics"])
    assert (
        scored["metrics"]["recall_subset@3"]["value"]
        >= scored["metrics"]["recall_subset@1"]["value"]
    )


def test_ilias_predictions_score_as_their_evaluation(workspace: Path) -> None:
    """The ranked lists' ILIAS JSON (`knn_search/search.py --save_as json`'s format) scores,
    against the raw id lists by `matchbench score`, exactly as the evaluate stage scored them."""
    model = "clip-mini+clip-rich@linear-aqe"
    doc = json.loads(
        (workspace / f"results/tiny/metrics/retrieval/mini-ilias/{model}.json").read_text()
    )
    preds = workspace / f"results/tiny/retrieval/mini-ilias/{model}/predictions.json"
    out = workspace / "scored-ilias.json"
    run(
        [
            "matchbench", "score", "--benchmark", "ilias", "--annotations",
            "data/tiny/raw/mini-ilias", "--predictions", str(preds), "--model", model,
            "--out", str(out),
        ],
        workspace,
    )  # fmt: skip
    scored = json.loads(out.read_text())
    assert set(scored["extra"]["query_sets"]) == {"image", "text"}
    by_kind = scored["per_category"]["map@1k"]
    # tiny's k is 50 and every instance has 2 positives: AP@50 and AP@1k agree on these lists
    for kind in ("image", "text"):
        assert by_kind[kind] == pytest.approx(doc["metrics"][f"{kind}_map@50"]["value"], abs=1e-9)
    assert len(doc["extra"]["curve"]) == 3  # 0, 1 and 2 shards
    assert doc["extra"]["ann"] == {}  # approximate indexes are compared on `global` only
    plain = workspace / "results/tiny/metrics/retrieval/mini-ilias/clip-mini+clip-rich@global.json"
    assert json.loads(plain.read_text())["extra"]["ann"]["HNSW8 efSearch=64"]["recall@50"] > 0.5


def test_local_reranking_reorders_only_the_image_queries_shortlists(workspace: Path) -> None:
    """`local` re-ranks each image query's top `local.shortlist` of `global`'s list by the
    Chamfer similarity of dense features: the same images there, in another order, with scores
    that still rank them; below the shortlist, and for text queries, global's lists."""
    ranked = workspace / "results/tiny/retrieval/mini-ilias"
    model = "clip-mini+clip-rich"
    glob = pd.read_parquet(ranked / f"{model}@global/ranks.parquet")
    local = pd.read_parquet(ranked / f"{model}@local/ranks.parquet")
    assert (
        json.loads((ranked / f"{model}@local/search.json").read_text())["local"]["shortlist"] == 20
    )
    key = ["distractors", "query", "rank"]
    both = glob.merge(local, on=key, suffixes=("_g", "_l"), validate="one_to_one")
    assert len(both) == len(glob) == len(local)
    text = both["kind_g"] == "text"
    assert text.any() and (both.loc[text, "id_g"] == both.loc[text, "id_l"]).all()
    image = both[~text]
    rest = image[image["rank"] > 20]
    assert (rest["id_g"] == rest["id_l"]).all()
    short = image[image["rank"] <= 20]
    for _, part in short.groupby(["distractors", "query"]):
        assert sorted(part["id_g"]) == sorted(part["id_l"])
    assert (short["id_g"] != short["id_l"]).any()  # the dense features did reorder something
    for _, part in local.groupby(["distractors", "query"]):
        assert part.sort_values("rank")["score"].is_monotonic_decreasing
    # The report tests what the re-ranking adds, paired over the same image queries.
    gains = (workspace / "reports/tiny/tables/retrieval_gains_mini-ilias.md").read_text()
    row = f"| {model}@local | {model}@global | image |"
    assert row in gains and f"| {model}@local | {model}@global | text |" not in gains


def test_adding_a_distractor_shard_reruns_only_that_shard_and_the_searches(workspace: Path) -> None:
    """The distractors are a scatter: one more shard is one more download and extraction job;
    the shards already extracted stay, and every search (which gathers them) runs again."""
    cfg = yaml.safe_load((workspace / TINY).read_text())
    cfg["tracks"]["retrieval"]["distractors"]["shards"] = 3
    (workspace / "shards.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_jobs(workspace, "shards.yaml") == {
        "download_shard": 1,
        "extract_shard": 2,  # one per model
        "retrieve": 6,
        "evaluate_retrieval": 6,
        "report": 1,
        "all": 1,
    }


def test_one_training_key_reruns_only_its_track(workspace: Path) -> None:
    cfg = yaml.safe_load((workspace / TINY).read_text())
    cfg["tracks"]["correspondence"].setdefault("train", {})["lr"] = 0.002
    (workspace / "lr.yaml").write_text(yaml.safe_dump(cfg))
    assert planned_jobs(workspace, "lr.yaml") == {
        "finetune_correspondence": 1,  # the fine-tune, then what depends on it:
        "extract_dense": 1,  # the fine-tuned model's maps,
        "evaluate_correspondence": 1,  # its evaluation,
        "report": 1,
        "all": 1,
    }


def test_editing_a_stage_module_reruns_that_stage_and_its_consumers(workspace: Path) -> None:
    module = workspace / "src/matchbench/stages/mine.py"
    source = module.read_text()
    try:
        module.write_text(source + "\n# an edit\n")
        assert planned_jobs(workspace, TINY) == {
            "mine": 1,  # the stage whose code changed, then its consumers:
            "finetune_ssl_spp": 1,
            "extract": 1,  # the ssl-spp model's features,
            "evaluate_ssl": 1,
            "report": 1,
            "all": 1,
        }
    finally:
        module.write_text(source)
    assert planned_jobs(workspace, TINY) == {}


def _first_shard(shards: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (shards.is_dir() and any(shards.glob("[0-9]*.npy"))):
        if proc.poll() is not None:
            pytest.fail(f"extract exited ({proc.returncode}) before writing its first shard")
        if time.monotonic() > deadline:
            pytest.fail(f"no shard in {shards} after {timeout} s")
        time.sleep(0.002)


def test_extract_killed_midway_resumes_to_the_same_bytes(workspace: Path) -> None:
    # Small shards and big inputs (the 32-pixel images upscaled to 224) make extraction take
    # seconds after the first shard lands, so the kill reliably falls in the middle.
    cfg = yaml.safe_load((workspace / TINY).read_text())
    cfg["extract"] = {"batch_size": 4, "shard_size": 4}
    cfg["backbones"]["resnet-mini"]["image_size"] = 224
    config = workspace / "extract-kill.yaml"
    config.write_text(yaml.safe_dump(cfg))
    n_shards = -(-len(pd.read_parquet(workspace / "data/tiny/miniworld/images.parquet")) // 4)

    def extract(out: Path) -> list[str]:
        return [
            "matchbench", "extract", "--config", str(config), "--dataset", "miniworld",
            "--model", "resnet-mini", "--out", str(out),
        ]  # fmt: skip

    killed = workspace / "killed"
    proc = subprocess.Popen(
        extract(killed),
        cwd=workspace,
        env=env(workspace),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _first_shard(killed / ".shards", proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # Nothing that looks complete: no feature store file, only shards (and maybe a temp file).
    assert sorted(p.name for p in killed.iterdir()) == [".shards"]
    done = sorted(p.name for p in (killed / ".shards").glob("[0-9]*.npy"))
    assert 1 <= len(done) < n_shards, f"kill landed outside the run: {len(done)}/{n_shards} shards"

    resumed = run(extract(killed), workspace).stdout
    assert f", {len(done)} shards resumed" in resumed
    assert not (killed / ".shards").exists()

    whole = workspace / "uninterrupted"
    assert "resumed" not in run(extract(whole), workspace).stdout
    assert (killed / "features.npy").read_bytes() == (whole / "features.npy").read_bytes()
    assert (killed / "ids.txt").read_bytes() == (whole / "ids.txt").read_bytes()
    assert np.load(whole / "features.npy").shape[0] == len((whole / "ids.txt").read_text().split())


def test_snakemakes_own_report_holds_the_projects_report_results_and_figures(
    workspace: Path, tmp_path: Path
) -> None:
    out = tmp_path / "snakemake-report.html"
    run(["snakemake", "--report", str(out), "--configfile", TINY], workspace)
    page = out.read_text()
    for item in (
        "index.html",
        "results.csv",
        "pck_curves.png",
        "sugarcrepe_categories_mini-vl.png",
    ):
        assert item in page, item
    for caption in ("workflow.rst", "index.rst", "results.rst", "figures.rst"):
        first = (ROOT / "workflow/report" / caption).read_text().split()[:6]
        assert " ".join(first) in page, caption


def _chromium() -> str:
    """Debian's chromium, installed from the package archive when missing (CI runs as root)."""
    found = shutil.which("chromium")
    if found is None:
        if os.geteuid() != 0:
            pytest.skip(
                "needs Debian's chromium (apt-get install chromium), and root to install it"
            )
        apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(install, env=apt, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=apt, capture_output=True, check=True)
            subprocess.run(install, env=apt, capture_output=True, check=True)
        found = shutil.which("chromium")
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


def test_the_report_opens_cleanly_in_headless_chromium(workspace: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    report = workspace / "reports" / "tiny" / "index.html"
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=args)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console, failed = [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(report.as_uri())
        page.wait_for_load_state("load")
        images = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth > 0])"
        )
        links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
        ids = set(page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert console == [] and failed == []
    assert len(images) >= 4 and [src for src, ok in images if not ok] == []
    for href in links:
        if href.startswith("#"):
            assert href[1:] in ids, href
        elif "://" not in href:
            assert (report.parent / href).is_file(), href
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_a_killed_snakemake_run_continues_with_the_readmes_command(workspace: Path) -> None:
    # Runs last in this module: the copy of the config below trains another correspondence
    # model into the workspace's results.
    cfg = yaml.safe_load((workspace / TINY).read_text())
    cfg["tracks"]["correspondence"]["train"].update({"epochs": 6, "lr": 0.003})
    config = workspace / "killed.yaml"
    config.write_text(yaml.safe_dump(cfg))
    model = workspace / "results/tiny/models/correspondence/mini-spair/vit-tiny"
    checkpoint = model / ".resume" / "checkpoint.pt"

    proc = subprocess.Popen(
        ["snakemake", "--cores", "1", "--configfile", config.name],
        cwd=workspace,
        env=env(workspace),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes its jobs with it
    )
    try:
        deadline = time.monotonic() + 300
        while not checkpoint.exists():
            assert proc.poll() is None, f"snakemake ended ({proc.returncode}) before a checkpoint"
            assert time.monotonic() < deadline, f"no {checkpoint} after 300 s"
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not (model / "model.safetensors").exists()

    # README, "A run that was killed": unlock, then the same command.
    run(["snakemake", "--unlock", "--configfile", config.name], workspace)
    run(["snakemake", "--cores", "2", "--configfile", config.name], workspace)
    log = (workspace / "logs/tiny/finetune/correspondence/mini-spair/vit-tiny.log").read_text()
    assert "resumed after epoch" in log
    assert not checkpoint.parent.exists()
    assert planned_jobs(workspace, config.name) == {}

    whole = workspace / "uninterrupted-finetune"
    run(
        [
            "matchbench",
            "finetune",
            "--config",
            config.name,
            "--recipe",
            "correspondence",
            "--dataset",
            "mini-spair",
            "--backbone",
            "vit-tiny",
            "--out",
            str(whole),
        ],  # fmt: skip
        workspace,
    )
    for name in ("model.safetensors", "train_log.csv", "config.json"):
        assert (model / name).read_bytes() == (whole / name).read_bytes(), name
