"""The cir methods: pseudo-words in the frozen text tower, the composer, keyword masking,
hard negatives, the benchmarks' metrics and submission files, and the method names.

The encoder is the tiny ``clip-mini`` CLIP (random weights, 32-token context). The metrics
run on feature matrices built by hand: with the standard basis as the gallery's features, a
query's scores are its own coordinates, so every rank below can be read off the vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from matchbench.errors import MatchbenchError
from matchbench.models import OpenClipEncoder, create_backbone
from matchbench.tracks.cir.composer import (
    PLACEHOLDER,
    Composer,
    clean,
    fill,
    mask_keywords,
    placeholder_id,
    prompt_tokens,
)
from matchbench.tracks.cir.evaluate import (
    Gallery,
    chance,
    circo_metrics,
    cirr_metrics,
    examples,
    fashioniq_metrics,
    submissions,
)
from matchbench.tracks.cir.methods import METHODS, model_name, split_method
from matchbench.tracks.cir.recipe import mine_negatives
from matchbench.tracks.cir.tables import QUERY_COLUMNS

CLIP = {"source": "open_clip", "arch": "clip-mini", "image_size": 64}
PROMPT = "a photo of $ that {}"  # the schema's default tracks.cir.prompt
N_BOOT, SEED = 20, 0


@pytest.fixture(scope="module")
def encoder() -> OpenClipEncoder:
    torch.manual_seed(0)
    enc = create_backbone(CLIP, name="clip-mini")
    assert isinstance(enc, OpenClipEncoder)
    enc.module.eval()
    return enc


@contextmanager
def bidirectional(encoder: OpenClipEncoder, on: bool) -> Iterator[None]:
    encoder.set_text_bidirectional(on)
    try:
        yield
    finally:
        encoder.set_text_bidirectional(False)


def one_line_error(match: str, fn, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(MatchbenchError, match=match) as e:
        fn(*args, **kwargs)
    assert "\n" not in str(e.value)
    return str(e.value)


# --------------------------------------------------------------------------- the text tower


@pytest.mark.parametrize("both_ways", [False, True], ids=["causal", "bidirectional"])
@torch.no_grad()
def test_encode_text_with_its_own_embeddings_is_encode_text(
    encoder: OpenClipEncoder, both_ways: bool
) -> None:
    tokens = encoder.tokenize(["a photo of $ that is red", "a blue circle", "$"])
    with bidirectional(encoder, both_ways):
        plain = encoder.encode_text(tokens)
        given = encoder.encode_text(tokens, encoder.token_embeddings(tokens))
    assert given.shape == (3, encoder.dim)
    torch.testing.assert_close(given, plain, rtol=0, atol=1e-6)


@torch.no_grad()
def test_bidirectional_and_causal_differ(encoder: OpenClipEncoder) -> None:
    tokens = encoder.tokenize(["a photo of $ that is red"])
    causal = encoder.encode_text(tokens)
    with bidirectional(encoder, True):
        both = encoder.encode_text(tokens)
    assert not torch.allclose(causal, both)  # so the test above compares two paths


@pytest.mark.parametrize("both_ways", [False, True], ids=["causal", "bidirectional"])
@torch.no_grad()
def test_a_pseudo_word_changes_only_the_texts_that_hold_the_placeholder(
    encoder: OpenClipEncoder, both_ways: bool
) -> None:
    pid = placeholder_id(encoder)
    tokens = encoder.tokenize(["a photo of $ that is red", "a blue circle", "two $ and one $"])
    emb = encoder.token_embeddings(tokens)
    word = torch.randn(encoder.text_width, generator=torch.Generator().manual_seed(1))
    swapped = torch.where((tokens == pid)[..., None], word, emb)
    with bidirectional(encoder, both_ways):
        before = encoder.encode_text(tokens, emb)
        after = encoder.encode_text(tokens, swapped)
    changed = (after - before).abs().amax(1) > 1e-4
    assert changed.tolist() == [True, False, True]
    torch.testing.assert_close(after[1], before[1], rtol=0, atol=0)


def test_embeddings_of_the_wrong_shape_are_one_line(encoder: OpenClipEncoder) -> None:
    tokens = encoder.tokenize(["a photo of $", "a cat"])
    emb = encoder.token_embeddings(tokens)
    for bad in (emb[:, :-1], emb[:1], emb[..., :-1]):
        msg = one_line_error("token embeddings of shape", encoder.encode_text, tokens, bad)
        assert "'clip-mini'" in msg and str(tuple(tokens.shape)) in msg


def test_text_width_is_the_token_embeddings_width(encoder: OpenClipEncoder) -> None:
    tokens = encoder.tokenize(["a"])
    assert encoder.token_embeddings(tokens).shape == (1, encoder.context_length, encoder.text_width)


# --------------------------------------------------------------------------- prompts


def test_the_placeholder_is_one_token(encoder: OpenClipEncoder) -> None:
    pid = placeholder_id(encoder)
    tokens = encoder.tokenize([PLACEHOLDER])[0]
    assert tokens[:4].tolist() == [tokens[0].item(), pid, tokens.max().item(), 0]
    assert (encoder.tokenize(["a photo of $ that is red"]) == pid).sum() == 1


@pytest.mark.parametrize(
    "text",
    [
        "change the red square to blue",
        "make it cost $5",
        "$$ twice $ and $",
        "",
        "ends with a dollar $",
    ],
)
def test_a_filled_prompt_has_exactly_one_slot(encoder: OpenClipEncoder, text: str) -> None:
    sentence = fill(PROMPT, text)
    assert sentence.count(PLACEHOLDER) == 1
    tokens, slots = prompt_tokens(
        encoder, [sentence, fill(PROMPT, "a plain text")], placeholder_id(encoder)
    )
    assert slots.shape == tokens.shape and slots.dtype == torch.bool
    assert slots.sum(1).tolist() == [1, 1]
    assert slots[0].nonzero().item() == 4  # <start> a photo of $


def test_clean_removes_the_placeholder_and_squeezes_spaces() -> None:
    assert clean("  make it $5  $ cheaper ") == "make it 5 cheaper"
    assert fill("a photo of $ that {}.", "is $ red") == "a photo of $ that is red."


def test_a_placeholder_past_the_context_is_one_line_naming_the_prompt(
    encoder: OpenClipEncoder,
) -> None:
    pid = placeholder_id(encoder)
    long = " ".join(["word"] * 40)  # 40 tokens: past clip-mini's 32-token context
    late = fill("{} and then $", long)
    msg = one_line_error(
        "was cut by the 32-token context",
        prompt_tokens,
        encoder,
        [fill(PROMPT, "fine"), late],
        pid,
    )
    assert repr(late) in msg and "tracks.cir.prompt" in msg
    # the same long text after the placeholder is only truncated
    tokens, slots = prompt_tokens(encoder, [fill(PROMPT, long)], pid)
    assert slots.sum().item() == 1


# --------------------------------------------------------------------------- the composer


def composer(
    encoder: OpenClipEncoder, seed: int = 0, adapter_layers: int = 0, gain: float | None = None
) -> Composer:
    torch.manual_seed(seed)
    c = Composer(
        encoder.dim,
        encoder.text_width,
        32,
        adapter_layers=adapter_layers,
        adapter_rank=4,
        gain=gain,
    )
    return c.eval()


def batch(encoder: OpenClipEncoder, n: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    image = F.normalize(torch.randn(n, encoder.dim, generator=g), dim=1)
    texts = ["is red", "has two circles", "change the square to blue"][:n]
    tokens, slots = prompt_tokens(
        encoder, [fill(PROMPT, t) for t in texts], placeholder_id(encoder)
    )
    return image, tokens, slots


def perturb(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@torch.no_grad()
def test_compose_encodes_the_mapped_image_in_the_placeholder(encoder: OpenClipEncoder) -> None:
    c = composer(encoder)
    image, tokens, slots = batch(encoder)
    out = c.compose(encoder, image, tokens, slots)
    emb = encoder.token_embeddings(tokens).clone()
    emb[slots] = c.mapping(image)
    expected = F.normalize(encoder.encode_text(tokens, emb), dim=1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(out)), rtol=0, atol=1e-5)
    other = c.compose(encoder, image.roll(1, 0), tokens, slots)
    assert ((other - out).abs().amax(1) > 1e-4).all()  # the image is read


@torch.no_grad()
def test_adapters_start_as_the_identity_and_act_once_trained(encoder: OpenClipEncoder) -> None:
    plain, adapted = composer(encoder), composer(encoder, adapter_layers=2)
    adapted.mapping.load_state_dict(plain.mapping.state_dict())
    image, tokens, slots = batch(encoder)
    base = plain.compose(encoder, image, tokens, slots)
    torch.testing.assert_close(adapted.compose(encoder, image, tokens, slots), base, rtol=0, atol=0)
    perturb(adapted.adapters, 3)
    assert not torch.allclose(adapted.compose(encoder, image, tokens, slots), base, atol=1e-4)


@torch.no_grad()
def test_installed_adapters_are_removed_after_the_block(encoder: OpenClipEncoder) -> None:
    c = composer(encoder, adapter_layers=2)
    perturb(c.adapters, 4)
    tokens = encoder.tokenize(["a photo of a red square"])
    before = encoder.encode_text(tokens)
    with c.installed(encoder):
        inside = encoder.encode_text(tokens)
    after = encoder.encode_text(tokens)
    assert not torch.allclose(inside, before, atol=1e-4)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    blocks = encoder.module.transformer.resblocks
    assert all(not b._forward_hooks for b in blocks)
    with pytest.raises(RuntimeError), c.installed(encoder):  # removed on errors too
        raise RuntimeError("boom")
    assert all(not b._forward_hooks for b in blocks)


def test_more_adapters_than_text_blocks_is_one_line(encoder: OpenClipEncoder) -> None:
    c = composer(encoder, adapter_layers=3)  # clip-mini has 2 text blocks

    def install() -> None:
        with c.installed(encoder):
            pass

    one_line_error("adapter_layers: 3, .* 2 text blocks", install)


@torch.no_grad()
def test_the_gain_adds_the_reference_image(encoder: OpenClipEncoder) -> None:
    text_only, injected = composer(encoder), composer(encoder, gain=0.7)
    injected.mapping.load_state_dict(text_only.mapping.state_dict())
    image, tokens, slots = batch(encoder)
    t = text_only.compose(encoder, image, tokens, slots)
    out = injected.compose(encoder, image, tokens, slots)
    torch.testing.assert_close(out, F.normalize(t + 0.7 * image, dim=1), rtol=0, atol=1e-6)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(out)), rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("adapter_layers", "gain"),
    [(0, None), (2, None), (2, 0.3)],
    ids=["mapping", "adapters", "gain"],
)
@torch.no_grad()
def test_save_and_load_give_the_same_composer(
    encoder: OpenClipEncoder, tmp_path: Path, adapter_layers: int, gain: float | None
) -> None:
    c = composer(encoder, adapter_layers=adapter_layers, gain=gain)
    perturb(c, 5)  # nothing left at its initial value (the adapters' up, the gain)
    path = tmp_path / "model.safetensors"
    c.save(path, {"recipe": "cir-stage2"})
    loaded = Composer.load(path)
    assert not loaded.training and loaded.arch == c.arch
    assert (loaded.gain is None) == (gain is None)
    if gain is not None:
        assert loaded.gain is not None and loaded.gain.item() == c.gain.item() != gain
    image, tokens, slots = batch(encoder)
    expected = c.compose(encoder, image, tokens, slots)
    torch.testing.assert_close(
        loaded.compose(encoder, image, tokens, slots), expected, rtol=0, atol=0
    )


def test_loading_what_is_not_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    one_line_error("checkpoint not found", Composer.load, tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"this is not a safetensors file")
    one_line_error("junk.safetensors: not a cir method checkpoint", Composer.load, junk)
    other = tmp_path / "other.safetensors"  # a safetensors file, but not a composer's
    save_file({"w": torch.zeros(2)}, str(other), metadata={"recipe": "clip-rich"})
    one_line_error("other.safetensors: not a cir method checkpoint", Composer.load, other)


# --------------------------------------------------------------------------- keyword masking


@pytest.mark.parametrize(
    ("caption", "masked"),
    [
        ("change the red square to blue", "$ the $ to $"),
        ("two red squares above one blue circle", "two $ above one $"),
        ("Make it a blue circle, please.", "$ it a $ , $ ."),
        ("the left of a", "the left of $"),  # stopwords only: the last word
        ("The image", "The $"),
        ("$ dollar $", "$"),  # the user's $ is not a pseudo-word
        ("", "$"),
    ],
)
def test_mask_keywords(caption: str, masked: str) -> None:
    assert mask_keywords(caption) == masked


def test_masked_captions_tokenize_with_their_slots(encoder: OpenClipEncoder) -> None:
    captions = ["change the red square to blue", "a dog.", "the left of a", "red, green; blue!"]
    masked = [mask_keywords(c) for c in captions]
    tokens, slots = prompt_tokens(encoder, masked, placeholder_id(encoder))
    assert slots.sum(1).tolist() == [m.count(PLACEHOLDER) for m in masked] == [3, 1, 1, 3]


# --------------------------------------------------------------------------- hard negatives


def test_mine_negatives_starts_at_the_reference_and_never_takes_the_target() -> None:
    angles = np.deg2rad([0, 10, 25, 45, 70, 100])  # nearest to image 0: 1, 2, 3, ...
    feats = np.stack([np.cos(angles), np.sin(angles)], 1)
    refs, targets = np.array([0, 5, 2]), np.array([1, 4, 1])
    out = mine_negatives(feats, refs, targets, 3)
    assert out.shape == (3, 3) and out.dtype == np.int64
    assert out.tolist() == [[0, 2, 3], [5, 3, 2], [2, 3, 0]]
    full = mine_negatives(feats, refs, targets, len(feats) - 1)  # every image but the target
    assert (full[:, 0] == refs).all()
    assert all(t not in row for t, row in zip(targets, full, strict=True))
    assert all(len(set(row)) == len(row) for row in full)
    assert mine_negatives(feats, refs, targets, 0).shape == (3, 0)
    one_line_error(
        r"hard_negatives \+ target_negatives: 6 \+ 0, but the triplets have 6 images",
        mine_negatives, feats, refs, targets, 6,
    )  # fmt: skip


def test_target_negatives_are_the_targets_neighbours_not_already_taken() -> None:
    angles = np.deg2rad([0, 10, 25, 45, 70, 100])
    feats = np.stack([np.cos(angles), np.sin(angles)], 1)
    refs, targets = np.array([0, 5]), np.array([4, 1])
    out = mine_negatives(feats, refs, targets, 2, 2)
    # reference side: 0 then its nearest, 1; 5 then 4. Target side, the nearest to the target
    # but for it and what is taken: to 4 (70 degrees) 3 (45) and 5 (100); to 1 (10) 0 and 2
    assert out.tolist() == [[0, 1, 3, 5], [5, 4, 0, 2]]
    only = mine_negatives(feats, refs, targets, 0, 3)
    assert only.tolist() == [[3, 5, 2], [0, 2, 3]]  # the reference may come in on its side
    one_line_error(
        r"hard_negatives \+ target_negatives: 3 \+ 3, but the triplets have 6 images",
        mine_negatives, feats, refs, targets, 3, 3,
    )  # fmt: skip


# --------------------------------------------------------------------------- metrics


def queries(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A cir_queries table (tables.QUERY_COLUMNS) with defaults for what a test leaves out."""
    base = {
        "benchmark": "cirr",
        "split": "val",
        "category": "",
        "gallery": "val",
        "reference": "im0",
        "caption": "make it red",
        "captions": ["make it red"],
        "targets": [],
        "members": [],
        "aspects": [],
        "shared_concept": "",
    }
    out = [{**base, "submission": str(i), "id": f"val/{i}", **r} for i, r in enumerate(rows)]
    return pd.DataFrame(out, columns=QUERY_COLUMNS)


