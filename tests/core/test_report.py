"""The report promise: a config and metrics documents in (their side files named in
``artifacts``); one tidy CSV, tables, figures and a self-contained page out; byte-identical
on rerun; a bad input stops it, named, with no half report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

import matchbench.tracks
from matchbench.cli import main
from matchbench.per_query import PerQuery
from matchbench.report.gather import gather_metrics, gather_train_logs, read_metrics_docs
from matchbench.report.provenance import git_commit, reproduce_command
from matchbench.tracks.ssl.report import read_pair_sample, select_pairs

EVIL = "<script>alert(1)</script>"


def _metrics(
    root: Path, task: str, dataset: str, model: str, metrics: dict, artifacts: dict | None = None
) -> Path:
    # Named by a counter, not by model: nothing may learn a result's identity from its path.
    path = root / "results" / "metrics" / task / dataset / f"{len(list(root.rglob('*.json')))}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "task": task,
        "dataset": dataset,
        "model": model,
        "split": "test",
        "metrics": metrics,
        "per_category": {},
        "extra": {},
    }
    if artifacts:
        doc["artifacts"] = {role: str(file) for role, file in artifacts.items()}
    path.write_text(json.dumps(doc))
    return path


def _m(value, low=None, high=None) -> dict:
    return {"value": value, "ci_low": low, "ci_high": high, "n": 240}


def _config(root: Path, name: str = "config.yaml", **report: object) -> Path:
    """A config whose paths are under ``root``; ``report`` overrides its report block."""
    cfg = {
        "run": "demo",
        "paths": {key: str(root / key) for key in ("data", "results", "reports")},
        "datasets": {"miniworld": {"family": "miniworld"}},
        "backbones": {"resnet-mini": {"source": "timm", "arch": "test_resnet"}},
        "tracks": {
            "ssl": {"dataset": "miniworld", "backbones": ["resnet-mini"], "sampler": "backbone"}
        },
        "report": {"published": str(root / "published.yaml"), **report},
    }
    path = root / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _train_log(path: Path, knn: tuple[float, float, float]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "epoch,step,loss,lr,seconds,knn_acc\n"
        f"0,10,2.5,0.1,1.0,{knn[0]}\n1,20,1.8,0.1,1.0,{knn[1]}\n2,30,1.2,0.05,1.0,{knn[2]}\n"
    )
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """A small but complete set of stage outputs, laid out as the workflow writes them."""
    models = tmp_path / "results" / "models"
    log = _train_log(
        models / "ssl" / "miniworld" / "resnet-mini" / "train_log.csv", (0.3, 0.45, 0.6)
    )
    spp_log = _train_log(
        models / "ssl-spp" / "miniworld" / "resnet-mini" / "train_log.csv", (0.3, 0.5, 0.55)
    )
    mined = tmp_path / "results" / "pairs" / "miniworld" / "resnet-mini"
    stats, pairs_path = mined / "stats.json", mined / "pairs.parquet"
    metrics = [
        _metrics(
            tmp_path,
            "ssl",
            "miniworld",
            "resnet-mini",
            {"knn_acc": _m(0.4, 0.35, 0.45), "linear_acc": _m(0.5, 0.44, 0.56)},
        ),
        _metrics(
            tmp_path,
            "ssl",
            "miniworld",
            "resnet-mini+ssl",
            {"knn_acc": _m(0.612, 0.55, 0.671), "linear_acc": _m(0.48, 0.41, 0.55)},
            {"train_log": log},
        ),
        _metrics(
            tmp_path,
            "ssl",
            "miniworld",
            "resnet-mini+ssl-spp",
            {"knn_acc": _m(0.55, 0.5, 0.6), "linear_acc": _m(0.45, 0.4, 0.5)},
            {"train_log": spp_log, "pairs": pairs_path, "mining_stats": stats},
        ),
        _metrics(tmp_path, "ssl", "miniworld", EVIL, {"knn_acc": _m(0.1, 0.05, 0.15)}),
        # A task that is no track (a score benchmark), without CIs: the generic table
        # (correspondence has its own section: tests/tracks/correspondence/test_report_corr.py).
        _metrics(tmp_path, "ranking", "cirr-mini", "resnet-mini", {"recall@1": _m(0.25)}),
    ]
    stats.parent.mkdir(parents=True)
    stats.write_text(
        json.dumps(
            {
                "k": 10,
                "threshold": 0.6,
                "n_anchors": 12,
                "n_pairs": 30,
                "anchors_with_pairs": 11,
                "precision": 0.8,
                "by_threshold": [
                    {"threshold": t, "n_pairs": n, "precision": p, "anchors_with_pairs": a}
                    for t, n, p, a in [(0.4, 90, 0.5, 12), (0.6, 30, 0.8, 11), (0.8, 5, 1.0, 4)]
                ],
            }
        )
    )
    # images.parquet with real PNG thumbnails: 12 images, 3 classes.
    data = tmp_path / "data" / "miniworld"
    (data / "images").mkdir(parents=True)
    classes = ["circle", "square", "star"]
    rows = []
    for i in range(12):
        cls = classes[i % 3]
        rel = f"images/{i:03d}.png"
        Image.new("RGB", (40, 30), color=(60 * (i % 3), 20 * i, 100)).save(data / rel)
        rows.append((f"img{i:03d}", rel, "train", cls, i % 3, "", 40, 30))
    index = pd.DataFrame(
        rows, columns=["id", "path", "split", "class", "label", "instance", "width", "height"]
    )
    index.to_parquet(data / "images.parquet", index=False)
    # Each anchor has a same-class and a different-class neighbour; odd anchors rank the
    # different-class one first, so the example grid shows both frame colours.
    pairs = pd.DataFrame(
        [
            (f"img{a:03d}", f"img{p:03d}", np.float32(0.9 - 0.1 * r - 0.01 * a), r + 1)
            for a in range(12)
            for r, p in enumerate([(a + 3) % 12, (a + 1) % 12][:: 1 if a % 2 == 0 else -1])
        ],
        columns=["anchor", "positive", "similarity", "rank"],
    )
    pairs.to_parquet(pairs_path, index=False)
    published = tmp_path / "published.yaml"
    published.write_text(
        "- {task: ssl, dataset: miniworld, model: resnet-mini+ssl, metric: knn_acc, value: 0.60, source: 'Paper 2024, Tab. 2'}\n"
        "- {task: ssl, dataset: miniworld, model: vit-huge, metric: knn_acc, value: 0.9, source: 'Paper 2024, Tab. 2'}\n"
    )
    return {
        "root": tmp_path,
        "config": _config(tmp_path),
        "metrics": metrics,
        "spp": metrics[2],
        "stats": stats,
        "log": log,
        "pairs": pairs_path,
        "index": data / "images.parquet",
        "images": data,
        "published": published,
    }


def _argv(inp: dict, out: Path, *extra: str, config: Path | None = None) -> list[str]:
    return [
        "report",
        "--config", str(config or inp["config"]),
        "--out", str(out),
        "--title", "Mini-world <demo> & friends",
        "--metrics", *map(str, inp["metrics"]),
        *extra,
    ]  # fmt: skip


def _with_artifact(inp: dict, doc: Path, role: str, value: object) -> list[Path]:
    """The metrics list with ``doc`` replaced by a copy whose artifact ``role`` is ``value``."""
    data = json.loads(doc.read_text())
    data["artifacts"][role] = value
    copy = inp["root"] / "edited" / doc.name
    copy.parent.mkdir(exist_ok=True)
    copy.write_text(json.dumps(data))
    return [copy if m == doc else m for m in inp["metrics"]]


@pytest.fixture
def report(inputs: dict, capsys: pytest.CaptureFixture[str]) -> Path:
    out = inputs["root"] / "reports" / "demo"
    assert main(_argv(inputs, out)) == 0
    assert capsys.readouterr().out.strip() == f"report: {out / 'index.html'}"
    return out


def test_results_csv_is_one_tidy_row_per_result(report: Path) -> None:
    assert (report / "results.csv").read_text() == (
        "task,dataset,model,metric,value,ci_low,ci_high\n"
        "ranking,cirr-mini,resnet-mini,recall@1,0.250000,,\n"
        f"ssl,miniworld,{EVIL},knn_acc,0.100000,0.050000,0.150000\n"
        "ssl,miniworld,resnet-mini,knn_acc,0.400000,0.350000,0.450000\n"
        "ssl,miniworld,resnet-mini,linear_acc,0.500000,0.440000,0.560000\n"
        "ssl,miniworld,resnet-mini+ssl,knn_acc,0.612000,0.550000,0.671000\n"
        "ssl,miniworld,resnet-mini+ssl,linear_acc,0.480000,0.410000,0.550000\n"
        "ssl,miniworld,resnet-mini+ssl-spp,knn_acc,0.550000,0.500000,0.600000\n"
        "ssl,miniworld,resnet-mini+ssl-spp,linear_acc,0.450000,0.400000,0.500000\n"
    )


def test_main_tables_show_percent_with_ci_and_bold_best(report: Path) -> None:
    tables = report / "tables"
    md = (tables / "ssl_miniworld.md").read_text()
    assert "| resnet-mini+ssl | **61.2 (55.0–67.1)** | 48.0 (41.0–55.0) |" in md
    assert "| resnet-mini | 40.0 (35.0–45.0) | **50.0 (44.0–56.0)** |" in md
    assert "| resnet-mini+ssl-spp | 55.0 (50.0–60.0) | 45.0 (40.0–50.0) |" in md
    assert "| \\<script\\>alert(1)\\</script\\> | 10.0 (5.0–15.0) | — |" in md
    assert "percent" in md
    tex = (tables / "ssl_miniworld.tex").read_text()
    assert r"\toprule" in tex and r"\bottomrule" in tex
    assert r"resnet-mini+ssl & \textbf{61.2 (55.0--67.1)} & 48.0 (41.0--55.0) \\" in tex
    assert r"knn\_acc" in tex
    csv = pd.read_csv(tables / "ssl_miniworld.csv")
    assert list(csv.columns) == ["model", "knn_acc", "linear_acc"]
    assert csv.set_index("model").loc["resnet-mini+ssl", "knn_acc"] == "61.2 (55.0–67.1)"
    # A single model has no "best": nothing is bold; a metric without CI prints the value only.
    assert "| resnet-mini | 25.0 |" in (tables / "ranking_cirr-mini.md").read_text()


def test_mining_and_published_tables(report: Path) -> None:
    # The sampler is the config's (tracks.ssl.sampler: backbone), for the document's backbone.
    mining = (report / "tables" / "mining.md").read_text()
    assert "| miniworld | resnet-mini | 10 | 0.600 | 30 | 11 / 12 | 80.0 |" in mining
    published = pd.read_csv(report / "tables" / "published.csv", dtype=str, keep_default_na=False)
    ours = published.set_index("model").loc["resnet-mini+ssl"]
    assert (ours["reproduced"], ours["published"], ours["Δ"], ours["in CI"]) == (
        "61.2 (55.0–67.1)",
        "60.0",
        "+1.2",
        "yes",
    )
    assert published.set_index("model").loc["vit-huge", "reproduced"] == "—"


def test_figures_are_valid_pngs(report: Path) -> None:
    names = sorted(p.name for p in (report / "figures").iterdir())
    assert names == [
        "across_tasks.png",
        "bars_ranking_cirr-mini.png",
        "bars_ssl_miniworld.png",
        "learning_curves_miniworld.png",
        "mined_pairs.png",
        "mining_miniworld.png",
    ]
    for name in names:
        with Image.open(report / "figures" / name) as image:
            assert image.format == "PNG"
            assert "Software" not in image.info  # no matplotlib version stamp
            image.load()  # decodes every pixel: a truncated file fails here
            assert image.size[0] > 100 and image.size[1] > 100


def test_index_html_names_everything_and_escapes_text(inputs: dict, report: Path) -> None:
    page = (report / "index.html").read_text()
    for model in ("resnet-mini", "resnet-mini+ssl", "resnet-mini+ssl-spp"):
        assert model in page
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Mini-world &lt;demo&gt; &amp; friends" in page
    sections = ("summary", "results", "figures", "mining", "learning-curves", "reproduce")
    at = [page.index(f'<section id="{section}">') for section in sections]
    assert at == sorted(at)  # the track's section after the generic results, in this order
    for name in (p.name for p in (report / "figures").iterdir()):
        assert f'src="figures/{name}"' in page
    assert "<h3>Mined positive pairs</h3>" in page
    assert f"Example pairs from {inputs['pairs']}" in page  # the path the document names
    assert "<strong>61.2 (55.0–67.1)</strong>" in page
    # How to reproduce: the command of this config, and what the numbers were made from.
    config = inputs["config"]
    assert f"<pre><code>snakemake --cores 2 --configfile {config}</code></pre>" in page
    origin = json.loads((report / "provenance.json").read_text())
    assert origin["config_sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert origin["config_sha256"] in page and origin["config"] == str(config)
    assert origin["versions"]["torch"] == metadata.version("torch")
    assert origin["versions"]["matchbench"] == metadata.version("matchbench")
    assert (origin["seed"], origin["device"], origin["threads"]) == (0, "auto", 2)
    git = origin["git"]  # the tests run in a checkout (CI clones); None outside one
    assert git is None or (len(git["commit"]) == 40 and git["commit"] in page)
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_reproduce_option_is_shown_escaped(inputs: dict, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "r"
    assert main(_argv(inputs, out, "--reproduce", "snakemake --cores 4 --config a='<b>'")) == 0
    assert (
        "snakemake --cores 4 --config a=&#x27;&lt;b&gt;&#x27;" in (out / "index.html").read_text()
    )


def test_rerun_gives_identical_bytes(inputs: dict, report: Path) -> None:
    def snapshot(folder: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file()
        }

    first = snapshot(report)
    again = inputs["root"] / "reports" / "again"
    # Documents given in another order must not change a byte either.
    argv = _argv(inputs, again)
    i = argv.index("--metrics")
    argv[i + 1 : i + 1 + len(inputs["metrics"])] = map(str, reversed(inputs["metrics"]))
    assert main(argv) == 0
    second = snapshot(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []
    assert main(_argv(inputs, report)) == 0  # overwrite in place
    assert snapshot(report) == first


def test_train_logs_are_the_documents_and_the_recipes_plot_columns(inputs: dict) -> None:
    logs = gather_train_logs(read_metrics_docs(inputs["metrics"]))
    assert set(logs["model"]) == {"resnet-mini+ssl", "resnet-mini+ssl-spp"}
    assert set(logs["dataset"]) == {"miniworld"}
    assert set(logs["series"]) == {"loss", "knn_acc"}  # Recipe.plot_columns: not lr, seconds


@pytest.mark.parametrize(
    ("model", "log", "message"),
    [
        ("resnet-mini+ssl", "epoch,step,loss,lr\n0,1,2.0,0.1\n", "missing column 'knn_acc'"),
        (
            "resnet-mini+ssl",
            "epoch,loss,knn_acc\n0,2.0,high\n",
            "column 'knn_acc': expected numbers",
        ),
        ("resnet-mini+sll", "epoch,loss,knn_acc\n0,2.0,0.1\n", "did you mean ssl"),
    ],
)
def test_bad_train_logs_are_named(
    inputs: dict, model: str, log: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_log = inputs["root"] / "bad_log.csv"
    bad_log.write_text(log)
    bad = _metrics(
        inputs["root"], "ssl", "other", model, {"knn_acc": _m(0.5)}, {"train_log": bad_log}
    )
    argv = _argv(inputs, inputs["root"] / "reports" / "x")
    assert main([*argv, str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and (str(bad_log) in err or str(bad) in err)
    assert not (inputs["root"] / "reports").exists()


def test_gather_metrics_is_tidy_and_sorted(inputs: dict) -> None:
    df = gather_metrics(reversed(inputs["metrics"]))
    assert list(df.columns) == ["task", "dataset", "model", "metric", "value", "ci_low", "ci_high"]
    assert df[["task", "dataset", "model", "metric"]].values.tolist() == sorted(
        df[["task", "dataset", "model", "metric"]].values.tolist()
    )
    assert df["ci_low"].isna().sum() == 1


def test_pair_sample_reads_thumbnails_and_classes(inputs: dict) -> None:
    sample = read_pair_sample(
        inputs["pairs"], inputs["index"], inputs["images"], dataset="miniworld", model="sampler"
    )
    assert (sample.dataset, sample.model, sample.n_pairs, sample.n_anchors) == (
        "miniworld",
        "sampler",
        24,
        12,
    )
    assert [ex.anchor for ex in sample.examples] == [
        f"img{i:03d}" for i in (0, 2, 3, 5, 6, 8, 9, 11)
    ]
    assert [ex.same_class for ex in sample.examples] == [
        True,
        True,
        False,
        False,
        True,
        True,
        False,
        False,
    ]
    assert all(
        ex.anchor_image.dtype == np.uint8 and ex.anchor_image.ndim == 3 for ex in sample.examples
    )


def test_select_pairs_takes_the_best_pair_of_evenly_spaced_anchors() -> None:
    pairs = pd.DataFrame(
        {
            "anchor": [f"a{i:02d}" for i in range(20) for _ in range(2)],
            "positive": [f"p{i:02d}{j}" for i in range(20) for j in range(2)],
            "similarity": [s for _ in range(20) for s in (0.5, 0.7)],
            "rank": [r for _ in range(20) for r in (2, 1)],
        }
    ).sample(frac=1.0, random_state=0)
    chosen = select_pairs(pairs, n=5)
    assert chosen["anchor"].tolist() == ["a00", "a05", "a10", "a14", "a19"]
    assert chosen["similarity"].tolist() == [0.7] * 5
    assert chosen.equals(select_pairs(pairs.sample(frac=1.0, random_state=1), n=5))


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {"task": "ssl", "dataset": "miniworld", "metrics": {"knn_acc": _m(0.5)}},
            "'model' is a required property",
        ),
        ({"task": "ssl", "dataset": "miniworld", "model": 3, "metrics": {"k": _m(0.5)}}, "model"),
        (
            {
                "task": "ssl",
                "dataset": "miniworld",
                "model": "m",
                "metrics": {"knn_acc": {"ci_low": 0.1}},
            },
            "metrics.knn_acc: 'value' is a required property",
        ),
        (
            {
                "task": "ssl",
                "dataset": "miniworld",
                "model": "m",
                "metrics": {"knn_acc": _m("0.5")},
            },
            "metrics.knn_acc.value",
        ),
        (
            {"task": "ssl", "dataset": "miniworld", "model": "m", "metrics": {"knn_acc": _m(61.2)}},
            "'metrics.knn_acc.value': expected a number in [0, 1]",
        ),
        ({"task": "ssl", "dataset": "miniworld", "model": "m", "metrics": []}, "metrics"),
        ({"task": "ssl", "dataset": "miniworld", "model": "m", "metrics": {}}, "metrics"),
        ([1, 2], "top level"),
    ],
)
def test_malformed_metrics_stop_the_report(
    inputs: dict, doc: object, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = inputs["root"] / "bad_metrics.json"
    bad.write_text(json.dumps(doc))
    out = inputs["root"] / "reports" / "bad"
    argv = _argv(inputs, out)
    argv.insert(argv.index("--metrics") + 1, str(bad))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and expected in err
    assert not out.exists()
    assert not (inputs["root"] / "reports").exists()  # nothing written at all


def test_a_document_failing_the_schema_is_refused_by_name(
    inputs: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = _with_artifact(inputs, inputs["spp"], "pairs", 3)  # a path must be a string
    argv = _argv(inputs, inputs["root"] / "reports" / "x")
    i = argv.index("--metrics")
    argv[i + 1 :] = map(str, metrics)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    edited = inputs["root"] / "edited" / inputs["spp"].name
    assert f"{edited}: not a metrics document: artifacts.pairs: 3 is not of type 'string'" in err
    assert not (inputs["root"] / "reports").exists()


@pytest.mark.parametrize("which", ["metrics", "stats", "pairs", "log", "index", "published"])
def test_missing_input_file_is_named(
    inputs: dict, which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = inputs["root"]
    missing = root / f"missing_{which}"
    metrics, config = inputs["metrics"], inputs["config"]
    if which == "metrics":
        metrics = [missing, *metrics[1:]]
    elif which in ("stats", "pairs", "log"):
        role = {"stats": "mining_stats", "pairs": "pairs", "log": "train_log"}[which]
        metrics = _with_artifact(inputs, inputs["spp"], role, str(missing))
    elif which == "index":  # the layout's data/<dataset>/images.parquet
        config = _config(root, "moved.yaml")
        moved = yaml.safe_load(config.read_text())
        moved["paths"]["data"] = str(missing)
        config.write_text(yaml.safe_dump(moved))
        missing = missing / "miniworld" / "images.parquet"
    else:
        config = _config(root, "moved.yaml", published=str(missing))
    argv = _argv(inputs, root / "reports" / "x", config=config)
    argv[argv.index("--metrics") + 1 :] = map(str, metrics)
    assert main(argv) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err
    assert not (root / "reports").exists()


def test_mined_pairs_need_the_config_that_names_their_sampler(
    inputs: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    config = yaml.safe_load(inputs["config"].read_text())
    del config["tracks"]["ssl"]
    path = inputs["root"] / "no_ssl.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(_argv(inputs, inputs["root"] / "reports" / "x", config=path)) == 2
    err = capsys.readouterr().err
    assert str(inputs["spp"]) in err and "no tracks.ssl block" in err


def test_a_failed_rerun_keeps_the_previous_report(inputs: dict, report: Path) -> None:
    before = (report / "index.html").read_bytes()
    inputs["metrics"][0].write_text("{not json")
    assert main(_argv(inputs, report)) == 2
    assert (report / "index.html").read_bytes() == before


def test_duplicate_results_are_an_error(inputs: dict, capsys: pytest.CaptureFixture[str]) -> None:
    dup = _metrics(inputs["root"], "ssl", "miniworld", "resnet-mini", {"knn_acc": _m(0.3)})
    argv = _argv(inputs, inputs["root"] / "reports" / "dup")
    argv.insert(argv.index("--metrics") + 1, str(dup))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(dup) in err and "already given by" in err


def test_one_sampler_with_two_pair_files_is_an_error(
    inputs: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    # resnet-mini+ssl trained with the same sampler (the backbone) but names other pairs.
    other = inputs["root"] / "other_stats.json"
    other.write_text(inputs["stats"].read_text())
    metrics = _with_artifact(inputs, inputs["metrics"][1], "mining_stats", str(other))
    argv = _argv(inputs, inputs["root"] / "reports" / "x")
    argv[argv.index("--metrics") + 1 :] = map(str, metrics)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(other) in err and str(inputs["stats"]) in err
    assert "differs from" in err and "the same sampler resnet-mini on miniworld" in err


def test_published_values_must_be_fractions(
    inputs: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs["published"].write_text(
        "- {task: ssl, dataset: miniworld, model: m, metric: knn_acc, value: 61.2}\n"
    )
    assert main(_argv(inputs, inputs["root"] / "reports" / "p")) == 2
    err = capsys.readouterr().err
    assert str(inputs["published"]) in err and "[0].value" in err


def test_minimal_report_needs_only_a_config_and_metrics(inputs: dict, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "min"
    config = _config(tmp_path, "min.yaml", published=None)
    argv = ["report", "--config", str(config), "--out", str(out)]
    assert main([*argv, "--metrics", str(inputs["metrics"][0])]) == 0
    page = (out / "index.html").read_text()
    assert "No mined pairs" in page and "No training logs" in page
    assert sorted(p.name for p in (out / "tables").iterdir()) == [
        "across_tasks.csv",
        "across_tasks.md",
        "across_tasks.tex",
        "ssl_miniworld.csv",
        "ssl_miniworld.md",
        "ssl_miniworld.tex",
    ]


def test_the_old_side_file_flags_are_gone(inputs: dict, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _argv(inputs, inputs["root"] / "reports" / "x", "--mining-stats", str(inputs["stats"]))
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "--mining-stats" in capsys.readouterr().err


def test_a_track_without_a_section_gets_the_generic_frame(
    inputs: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A task whose track has no report section is drawn like a task that is no track."""
    plain = {
        name: dataclasses.replace(t, report=None) for name, t in matchbench.tracks.tasks().items()
    }
    monkeypatch.setattr(matchbench.tracks, "tasks", lambda: plain)
    out = tmp_path / "reports" / "plain"
    assert main(_argv(inputs, out)) == 0
    page = (out / "index.html").read_text()
    assert '<section id="mining">' not in page
    assert '<section id="results">' in page and '<section id="learning-curves">' in page
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "across_tasks.png",  # the frame's: every track's headline metrics
        "bars_ranking_cirr-mini.png",
        "bars_ssl_miniworld.png",
        "learning_curves_miniworld.png",  # the frame's: from any fine-tuned model's document
    ]
    assert {p.name for p in (out / "tables").iterdir()} >= {"ssl_miniworld.md", "published.md"}
    assert (
        "| resnet-mini+ssl | **61.2 (55.0–67.1)** |"
        in (out / "tables" / "ssl_miniworld.md").read_text()
    )


