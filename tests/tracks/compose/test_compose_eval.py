"""The compose task: each metric on hand-computed values with the official conventions
(strict comparisons, ties wrong, symmetric relations dropped, small attribute pairs dropped,
macro averages), and the task run for real on a tiny dataset written here in the track's
table contracts (images.parquet, captions.parquet, caption_pairs.parquet)."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config
from PIL import Image

from matchbench import per_query
from matchbench.config import resolve, schema_errors
from matchbench.data import INDEX_COLUMNS
from matchbench.documents import validate_document
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.metrics import macro_summary, pair_accuracy
from matchbench.models import create_backbone
from matchbench.models.backbones import save_state
from matchbench.tracks.compose.evaluate import (
    ARO_SYMMETRIC,
    aro_attribution_groups,
    aro_relation_groups,
    evaluate,
    pair_correct,
    retrieval_hits,
)
from matchbench.tracks.compose.variants import block, schema

CLIP = {"source": "open_clip", "arch": "clip-mini", "image_size": 64}

# --------------------------------------------------------------------------- pure metrics


def test_pair_correct_is_strict_and_a_tie_is_wrong() -> None:
    pos, neg = [0.5, 0.3, 0.2, 0.7], [0.4, 0.3, 0.6, 0.7 - 1e-9]
    assert pair_correct(pos, neg).tolist() == [True, False, False, True]
    assert pair_correct(pos, neg).mean() == pair_accuracy(pos, neg) == 0.5
    with pytest.raises(MatchbenchError, match="NaN"):
        pair_correct([np.nan], [0.0])


def test_the_macro_average_weighs_categories_equally_with_a_stratified_interval() -> None:
    values = [1, 1, 1, 0, 0, 0]
    groups = ["a", "a", "a", "a", "b", "b"]
    s = macro_summary(values, groups, n_boot=500, seed=0)
    assert s["value"] == pytest.approx((0.75 + 0.0) / 2)  # pooled would be 0.5
    assert s["n"] == 6
    # b is constant, so every draw is (mean of 4 draws from a) / 2: a multiple of 1/8.
    assert s["ci_low"] <= s["value"] <= s["ci_high"]
    assert s["ci_low"] * 8 == pytest.approx(round(s["ci_low"] * 8))
    assert s["ci_low"] >= 0 and s["ci_high"] <= 0.5
    assert macro_summary(values, groups, 500, 0) == s  # seeded
    constant = macro_summary([1, 1, 0], ["x", "x", "y"], 200, 3)
    assert (constant["value"], constant["ci_low"], constant["ci_high"]) == (0.5, 0.5, 0.5)


def test_vg_relation_drops_the_official_symmetric_relations() -> None:
    relations = ["on", "next to", "behind", "on", "near"]
    correct = [1, 1, 0, 0, 1]
    keep, dropped = aro_relation_groups(correct, relations)
    assert keep.tolist() == [True, False, True, True, False]
    assert dropped == {"near": 1.0, "next to": 1.0}
    # The macro accuracy of what is left: on 0.5, behind 0.0.
    c, r = np.array(correct)[keep], np.array(relations)[keep]
    assert macro_summary(c, r, 100, 0)["value"] == 0.25
    assert {"next to", "near", "beside", "with", "of", "by"} <= ARO_SYMMETRIC
    assert not {"on", "behind", "left of", "above", "below"} & ARO_SYMMETRIC
    keep_all, none = aro_relation_groups(correct, relations, drop_symmetric=False)
    assert keep_all.all() and none == {}


def test_vg_attribution_keeps_ordered_pairs_with_enough_items() -> None:
    pairs = ["red_blue"] * 3 + ["blue_red"] + ["big_small"] * 2
    keep, small = aro_attribution_groups(pairs, min_count=2)
    assert keep.tolist() == [True, True, True, False, True, True]
    assert small == {"blue_red": 1}  # the reversed pair is another group
    keep25, small25 = aro_attribution_groups(pairs)  # the official 25
    assert not keep25.any() and small25 == {"big_small": 2, "blue_red": 1, "red_blue": 3}


def test_retrieval_recall_both_ways_with_ties_against_the_target() -> None:
    s = np.array(
        [
            [0.9, 0.1, 0.5],  # text 0: image 0 first
            [0.8, 0.7, 0.2],  # text 1: image 1 second
            [0.3, 0.3, 0.3],  # text 2: a three-way tie, ranked last
        ]
    )
    hits = retrieval_hits(s, [1, 2, 3])
    assert [h.tolist() for h in hits["t2i"].values()] == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    # image 0: column (0.9, 0.8, 0.3) -> 1; image 1: (0.1, 0.7, 0.3) -> 1; image 2:
    # (0.5, 0.2, 0.3) -> text 0 scores higher, rank 2.
    assert hits["i2t"][1].tolist() == [True, True, False]
    assert hits["i2t"][2].tolist() == [True, True, True]
    with pytest.raises(MatchbenchError, match="square"):
        retrieval_hits(np.zeros((2, 3)), [1])


# --------------------------------------------------------------------------- the task

COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 200, 30), "grey": (128,) * 3}
LONG = " ".join(["a small red square sits left of a large blue circle on grey ground."] * 4)


def write_world(root: Path, name: str = "vl") -> Path:
    """Six solid-colour images, a test split of rich captions and every benchmark's pairs."""
    data = root / "data" / name
    (data / "images").mkdir(parents=True)
    rows = []
    for i, (colour, rgb) in enumerate(list(COLOURS.items()) + [("red", (200, 40, 40))] * 2):
        path = f"images/{i}.png"
        Image.new("RGB", (64, 48), rgb).save(data / path)
        rows.append([f"img{i}", path, "test", colour, -1, "", 64, 48])
    pd.DataFrame(rows, columns=INDEX_COLUMNS).to_parquet(data / "images.parquet")
    pd.DataFrame(
        {
            "image": [f"img{i}" for i in range(4)],
            "split": "test",
            "alt": ["red", "blue", "green", "grey"],
            "rich": [
                "A red picture. It is all red.",
                "A blue picture. Nothing but blue.",
                "A green picture.",
                LONG,  # longer than clip-mini's 32-token context
            ],
        }
    ).to_parquet(data / "captions.parquet")
    pairs = [
        ("s1", "sugarcrepe", "replace_att", "img0", "a red image", "a blue image"),
        ("s2", "sugarcrepe", "replace_att", "img1", "a blue image", "a red image"),
        ("s3", "sugarcrepe", "swap_att", "img2", "a green image", "an image green"),
        ("r1", "aro_relation", "left of", "img4", "a left of b", "b left of a"),
        ("r2", "aro_relation", "next to", "img4", "a next to b", "b next to a"),
        ("r3", "aro_relation", "behind", "img5", "same caption", "same caption"),  # a tie
        ("a1", "aro_attribution", "red_blue", "img4", "the red cube", "the blue cube"),
        ("a2", "aro_attribution", "red_blue", "img5", "the red ball", "the blue ball"),
        ("a3", "aro_attribution", "big_small", "img5", "the big ball", "the small ball"),
    ]
    pd.DataFrame(
        pairs, columns=["id", "benchmark", "category", "image", "positive", "negative"]
    ).to_parquet(data / "caption_pairs.parquet")
    return data


