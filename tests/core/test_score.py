"""`matchbench score` on small files in each benchmark's format, written here."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from matchbench.cli import main
from matchbench.documents import validate_document


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def _score(tmp_path: Path, *args: str) -> tuple[int, dict | None]:
    out = tmp_path / "metrics.json"
    rc = main(["score", *args, "--out", str(out), "--bootstrap", "200"])
    return rc, (json.loads(out.read_text()) if rc == 0 else None)


def _value(doc: dict, name: str) -> float:
    return doc["metrics"][name]["value"]


# --------------------------------------------------------------------------- CIRR


@pytest.fixture
def cirr_root(tmp_path: Path) -> Path:
    root = tmp_path / "cirr"
    names = [f"dev-{i}" for i in range(70)]
    _write(root / "image_splits" / "split.rc2.val.json", {n: f"./dev/{n}.png" for n in names})
    queries = [
        {
            "pairid": 101,
            "reference": "dev-0",
            "target_hard": "dev-1",
            "target_soft": {"dev-1": 1.0},
            "caption": "a",
            "img_set": {"id": 1, "members": [f"dev-{i}" for i in range(6)]},
        },
        {
            "pairid": 102,
            "reference": "dev-10",
            "target_hard": "dev-11",
            "target_soft": {"dev-11": 1.0},
            "caption": "b",
            "img_set": {"id": 2, "members": [f"dev-{i}" for i in range(10, 16)]},
        },
    ]
    _write(root / "captions" / "cap.rc2.val.json", queries)
    _write(root / "captions" / "cap.rc2.test1.json", [{**queries[0], "target_hard": None}])
    return root


def _cirr_lists() -> dict[str, list[str]]:
    filler = [f"dev-{i}" for i in range(20, 70)]
    # 101: the reference comes first and is dropped, so the target is 2nd.
    # 102: the target is 7th.
    return {
        "101": ["dev-0", "dev-2", "dev-1", *filler[:48]],
        "102": [*filler[:6], "dev-11", *filler[6:49]],
    }


def test_cirr_recall_and_subset(tmp_path, cirr_root, capsys):
    rec = _write(tmp_path / "recall.json", {"version": "rc2", "metric": "recall", **_cirr_lists()})
    sub = _write(
        tmp_path / "subset.json",
        {
            "version": "rc2",
            "metric": "recall_subset",
            "101": ["dev-1", "dev-2", "dev-3"],
            "102": ["dev-12", "dev-13", "dev-11"],
        },
    )
    rc, doc = _score(
        tmp_path, "--benchmark", "cirr", "--predictions", str(rec), str(sub),
        "--annotations", str(cirr_root),
    )  # fmt: skip
    assert rc == 0
    assert {k: _value(doc, f"recall@{k}") for k in (1, 5, 10, 50)} == {1: 0, 5: 0.5, 10: 1, 50: 1}
    assert {k: _value(doc, f"recall_subset@{k}") for k in (1, 2, 3)} == {1: 0.5, 2: 0.5, 3: 1}
    assert doc["task"] == "cir" and doc["dataset"] == "cirr" and doc["split"] == "val"
    assert doc["model"] == "recall"
    assert doc["metrics"]["recall@5"]["n"] == 2
    assert 0 <= doc["metrics"]["recall@5"]["ci_low"] <= 0.5 <= doc["metrics"]["recall@5"]["ci_high"]
    table = capsys.readouterr().out
    assert "recall_subset@3" in table and "0.5000" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "rc1"}, '"version": "rc2"'),
        ({"metric": "map"}, '"metric"'),
        ({"101": 7}, "entry '101': expected a ranked list of image names"),
        ({"103": ["dev-1"] * 50}, "unknown pairid '103'"),
        ({"102": ["dev-11", "dev-11"]}, "entry '102': 'dev-11' appears twice"),
        ({"102": ["dev-11", "dev-12"]}, "entry '102': expected at least 50 ranked images"),
        (
            {"102": ["not-an-image", *[f"dev-{i}" for i in range(20, 69)]]},
            "not in the split's gallery",
        ),
    ],
)
def test_cirr_malformed_predictions(tmp_path, cirr_root, capsys, change, message):
    data = {"version": "rc2", "metric": "recall", **_cirr_lists(), **change}
    path = _write(tmp_path / "bad.json", data)
    rc, _ = _score(
        tmp_path, "--benchmark", "cirr", "--predictions", str(path), "--annotations", str(cirr_root)
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert str(path) in err and message in err


def test_cirr_missing_pair_subset_outsider_and_withheld_test(tmp_path, cirr_root, capsys):
    lists = _cirr_lists()
    del lists["102"]
    path = _write(tmp_path / "p.json", {"version": "rc2", "metric": "recall", **lists})
    args = ["--benchmark", "cirr", "--annotations", str(cirr_root)]
    assert _score(tmp_path, *args, "--predictions", str(path))[0] == 2
    assert "no prediction for pairid '102'" in capsys.readouterr().err

    sub = {"version": "rc2", "metric": "recall_subset", "101": ["dev-1", "dev-2", "dev-3"]}
    sub["102"] = ["dev-11", "dev-12", "dev-40"]
    path = _write(tmp_path / "s.json", sub)
    assert _score(tmp_path, *args, "--predictions", str(path))[0] == 2
    assert "'dev-40' not in the query's img_set.members" in capsys.readouterr().err

    path = _write(tmp_path / "t.json", {"version": "rc2", "metric": "recall", **_cirr_lists()})
    assert _score(tmp_path, *args, "--predictions", str(path), "--split", "test1")[0] == 2
    assert "evaluation server" in capsys.readouterr().err


def test_default_output_path_follows_the_contract(tmp_path, cirr_root, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path / "mine.json", {"version": "rc2", "metric": "recall", **_cirr_lists()})
    rc = main(
        ["score", "--benchmark", "cirr", "--predictions", str(path), "--annotations", str(cirr_root),
         "--model", "clip-b16", "--bootstrap", "50"]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "results/metrics/cir/cirr/clip-b16.json").read_text())
    assert doc["model"] == "clip-b16" and set(doc) >= {
        "task",
        "dataset",
        "split",
        "metrics",
        "extra",
    }
    assert "wrote results/metrics/cir/cirr/clip-b16.json" in capsys.readouterr().out


# --------------------------------------------------------------------------- CIRCO


@pytest.fixture
def circo_root(tmp_path: Path) -> Path:
    root = tmp_path / "circo"
    queries = [
        {"id": 0, "reference_img_id": 9, "target_img_id": 1, "relative_caption": "x",
         "shared_concept": "c", "gt_img_ids": [1, 2, 3], "semantic_aspects": ["addition"]},
        {"id": 1, "reference_img_id": 8, "target_img_id": 7, "relative_caption": "y",
         "shared_concept": "c", "gt_img_ids": [7], "semantic_aspects": ["addition", "negation"]},
    ]  # fmt: skip
    _write(root / "annotations" / "val.json", queries)
    _write(
        root / "annotations" / "test.json",
        [{k: v for k, v in queries[0].items() if k != "gt_img_ids"}],
    )
    return root


def _circo_lists() -> dict[str, list]:
    filler = list(range(100, 160))
    return {
        "0": [1, filler[0], 2, *filler[1:48]],  # hits at ranks 1 and 3 of 3 ground truths
        "1": [*filler[:5], "7", *filler[5:49]],  # the only ground truth at rank 6 (as a string)
    }


def test_circo_map(tmp_path, circo_root, capsys):
    path = _write(tmp_path / "sub.json", _circo_lists())
    rc, doc = _score(
        tmp_path,
        "--benchmark",
        "circo",
        "--predictions",
        str(path),
        "--annotations",
        str(circo_root),
    )
    assert rc == 0
    ap0 = (1 + 2 / 3) / 3
    assert _value(doc, "map@5") == pytest.approx(ap0 / 2)
    for k in (10, 25, 50):
        assert _value(doc, f"map@{k}") == pytest.approx((ap0 + 1 / 6) / 2)
    assert doc["per_category"]["map@10"] == pytest.approx(
        {"addition": (ap0 + 1 / 6) / 2, "negation": 1 / 6}
    )
    assert "map@25" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ([1, 1, *range(100, 148)], "entry '0': 1 appears twice in the ranked list"),
        (["one", *range(100, 149)], "entry '0': 'one' is not an image id"),
        ([1, 2, 3], "entry '0': expected at least 50 ranked image ids, got 3"),
    ],
)
def test_circo_malformed(tmp_path, circo_root, capsys, entry, message):
    path = _write(tmp_path / "sub.json", {**_circo_lists(), "0": entry})
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "circo",
        "--predictions",
        str(path),
        "--annotations",
        str(circo_root),
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_circo_test_split_is_withheld(tmp_path, circo_root, capsys):
    path = _write(tmp_path / "sub.json", {"0": list(range(50))})
    rc, _ = _score(
        tmp_path, "--benchmark", "circo", "--predictions", str(path), "--annotations", str(circo_root),
        "--split", "test",
    )  # fmt: skip
    assert rc == 2 and "gt_img_ids" in capsys.readouterr().err


# --------------------------------------------------------------------------- FashionIQ


@pytest.fixture
def fiq_root(tmp_path: Path) -> Path:
    root = tmp_path / "fiq"
    for cat in ("dress", "shirt"):
        names = [f"{cat}{i}" for i in range(60)]
        _write(root / "image_splits" / f"split.{cat}.val.json", names)
        _write(
            root / "captions" / f"cap.{cat}.val.json",
            [
                {"candidate": f"{cat}0", "target": f"{cat}1", "captions": ["a", "b"]},
                {"candidate": f"{cat}2", "target": f"{cat}3", "captions": ["c", "d"]},
            ],
        )
    return root


def test_fashioniq_recall_per_category_and_mean(tmp_path, fiq_root, capsys):
    def ranked(cat: str, target: int, at: int) -> list[str]:
        others = [f"{cat}{i}" for i in range(4, 60)]
        return [*others[: at - 1], f"{cat}{target}", *others[at - 1 : 49]]

    preds = {
        "dress": {"0": ranked("dress", 1, 3), "1": ranked("dress", 3, 20)},  # R@10 .5, R@50 1
        "shirt": {"0": ranked("shirt", 1, 60)[:50], "1": ranked("shirt", 3, 50)},  # 0, .5
    }
    path = _write(tmp_path / "fiq.json", preds)
    rc, doc = _score(
        tmp_path,
        "--benchmark",
        "fashioniq",
        "--predictions",
        str(path),
        "--annotations",
        str(fiq_root),
    )
    assert rc == 0
    assert doc["per_category"]["recall@10"] == {"dress": 0.5, "shirt": 0.0}
    assert doc["per_category"]["recall@50"] == {"dress": 1.0, "shirt": 0.5}
    assert _value(doc, "recall@10") == 0.25 and _value(doc, "recall@50") == 0.75
    assert doc["metrics"]["recall@10"]["ci_low"] is None and doc["metrics"]["recall@10"]["n"] == 4
    out = capsys.readouterr().out
    assert "category" in out and "shirt" in out


def test_fashioniq_malformed(tmp_path, fiq_root, capsys):
    path = _write(tmp_path / "fiq.json", {"skirt": {}})
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "fashioniq",
        "--predictions",
        str(path),
        "--annotations",
        str(fiq_root),
    )
    assert rc == 2 and "'skirt'" in capsys.readouterr().err
    path = _write(tmp_path / "fiq.json", {"dress": {"0": [f"dress{i}" for i in range(50)]}})
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "fashioniq",
        "--predictions",
        str(path),
        "--annotations",
        str(fiq_root),
    )
    assert rc == 2 and "no prediction for dress triplet index '1'" in capsys.readouterr().err


# --------------------------------------------------------------------------- ILIAS


@pytest.fixture
def ilias_root(tmp_path: Path) -> Path:
    ids = tmp_path / "ilias" / "image_ids"
    ids.mkdir(parents=True)
    (ids / "image_query_ids.txt").write_text("inst_a/query/Q1.jpg,x\ninst_b/query/Q1.jpg,y\n")
    (ids / "text_query_ids.txt").write_text("inst_a/query/T1.txt\ninst_b/query/T1.txt\n")
    (ids / "positive_ids.txt").write_text(
        "inst_a/pos/P1.jpg,0.1,5\ninst_a/pos/P2.jpg,0.2,10\ninst_b/pos/P1.jpg,0.3,20\n"
    )
    return tmp_path / "ilias"


ILIAS_IMAGE = {
    # hits at ranks 1 and 3 of 2 positives
    "inst_a/query/Q1.jpg": {"inst_a/pos/P1.jpg": 0.9, "yfcc/1": 0.8, "inst_a/pos/P2.jpg": 0.7},
    # the one positive at rank 2
    "inst_b/query/Q1.jpg": {"yfcc/1": 0.9, "inst_b/pos/P1.jpg": 0.5, "inst_a/pos/P1.jpg": 0.1},
}


def test_ilias_map_on_image_and_text_queries(tmp_path, ilias_root):
    text = {
        "inst_a/query/T1.txt": {"inst_a/pos/P2.jpg": 0.3, "inst_a/pos/P1.jpg": 0.2},
        "inst_b/query/T1.txt": {"yfcc/9": 0.3},
    }
    path = _write(tmp_path / "sims.json", {**ILIAS_IMAGE, **text})
    rc, doc = _score(
        tmp_path,
        "--benchmark",
        "ilias",
        "--predictions",
        str(path),
        "--annotations",
        str(ilias_root),
    )
    assert rc == 0
    image = ((1 + 2 / 3) / 2 + 0.5) / 2
    assert doc["per_category"]["map@1k"] == pytest.approx({"image": image, "text": 0.5})
    assert _value(doc, "map@1k") == pytest.approx(((1 + 2 / 3) / 2 + 0.5 + 1 + 0) / 4)
    assert doc["task"] == "instance" and doc["metrics"]["map@1k"]["n"] == 4


def test_ilias_image_queries_alone(tmp_path, ilias_root):
    path = _write(tmp_path / "sims.json", ILIAS_IMAGE)
    rc, doc = _score(
        tmp_path,
        "--benchmark",
        "ilias",
        "--predictions",
        str(path),
        "--annotations",
        str(ilias_root),
    )
    assert rc == 0 and _value(doc, "map@1k") == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)


def test_ilias_refuses_pickles(tmp_path, ilias_root, capsys):
    pkl = tmp_path / "sims.pkl"
    pkl.write_bytes(pickle.dumps({"query_ids": []}))
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "ilias",
        "--predictions",
        str(pkl),
        "--annotations",
        str(ilias_root),
    )
    assert rc == 2 and "unpickling runs code" in capsys.readouterr().err
    disguised = tmp_path / "sims.json"
    disguised.write_bytes(pickle.dumps({"query_ids": []}))
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "ilias",
        "--predictions",
        str(disguised),
        "--annotations",
        str(ilias_root),
    )
    assert rc == 2 and "pickle" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**ILIAS_IMAGE, "inst_c/query/Q1.jpg": {}}, "unknown query id 'inst_c/query/Q1.jpg'"),
        ({"inst_a/query/Q1.jpg": ILIAS_IMAGE["inst_a/query/Q1.jpg"]}, "no similarities for image query 'inst_b/query/Q1.jpg'"),
        ({**ILIAS_IMAGE, "inst_b/query/Q1.jpg": {"yfcc/1": "high"}}, "entry 'inst_b/query/Q1.jpg': similarity of 'yfcc/1' must be a finite number"),
        ({**ILIAS_IMAGE, "inst_b/query/Q1.jpg": [1, 2]}, "query 'inst_b/query/Q1.jpg': expected a JSON object"),
    ],
)  # fmt: skip
def test_ilias_malformed(tmp_path, ilias_root, capsys, data, message):
    path = _write(tmp_path / "sims.json", data)
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "ilias",
        "--predictions",
        str(path),
        "--annotations",
        str(ilias_root),
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert str(path) in err and message in err


def test_duplicate_json_keys_are_an_error(tmp_path, ilias_root, capsys):
    path = tmp_path / "sims.json"
    path.write_text('{"inst_a/query/Q1.jpg": {"a": 1, "a": 2}}')
    rc, _ = _score(
        tmp_path,
        "--benchmark",
        "ilias",
        "--predictions",
        str(path),
        "--annotations",
        str(ilias_root),
    )
    assert rc == 2 and "key 'a' appears twice" in capsys.readouterr().err


# --------------------------------------------------------------------------- keypoints


@pytest.fixture
def spair_root(tmp_path: Path) -> Path:
    root = tmp_path / "SPair-71k"
    base = {"src_imname": "s.jpg", "trg_imname": "t.jpg", "src_bndbox": [0, 0, 10, 10]}
    _write(
        root / "PairAnnotation" / "test" / "000001-s-t:cat.json",
        {**base, "category": "cat", "src_kps": [[1, 1], [2, 2]], "trg_kps": [[10, 10], [20, 20]],
         "trg_bndbox": [0, 0, 100, 50]},
    )  # fmt: skip
    _write(
        root / "PairAnnotation" / "test" / "000002-s-u:dog.json",
        {
            **base,
            "trg_imname": "u.jpg",
            "category": "dog",
            "src_kps": [[1, 1]],
            "trg_kps": [[0, 0]],
            "trg_bndbox": [0, 0, 10, 10],
        },
    )
    layout = root / "Layout" / "large" / "test.txt"
    layout.parent.mkdir(parents=True)
    layout.write_text("000001-s-t:cat\n000002-s-u:dog\n")
    return root


def _score_spair(tmp_path: Path, preds: dict, root: Path, *extra: str) -> tuple[int, dict | None]:
    path = _write(tmp_path / "kps.json", preds)
    return _score(
        tmp_path, "--benchmark", "spair", "--predictions", str(path), "--annotations", str(root),
        *extra,
    )  # fmt: skip


def test_spair_pck_per_image_and_per_point(tmp_path, spair_root, capsys):
    # pair 1 (T = 100): errors of 5 px and 0 px; pair 2 (T = 10): an error of 5 px.
    preds = {"000001-s-t:cat": [[10, 15], [20, 20]], "000002-s-u:dog": [[3, 4]]}
    rc, doc = _score_spair(tmp_path, preds, spair_root)
    assert rc == 0
    assert _value(doc, "pck@0.01") == pytest.approx(0.25)  # 1 px: (1/2 + 0) / 2
    assert _value(doc, "pck@0.05") == pytest.approx(0.5)  # 5 px, inclusive: (1 + 0) / 2
    assert _value(doc, "pck_point@0.05") == pytest.approx(2 / 3)
    assert _value(doc, "pck@0.15") == pytest.approx(0.5)  # the dog needs 5 px <= 1.5 px
    assert doc["per_category"]["pck@0.05"] == {"cat": 1.0, "dog": 0.0}
    assert doc["per_category"]["pck_point@0.01"] == {"cat": 0.5, "dog": 0.0}
    assert doc["task"] == "correspondence" and doc["split"] == "test"
    assert "pck_point@0.1" in capsys.readouterr().out


def test_every_per_query_metric_has_the_pipelines_interval(tmp_path, spair_root):
    """Per point too: pairs resampled, their keypoints pooled, as the pipeline's evaluation."""
    preds = {"000001-s-t:cat": [[10, 15], [20, 20]], "000002-s-u:dog": [[3, 4]]}
    rc, doc = _score_spair(tmp_path, preds, spair_root, "--seed", "3")
    assert rc == 0
    for key, m in doc["metrics"].items():
        assert m["ci_low"] is not None and m["ci_low"] <= m["value"] <= m["ci_high"], key
    assert doc["metrics"]["pck@0.05"]["n"] == 2 and doc["metrics"]["pck_point@0.05"]["n"] == 3
    # pair 1 alone: 2 of 2 points, 1.0; pair 2 alone: 0 of 1; both: 2 of 3
    assert doc["metrics"]["pck_point@0.05"]["ci_low"] == 0.0
    assert doc["metrics"]["pck_point@0.05"]["ci_high"] == 1.0
    assert doc["extra"]["bootstrap"] == {"n_boot": 200, "seed": 3, "confidence": 0.95}
    validate_document(doc, "score output")


