"""A sampler from another track: the ssl track mines with a model the compose track trains
(``<backbone>+clip-<variant>``), whose checkpoint comes from the compose track's training
dataset (``Track.checkpoint``), and compares samplers in its report."""

from __future__ import annotations

import pytest
from conftest import tiny_config

from matchbench.config import resolve
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.tracks.ssl import targets

DATASETS = {
    "miniworld": {"family": "miniworld", "options": {"seed": 0}},
    "mini-vl": {"family": "miniworld-vl", "options": {"seed": 0}},
}


def config(tmp_path, compose=True, **ssl):
    tracks = {
        "ssl": {"dataset": "miniworld", "backbones": ["resnet-mini"], **ssl},
        "compose": {
            "datasets": ["mini-vl"],
            "backbones": ["clip-mini"],
            "finetune": ["clip-mini"],
            "train_dataset": "mini-vl",
            "enabled": compose,
        },
    }
    raw = tiny_config(
        tmp_path,
        datasets=DATASETS,
        tracks=tracks,
        backbones={
            "resnet-mini": {},
            "clip-mini": {"source": "open_clip", "arch": "clip-mini", "image_size": 64},
        },
    )
    return resolve(raw, "test.yaml")


def test_a_compose_model_mines_with_the_checkpoint_of_its_training_dataset(tmp_path):
    cfg = config(tmp_path, sampler="clip-mini+clip-rich", compare_samplers=["ssl"])
    layout = Layout.of(cfg)
    # Used on miniworld, the compose model loads what it learnt on mini-vl.
    assert layout.model_weights(cfg, "clip-mini+clip-rich", "miniworld") == layout.model(
        "clip-rich", "mini-vl", "clip-mini", "model.safetensors"
    )
    # An ssl model still loads the checkpoint of the dataset it is used on.
    assert layout.model_weights(cfg, "resnet-mini+ssl", "miniworld") == layout.model(
        "ssl", "miniworld", "resnet-mini", "model.safetensors"
    )
    files = targets(cfg, layout)
    assert layout.mined("miniworld", "clip-mini+clip-rich", "pairs.parquet") in files
    # A compared sampler is mined for its statistics only.
    assert layout.mined("miniworld", "resnet-mini+ssl", "stats.json") in files
    assert layout.mined("miniworld", "resnet-mini+ssl", "pairs.parquet") not in files


@pytest.mark.parametrize(
    ("sampler", "compose", "message"),
    [
        ("clip-mini+clip-rich", False, "needs track 'compose'"),
        ("clip-mini+nope", True, "unknown recipe 'nope'"),
        ("vit-huge+clip-rich", True, "not 'ssl', 'backbone'"),
        ("clip-mini", True, None),
    ],
)
def test_the_sampler_names_a_model_the_config_can_build(tmp_path, sampler, compose, message):
    if message is None:
        config(tmp_path, compose=compose, sampler=sampler)
        return
    with pytest.raises(MatchbenchError) as e:
        config(tmp_path, compose=compose, sampler=sampler)
    assert message in str(e.value) and "tracks.ssl.sampler" in str(e.value)
    with pytest.raises(MatchbenchError, match=r"compare_samplers\[0\]"):
        config(tmp_path, compose=compose, compare_samplers=[sampler])
