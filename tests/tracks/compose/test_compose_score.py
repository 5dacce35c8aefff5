"""`matchbench score` for SugarCrepe and ARO prediction files: the pipeline's metrics, by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from matchbench.cli import main


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _score(tmp_path: Path, benchmark: str, preds: dict, root: Path) -> tuple[int, dict | None]:
    path = _write(tmp_path / "preds.json", preds)
    out = tmp_path / "metrics.json"
    rc = main(["score", "--benchmark", benchmark, "--predictions", str(path), "--annotations",
               str(root), "--out", str(out), "--bootstrap", "200"])  # fmt: skip
    return rc, (json.loads(out.read_text()) if rc == 0 else None)


@pytest.fixture
def sugar_root(tmp_path: Path) -> Path:
    root = tmp_path / "sugar"
    (root / "val2017").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(root / "val2017" / "x.jpg")
    item = {"filename": "x.jpg", "caption": "a cat", "negative_caption": "a dog"}
    _write(root / "data" / "add_obj.json", {"0": item, "1": item})
    _write(root / "data" / "swap_att.json", {"7": item})
    return root


def test_sugarcrepe_accuracy_per_file_and_their_average(tmp_path, sugar_root):
    preds = {
        "add_obj": {"0": {"pos": 0.3, "neg": 0.2}, "1": {"pos": 0.2, "neg": 0.2}},  # a tie is wrong
        "swap_att": {"7": {"pos": 0.9, "neg": -0.1}},
    }
    rc, doc = _score(tmp_path, "sugarcrepe", preds, sugar_root)
    assert rc == 0 and doc["task"] == "compose"
    assert doc["per_category"]["sugarcrepe"] == {"add_obj": 0.5, "swap_att": 1.0}
    assert doc["metrics"]["sugarcrepe_add_obj"]["value"] == 0.5
    assert doc["metrics"]["sugarcrepe_avg"]["value"] == 0.75  # the mean of the files' accuracies
    low, high = (
        doc["metrics"]["sugarcrepe_avg"]["ci_low"],
        doc["metrics"]["sugarcrepe_avg"]["ci_high"],
    )
    assert low <= 0.75 <= high


def test_sugarcrepe_malformed(tmp_path, sugar_root, capsys):
    rc, _ = _score(
        tmp_path,
        "sugarcrepe",
        {"add_obj": {"0": {"pos": 1}, "1": {"pos": 1, "neg": 0}}},
        sugar_root,
    )
    assert rc == 2 and "entry 'add_obj/0': expected" in capsys.readouterr().err
    rc, _ = _score(tmp_path, "sugarcrepe", {"replace_rel": {}}, sugar_root)
    assert rc == 2 and "no replace_rel.json" in capsys.readouterr().err


@pytest.fixture
def aro_root(tmp_path: Path) -> Path:
    root = tmp_path / "aro"
    box = {"image_path": "1.jpg", "bbox_x": 0, "bbox_y": 0, "bbox_w": 4, "bbox_h": 4}
    relation = [
        {**box, "true_caption": "the cup is on the table", "false_caption": "the table is on the cup",
         "relation_name": rel}
        for rel in ("on", "on", "above", "next to")
    ]  # fmt: skip
    attribution = [
        {**box, "true_caption": "the red cup and the blue plate",
         "false_caption": "the blue cup and the red plate", "attributes": attrs}
        for attrs in [["red", "blue"]] * 25 + [["white", "black"]] * 2
    ]  # fmt: skip
    _write(root / "visual_genome_relation.json", relation)
    _write(root / "visual_genome_attribution.json", attribution)
    return root


def test_aro_macro_accuracies_with_the_official_filters(tmp_path, aro_root):
    right, wrong, tie = {"pos": 1, "neg": 0}, {"pos": 0, "neg": 1}, {"pos": 0.5, "neg": 0.5}
    preds = {
        # on: 1 of 2; above: 1 of 1; "next to" is symmetric: dropped whatever its score.
        "aro_relation": {"0": right, "1": tie, "2": right, "3": wrong},
        # red_blue (25 items): 20 right; white_black has 2 < 25 items: dropped.
        "aro_attribution": {str(i): right if i < 20 else wrong for i in range(27)},
    }
    rc, doc = _score(tmp_path, "aro", preds, aro_root)
    assert rc == 0
    assert doc["metrics"]["aro_relation"]["value"] == pytest.approx((0.5 + 1.0) / 2)
    assert doc["per_category"]["aro_relation"] == {"above": 1.0, "on": 0.5}
    assert doc["metrics"]["aro_attribution"]["value"] == pytest.approx(0.8)
    assert doc["extra"]["aro_attribution"]["dropped_small_pairs"] == {"white_black": 2}


def test_aro_missing_item_is_named(tmp_path, aro_root, capsys):
    rc, _ = _score(tmp_path, "aro", {"aro_relation": {"0": {"pos": 1, "neg": 0}}}, aro_root)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "aro_relation" in err