def test_spair_reads_the_layout_list_not_every_pair_file(tmp_path, spair_root):
    """A PairAnnotation file no Layout/large line names is not part of the benchmark."""
    stray = {"src_imname": "a.jpg", "trg_imname": "b.jpg", "category": "cat",
             "src_kps": [[1, 1]], "trg_kps": [[2, 2]], "src_bndbox": [0, 0, 9, 9],
             "trg_bndbox": [0, 0, 9, 9]}  # fmt: skip
    _write(spair_root / "PairAnnotation" / "test" / "000003-a-b:cat.json", stray)
    preds = {"000001-s-t:cat": [[10, 15], [20, 20]], "000002-s-u:dog": [[3, 4]]}
    rc, doc = _score_spair(tmp_path, preds, spair_root)
    assert rc == 0 and doc["extra"]["pairs"] == 2
    # ... and a prediction for it is an unknown pair
    rc, _ = _score_spair(tmp_path, {**preds, "000003-a-b:cat": [[2, 2]]}, spair_root)
    assert rc == 2


def test_spair_layout_line_without_its_annotation(tmp_path, spair_root, capsys):
    (spair_root / "PairAnnotation" / "test" / "000002-s-u:dog.json").unlink()
    rc, _ = _score_spair(tmp_path, {"000001-s-t:cat": [[1, 1], [2, 2]]}, spair_root)
    err = capsys.readouterr().err
    assert rc == 2 and "test.txt: line 2: pair annotation" in err and "not found" in err