def test_compared_samplers_sit_beside_the_sampler(
    inputs: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    # tracks.ssl.compare_samplers: another model's mining statistics, from the layout's path.
    config = yaml.safe_load(inputs["config"].read_text())
    config["tracks"]["ssl"]["compare_samplers"] = ["resnet-mini+ssl"]
    path = inputs["root"] / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    other = inputs["root"] / "results" / "pairs" / "miniworld" / "resnet-mini+ssl" / "stats.json"
    other.parent.mkdir(parents=True)
    stats = json.loads(inputs["stats"].read_text())
    other.write_text(json.dumps({**stats, "precision": 0.25, "n_pairs": 7}))
    out = inputs["root"] / "reports" / "compare"
    assert main(_argv(inputs, out, config=path)) == 0, capsys.readouterr().err
    mining = (out / "tables" / "mining.md").read_text()
    assert "| miniworld | resnet-mini | 10 | 0.600 | 30 | 11 / 12 | 80.0 |" in mining
    assert (
        "| miniworld | resnet-mini+ssl (compared only) | 10 | 0.600 | 7 | 11 / 12 | 25.0 |"
        in mining
    )
    other.unlink()  # named by the config but not made: the report says which file
    assert main(_argv(inputs, inputs["root"] / "reports" / "x", config=path)) == 2
    assert str(other) in capsys.readouterr().err


def test_provenance_command_and_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert reproduce_command("config/default.yaml", 2) == "snakemake --cores 2"
    assert reproduce_command("config/my run.yaml", 8) == (
        "snakemake --cores 8 --configfile 'config/my run.yaml'"
    )
    monkeypatch.chdir(tmp_path)
    assert git_commit(tmp_path) is None  # not a checkout
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env |= {"GIT_COMMITTER_EMAIL": "t@t", "HOME": str(tmp_path)}
    for cmd in (["init", "-q"], ["add", "f"], ["commit", "-qm", "x"]):
        if cmd[0] == "add":
            (tmp_path / "f").write_text("a")
        subprocess.run(["git", *cmd], cwd=tmp_path, check=True, env={**os.environ, **env})
    clean = git_commit(tmp_path)
    assert clean is not None and len(clean["commit"]) == 40 and clean["dirty"] is False
    (tmp_path / "f").write_text("b")
    assert git_commit(tmp_path) == {"commit": clean["commit"], "dirty": True}


def test_a_figure_legend_fits_inside_its_figure() -> None:
    # pck_curves of the demo: five entries under one 4.4-inch panel were cut at both sides.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from matchbench.report.figures import legend

    labels = ["repvgg-mini", "repvgg-mini+correspondence", "vit-mini", "per image", "per point"]
    for width in (4.4, 8.2, 12.0):
        fig = Figure(figsize=(width, 4.0), layout="constrained")
        FigureCanvasAgg(fig)
        fig.subplots().plot([0, 1], [0, 1])
        legend(fig, [Line2D([], [], label=label) for label in labels], n=len(labels))
        fig.canvas.draw()
        box = fig.legends[0].get_window_extent()
        assert box.x0 >= 0 and box.x1 <= fig.bbox.x1, (width, box)
    assert fig.legends[0]._ncols == 4  # a wide figure keeps its columns


def test_provenance_records_dvc_lock_and_each_jobs_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matchbench.report.html import _job_costs
    from matchbench.report.provenance import job_costs, provenance

    monkeypatch.chdir(tmp_path)
    config = tmp_path / "c.yaml"
    config.write_text("run: r\n")
    paths = {"data": "data", "results": "results/{run}", "reports": "reports", "logs": "logs/{run}"}
    cfg = {"run": "r", "seed": 0, "device": "cpu", "threads": 1, "paths": paths}
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    folder = tmp_path / "logs" / "r" / "benchmarks"
    for job, row in (
        ("extract/ds/m", "12.5\t0:00:12\t812.3\t2000\t700\t750\t1\t2\t95.0\t11.9\n"),
        ("evaluate/ssl/ds/m", "1.25\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n"),
    ):
        (folder / job).parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{job}.tsv").write_text(header + row)
    (folder / "report").mkdir()
    (folder / "report" / "r.tsv").write_text("")  # a job killed before its numbers were written
    (tmp_path / "logs" / "other" / "benchmarks" / "x").mkdir(parents=True)  # another run's
    (tmp_path / "logs" / "other" / "benchmarks" / "x" / "y.tsv").write_text(header + "1\t0\t1\n")
    origin = provenance(cfg, config)
    assert origin["dvc_lock_sha256"] is None  # no dvc.lock here
    assert origin["jobs"] == [
        {"job": "evaluate/ssl/ds/m", "seconds": 1.25, "max_rss_mb": None},
        {"job": "extract/ds/m", "seconds": 12.5, "max_rss_mb": 812.3},
    ]
    assert job_costs(tmp_path / "absent") == []
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    lock = hashlib.sha256(b"schema: '2.0'\n").hexdigest()
    assert provenance(cfg, config)["dvc_lock_sha256"] == lock
    html = _job_costs(origin["jobs"])
    assert "2 jobs, 14 s of wall time" in html
    assert "<td><code>extract/ds/m</code></td><td>12.5</td><td>812</td>" in html
    assert "<td>1.2</td><td>n/a</td>" in html
    assert "No job timings" in _job_costs([])

    # Jobs forked by the warm server: Snakemake measured the client; the server's record of the
    # job whose stderr is the job's log, ended when its benchmark file was written, says more.
    import os

    from matchbench.warm import JOB_COLUMNS, jobs_file

    ended = (folder / "extract/ds/m.tsv").stat().st_mtime
    logs = tmp_path / "logs" / "r"
    rows = [
        (
            11,
            0,
            "12.4",
            "954.5",
            f"{ended:.0f}",
            str(logs / "extract/ds/m.log"),
            "matchbench extract",
        ),
        (12, 0, "1.2", "321.0", f"{ended - 3600:.0f}", str(logs / "evaluate/ssl/ds/m.log"), "old"),
    ]
    jobs_file(logs / "warm-server.log").write_text(
        "\t".join(JOB_COLUMNS) + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows)
    )
    assert job_costs(folder) == [
        {"job": "evaluate/ssl/ds/m", "seconds": 1.25, "max_rss_mb": None},  # an earlier run's row
        {"job": "extract/ds/m", "seconds": 12.5, "max_rss_mb": 954.5},
    ]
    assert os.path.realpath(logs / "extract/ds/m.log") == str(logs / "extract/ds/m.log")


