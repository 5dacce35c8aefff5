"""The compose recipes: the loss, what trains and what stays frozen, bidirectional text
attention, sentence sampling, hard negatives, the text tower's MLM pretraining, determinism.
The recipes run for real (a few steps of the tiny ``clip-mini`` CLIP on a captioned dataset
written here in the track's table contracts)."""

from __future__ import annotations

import copy
import csv
import functools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from PIL import Image, ImageDraw
from safetensors import safe_open
from safetensors.torch import load_file

from matchbench.config import resolve
from matchbench.data import INDEX_COLUMNS
from matchbench.errors import MatchbenchError
from matchbench.layout import Layout
from matchbench.models import OpenClipEncoder, create_backbone
from matchbench.models.backbones import save_state
from matchbench.runtime import seed_everything
from matchbench.tracks import find_recipe
from matchbench.tracks.compose import mlm
from matchbench.tracks.compose.negatives import Vocabulary, negatives
from matchbench.tracks.compose.recipe import contrastive_loss, train
from matchbench.tracks.compose.text import sample_sentences, sentences
from matchbench.tracks.compose.variants import (
    CLIP_LOG_COLUMNS,
    MLM_LOG_COLUMNS,
    block,
    needs,
)
from matchbench.tracks.compose.variants import (
    resolve as resolve_variant,
)

CLIP = {"source": "open_clip", "arch": "clip-mini", "image_size": 64}
COLOURS = {
    "red": (220, 40, 40),
    "blue": (40, 40, 220),
    "green": (40, 190, 40),
    "yellow": (230, 220, 40),
}
SHAPES = ("square", "circle")