def test_spair_malformed(tmp_path, spair_root, capsys):
    preds = {"000001-s-t:cat": [[10, 15]], "000002-s-u:dog": [[3, 4]]}
    rc, _ = _score_spair(tmp_path, preds, spair_root)
    err = capsys.readouterr().err
    assert rc == 2 and "entry '000001-s-t:cat': expected 2 finite [x, y] points" in err
    assert "got shape (1, 2)" in err
    # NaN (or null) at the right shape is named as such, not as a shape error
    for bad in (float("nan"), None):
        preds = {"000001-s-t:cat": [[10, 15], [1, bad]], "000002-s-u:dog": [[3, 4]]}
        rc, _ = _score_spair(tmp_path, preds, spair_root)
        err = capsys.readouterr().err
        assert rc == 2 and "got a non-finite value (NaN, inf or null) in point 1" in err, err
    rc, _ = _score_spair(tmp_path, {"000001-s-t:cat": [[10, 15], [1, 1]]}, spair_root)
    assert rc == 2 and "no prediction for pair '000002-s-u:dog'" in capsys.readouterr().err


def test_score_and_the_pipeline_give_the_same_numbers(tmp_path):
    """The same predictions scored by `matchbench score` and by the pipeline's evaluation
    (from the prepared pair table) give the same metrics, intervals and categories, bit for bit."""
    from matchbench.data import get_family
    from matchbench.tracks.correspondence.evaluate import summarise
    from matchbench.tracks.correspondence.pairs import keypoints, read_pairs_table
    from matchbench.tracks.correspondence.synth import write_spair

    small = {"categories": ["triangle", "star"], "pairs": {"train": 0, "val": 0, "test": 12},
             "images_per_category": {"train": 0, "val": 0, "test": 4},
             "instances_per_category": 2}  # fmt: skip
    write_spair(tmp_path / "raw", seed=3, progress=False, **small)
    get_family("spair71k").prepare(tmp_path / "raw", tmp_path / "data", {})
    pairs = read_pairs_table(tmp_path / "data" / "pairs.parquet", "test")
    kps = [keypoints(row) for _, row in pairs.iterrows()]
    g = np.random.default_rng(0)
    preds = [t + g.normal(0, 6, t.shape) for _, t in kps]
    cfg = {"seed": 5, "tracks": {"correspondence": {
        "match": {"primary": "nn"},
        "evaluate": {"bootstrap": 200, "primary_alpha": 0.1, "alphas": [0.01, 0.05, 0.1, 0.15]},
    }}}  # fmt: skip
    pipeline, _ = summarise(cfg, pairs, kps, {"nn": preds})
    by_name = {n: p.tolist() for n, p in zip(pairs["pair"], preds, strict=True)}
    rc, doc = _score_spair(tmp_path, by_name, tmp_path / "raw", "--seed", "5")
    assert rc == 0
    assert doc["metrics"] == pipeline["metrics"]
    assert doc["per_category"] == pipeline["per_category"]


