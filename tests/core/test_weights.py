"""Pretrained weights over real HTTP on 127.0.0.1: `matchbench weights`, then extraction.

The `weights` stage downloads a safetensors file (from ``weights_url`` or the Hugging Face URL
derived from the architecture's pretrained config), verifies its checksum, checks it loads into
the architecture and only then renames it to ``data/weights/<backbone>.safetensors``. Pickled
checkpoints are refused everywhere.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import timm
import torch
import yaml
from conftest import strip_progress
from PIL import Image
from safetensors.torch import save_file

from matchbench.cli import main
from matchbench.config import resolve
from matchbench.data.download import download_url
from matchbench.errors import MatchbenchError
from matchbench.models import create_backbone
from matchbench.models.weights import weights_url

SIZE = 32
MEAN, STD = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25]


def state_file(path: Path, arch: str, seed: int) -> str:
    """Save a timm model's full state dict (classifier head included) as safetensors."""
    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


class Setup:
    def __init__(self, root: Path, http_server: Any) -> None:
        self.root, self.server = root, http_server
        self.checksum = state_file(http_server.root / "model.safetensors", "test_resnet", seed=7)
        self.weights = root / "data" / "weights" / "rn-pre.safetensors"
        # A small image folder, 32 px, so extraction needs no resize.
        rng = np.random.default_rng(0)
        for split, n in (("train", 3), ("test", 2)):
            for cls in ("a", "b"):
                d = root / "images" / split / cls
                d.mkdir(parents=True)
                for i in range(n):
                    pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(d / f"{i}.png")

    def config(self, **backbone: Any) -> Path:
        raw = {
            "device": "cpu",
            "threads": 1,
            "paths": {k: str(self.root / k) for k in ("data", "results", "reports")},
            "datasets": {
                "folder": {"family": "imagefolder", "options": {"root": str(self.root / "images")}}
            },
            "backbones": {
                "rn-pre": {
                    "source": "timm",
                    "arch": "test_resnet",
                    "pretrained": True,
                    "weights_url": self.server.url("model.safetensors"),
                    "weights_checksum": self.checksum,
                    "image_size": SIZE,
                    "mean": MEAN,
                    "std": STD,
                    **backbone,
                }
            },
            "extract": {"batch_size": 4, "shard_size": 8},
        }
        path = self.root / "config.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path


@pytest.fixture
def setup(tmp_path, http_server) -> Setup:
    return Setup(tmp_path, http_server)


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = strip_progress(capsys.readouterr().err)
    assert "Traceback" not in err
    return code, err


def weights_dir_files(setup: Setup) -> list[str]:
    d = setup.weights.parent
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


# --------------------------------------------------------------------------- fetch, then extract