def basis(n: int, prefix: str = "im") -> tuple[np.ndarray, dict[str, int], list[str]]:
    """The standard basis as the features of ``n`` images: a query's scores are its coordinates."""
    ids = [f"{prefix}{i}" for i in range(n)]
    return np.eye(n, dtype=np.float32), {x: i for i, x in enumerate(ids)}, ids


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def value(metrics: dict[str, Any], key: str) -> float:
    return metrics[key]["value"]


def test_cirr_removes_the_reference_and_ranks_within_the_members() -> None:
    feats, row, ids = basis(6)
    galleries = {"val": Gallery("val", ids, row), "small": Gallery("small", ids[3:], row)}
    m = lambda *ix: [f"im{i}" for i in ix]  # noqa: E731
    q = queries(
        [
            # the reference scores highest, the target second: rank 1 once the reference is out
            {"reference": "im0", "targets": m(1), "members": m(0, 1, 2, 3)},
            # im4 (8), im5 (4), then the target (3); among members {3, 4, 5}: third
            {"reference": "im2", "targets": m(3), "members": m(2, 3, 4, 5)},
            # im1 (9) above the target (5); among members {5, 4, 1}: second
            {"reference": "im0", "targets": m(5), "members": m(5, 0, 4, 1)},
            # six members (another size): the target first either way
            {"reference": "im5", "targets": m(0), "members": m(0, 1, 2, 3, 4, 5)},
            # a gallery of im3..im5 only: im5 (2) above the target (1)
            {"reference": "im4", "targets": m(3), "members": m(4, 3, 5), "gallery": "small"},
        ]
    )
    qf = np.stack(
        [
            unit([9, 8, 1, 2, 3, 4]),
            unit([1, 2, 9, 3, 8, 4]),
            unit([1, 9, 2, 3, 4, 5]),
            unit([5, 4, 3, 2, 1, 9]),
            unit([9, 9, 9, 1, 3, 2]),  # im0..im2 are not in its gallery
        ]
    )
    out, ranks = cirr_metrics(q, qf, feats, galleries, N_BOOT, SEED)
    assert ranks.tolist() == [1, 3, 2, 1, 2]
    assert value(out, "recall@1") == pytest.approx(2 / 5)
    assert value(out, "recall@5") == value(out, "recall@50") == 1.0
    assert value(out, "recall_subset@1") == pytest.approx(2 / 5)
    assert value(out, "recall_subset@2") == pytest.approx(4 / 5)
    assert value(out, "recall_subset@3") == 1.0
    assert (
        out["recall@1"]["n"] == 5 and out["recall@1"]["ci_low"] <= 0.4 <= out["recall@1"]["ci_high"]
    )