def test_pfpascal_threshold_is_the_target_image_size(tmp_path, capsys):
    root = tmp_path / "pf-pascal"
    images = root / "PF-dataset-PASCAL" / "JPEGImages"
    ann = root / "PF-dataset-PASCAL" / "Annotations" / "cat"
    images.mkdir(parents=True)
    ann.mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(images / "t1.jpg")  # T = max(H, W) = 40
    Image.new("RGB", (20, 20)).save(images / "s1.jpg")
    savemat(
        ann / "s1.mat",
        {"kps": np.array([[1, 1], [np.nan, np.nan], [5, 5]]), "bbox": [[0, 0, 9, 9]]},
    )
    savemat(
        ann / "t1.mat",
        {"kps": np.array([[10.7, 10.2], [3, 3], [np.nan, np.nan]]), "bbox": [[0, 0, 9, 9]]},
    )
    (root / "test_pairs.csv").write_text(
        "source_image,target_image,class\nPF-dataset-PASCAL/JPEGImages/s1.jpg,PF-dataset-PASCAL/JPEGImages/t1.jpg,8\n"
    )
    # only keypoint 0 is annotated in both; its target (10.7, 10.2) is floored to (10, 10)
    path = _write(tmp_path / "kps.json", {"000001-s1-t1:cat": [[12, 10]]})
    rc, doc = _score(
        tmp_path, "--benchmark", "pfpascal", "--predictions", str(path), "--annotations", str(root)
    )
    assert rc == 0
    assert _value(doc, "pck@0.01") == 0.0  # 2 px > 0.4 px
    assert _value(doc, "pck@0.05") == 1.0  # 2 px <= 2 px