def test_paired_tests_mark_what_cannot_be_told_from_the_best_and_the_tasks_line_up(
    tmp_path: Path,
) -> None:
    """Three models on the same 200 test images: b solves 12 more than a and loses none (a
    consistent gain a paired test sees), c differs from b only by noise; a score benchmark's
    document has no per-query values and no headline, so it is in neither view."""
    rng = np.random.default_rng(0)
    ids = [f"img{i:03d}" for i in range(200)]
    a = (rng.random(200) < 0.5).astype(float)
    b = a.copy()
    b[np.flatnonzero(a == 0)[:12]] = 1
    c = b.copy()
    flip = rng.choice(200, 6, replace=False)
    c[flip] = 1 - c[flip]
    docs = []
    for model, knn in (("m-a", a), ("m-b", b), ("m-c", c)):
        pq = PerQuery()
        out = tmp_path / "per_query" / f"{model}.json"
        doc = {"knn_acc": pq.summarise("knn_acc", ids, knn, 200, 0)}
        doc["linear_acc"] = pq.summarise("linear_acc", ids, knn[::-1], 200, 0)
        docs.append(
            _metrics(tmp_path, "ssl", "miniworld", model, doc, {"per_query": pq.write(out)})
        )
    docs.append(_metrics(tmp_path, "ranking", "cirr-mini", "m-a", {"recall@1": _m(0.25)}))
    out = tmp_path / "reports" / "paired"
    config = _config(tmp_path, published=None, paired_bootstrap=500)
    assert (
        main(["report", "--config", str(config), "--out", str(out), "--metrics", *map(str, docs)])
        == 0
    )

    tests = pd.read_csv(out / "paired.csv").set_index(["metric", "model"])
    best = "m-b" if b.mean() >= c.mean() else "m-c"
    assert set(tests["best"]) == {best} and len(tests) == 4  # two metrics x two others
    knn = tests.loc["knn_acc"]
    assert knn.loc["m-a", "p"] < 0.05  # a is told apart from the best...
    assert knn.loc["m-a", "delta"] == pytest.approx(a.mean() - max(b.mean(), c.mean()))
    other = "m-c" if best == "m-b" else "m-b"
    assert knn.loc[other, "p"] >= 0.05  # ...the noisy twin is not
    md = (out / "tables" / "ssl_miniworld.md").read_text()
    line = {
        row.split(" | ")[0].strip("| "): row for row in md.splitlines() if row.startswith("| m-")
    }
    knn_cell = {m: row.split(" | ")[1] for m, row in line.items()}
    assert knn_cell[other].endswith("†") and not knn_cell["m-a"].endswith("†")
    assert not knn_cell[best].endswith("†")
    assert "†: not separable from the column's best" in md
    assert "\\textsuperscript{\\dag}" in (out / "tables" / "ssl_miniworld.tex").read_text()
    assert "<sup" in (out / "index.html").read_text()

    across = (out / "tables" / "across_tasks.csv").read_text().splitlines()
    assert across[0] == "model,ssl · miniworld · knn_acc,ssl · miniworld · linear_acc,mean (n)"
    assert len(across) == 4  # the three ssl models; the score benchmark has no headline
    row_a = across[1].split(",")
    assert float(row_a[1]) == pytest.approx(a.mean() / max(b.mean(), c.mean()), abs=0.005)
    rho = (out / "tables" / "across_tasks_rank_correlation.csv").read_text().splitlines()
    assert rho[1].startswith("ssl · miniworld · knn_acc,ssl · miniworld · linear_acc,3,")
    assert "Paired tests" in (out / "index.html").read_text()
    first = (out / "paired.csv").read_bytes()
    assert (
        main(["report", "--config", str(config), "--out", str(out), "--metrics", *map(str, docs)])
        == 0
    )
    assert (out / "paired.csv").read_bytes() == first  # seeded: a rerun gives the same tests