def test_circo_average_precision_is_the_official_formula() -> None:
    feats, row, ids = basis(12)
    galleries = {"all": Gallery("all", ids, row)}
    descending = unit(list(range(12, 0, -1)))  # ranks im0, im1, ..., im11
    q = queries(
        [
            # relevant at ranks 2, 5, 8: AP@10 = (1/2 + 2/5 + 3/8) / min(3, 10)
            {"targets": ["im4", "im1", "im7"], "aspects": ["colour"]},
            {"targets": ["im0"], "aspects": ["colour", "count"]},
            # the last of 12: AP@5 = AP@10 = 0, AP@25 = (1/12) / 1
            {"targets": ["im11"], "aspects": ["count"]},
        ]
    )
    q["benchmark"], q["gallery"] = "circo", "all"
    qf = np.stack([descending] * 3)
    out, cats, ap10 = circo_metrics(q, qf, feats, galleries, N_BOOT, SEED)
    first10, first5 = (1 / 2 + 2 / 5 + 3 / 8) / 3, (1 / 2 + 2 / 5) / 3
    np.testing.assert_allclose(ap10, [first10, 1.0, 0.0])
    assert value(out, "map@5") == pytest.approx((first5 + 1) / 3)
    assert value(out, "map@10") == pytest.approx((first10 + 1) / 3)
    assert value(out, "map@25") == value(out, "map@50") == pytest.approx((first10 + 1 + 1 / 12) / 3)
    assert cats == {"map@10": {"colour": pytest.approx((first10 + 1) / 2), "count": 0.5}}