def test_weights_then_extract_matches_the_models_own_forward(setup, capsys):
    cfg = str(setup.config())
    code, err = run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")
    assert code == 0, err
    assert setup.weights.read_bytes() == (setup.server.root / "model.safetensors").read_bytes()
    assert weights_dir_files(setup) == ["rn-pre.safetensors"]  # no staging or .part left over
    assert setup.server.count("model.safetensors") == 1

    # A second run finds the verified file and makes no request.
    assert run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")[0] == 0
    assert setup.server.count("model.safetensors") == 1

    assert run(capsys, "prepare", "--config", cfg, "--dataset", "folder")[0] == 0
    code, err = run(capsys, "extract", "--config", cfg, "--dataset", "folder", "--model", "rn-pre")
    assert code == 0, err
    out = setup.root / "results" / "features" / "folder" / "rn-pre"
    feats = np.load(out / "features.npy").astype(np.float32)
    ids = (out / "ids.txt").read_text().splitlines()

    # The reference: the model that was saved (with its head), its pooled pre-logits features.
    torch.manual_seed(7)
    model = timm.create_model("test_resnet", pretrained=False).eval()
    x = torch.stack(
        [
            torch.from_numpy(
                np.array(Image.open(setup.root / "images" / f"{i}.png").convert("RGB"))
            )
            for i in ids
        ]
    )
    x = (x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(
        STD
    ).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = model.forward_head(model.forward_features(x), pre_logits=True)
    ref = torch.nn.functional.normalize(ref, dim=1).numpy()
    assert feats.shape == ref.shape
    np.testing.assert_allclose(feats, ref, atol=2e-3)  # float16 storage

    # ... and not what a randomly initialised network gives.
    random = create_backbone(
        resolve(yaml.safe_load(Path(cfg).read_text()))["backbones"]["rn-pre"]
        | {"pretrained": False}
    )
    with torch.no_grad():
        rand = torch.nn.functional.normalize(random(x), dim=1).numpy()
    assert np.abs(rand - ref).max() > 0.05


def test_wrong_checksum_leaves_no_file(setup, capsys):
    cfg = str(setup.config(weights_checksum="sha256:" + "0" * 64))
    code, err = run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")
    assert code == 2
    assert err.startswith("matchbench weights: error: checksum mismatch for http://127.0.0.1")
    assert not setup.weights.exists()
    assert weights_dir_files(setup) == []


def test_weights_for_another_architecture_are_refused(setup, capsys):
    vit = setup.server.root / "vit.safetensors"
    checksum = state_file(vit, "test_vit", seed=0)
    cfg = str(
        setup.config(weights_url=setup.server.url("vit.safetensors"), weights_checksum=checksum)
    )
    code, err = run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")
    assert code == 2
    assert "do not fit backbones.rn-pre (timm test_resnet)" in err
    assert "another architecture" in err
    assert weights_dir_files(setup) == []


def test_weights_without_checksum_still_must_load(setup, capsys):
    (setup.server.root / "junk.safetensors").write_bytes(b"\x00" * 64)
    cfg = str(setup.config(weights_url=setup.server.url("junk.safetensors"), weights_checksum=None))
    code, err = run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")
    assert code == 2
    assert "not a readable safetensors file" in err
    assert weights_dir_files(setup) == []


def test_weights_url_derived_from_timm_hub_id_over_loopback(setup, capsys, monkeypatch):
    """No weights_url: the Hugging Face URL timm's pretrained config gives, on a local endpoint."""
    hub = setup.server.root / "timm" / "test_resnet.r160_in1k" / "resolve" / "main"
    hub.mkdir(parents=True)
    (hub / "model.safetensors").write_bytes((setup.server.root / "model.safetensors").read_bytes())
    monkeypatch.setenv("HF_ENDPOINT", setup.server.base_url)
    cfg = str(setup.config(weights_url=None))
    code, err = run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")
    assert code == 0, err
    assert setup.server.count("timm/test_resnet.r160_in1k/resolve/main/model.safetensors") == 1
    assert setup.weights.is_file()


def test_backbone_without_pretrained_has_nothing_to_fetch(setup, capsys):
    cfg = str(setup.config(pretrained=False))
    code, err = run(capsys, "weights", "--config", cfg, "--backbone", "rn-pre")
    assert code == 2 and "nothing to fetch" in err


# --------------------------------------------------------------------------- pickles are refused


def test_pth_path_as_pretrained_is_refused(setup, capsys, tmp_path):
    pth = tmp_path / "model.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), pth)
    cfg = str(setup.config(pretrained=str(pth), weights_url=None, weights_checksum=None))
    assert run(capsys, "prepare", "--config", cfg, "--dataset", "folder")[0] == 0
    code, err = run(capsys, "extract", "--config", cfg, "--dataset", "folder", "--model", "rn-pre")
    assert code == 2
    assert f"{pth}: weights must be a .safetensors file" in err
    assert "pickled checkpoints" in err and "arbitrary code" in err
    # refused for what it is, even before anyone checks it exists
    with pytest.raises(MatchbenchError, match="pickled checkpoints"):
        create_backbone(
            {"source": "timm", "arch": "test_resnet", "pretrained": str(tmp_path / "missing.pt")}
        )


def test_pickle_renamed_to_safetensors_is_refused(tmp_path):
    fake = tmp_path / "model.safetensors"
    torch.save(timm.create_model("test_resnet").state_dict(), fake)
    with pytest.raises(
        MatchbenchError, match=r"model\.safetensors: not a readable safetensors file"
    ):
        create_backbone({"source": "timm", "arch": "test_resnet"}, fake)


def test_missing_weights_file_says_how_to_get_it(tmp_path):
    with pytest.raises(MatchbenchError, match="weights file not found.*matchbench weights"):
        create_backbone({"source": "timm", "arch": "test_resnet"}, tmp_path / "none.safetensors")


# --------------------------------------------------------------------------- URLs, offline


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("weights_url must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


@pytest.mark.parametrize(
    ("spec", "url"),
    [
        (
            {"source": "timm", "arch": "vit_small_patch14_dinov2.lvd142m"},
            "https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors",
        ),
        (
            {"source": "timm", "arch": "vit_small_patch14_dinov2", "weights_tag": "lvd142m"},
            "https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors",
        ),
        (  # no tag: timm's default pretrained tag for the architecture
            {"source": "timm", "arch": "test_vit"},
            "https://huggingface.co/timm/test_vit.r160_in1k/resolve/main/model.safetensors",
        ),
        (
            {"source": "open_clip", "arch": "ViT-B-16", "weights_tag": "openai"},
            "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors",
        ),
        (  # open_clip's hf_hub names a file: its safetensors twin, in that repository
            {"source": "open_clip", "arch": "ViTamin-S", "weights_tag": "datacomp1b"},
            "https://huggingface.co/jienengchen/ViTamin-S/resolve/main/model.safetensors",
        ),
        (  # an explicit mirror wins
            {"source": "timm", "arch": "test_vit", "weights_url": "file:///mirror/w.safetensors"},
            "file:///mirror/w.safetensors",
        ),
    ],
)
def test_weights_url_from_pretrained_cfgs(no_network, spec, url):
    assert weights_url(spec) == url


def test_weights_url_follows_hf_endpoint(no_network, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080/")
    assert (
        weights_url({"source": "open_clip", "arch": "ViT-B-16", "weights_tag": "openai"})
        == "http://mirror.local:8080/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors"
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"source": "timm", "arch": "vit_small_patch14_dinov2.nope"},
            "vit_small_patch14_dinov2.lvd142m",
        ),
        (
            {"source": "timm", "arch": "vit_small_patch14_dinov2.lvd142m", "weights_tag": "x"},
            "give the tag in one place",
        ),
        ({"source": "timm", "arch": "no_such_net"}, "timm has no architecture 'no_such_net'"),
        ({"source": "open_clip", "arch": "ViT-B-16"}, "set weights_tag"),
        ({"source": "open_clip", "arch": "ViT-B-16", "weights_tag": "nope"}, "known tags: openai"),
    ],
)
def test_weights_url_errors(no_network, spec, message):
    with pytest.raises(MatchbenchError, match=message):
        weights_url(spec)


def test_download_helper_serves_the_file(http_server, tmp_path):
    """The fixture and the downloader agree (a sanity check for the tests above)."""
    (http_server.root / "x.bin").write_bytes(b"abc")
    assert (
        download_url(http_server.url("x.bin"), tmp_path / "x.bin", progress=False).read_bytes()
        == b"abc"
    )


# --------------------------------------------------------------------------- saving


def test_save_state_is_byte_identical_and_keeps_metadata(tmp_path):
    """safetensors orders metadata as a Rust HashMap does (randomly); save_state sorts it."""
    from safetensors import safe_open

    from matchbench.models.backbones import load_state, save_state

    model = timm.create_model("test_resnet", num_classes=0)
    meta = {f"key{i}": f"value {i}" for i in range(8)} | {"backbone": "résumé"}
    blobs = set()
    for i in range(4):
        save_state(model, tmp_path / f"{i}.safetensors", metadata=meta)
        blobs.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(blobs) == 1
    with safe_open(str(tmp_path / "0.safetensors"), "pt") as f:
        assert f.metadata() == meta
    again = timm.create_model("test_resnet", num_classes=0)
    load_state(again, tmp_path / "0.safetensors")
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )
