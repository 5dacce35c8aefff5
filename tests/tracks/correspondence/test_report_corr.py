"""The report promise for semantic correspondence: metrics documents (and the predictions
they name, with their images from the layout) in; the track's section out, in place of the
generic table: the unified benchmark's main table, a variant table per dataset, PCK curves,
category, flag and fine-tuned-vs-frozen bars, example keypoint transfers and visible warnings;
a malformed input stops it with no report written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from matchbench.cli import main
from matchbench.layout import Layout
from matchbench.report.gather import read_metrics_docs
from matchbench.tracks.correspondence import shown_models
from matchbench.tracks.correspondence.report_transfers import (
    predictions_files,
    read_transfer_samples,
    select_transfer_pairs,
)

ALPHAS = (0.05, 0.1, 0.15)
FROZEN, TUNED = "resnet-mini", "resnet-mini+correspondence"
# Per-image PCK at ALPHAS; per point is 3 points lower, the nn variant 10 points lower.
PCK = {
    ("spair71k", FROZEN): (0.30, 0.45, 0.55),
    ("spair71k", TUNED): (0.50, 0.65, 0.72),
    ("ap10k", FROZEN): (0.35, 0.50, 0.60),
    ("ap10k", TUNED): (0.40, 0.48, 0.70),  # worse at 0.1: the bold moves to the frozen model
}
CATEGORIES = {"spair71k": ["aeroplane", "bicycle", "cat"], "ap10k": ["dog", "horse"]}
SKIP_REASON = "fewer than 3 keypoints visible in both"
K = 5  # keypoints per pair
PAIRS_PER_CATEGORY = 2


def _ci(value: float) -> dict:
    return {"value": round(value, 4), "ci_low": round(value - 0.05, 4), "ci_high": round(value + 0.05, 4), "n": 6}  # fmt: skip


def _pck_metrics(values: tuple[float, ...], shift: float = 0.0) -> dict:
    out = {}
    for alpha, v in zip(ALPHAS, values, strict=True):
        out[f"pck@{alpha}"] = _ci(v - shift)
        out[f"pck_point@{alpha}"] = _ci(v - shift - 0.03)
    return out


def corr_doc(dataset: str, model: str, pck: tuple[float, ...] | None = None) -> dict:
    """A metrics JSON of task correspondence as docs/contracts.md describes it."""
    pck = pck or PCK[dataset, model]
    alphas = [round(0.01 * i, 2) for i in range(1, 21)]
    curve = [min(1.0, pck[1] * a / 0.1) for a in alphas]
    spair = dataset == "spair71k"
    flags = (
        {
            "viewpoint_variation": {
                str(lv): {"value": pck[1] - 0.1 * lv, "n": 2} for lv in range(3)
            },
            "truncation": {"0": {"value": pck[1], "n": 4}, "1": {"value": pck[1] - 0.2, "n": 2}},
        }
        if spair
        else {}
    )
    per_category = {"pck@0.1": {c: pck[1] - 0.05 * i for i, c in enumerate(CATEGORIES[dataset])}}
    return {
        "task": "correspondence",
        "dataset": dataset,
        "model": model,
        "split": "test",
        "metrics": _pck_metrics(pck),
        "per_category": per_category,
        "extra": {
            "variant": "kernel_softmax",
            "primary_alpha": 0.1,
            "variants": {"nn": _pck_metrics(pck, 0.1), "kernel_softmax": _pck_metrics(pck)},
            "flags": flags,
            "curve": {"alpha": alphas, "pck": curve, "pck_point": [c * 0.95 for c in curve]},
            "n_pairs": 6,
            "n_points": 30,
            "resolution": 224,
            "grid": [16, 16],
            "cache": True,
            "skipped": {} if spair else {SKIP_REASON: 12},
        },
    }


def _write_json(path: Path, doc: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _config(root: Path, name: str = "config.yaml", data: Path | None = None) -> Path:
    """The run's config: the layout under ``root``, each backbone frozen and fine-tuned."""
    cfg = {
        "paths": {"data": str(data or root / "data"), "results": str(root / "results")},
        "datasets": {
            "spair71k": {"family": "spair71k"},
            "ap10k": {"family": "ap10k"},
            "miniworld": {"family": "miniworld"},
        },
        "backbones": {"resnet-mini": {"source": "timm", "arch": "test_resnet"}},
        "tracks": {
            "correspondence": {
                "datasets": ["spair71k", "ap10k"],
                "backbones": [FROZEN],
                "finetune": [FROZEN],
            }
        },
    }
    path = root / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def _dataset(root: Path, dataset: str) -> tuple[Path, list[dict]]:
    """images.parquet with real PNGs (ids ``<category>/<stem>``) and the pairs over them."""
    data = root / "data" / dataset
    index_rows, pairs = [], []
    for c, category in enumerate(CATEGORIES[dataset]):
        stems = [f"{category[:3]}{i}" for i in range(PAIRS_PER_CATEGORY + 1)]
        for i, stem in enumerate(stems):
            rel = f"JPEGImages/{category}/{stem}.png"
            (data / rel).parent.mkdir(parents=True, exist_ok=True)
            w, h = 64 + 8 * i, 48
            Image.new("RGB", (w, h), color=(40 * c, 30 * i, 120)).save(data / rel)
            index_rows.append((f"{category}/{stem}", rel, "test", category, c, "", w, h))
        for i in range(PAIRS_PER_CATEGORY):
            src, trg = f"{category}/{stems[i]}", f"{category}/{stems[i + 1]}"
            kps = np.array([[8 + 9 * k, 6 + 7 * k] for k in range(K)], dtype=float)
            pairs.append(
                {
                    "pair": f"{len(pairs) + 1:06d}-{stems[i]}-{stems[i + 1]}:{category}",
                    "category": category,
                    "src": src,
                    "trg": trg,
                    "src_kps": kps.reshape(-1).tolist(),
                    "trg_kps": (kps + [2.0, 1.0]).reshape(-1).tolist(),
                    "threshold": 40.0,
                }
            )
    columns = ["id", "path", "split", "class", "label", "instance", "width", "height"]
    pd.DataFrame(index_rows, columns=columns).to_parquet(data / "images.parquet", index=False)
    return data / "images.parquet", pairs


