"""Encoders: timm and open_clip behind one interface, offline, with both towers saved.

An open_clip backbone built from the tiny ``clip-mini`` config that ships with the package
encodes images and texts without the network, is fine-tuned a step, saved and reloaded with
both towers; image-only models refuse text with one line; a bad arch or kwarg fails by its
config key when the backbones are checked, before any job runs.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from matchbench.config import load_config
from matchbench.errors import MatchbenchError
from matchbench.models import (
    Encoder,
    OpenClipEncoder,
    OptionError,
    check_backbones,
    create_backbone,
)
from matchbench.models.backbones import save_state

ROOT = Path(__file__).resolve().parents[2]
CLIP: dict[str, Any] = {"source": "open_clip", "arch": "clip-mini", "image_size": 64}
CAPTIONS = ["a red square on grass", "two blue circles", "a striped triangle"]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("encoders must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def images(n: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def clip(**spec: Any) -> OpenClipEncoder:
    torch.manual_seed(0)
    encoder = create_backbone(CLIP | spec, name="clip")
    assert isinstance(encoder, OpenClipEncoder)
    return encoder


# --------------------------------------------------------------------------- image and text


def test_a_tiny_clip_encodes_images_and_texts_offline() -> None:
    encoder = clip()
    assert encoder.has_text and encoder.context_length == 32
    assert encoder.image_size == 64 and encoder.dim == 64
    encoder.module.eval()
    with torch.no_grad():
        image = encoder.encode_image(images(2))
        text = encoder.encode_text(encoder.tokenize(CAPTIONS))
        assert torch.equal(encoder(images(2)), image)  # calling the encoder = encode_image
    assert image.shape == (2, 64) and text.shape == (3, 64)
    # Not normalised inside: the feature store normalises.
    assert not torch.allclose(image.norm(dim=1), torch.ones(2))


def test_long_captions_are_truncated_to_the_context() -> None:
    encoder = clip()
    tokens = encoder.tokenize(["a long caption " * 50, "short"])
    assert tokens.shape == (2, 32) and tokens.dtype == torch.long
    assert (tokens[0] != 0).all()  # filled to the end, the last token the end-of-text
    assert tokens[0, -1] == tokens[1][tokens[1] != 0][-1]
    with torch.no_grad():
        assert encoder.encode_text(tokens).shape == (2, 64)


def test_kwargs_deep_merge_into_the_open_clip_config() -> None:
    encoder = clip(
        image_size=96,
        kwargs={"vision_cfg": {"image_size": 96, "layers": 2}, "text_cfg": {"context_length": 16}},
    )
    visual = encoder.module.visual
    assert visual.image_size == (96, 96) and len(visual.transformer.resblocks) == 2
    assert visual.transformer.width == 64  # untouched fields keep the architecture's values
    assert encoder.context_length == 16
    assert encoder.tokenize(["a caption"]).shape == (1, 16)


# --------------------------------------------------------------------------- fine-tune, save, load


def test_fine_tuned_clip_saves_and_reloads_both_towers(tmp_path: Path) -> None:
    encoder = clip()
    start = {k: v.clone() for k, v in encoder.module.state_dict().items()}
    tokens = encoder.tokenize(CAPTIONS)
    x = images(3)
    opt = torch.optim.AdamW(encoder.module.parameters(), lr=1e-2)
    encoder.module.train()
    image = F.normalize(encoder.encode_image(x), dim=1)
    text = F.normalize(encoder.encode_text(tokens), dim=1)
    logits = encoder.module.logit_scale.exp() * image @ text.T
    target = torch.arange(3)
    loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    opt.zero_grad()
    loss.backward()
    opt.step()
    trained = encoder.module.state_dict()
    changed = {k for k in start if not torch.equal(start[k], trained[k])}
    assert any(k.startswith("visual.") for k in changed)
    assert any(
        k.startswith(("transformer.", "token_embedding", "text_projection")) for k in changed
    )

    path = tmp_path / "model.safetensors"
    save_state(encoder.module.eval(), path)
    assert set(load_file(str(path))) == set(trained)  # the whole model, open_clip's keys

    again = create_backbone(CLIP, path)
    assert again.has_text
    again.module.eval()
    with torch.no_grad():
        assert torch.equal(again.encode_image(x), encoder.encode_image(x))
        assert torch.equal(again.encode_text(tokens), encoder.encode_text(tokens))


def test_an_image_only_checkpoint_loads_its_tower_and_refuses_text(tmp_path: Path) -> None:
    """Files saved before encoders kept their text tower hold ``visual.*`` only."""
    encoder = clip()
    visual = {k: v for k, v in encoder.module.state_dict().items() if k.startswith("visual.")}
    path = tmp_path / "visual.safetensors"
    save_file({k: v.contiguous() for k, v in visual.items()}, str(path))
    torch.manual_seed(1)  # another random init: the image tower must come from the file
    again = create_backbone(CLIP, path, name="clip")
    encoder.module.eval(), again.module.eval()
    with torch.no_grad():
        assert torch.equal(again.encode_image(images(2)), encoder.encode_image(images(2)))
    assert not again.has_text
    with pytest.raises(MatchbenchError, match=r"'clip'.*no usable text tower.*image tower only"):
        again.tokenize(["a caption"])


def test_a_file_for_another_clip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_state(clip(kwargs={"text_cfg": {"layers": 1}}).module, path)
    with pytest.raises(MatchbenchError, match="missing from the weights"):
        create_backbone(CLIP, path)


# --------------------------------------------------------------------------- image-only models


def test_a_timm_model_asked_for_text_says_so_in_one_line() -> None:
    encoder = create_backbone({"source": "timm", "arch": "test_resnet"}, name="resnet-mini")
    assert isinstance(encoder, Encoder) and not encoder.has_text
    for ask in (
        lambda: encoder.tokenize(["a caption"]),
        lambda: encoder.encode_text(torch.zeros(1, 77, dtype=torch.long)),
        lambda: encoder.context_length,
    ):
        with pytest.raises(MatchbenchError) as e:
            ask()
        message = str(e.value)
        assert "\n" not in message
        assert message.startswith("backbone 'resnet-mini' (timm test_resnet) is an image-only")


# --------------------------------------------------------------------------- dense maps


def test_dense_maps_of_a_timm_vit_and_a_tiny_clip() -> None:
    vit = create_backbone(
        {"source": "timm", "arch": "test_vit", "kwargs": {"img_size": 64, "patch_size": 8}}
    )
    vit.module.eval()
    with torch.no_grad():
        assert vit.dense(images(2), -1).shape == (2, vit.dim, 8, 8)
        vit.set_resolution(96)  # position embeddings resampled
        assert vit.dense(images(2, 96), 0).shape == (2, vit.dim, 12, 12)

    encoder = clip()
    encoder.module.eval()
    with torch.no_grad():
        assert encoder.dense(images(2), -1).shape == (2, 64, 8, 8)  # the tower's width
        assert encoder.dense(images(2), 0).shape == (2, 64, 8, 8)
    encoder.set_resolution(64)
    with pytest.raises(OptionError, match=r"^resolution: 96, .*native size \(64, 64\)"):
        encoder.set_resolution(96)
    # A block the network does not have: the option, not the library's bare assertion.
    for model in (vit, encoder):
        with pytest.raises(OptionError, match=r"^layer: -40 is out of range for") as e:
            model.dense(images(1, model.image_size), -40)
        assert e.value.option == "layer"
    # Any other assertion of the forward pass is a failure of its own, not the option's.
    broken = AssertionError("Output format must be one of NCHW or NLC.")

    def fail(*_args: object, **_kwargs: object) -> None:
        raise broken

    vit.module.forward_intermediates = fail
    with pytest.raises(AssertionError) as e2:
        vit.dense(images(1, vit.image_size), -1)
    assert e2.value is broken


# --------------------------------------------------------------------------- checked up front


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"source": "timm", "arch": "test_resnt"},
            r"^backbones\.b\.arch: unknown timm architecture 'test_resnt'; close names:.*test_resnet",
        ),
        (
            {"source": "open_clip", "arch": "clip-mni"},
            r"^backbones\.b\.arch: unknown open_clip architecture 'clip-mni'.*clip-mini",
        ),
        (
            {"source": "timm", "arch": "test_resnet", "kwargs": {"depht": 3}},
            r"^backbones\.b\.kwargs\.depht: test_resnet takes no argument 'depht'",
        ),
        (
            {"source": "timm", "arch": "test_vit", "kwargs": {"embed_dim": 7, "num_heads": 2}},
            r"^backbones\.b\.kwargs: test_vit rejects them \(.*divisible",
        ),
        (
            CLIP | {"kwargs": {"vision_cfg": {"widht": 32}}},
            r"^backbones\.b\.kwargs\.vision_cfg\.widht: not a field.*close names: width",
        ),
        (CLIP | {"kwargs": {"embed_dims": 32}}, r"^backbones\.b\.kwargs\.embed_dims: not a field"),
        (
            CLIP | {"kwargs": {"text_cfg": 3}},
            r"^backbones\.b\.kwargs\.text_cfg: expected a mapping",
        ),
        (CLIP | {"image_size": 224}, r"^backbones\.b\.image_size: 224, but .* 64x64 images"),
    ],
)
def test_bad_backbones_are_refused_by_key(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(MatchbenchError, match=message) as e:
        check_backbones({"backbones": {"b": spec}})
    assert "\n" not in str(e.value)
    with pytest.raises(MatchbenchError, match=message):
        create_backbone(spec, name="b")


def test_checking_the_demo_backbones_is_cheap_and_draws_no_random_numbers() -> None:
    cfg = load_config(ROOT / "config" / "default.yaml")
    cfg["backbones"]["clip"] = CLIP | {"kwargs": {"vision_cfg": {"layers": 2}}}
    torch.manual_seed(0)
    state = torch.get_rng_state()
    check_backbones(cfg)
    assert torch.equal(torch.get_rng_state(), state)