def test_fashioniq_averages_the_categories_not_the_queries() -> None:
    feats, row, ids = basis(24)
    galleries = {
        "dress/val": Gallery("dress/val", ids[:12], row),
        "shirt/val": Gallery("shirt/val", ids[12:], row),
    }
    dress = unit(list(range(12, 0, -1)) + [0] * 12)  # ranks im0..im11
    shirt = unit([0] * 12 + list(range(12, 0, -1)))  # ranks im12..im23
    q = queries(
        [
            # the reference stays in the ranking: its target is second, a hit at 10 all the same
            {"category": "dress", "reference": "im0", "targets": ["im1"]},
            {"category": "shirt", "reference": "im20", "targets": ["im12"]},  # rank 1
            {"category": "shirt", "reference": "im12", "targets": ["im22"]},  # rank 11
            {"category": "shirt", "reference": "im12", "targets": ["im23"]},  # rank 12
        ]
    )
    q["benchmark"], q["gallery"] = "fashioniq", q["category"] + "/val"
    out, cats, ranks = fashioniq_metrics(
        q, np.stack([dress, shirt, shirt, shirt]), feats, galleries, N_BOOT, SEED
    )
    assert ranks.tolist() == [2, 1, 11, 12]
    assert cats == {
        "recall@10": {"dress": 1.0, "shirt": pytest.approx(1 / 3)},
        "recall@50": {"dress": 1.0, "shirt": 1.0},
    }
    assert value(out, "dress_recall@10") == 1.0 and out["dress_recall@10"]["n"] == 1
    assert (
        value(out, "shirt_recall@10") == pytest.approx(1 / 3) and out["shirt_recall@10"]["n"] == 3
    )
    assert value(out, "recall@10") == pytest.approx((1 + 1 / 3) / 2)  # not the pooled 2/4
    assert value(out, "recall@50") == 1.0 and out["recall@10"]["n"] == 4


