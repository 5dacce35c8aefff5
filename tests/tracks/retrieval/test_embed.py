"""The ``ilias-embed`` recipe: a backbone fine-tuned as an instance embedding on the training set
of the linear adaptation, then a model like any other (``<backbone>+ilias-embed``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from matchbench.cli import main
from matchbench.config import load_config
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.models.backbones import load_model
from matchbench.tracks import get_recipe
from matchbench.tracks.retrieval.embed import train
from matchbench.tracks.retrieval.methods import EMBED_LOG_COLUMNS

TINY = Path(__file__).parents[2] / "configs" / "tiny.yaml"


def _config(root: Path, name: str = "c.yaml", **retrieval: object) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw["paths"] = {"data": str(root / "data"), "results": str(root / "results")}
    raw["tracks"]["retrieval"].update(retrieval)
    path = root / name
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def uned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config's training set (8 instances x 3 views), downloaded and prepared."""
    root = tmp_path_factory.mktemp("embed")
    path = _config(root)
    for stage in ("download", "prepare"):
        assert main([stage, "--config", str(path), "--dataset", "mini-uned"]) == 0
    return root


def test_the_recipe_is_registered() -> None:
    assert get_recipe("ilias-embed").train == "matchbench.tracks.retrieval.embed:train"


def test_the_whole_backbone_trains_and_reruns_to_the_same_bytes(uned: Path, tmp_path: Path) -> None:
    cfg = load_config(uned / "c.yaml")
    start = load_model(cfg, "resnet-mini", "mini-uned").module.state_dict()
    summary = train(cfg, "mini-uned", "resnet-mini", tmp_path / "a")
    assert summary.startswith("24 images of 8 instances, loss ")
    trained = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert set(trained) == set(start)  # the backbone alone: the classifier is dropped
    weights = [k for k, v in start.items() if v.is_floating_point() and "running" not in k]
    assert all(not torch.equal(start[k], trained[k]) for k in weights)
    log = pd.read_csv(tmp_path / "a" / "train_log.csv")
    assert list(log.columns) == list(EMBED_LOG_COLUMNS) and list(log["epoch"]) == [1, 2]
    train(cfg, "mini-uned", "resnet-mini", tmp_path / "b")
    for f in ("model.safetensors", "train_log.csv", "config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_the_fine_tuned_model_loads_the_training_sets_checkpoint_everywhere(uned: Path) -> None:
    cfg = load_config(uned / "c.yaml")
    layout = Layout.of(cfg)
    want = layout.model("ilias-embed", "mini-uned", "resnet-mini", "model.safetensors")
    for dataset in ("mini-ilias", "mini-uned"):
        assert layout.model_weights(cfg, "resnet-mini+ilias-embed", dataset) == want
    with pytest.raises(
        MatchbenchError, match="search its descriptors as the method `resnet-mini@linear`"
    ):
        layout.model_weights(cfg, "resnet-mini+ilias-linear", "mini-ilias")


def test_the_recipe_trains_only_on_the_adaptation_set(uned: Path, tmp_path: Path) -> None:
    cfg = load_config(uned / "c.yaml")
    with pytest.raises(
        MatchbenchError, match=r"adaptation.dataset \('mini-uned'\), not on 'mini-ilias'"
    ):
        train(cfg, "mini-ilias", "resnet-mini", tmp_path)
    big = load_config(_config(uned, "big.yaml", train={"batch_size": 64}))
    with pytest.raises(MatchbenchError, match="train.batch_size: 64 exceeds the 24 images"):
        train(big, "mini-uned", "resnet-mini", tmp_path / "out")


def test_a_fine_tuned_model_needs_a_training_set(tmp_path: Path) -> None:
    path = _config(tmp_path, methods=["global"], adaptation={"dataset": None})
    with pytest.raises(
        MatchbenchError,
        match="adaptation.dataset is null, but model 'resnet-mini\\+ilias-embed' trains on it",
    ):
        load_config(path)