def _predictions(path: Path, pairs: list[dict], error: float) -> Path:
    """Predictions ``error`` pixels off along x for every other keypoint (4 px counts)."""
    rows = []
    for p in pairs:
        truth = np.asarray(p["trg_kps"]).reshape(-1, 2)
        offset = np.array([[error if k % 2 else 1.0, 0.0] for k in range(K)])
        pred = truth + offset
        rows.append(
            {
                **p,
                "pred_kps": pred.reshape(-1).tolist(),
                "correct": (np.abs(offset[:, 0]) <= 0.1 * p["threshold"]).tolist(),
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("corr")
    metrics_dir = root / "results" / "metrics" / "correspondence"
    predictions: dict[tuple[str, str], Path] = {}
    for ds, models in (("spair71k", (TUNED, FROZEN)), ("ap10k", (FROZEN,))):
        _, pairs = _dataset(root, ds)
        for model in models:
            error = 2.0 if model == TUNED else 9.0
            path = metrics_dir / ds / f"{model}.predictions.parquet"
            predictions[ds, model] = _predictions(path, pairs, error)
    metrics, bare = [], []
    for ds in ("spair71k", "ap10k"):
        for model in (FROZEN, TUNED):
            doc = corr_doc(ds, model)
            bare.append(_write_json(root / "bare" / ds / f"{model}.json", doc))
            if (ds, model) in predictions:  # AP-10K's fine-tuned model names none
                doc["artifacts"] = {"predictions": str(predictions[ds, model])}
            metrics.append(_write_json(metrics_dir / ds / f"{model}.json", doc))
    ssl = _write_json(
        root / "results" / "metrics" / "ssl" / "miniworld" / f"{FROZEN}.json",
        {
            "task": "ssl",
            "dataset": "miniworld",
            "model": FROZEN,
            "split": "test",
            "metrics": {"knn_acc": _ci(0.4)},
            "per_category": {},
            "extra": {},
        },
    )
    return {
        "root": root,
        "config": _config(root),
        "metrics": metrics,
        "bare": bare,  # the same documents, naming no predictions
        "ssl": ssl,
        "predictions": predictions,
    }


def _argv(
    world: dict,
    out: Path,
    *,
    ssl: bool = True,
    predictions: bool = True,
    config: Path | None = None,
) -> list[str]:
    argv = ["report", "--config", str(config or world["config"]), "--out", str(out)]
    argv += ["--title", "correspondence demo", "--metrics"]
    argv += map(str, world["metrics"] if predictions else world["bare"])
    return argv + ([str(world["ssl"])] if ssl else [])


@pytest.fixture(scope="module")
def report(world: dict) -> Path:
    out = world["root"] / "reports" / "both"
    assert main(_argv(world, out)) == 0
    return out


def test_unified_table_has_the_papers_layout(report: Path) -> None:
    md = (report / "tables" / "correspondence.md").read_text()
    header = " | ".join(f"{ds} PCK@{a}" for ds in ("SPair-71k", "AP-10K") for a in ALPHAS)
    assert f"| model | {header} |" in md
    assert "| :--- | ---: | ---: | ---: | ---: | ---: | ---: |" in md
    # Frozen first, then fine-tuned; the best of each column bold (AP-10K@0.1: the frozen one).
    rows = [line for line in md.splitlines() if line.startswith("| resnet")]
    assert rows == [
        "| resnet-mini | 30.0 | 45.0 | 55.0 | 35.0 | **50.0** | 60.0 |",
        "| resnet-mini+correspondence | **50.0** | **65.0** | **72.0** | **40.0** | 48.0 | **70.0** |",
    ]
    assert "kernel\\_softmax" in md  # the primary variant is named in the caption

    tex = (report / "tables" / "correspondence.tex").read_text().splitlines()
    body = [
        line.strip() for line in tex[tex.index("    \\toprule") : tex.index("    \\bottomrule") + 1]
    ]
    assert body == [
        r"\toprule",
        r"& \multicolumn{3}{c}{SPair-71k} & \multicolumn{3}{c}{AP-10K} \\",
        r"\cmidrule(lr){2-4} \cmidrule(lr){5-7}",
        r"model & PCK@0.05 & PCK@0.1 & PCK@0.15 & PCK@0.05 & PCK@0.1 & PCK@0.15 \\",
        r"\midrule",
        r"resnet-mini & 30.0 & 45.0 & 55.0 & 35.0 & \textbf{50.0} & 60.0 \\",
        r"\midrule",  # frozen | fine-tuned
        r"resnet-mini+correspondence & \textbf{50.0} & \textbf{65.0} & \textbf{72.0} & "
        r"\textbf{40.0} & 48.0 & \textbf{70.0} \\",
        r"\bottomrule",
    ]
    assert any("kernel\\_softmax" in line for line in tex if "\\caption" in line)

    csv = pd.read_csv(report / "tables" / "correspondence.csv", dtype=str)
    assert csv.columns[0] == "model" and csv.columns[2] == "SPair-71k PCK@0.1"
    assert csv.set_index("model").loc[TUNED, "AP-10K PCK@0.15"] == "70.0"


def test_variant_table_per_dataset_with_cis(report: Path) -> None:
    md = (report / "tables" / "correspondence_variants_spair71k.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| resnet")]
    assert rows == [
        "| resnet-mini | nn | 35.0 (30.0–40.0) | 32.0 (27.0–37.0) |",
        "| resnet-mini | kernel\\_softmax (primary) | 45.0 (40.0–50.0) | 42.0 (37.0–47.0) |",
        "| resnet-mini+correspondence | nn | 55.0 (50.0–60.0) | 52.0 (47.0–57.0) |",
        "| resnet-mini+correspondence | kernel\\_softmax (primary) | **65.0 (60.0–70.0)** | **62.0 (57.0–67.0)** |",
    ]
    assert "| model | variant | PCK@0.1 per image | PCK@0.1 per point |" in md
    tex = (report / "tables" / "correspondence_variants_ap10k.tex").read_text()
    assert tex.count(r"\midrule") == 2  # under the header, and between the two models
    runs = pd.read_csv(report / "tables" / "correspondence_runs.csv", dtype=str)
    assert runs.iloc[0].tolist() == ["SPair-71k", FROZEN, "6", "30", "224", "16×16", "yes"]


def test_results_csv_holds_correspondence_like_any_task(report: Path) -> None:
    lines = (report / "results.csv").read_text().splitlines()
    assert "correspondence,spair71k,resnet-mini,pck@0.1,0.450000,0.400000,0.500000" in lines
    assert "correspondence,ap10k,resnet-mini+correspondence,pck_point@0.15,0.670000,0.620000,0.720000" in lines  # fmt: skip
    assert "ssl,miniworld,resnet-mini,knn_acc,0.400000,0.350000,0.450000" in lines
    assert len(lines) == 1 + 4 * 2 * len(ALPHAS) + 1


def test_every_figure_is_a_valid_png(report: Path) -> None:
    names = sorted(p.name for p in (report / "figures").iterdir())
    assert names == [
        "across_tasks.png",  # the frame's view of every track's headline metrics
        "bars_ssl_miniworld.png",  # the other task keeps its generic figure
        "finetuned_vs_frozen.png",
        "pck_categories_ap10k.png",
        "pck_categories_spair71k.png",
        "pck_curves.png",
        "pck_flags_spair71k.png",  # AP-10K has no flags: no figure
        "transfers_ap10k.png",
        "transfers_spair71k.png",
    ]
    for name in names:
        with Image.open(report / "figures" / name) as image:
            assert image.format == "PNG"
            assert "Software" not in image.info
            image.load()
            assert image.size[0] > 100 and image.size[1] > 100


def test_page_has_the_section_tables_figures_and_skip_note(report: Path) -> None:
    page = (report / "index.html").read_text()
    note = f'<p class="warning">AP-10K: 12 pairs skipped: {SKIP_REASON}</p>'
    assert note in page
    assert page.count('class="warning"') == 1  # SPair-71k skipped none
    assert (
        '<dt>Warnings</dt><dd>1 note on skipped pairs and pair counts in <a href="#correspondence">'
        "Semantic correspondence</a></dd>"
    ) in page
    # The generic parts, then the tracks' sections in registry order (ssl's, then this one).
    sections = ("summary", "results", "figures", "mining", "correspondence", "reproduce")
    at = [page.index(f'<section id="{section}">') for section in sections]
    assert at == sorted(at)
    for name in (p.name for p in (report / "figures").iterdir()):
        assert f'src="figures/{name}"' in page
    for stem in ("correspondence", "correspondence_variants_spair71k", "correspondence_runs"):
        assert f'href="tables/{stem}.tex"' in page
    assert '<th class="group" colspan="3">SPair-71k</th>' in page
    assert "<strong>65.0</strong>" in page
    # The ssl table is there as before; no generic table for correspondence.
    assert (report / "tables" / "ssl_miniworld.md").is_file()
    assert not (report / "tables" / "correspondence_spair71k.md").exists()


def test_correspondence_only_report_and_rerun_bytes(world: dict, report: Path) -> None:
    out = world["root"] / "reports" / "only"
    assert main(_argv(world, out, ssl=False, predictions=False)) == 0
    page = (out / "index.html").read_text()
    assert '<section id="correspondence">' in page
    assert '<section id="results">' not in page  # no empty generic sections
    assert not (out / "figures" / "transfers_spair71k.png").exists()
    again = world["root"] / "reports" / "again"
    argv = _argv(world, again)
    argv[argv.index("--metrics") + 1 :] = reversed(argv[argv.index("--metrics") + 1 :])
    assert main(argv) == 0
    for path in sorted(p for p in report.rglob("*") if p.is_file()):
        assert (again / path.relative_to(report)).read_bytes() == path.read_bytes(), path


def test_transfers_are_the_same_pairs_spread_over_categories(world: dict) -> None:
    files: dict[str, dict[str, Path]] = {}
    for (ds, model), path in world["predictions"].items():
        files.setdefault(ds, {})[model] = path
    layout = Layout(data=str(world["root"] / "data"))
    (spair, ap10k) = read_transfer_samples(files, layout, model_order=[FROZEN, TUNED])
    assert spair.dataset == "spair71k" and ap10k.dataset == "ap10k"
    assert spair.models == (FROZEN, TUNED)  # frozen first, whatever the order given
    assert [ex.category for ex in spair.examples] == ["aeroplane", "bicycle", "cat", "aeroplane"]
    ex = spair.examples[0]
    assert ex.src_kps.shape == (K, 2) and ex.src_image.dtype == np.uint8
    assert ex.trg_size == (72, 48)  # the keypoints' frame: the index's width and height
    frozen, tuned = ex.transfers
    assert frozen.correct.tolist() == [True, False, True, False, True]
    assert tuned.correct.all()
    np.testing.assert_allclose(tuned.pred_kps - ex.trg_kps, [[1, 0], [2, 0]] * 2 + [[1, 0]])


def test_select_transfer_pairs_is_deterministic() -> None:
    pairs = pd.DataFrame(
        {
            "pair": [f"{c}{i}" for c in "abcdef" for i in range(3)],
            "category": [c for c in "abcdef" for _ in range(3)],
        }
    )
    assert select_transfer_pairs(pairs, 4) == ["a0", "c0", "d0", "f0"]
    assert select_transfer_pairs(pairs.iloc[::-1], 4) == ["a0", "c0", "d0", "f0"]
    assert select_transfer_pairs(pairs[pairs["category"] == "b"], 4) == ["b0", "b1", "b2"]


def _broken(doc: dict, path: str, value: object = None, delete: bool = False) -> dict:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split("/")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "delete", "key"),
    [
        ("extra/curve", None, True, "extra.curve"),
        ("metrics/pck@0.1/value", "0.45", False, "metrics.pck@0.1.value"),
        ("extra/curve/pck/2", "high", False, "extra.curve.pck[2]"),
        ("extra/curve/pck_point", [0.1], False, "extra.curve"),
        ("extra/variant", "softargmax", False, "extra.variant"),
        ("extra/variants/nn/pck@0.1/ci_low", 45, False, "extra.variants.nn.pck@0.1.ci_low"),
        ("extra/flags/truncation/1/n", -2, False, "extra.flags.truncation.1.n"),
        ("extra/skipped", {SKIP_REASON: "12"}, False, f"extra.skipped.{SKIP_REASON}"),
        ("extra/grid", [16], False, "extra.grid"),
        ("extra/primary_alpha", 0.05, False, "extra.primary_alpha"),  # differs from the others
        ("per_category/pck@0.1/cat", "x", False, "per_category.pck@0.1.cat"),
        ("per_category/pck@x", {}, False, "per_category.pck@x"),
    ],
)
def test_malformed_correspondence_metrics_stop_the_report(
    world: dict,
    tmp_path: Path,
    path: str,
    value: object,
    delete: bool,
    key: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = _write_json(
        tmp_path / "results" / "metrics" / "correspondence" / "spair71k" / "bad.json",
        _broken(corr_doc("spair71k", "vit-mini", PCK["spair71k", FROZEN]), path, value, delete),
    )
    out = tmp_path / "reports" / "bad"
    argv = _argv(world, out)
    argv.insert(argv.index("--metrics") + 1, str(bad))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and key in err  # the schema's message, or the track's own check
    assert not (tmp_path / "reports").exists()  # nothing written at all


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("pred_kps", None, "missing column 'pred_kps'"),
        ("pred_kps", [1.0, 2.0, 3.0], "column 'pred_kps': expected a flat list"),
        ("correct", [True], "column 'correct': expected 5 booleans"),
        ("src", "cat/nowhere", "column 'src': 'cat/nowhere' differs from"),
    ],
)
def test_malformed_predictions_stop_the_report(
    world: dict,
    tmp_path: Path,
    column: str,
    value: object,
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = world["predictions"]["spair71k", TUNED]
    df = pd.read_parquet(good)
    if value is None:
        df = df.drop(columns=[column])
    else:
        df[column] = [value] * len(df)
    bad = tmp_path / "results" / "metrics" / "correspondence" / "spair71k" / f"{TUNED}.predictions.parquet"  # fmt: skip
    bad.parent.mkdir(parents=True)
    df.to_parquet(bad, index=False)
    doc = next(m for m in world["metrics"] if json.loads(m.read_text())["model"] == TUNED)
    named = json.loads(doc.read_text())
    named["artifacts"]["predictions"] = str(bad)
    edited = _write_json(tmp_path / "edited.json", named)
    argv = _argv(world, tmp_path / "reports" / "bad")
    argv[argv.index(str(doc))] = str(edited)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err
    assert not (tmp_path / "reports").exists()


def test_predictions_need_their_datasets_index(
    world: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The images of a dataset's pairs are its images.parquet in the config's layout."""
    nowhere = tmp_path / "nowhere"
    config = _config(tmp_path, data=nowhere)
    assert main(_argv(world, tmp_path / "reports" / "x", config=config)) == 2
    err = capsys.readouterr().err
    assert f"{nowhere / 'spair71k' / 'images.parquet'}: file not found" in err
    assert not (tmp_path / "reports").exists()


def test_only_the_models_the_config_shows_are_drawn(world: dict) -> None:
    """Each fine-tuned backbone frozen and tuned; without fine-tuning, the first backbone."""
    docs = read_metrics_docs(world["metrics"])
    shown = shown_models({"backbones": [FROZEN], "finetune": [FROZEN]})
    assert predictions_files(docs, shown) == {
        "spair71k": {m: world["predictions"]["spair71k", m] for m in (FROZEN, TUNED)},
        "ap10k": {FROZEN: world["predictions"]["ap10k", FROZEN]},  # its tuned one names none
    }
    shown = shown_models({"backbones": [FROZEN], "finetune": []})
    assert {ds: sorted(f) for ds, f in predictions_files(docs, shown).items()} == {
        "spair71k": [FROZEN],
        "ap10k": [FROZEN],
    }