def test_cirr_submission_files() -> None:
    feats, row, ids = basis(60)
    galleries = {"test": Gallery("test", ids, row)}
    members = ["im10", "im40", "im3", "im55", "im20", "im1"]
    q = queries(
        [
            {
                "reference": "im10",
                "members": members,
                "split": "test",
                "gallery": "test",
                "submission": "7",
            }
        ]
    )
    qf = unit(list(range(60, 0, -1)))[None]  # ranks im0, im1, ..., im59
    files = submissions("cirr", q, qf, feats, galleries)
    assert sorted(files) == ["cirr_test1_recall.json", "cirr_test1_recall_subset.json"]
    recall, subset = files["cirr_test1_recall.json"], files["cirr_test1_recall_subset.json"]
    assert (recall["version"], recall["metric"]) == ("rc2", "recall")
    assert (subset["version"], subset["metric"]) == ("rc2", "recall_subset")
    assert recall["7"] == [f"im{i}" for i in range(51) if i != 10]  # 50 names, no reference
    assert subset["7"] == ["im1", "im3", "im20"]  # the members minus the reference, best first


def test_circo_submission_file_has_integer_ids() -> None:
    feats, _, _ = basis(60)
    ids = [str(100 + i) for i in range(60)]
    galleries = {"all": Gallery("all", ids, {x: i for i, x in enumerate(ids)})}
    q = queries(
        [
            {
                "benchmark": "circo",
                "split": "test",
                "gallery": "all",
                "reference": "105",
                "submission": "3",
            },
            {
                "benchmark": "circo",
                "split": "test",
                "gallery": "all",
                "reference": "101",
                "submission": "4",
            },
        ]
    )
    qf = np.stack([unit(list(range(60, 0, -1))), unit(list(range(1, 61)))])
    files = submissions("circo", q, qf, feats, galleries)
    assert list(files) == ["circo_test.json"]
    out = files["circo_test.json"]
    assert out["3"] == list(range(100, 150))  # the reference is not removed
    assert out["4"] == list(range(159, 109, -1))
    assert all(type(x) is int for x in out["3"])


