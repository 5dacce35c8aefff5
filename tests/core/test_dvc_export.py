"""dvc.yaml is derived from the Snakemake DAG (docs/dvc.md): the committed file is up to date with
the default config's DAG, every stage runs exactly the command Snakemake runs for that job, and a
stale file is refused with a message that names it."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dvc.stage.utils import is_valid_name

from matchbench import dvc_export
from matchbench.cli import main
from matchbench.dvc_export import Context, build, parse_dry_run
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


@pytest.fixture(scope="module", autouse=True)
def one_dry_run() -> Iterator[None]:
    """Every test here reads the default config's DAG: Snakemake's dry run (~15 s) runs once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dvc_export, "dry_run", functools.cache(dvc_export.dry_run))
        yield


@pytest.fixture(scope="module")
def snakemake_commands() -> list[str]:
    """Every shell command of the default config's DAG, read off Snakemake's own dry run."""
    prefix = "Shell command: "
    lines = dvc_export.dry_run(dvc_export.DEFAULT_CONFIG, ROOT).splitlines()
    return [
        line[len(prefix) :] for line in lines if line.startswith(prefix) and line != f"{prefix}None"
    ]


def test_committed_dvc_yaml_is_up_to_date(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    assert main(["dvc-export", "--check"]) == 0, capsys.readouterr().err


def test_every_stage_runs_the_command_snakemake_runs(
    committed: dict[str, Any], snakemake_commands: list[str]
) -> None:
    stages = committed["stages"]
    assert sorted(s["cmd"][-1] for s in stages.values()) == sorted(snakemake_commands)
    extract = stages["extract--miniworld--resnet-mini_ssl"]
    assert extract["cmd"][-1] == (
        "matchbench extract --config config/default.yaml --dataset miniworld "
        "--model resnet-mini+ssl 2> logs/demo/extract/miniworld/resnet-mini+ssl.log"
    )
    assert extract["cmd"][-1] in snakemake_commands
    # The folders Snakemake creates before a job (the `2>` redirection needs the log's).
    assert (
        extract["cmd"][0]
        == "mkdir -p logs/demo/extract/miniworld results/demo/features/miniworld/resnet-mini+ssl"
    )
    # Its deps: its inputs and the code it runs (never the whole config file) ...
    data = [d for d in extract["deps"] if not d.startswith("src/")]
    assert data == [
        "data/miniworld/images.parquet",
        "results/demo/models/ssl/miniworld/resnet-mini/model.safetensors",
    ]
    code = [d for d in extract["deps"] if d.startswith("src/")]
    assert "src/matchbench/stages/extract.py" in code and "src/matchbench/runtime.py" in code
    assert not any("/tracks/ssl/" in d or "/report/" in d for d in code)
    # ... and the config values it reads, as DVC params of the config file.
    assert extract["params"] == [
        {
            "config/default.yaml": [
                "backbones.resnet-mini",
                "device",
                "extract.batch_size",  # not extract.workers: it cannot change the features
                "extract.shard_size",
                "seed",
                "threads",
            ]
        }
    ]
    finetune = stages["finetune_correspondence--mini-spair--repvgg-mini"]
    (params,) = finetune["params"]
    assert "tracks.correspondence.train" in params["config/default.yaml"]
    assert not any(k.startswith("tracks.ssl") for k in params["config/default.yaml"])
    assert "results/demo/features/miniworld/resnet-mini+ssl/features.npy" in extract["outs"]


SSL_MODELS = ("resnet-mini", "resnet-mini+ssl", "resnet-mini+ssl-spp")
CORR_MODELS = ("vit-mini", "repvgg-mini", "repvgg-mini+correspondence")
COMPOSE_MODELS = (
    "clip-mini",
    *(f"clip-mini+clip-{v}" for v in ("alt", "rich", "rich-ss", "rich-hn")),
)
RETRIEVAL_MODELS = tuple(
    f"{x}@{m}"
    for x in ("resnet-ilias", "resnet-ilias+ilias-embed", "clip-mini+clip-rich")
    for m in ("global", "linear", "linear-aqe", "local")
)
CIR_MODELS = tuple(
    f"clip-mini+clip-rich@{m}" for m in ("image", "text", "sum", "pic2word", "lincir", "two-stage")
)


def test_metrics_plots_and_names(committed: dict[str, Any]) -> None:
    stages = committed["stages"]
    assert all(is_valid_name(name) for name in stages)  # what `dvc stage add` accepts
    metrics = sorted(m for s in stages.values() for m in s.get("metrics", []))
    # DVC's metrics are the flat headline files; the full documents are plain outputs.
    assert metrics == sorted(
        [f"results/demo/summary/ssl/miniworld/{m}.json" for m in SSL_MODELS]
        + [f"results/demo/summary/correspondence/mini-spair/{m}.json" for m in CORR_MODELS]
        + [f"results/demo/summary/compose/mini-vl/{m}.json" for m in COMPOSE_MODELS]
        + [
            f"results/demo/summary/cir/{d}/{m}.json"
            for d in ("mini-cirr", "mini-circo", "mini-fiq")
            for m in CIR_MODELS
        ]
        + [f"results/demo/summary/retrieval/mini-ilias/{m}.json" for m in RETRIEVAL_MODELS]
    )
    outs = {o for s in stages.values() for o in s.get("outs", [])}
    assert "results/demo/metrics/ssl/miniworld/resnet-mini+ssl.json" in outs
    # Image plots only: DVC's page for data plots loads Vega from a CDN (blank offline).
    assert committed["plots"] == ["reports/demo/figures"]
    assert "reports/demo/figures" in stages["report--demo"]["outs"]
    # Producers before consumers: download first, the report last.
    names = list(stages)
    assert names[0].startswith("download--") and names[-1] == "report--demo"


def test_stale_or_missing_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "dvc.yaml"
    assert main(["dvc-export", "--check", "--out", str(out)]) == 1
    assert f"{out} does not exist" in capsys.readouterr().err

    assert main(["dvc-export", "--out", str(out)]) == 0
    stale = out.read_text().replace("--title demo", "--title old")
    out.write_text(stale)
    assert main(["dvc-export", "--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{out} is stale" in err
    assert f"matchbench dvc-export --out {out}" in err  # how to regenerate it
    assert (
        "+    - matchbench report --config config/default.yaml --out reports/demo --title demo"
        in err
    )  # the diff
    assert out.read_text() == stale  # --check writes nothing


# Snakemake 9's dry-run text, as `dvc-export` reads it (trimmed).
DRY_RUN = """\
Building DAG of jobs...
Job stats:
job        count
-------  -------
extract        1
all            1
total          2


[Mon Nov 23 11:00:12 2026]
rule extract:
    input: data/mw/images.parquet
    output: results/features/mw/r+ssl/features.npy, results/features/mw/r+ssl/ids.txt
    log: logs/extract/mw/r+ssl.log
    jobid: 1
    reason: Forced execution
    wildcards: dataset=mw, model=r+ssl
    resources: tmpdir=/tmp, gpu=1
Shell command: matchbench extract --dataset mw --model r+ssl 2> logs/extract/mw/r+ssl.log

[Mon Nov 23 11:00:12 2026]
localrule all:
    input: results/features/mw/r+ssl/features.npy
    jobid: 0
    reason: Forced execution
    resources: tmpdir=/tmp
Shell command: None
Job stats:
job        count
-------  -------
extract        1
all            1
total          2
"""


def test_parse_dry_run() -> None:
    jobs = parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["extract", "all"]
    extract = jobs[0]
    assert extract.wildcards == (("dataset", "mw"), ("model", "r+ssl"))
    assert extract.outputs == (
        "results/features/mw/r+ssl/features.npy",
        "results/features/mw/r+ssl/ids.txt",
    )
    assert (
        extract.shellcmd
        == "matchbench extract --dataset mw --model r+ssl 2> logs/extract/mw/r+ssl.log"
    )
    assert jobs[1].shellcmd is None
    cfg = {"run": "r", "paths": {"data": "data", "results": "results", "reports": "reports"}, "seed": 0,
           "threads": 1, "device": "cpu", "extract": {"precision": "auto"},
           "backbones": {"r": {"source": "timm"}}, "datasets": {}, "tracks": {}}  # fmt: skip
    raw = {"backbones": {"r": {}}, "seed": 0}
    doc = build(jobs, Context("c.yaml", raw, cfg, Layout.of(cfg), ROOT))
    assert list(doc["stages"]) == ["extract--mw--r_ssl"]  # `all` runs nothing
    assert doc["stages"]["extract--mw--r_ssl"]["cmd"] == [
        "mkdir -p logs/extract/mw results/features/mw/r+ssl",
        extract.shellcmd,
    ]
    stage = doc["stages"]["extract--mw--r_ssl"]
    assert [d for d in stage["deps"] if not d.startswith("src/")] == ["data/mw/images.parquet"]
    assert stage["params"] == [{"c.yaml": ["backbones.r", "seed"]}]  # those written in the file


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("2> logs/extract/mw/r+ssl.log\n", "2> logs/extract/mw/r+ssl.log\n  && echo done\n"),
            "multi-line",
        ),
        (("rule extract:", "checkpoint extract:"), "checkpoint"),
        (("extract        1\nall", "extract        2\nall"), "job stats"),
    ],
)
def test_parse_dry_run_refuses_what_it_cannot_express(edit: tuple[str, str], message: str) -> None:
    with pytest.raises(MatchbenchError, match=message):
        parse_dry_run(DRY_RUN.replace(*edit, 1))