def config(root: Path, **compose: Any) -> dict[str, Any]:
    raw = tiny_config(
        root,
        datasets={"vl": {"family": "miniworld"}},
        tracks={},
        backbones={"clip-mini": CLIP, "resnet-mini": {}},
    )
    cfg = resolve(raw)
    block_ = {
        "datasets": ["vl"],
        "backbones": ["clip-mini"],
        "evaluate": {"bootstrap": 50, "aro_min_count": 2, "ks": [1, 2]},
    }
    cfg["tracks"]["compose"] = block_ | compose
    return cfg


def run(cfg: dict[str, Any], model: str = "clip-mini", dataset: str = "vl") -> dict[str, Any]:
    out = Layout.of(cfg).metrics("compose", dataset, model)
    return evaluate(cfg, argparse.Namespace(dataset=dataset, model=model, features=None, out=out))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vl")
    write_world(root)
    return root


def test_the_schema_defaults_are_valid_and_filled(world: Path) -> None:
    blk = block(config(world))
    assert schema_errors(schema(), blk, "tracks.compose") == []
    assert blk["variants"]["rich-hn"]["start"] == "rich"
    assert blk["evaluate"]["aro_min_count"] == 2 and blk["train"]["unfreeze_text"] == 1


def test_the_document_has_every_benchmark_with_intervals(world: Path, capsys) -> None:
    doc = run(config(world))
    validate_document(doc, "compose.json")
    m = doc["metrics"]
    assert set(m) == {
        "sugarcrepe_avg",
        "sugarcrepe_replace_att",
        "sugarcrepe_swap_att",
        "aro_relation",
        "aro_attribution",
        "t2i_r@1",
        "t2i_r@2",
        "i2t_r@1",
        "i2t_r@2",
    }
    for v in m.values():
        assert 0 <= v["ci_low"] <= v["value"] <= v["ci_high"] <= 1
    cats = doc["per_category"]
    assert m["sugarcrepe_avg"]["value"] == pytest.approx(np.mean(list(cats["sugarcrepe"].values())))
    # "next to" is symmetric: dropped; "behind" holds one tie, which is wrong.
    assert set(cats["aro_relation"]) == {"left of", "behind"}
    assert cats["aro_relation"]["behind"] == 0.0
    assert set(doc["extra"]["aro_relation"]["dropped_symmetric"]) == {"next to"}
    assert set(cats["aro_attribution"]) == {"red_blue"}  # big_small has 1 < 2 items
    assert m["t2i_r@1"]["n"] == 4 and m["aro_attribution"]["n"] == 2
    # The long caption is truncated, counted, and said once in the log.
    assert doc["extra"]["text"]["truncated"] == 1
    assert "1 of" in capsys.readouterr().err
    # Every metric's per-query values, beside the document, give back its value.
    values = per_query.read(doc["artifacts"]["per_query"])
    assert set(values["metric"]) == set(m)
    for name, part in values.groupby("metric"):
        grouped = part["group"].ne("").any()
        mean = part.groupby("group")["value"].mean().mean() if grouped else part["value"].mean()
        assert mean == pytest.approx(m[name]["value"]), name
    assert set(values.loc[values["metric"] == "aro_relation", "group"]) == {"left of", "behind"}
    assert run(config(world)) == doc  # a rerun gives the same document