def test_examples_leave_out_the_reference_and_mark_the_targets() -> None:
    feats, row, ids = basis(8)
    galleries = {"val": Gallery("val", ids, row)}
    q = queries([{"reference": "im0", "targets": ["im2"], "gallery": "val"}])
    (ex,) = examples(q, unit(list(range(8, 0, -1)))[None], feats, galleries, 3)
    assert ex["top"] == ["im1", "im2", "im3", "im4", "im5"]
    assert ex["hit"] == [False, True, False, False, False]
    assert examples(q, np.zeros((1, 8)), feats, galleries, 0) == []


def test_chance_is_what_a_random_ranking_scores() -> None:
    _, row, ids = basis(11)
    galleries = {"g": Gallery("g", ids, row)}
    q = queries([{"gallery": "g", "members": ids[:4], "targets": ids[:2]}] * 2)
    cirr = chance("cirr", q, galleries)  # 10 candidates once the reference is out; 3 members
    assert cirr == pytest.approx(
        {
            "recall@1": 0.1,
            "recall@5": 0.5,
            "recall@10": 1.0,
            "recall@50": 1.0,
            "recall_subset@1": 1 / 3,
            "recall_subset@2": 2 / 3,
            "recall_subset@3": 1.0,
        }
    )
    assert chance("fashioniq", q, galleries) == pytest.approx(
        {"recall@10": 10 / 11, "recall@50": 1.0}
    )
    assert chance("circo", q, galleries) == pytest.approx(
        {f"map@{k}": 2 / 11 for k in (5, 10, 25, 50)}
    )


# --------------------------------------------------------------------------- method names


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("clip-mini@pic2word", ("clip-mini", "pic2word")),
        ("clip-mini@two-stage", ("clip-mini", "two-stage")),
        ("clip-mini+clip-rich@sum", ("clip-mini+clip-rich", "sum")),
        ("odd@name@image", ("odd@name", "image")),
    ],
)
def test_split_method(name: str, parts: tuple[str, str]) -> None:
    assert split_method(name) == parts
    assert model_name(*parts) == name


def test_every_method_name_splits() -> None:
    assert [split_method(model_name("m", x))[1] for x in METHODS] == list(METHODS)


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("clip-mini@pic2wrd", "unknown cir method 'pic2wrd'.*did you mean pic2word"),
        ("clip-mini@", "unknown cir method ''"),
        ("clip-mini", "evaluates `<model>@<method>`"),
        ("@sum", "evaluates `<model>@<method>`"),
    ],
)
def test_bad_method_names_are_one_line(name: str, match: str) -> None:
    msg = one_line_error(match, split_method, name)
    assert repr(name) in msg