def write_world(root: Path, n: int = 16) -> None:
    """``n`` images of two coloured shapes side by side, with an alt and a rich caption each."""
    data = root / "data" / "vl"
    (data / "images").mkdir(parents=True)
    names = list(COLOURS)
    index, caps = [], []
    for i in range(n):
        a, b = names[i % 4], names[(i // 4 + i + 1) % 4]
        sa, sb = SHAPES[i % 2], SHAPES[(i // 2) % 2]
        img = Image.new("RGB", (64, 64), (128, 128, 128))
        d = ImageDraw.Draw(img)
        for x0, colour, shape in ((4, a, sa), (36, b, sb)):
            box = (x0, 20, x0 + 24, 44)
            (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLOURS[colour])
        path = f"images/{i}.png"
        img.save(data / path)
        index.append([f"img{i}", path, "train", "", -1, "", 64, 64])
        caps.append(
            {
                "image": f"img{i}",
                "split": "train",
                "alt": f"a {a} {sa}",
                "rich": f"A small {a} {sa} is left of a large {b} {sb}. "
                f"The {sb} is {b}. The background is grey.",
            }
        )
    pd.DataFrame(index, columns=INDEX_COLUMNS).to_parquet(data / "images.parquet")
    pd.DataFrame(caps).to_parquet(data / "captions.parquet")


def config(root: Path, **compose: Any) -> dict[str, Any]:
    raw = tiny_config(
        root, datasets={"vl": {"family": "miniworld"}}, tracks={}, backbones={"clip-mini": CLIP}
    )
    cfg = resolve(raw)
    blk = {
        "datasets": ["vl"],
        "backbones": ["clip-mini"],
        "variants": {
            "alt": {"caption": "alt"},
            "rich": {"caption": "rich"},
            "hn": {"caption": "rich", "hard_negatives": True},
            "rich-hn": {"caption": "rich", "hard_negatives": True, "start": "rich"},
            "pt": {"caption": "rich", "text_tower": "pretrained"},
        },
        "train": {"epochs": 1, "batch_size": 8, "sentences": 2, "warmup_epochs": 0},
        "mlm": {"epochs": 1, "batch_size": 16},
    }
    cfg["tracks"]["compose"] = _merge(blk, compose)
    return cfg


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vl")
    write_world(root)
    return root


def out_dir(cfg: dict[str, Any], recipe_: str) -> Path:
    return Path(Layout.of(cfg).model(recipe_, "vl", "clip-mini"))


def initial_state(cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    seed_everything(cfg["seed"])
    return {
        k: v.clone() for k, v in create_backbone(CLIP, name="clip-mini").module.state_dict().items()
    }


def log(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- the loss


def test_without_negatives_the_loss_is_open_clips_clip_loss() -> None:
    from open_clip.loss import ClipLoss

    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(6, 8, generator=g), dim=1)
    scale = torch.tensor(14.3)
    ours, logits = contrastive_loss(img, txt, scale)
    assert torch.allclose(ours, ClipLoss()(img, txt, scale), atol=1e-6)
    assert logits.shape == (6, 6)


def test_hard_negatives_enter_the_image_to_text_side_of_the_loss() -> None:
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    txt = F.normalize(torch.randn(4, 8, generator=g), dim=1)
    hard = F.normalize(txt[:2] + 0.1 * torch.randn(2, 8, generator=g), dim=1)
    scale = torch.tensor(10.0)
    plain, _ = contrastive_loss(img, txt, scale)
    with_hard, logits = contrastive_loss(img, txt, scale, hard)
    assert logits.shape == (4, 6) and with_hard > plain
    # By hand: the text-to-image half is unchanged; the image-to-text half adds the negatives.
    labels = torch.arange(4)
    t2i = F.cross_entropy(scale * txt @ img.T, labels)
    i2t = F.cross_entropy(scale * img @ torch.cat([txt, hard]).T, labels)
    assert torch.allclose(with_hard, (t2i + i2t) / 2)


# --------------------------------------------------------------------------- text


def test_sentence_sampling_draws_from_the_generator() -> None:
    text = "One. Two! Three? Four."
    assert sentences(text) == ["One.", "Two!", "Three?", "Four."]
    draw = functools.partial(sample_sentences, text)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = [draw(2, g1) for _ in range(8)]
    assert a == [draw(2, g2) for _ in range(8)]  # same seed, same draws
    assert len(set(a)) > 1  # and they vary from step to step
    for s in a:  # k sentences, in their order
        parts = sentences(s)
        assert len(parts) == 2 and sorted(parts, key=sentences(text).index) == parts
    g = torch.Generator().manual_seed(3)
    assert all(1 <= len(sentences(draw(0.3, g))) <= 4 for _ in range(20))
    before = g.get_state()
    assert draw(None, g) == text and draw(9, g) == text
    assert sample_sentences("Only one.", 1, g) == "Only one."
    assert not torch.equal(before, g.get_state())  # draw(9) drew, then kept all


def test_negatives_edit_attributes_objects_and_relations_from_the_corpus() -> None:
    corpus = [
        "a small red square left of a large blue circle",
        "a green circle above a yellow square",
        "a blue square next to a red circle",
    ]
    vocab = Vocabulary.from_captions(corpus)
    assert vocab.attributes["colour"] == ("blue", "green", "red", "yellow")
    assert vocab.objects == ("circle", "square")
    assert set(vocab.relations) == {"left of", "above", "next to"}
    g = torch.Generator().manual_seed(0)
    text = corpus[0]
    assert sorted(negatives(text, vocab, g, ["swap_att"], n=5)) == [
        "a large red square left of a small blue circle",
        "a small blue square left of a large red circle",
    ]  # only two swaps exist: colours, sizes
    assert negatives(text, vocab, g, ["swap_obj"]) == [
        "a small red circle left of a large blue square"
    ]
    rel = negatives(text, vocab, g, ["replace_rel"], n=5)
    assert sorted(rel) == [text.replace("left of", r) for r in ("above", "next to")]
    mixed = negatives(text, vocab, g, n=4)
    assert len(mixed) == 4 and text not in mixed and len(set(mixed)) == 4
    assert negatives("two dogs", vocab, g) == []  # nothing to edit: no negative


def test_bidirectional_attention_changes_text_features_and_ignores_padding() -> None:
    torch.manual_seed(0)
    enc = create_backbone(CLIP, name="clip")
    assert isinstance(enc, OpenClipEncoder) and not enc.text_bidirectional
    tokens = enc.tokenize(["a small red square left of a blue circle", "a circle"])
    with torch.no_grad():
        causal = enc.encode_text(tokens)
        assert torch.allclose(causal, enc.module.encode_text(tokens))  # unchanged path
        enc.set_text_bidirectional(True)
        assert enc.text_bidirectional
        both = enc.encode_text(tokens)
        assert not torch.allclose(causal, both, atol=1e-4)
        # Padding after the end of text is masked: other pad ids change nothing.
        noisy = tokens.clone()
        eot = tokens.argmax(-1)
        noisy[1, eot[1] + 1 :] = 320
        assert torch.allclose(enc.encode_text(noisy)[1], both[1], atol=1e-6)
        enc.set_text_bidirectional(False)
        assert torch.allclose(enc.encode_text(tokens), causal, atol=1e-6)


# --------------------------------------------------------------------------- the recipes


def test_the_recipes_and_what_they_start_from(world: Path) -> None:
    cfg = config(world)
    blk = block(cfg)
    for name in ("clip-alt", "clip-rich", "clip-hn", "clip-rich-hn", "clip-pt"):
        track, found = find_recipe(name)
        assert track.name == "compose" and found.prefix
        assert found.log_columns == CLIP_LOG_COLUMNS
    assert find_recipe("text-mlm")[1].log_columns == MLM_LOG_COLUMNS
    hn = resolve_variant(blk, "rich-hn")
    assert (hn.text_tower, hn.bidirectional, hn.start) == ("scratch", False, "rich")
    pt = resolve_variant(blk, "pt")
    assert (pt.text_tower, pt.bidirectional) == ("pretrained", True)
    assert needs(cfg, "clip-rich-hn", "vl", "clip-mini") == [
        str(out_dir(cfg, "clip-rich") / "model.safetensors")
    ]
    assert needs(cfg, "clip-pt", "vl", "clip-mini") == [
        str(out_dir(cfg, "text-mlm") / "model.safetensors")
    ]
    bad = config(world, variants={"x": {"caption": "alt", "start": "pt", "text_tower": "scratch"}})
    with pytest.raises(MatchbenchError, match=r"variants\.x\.text_tower.*'pt'"):
        resolve_variant(block(bad), "x")
    with pytest.raises(MatchbenchError, match="not a variant"):
        train(cfg, "vl", "clip-mini", world / "o", recipe="clip-nope")


def test_two_cpu_runs_write_identical_bytes_and_a_step_trains_both_towers(
    world: Path, tmp_path: Path
) -> None:
    cfg = config(world)
    runs = []
    for name in ("a", "b"):
        train(cfg, "vl", "clip-mini", tmp_path / name, recipe="clip-hn")
        runs.append(
            {
                f: (tmp_path / name / f).read_bytes()
                for f in ("model.safetensors", "train_log.csv", "config.json")
            }
        )
    assert runs[0] == runs[1]
    rows = log(tmp_path / "a" / "train_log.csv")
    assert list(rows[0]) == list(CLIP_LOG_COLUMNS) and rows[0]["hn_acc"] != ""
    state, start = load_file(tmp_path / "a" / "model.safetensors"), initial_state(cfg)
    for key in (
        "visual.conv1.weight",
        "transformer.resblocks.0.attn.in_proj_weight",
        "token_embedding.weight",
        "logit_scale",
    ):
        assert not torch.equal(state[key], start[key]), key
    with safe_open(str(tmp_path / "a" / "model.safetensors"), "pt") as f:
        assert f.metadata()["text_attention"] == "causal"


def test_a_pretrained_text_tower_keeps_its_frozen_blocks_bit_identical(world: Path) -> None:
    cfg = config(world)
    text_file = out_dir(cfg, "text-mlm") / "model.safetensors"
    text_file.parent.mkdir(parents=True)
    torch.manual_seed(123)  # another text tower than the recipe's own initialisation
    save_state(create_backbone(CLIP, name="clip-mini").module, text_file)
    pre = load_file(text_file)
    out = out_dir(cfg, "clip-pt")
    train(cfg, "vl", "clip-mini", out, recipe="clip-pt")
    state = load_file(out / "model.safetensors")
    frozen = [
        k
        for k in pre
        if k.startswith(("token_embedding", "positional_embedding", "transformer.resblocks.0."))
    ]
    assert frozen and all(torch.equal(state[k], pre[k]) for k in frozen)
    for key in (
        "transformer.resblocks.1.mlp.c_fc.weight",
        "ln_final.weight",
        "text_projection",
        "visual.conv1.weight",
    ):
        assert not torch.equal(state[key], pre[key]), key
    # The checkpoint says how it was trained; loading it gives bidirectional attention back.
    reloaded = create_backbone(CLIP, out / "model.safetensors", name="clip-mini")
    assert reloaded.text_bidirectional
    # Without the text weights, one line names the file and the key.
    text_file.unlink()
    with pytest.raises(
        MatchbenchError, match=r"text-mlm/vl/clip-mini/model.safetensors.*text_weights"
    ):
        train(cfg, "vl", "clip-mini", out, recipe="clip-pt")


def test_a_hard_negative_fine_tune_starts_from_its_variant(world: Path) -> None:
    cfg = config(world)
    with pytest.raises(MatchbenchError, match=r"clip-rich/vl/clip-mini.*train clip-rich first"):
        train(cfg, "vl", "clip-mini", out_dir(cfg, "clip-rich-hn"), recipe="clip-rich-hn")
    train(cfg, "vl", "clip-mini", out_dir(cfg, "clip-rich"), recipe="clip-rich")
    train(cfg, "vl", "clip-mini", out_dir(cfg, "clip-rich-hn"), recipe="clip-rich-hn")
    rows = log(out_dir(cfg, "clip-rich-hn") / "train_log.csv")
    assert (
        rows[-1]["hn_acc"] != ""
        and log(out_dir(cfg, "clip-rich") / "train_log.csv")[-1]["hn_acc"] == ""
    )


def test_a_variants_own_sentence_sampling_overrides_train_sentences(
    world: Path, tmp_path: Path
) -> None:
    """variants.<v>.sentences replaces train.sentences for that variant alone: rich with its
    own 1.0 (every sentence, drawn as train.sentences 1.0 draws) trains to the same weights as
    rich under train.sentences 1.0, and not to those of rich under the block's 2."""
    own = config(world, variants={"rich": {"caption": "rich", "sentences": 1.0}})
    assert own["tracks"]["compose"]["train"]["sentences"] == 2
    runs = {
        "own": own,
        "train-1.0": config(world, train={"sentences": 1.0}),
        "train-2": config(world),
    }
    states = {}
    for name, cfg in runs.items():
        train(cfg, "vl", "clip-mini", tmp_path / name, recipe="clip-rich")
        states[name] = load_file(tmp_path / name / "model.safetensors")
    assert all(torch.equal(states["own"][k], states["train-1.0"][k]) for k in states["own"])
    assert not all(torch.equal(states["own"][k], states["train-2"][k]) for k in states["own"])


def test_mlm_loss_falls_on_a_toy_corpus(world: Path) -> None:
    cfg = config(world, mlm={"epochs": 12, "lr": 0.003}, train={"sentences": None})
    out = out_dir(cfg, "text-mlm")
    mlm.train(cfg, "vl", "clip-mini", out)
    rows = log(out / "train_log.csv")
    assert list(rows[0]) == list(MLM_LOG_COLUMNS)
    losses = [float(r["loss"]) for r in rows]
    assert losses[-1] < 0.7 * losses[0]
    state, start = load_file(out / "model.safetensors"), initial_state(cfg)
    assert not torch.equal(
        state["transformer.resblocks.0.attn.in_proj_weight"],
        start["transformer.resblocks.0.attn.in_proj_weight"],
    )
    assert torch.equal(state["visual.conv1.weight"], start["visual.conv1.weight"])  # text only
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert f.metadata()["text_attention"] == "bidirectional"


def test_bad_input_is_one_line(world: Path, tmp_path: Path) -> None:
    big = config(world, train={"batch_size": 64})
    with pytest.raises(MatchbenchError, match="batch_size: 64 exceeds the 16 images"):
        train(big, "vl", "clip-mini", tmp_path, recipe="clip-alt")
    bad = config(world, train={"sentences": 0})
    with pytest.raises(MatchbenchError, match="sentences: 0"):
        train(bad, "vl", "clip-mini", tmp_path, recipe="clip-rich")
    bad_own = config(world, variants={"rich": {"caption": "rich", "sentences": 1.5}})
    with pytest.raises(MatchbenchError, match=r"^tracks.compose.variants.rich.sentences: 1.5;"):
        train(bad_own, "vl", "clip-mini", tmp_path, recipe="clip-rich")
    timm = copy.deepcopy(config(world))
    timm["backbones"]["clip-mini"] = {
        **timm["backbones"]["clip-mini"],
        "source": "timm",
        "arch": "test_resnet",
        "image_size": 32,
    }
    with pytest.raises(MatchbenchError, match="open_clip backbone") as e:
        train(timm, "vl", "clip-mini", tmp_path, recipe="clip-alt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    ("compose", "key"),
    [
        ({"variants": {"rich": {"caption": "rich", "sentences": 1.5}}}, "variants.rich.sentences"),
        ({"variants": {"rich": {"caption": "rich"}}, "train": {"sentences": 0}}, "train.sentences"),
        ({"variants": {}, "finetune": [], "train": {"sentences": -0.5}}, "train.sentences"),
    ],
)
def test_a_bad_sentence_sampling_fails_when_the_config_is_read(
    world: Path, compose: dict[str, Any], key: str
) -> None:
    """Before any job runs (a dry run, `matchbench check`): the config's file and the key."""
    block = {"datasets": ["vl"], "backbones": ["clip-mini"], "finetune": ["clip-mini"], **compose}
    raw = tiny_config(
        world,
        datasets={"vl": {"family": "miniworld"}},
        tracks={"compose": block},
        backbones={"clip-mini": CLIP},
    )
    with pytest.raises(MatchbenchError, match=rf"^my.yaml: tracks.compose.{key}: ") as e:
        resolve(raw, "my.yaml")
    assert "\n" not in str(e.value)


def test_the_ablation_label_says_how_a_rich_variant_samples_its_sentences() -> None:
    from matchbench.tracks.compose.report import variant_label

    blk = {
        "train": {"epochs": 1, "lr": 0.001, "sentences": None},
        "variants": {
            "whole": {"caption": "rich"},
            "one": {"caption": "rich", "sentences": 1},
            "all": {"caption": "rich", "sentences": 1.0},
            "p": {"caption": "rich", "sentences": 0.7},
            "alt": {"caption": "alt", "sentences": 2},
        },
    }
    label = {v: variant_label(blk, f"clip-mini+clip-{v}") for v in blk["variants"]}
    assert label["whole"] == label["all"] == "scratch text tower, rich captions"
    assert label["one"] == "scratch text tower, rich captions (1 sentence a step)"
    assert label["p"] == "scratch text tower, rich captions (sentences kept with p 0.7)"
    assert label["alt"] == "scratch text tower, alt-text"  # alt-text is never sampled