def test_a_model_without_a_text_tower_is_one_line_naming_it(world: Path) -> None:
    with pytest.raises(MatchbenchError) as e:
        run(config(world), model="resnet-mini")
    assert "'resnet-mini'" in str(e.value) and "\n" not in str(e.value)


def test_a_fine_tuned_model_loads_the_checkpoint_of_the_training_dataset(world: Path) -> None:
    cfg = config(world, train_dataset="trainset")
    layout = Layout.of(cfg)
    weights = Path(layout.model("clip-rich", "trainset", "clip-mini", "model.safetensors"))
    weights.parent.mkdir(parents=True)
    save_state(
        create_backbone(CLIP, name="clip-mini").module,
        weights,
        metadata={"text_attention": "bidirectional"},
    )
    doc = run(cfg, model="clip-mini+clip-rich")
    assert doc["model"] == "clip-mini+clip-rich" and "aro_relation" in doc["metrics"]
    with pytest.raises(MatchbenchError, match="models/clip-rich/vl/clip-mini"):
        run(config(world), model="clip-mini+clip-rich")  # trained per dataset: not there


@pytest.mark.parametrize(
    ("table", "edit", "message"),
    [
        ("caption_pairs", lambda d: d.drop(columns="negative"), "lacks columns"),
        ("caption_pairs", lambda d: d.assign(negative=[""] + list(d["negative"][1:])), "empty"),
        ("caption_pairs", lambda d: d.assign(image=["nope"] + list(d["image"][1:])), "'nope'"),
        ("caption_pairs", lambda d: d.assign(benchmark="winoground"), "unknown benchmark"),
        ("caption_pairs", lambda d: d.assign(category="replace_thing").head(1), "replace_thing"),
        ("captions", lambda d: d.assign(image="img0"), "several rich captions"),
    ],
)
def test_bad_tables_are_one_line_naming_the_file(tmp_path: Path, table, edit, message) -> None:
    data = write_world(tmp_path)
    path = data / f"{table}.parquet"
    edit(pd.read_parquet(path)).to_parquet(path)
    with pytest.raises(MatchbenchError, match=message) as e:
        run(config(tmp_path))
    assert "\n" not in str(e.value) and (table in str(e.value) or message == "'nope'")


def test_aro_options_that_leave_nothing_name_their_key(tmp_path: Path) -> None:
    write_world(tmp_path)
    cfg = config(tmp_path)
    strict = copy.deepcopy(cfg)
    strict["tracks"]["compose"]["evaluate"]["aro_min_count"] = 25
    with pytest.raises(MatchbenchError, match="aro_min_count"):
        run(strict)