def test_ap10k_keypoints_visible_in_both(tmp_path):
    root = tmp_path / "ap-10k"

    def image(name: str, kps: list[tuple[float, float, int]], bbox: list[float]) -> None:
        flat = [v for kp in kps for v in kp] + [0, 0, 0] * (17 - len(kps))
        _write(root / "ImageAnnotation" / "Felidae" / "cat" / f"{name}.json",
               {"keypoints": flat, "bbox": bbox, "name": "cat", "width": 100, "height": 80})  # fmt: skip

    image("1", [(5, 5, 2), (6, 6, 2), (7, 7, 1)], [0, 0, 10, 10])
    image("2", [(20, 20, 2), (30, 30, 0), (40, 40, 2)], [10, 10, 40, 20])  # T = max(40, 20)
    _write(root / "PairAnnotation" / "test" / "1_2:cat.json",
           {"src_json_path": "data/ap-10k/ImageAnnotation/Felidae/cat/1.json",
            "trg_json_path": "data/ap-10k/ImageAnnotation/Felidae/cat/2.json"})  # fmt: skip
    # only keypoint 0 is visible (v == 2) in both images
    path = _write(tmp_path / "kps.json", {"1_2:cat": [[20, 24]]})
    rc, doc = _score(
        tmp_path, "--benchmark", "ap10k", "--predictions", str(path), "--annotations", str(root)
    )
    assert rc == 0
    assert _value(doc, "pck@0.05") == 0.0  # 4 px > 2 px
    assert _value(doc, "pck@0.1") == 1.0  # 4 px <= 4 px
    assert doc["per_category"]["pck@0.1"] == {"cat": 1.0}


# --------------------------------------------------------------------------- the format registry


def test_formats_come_from_the_tracks_and_the_stage_table():
    from matchbench.stages.score import FORMATS, formats
    from matchbench.tracks import get_track, score_formats

    track = dict(get_track("correspondence").score_formats)
    assert set(track) == {"spair", "pfpascal", "ap10k"}
    assert all(ref.startswith("matchbench.tracks.correspondence.score:") for ref in track.values())
    compose = dict(get_track("compose").score_formats)
    assert set(compose) == {"sugarcrepe", "aro"}
    track |= compose
    cir = dict(get_track("cir").score_formats)
    assert set(cir) == {"cirr", "circo", "fashioniq"}
    assert all(ref.startswith("matchbench.tracks.cir.score:") for ref in cir.values())
    track |= cir
    assert score_formats() == track
    assert set(formats()) == set(FORMATS) | set(track)
    assert not set(FORMATS) & set(track)


def test_unknown_benchmark_is_named_with_close_names(tmp_path):
    from matchbench.errors import MatchbenchError
    from matchbench.stages.score import score

    with pytest.raises(MatchbenchError, match=r"unknown benchmark 'spiar'.*did you mean spair"):
        score("spiar", [tmp_path / "p.json"], tmp_path)
