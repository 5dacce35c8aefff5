"""Compose datasets: the mini-world's scenes and captions, the real formats, the families.

The fixtures are written by ``matchbench.tracks.compose.synth`` in each benchmark's own
layout (COCO captions, SugarCrepe, ARO, DOCCI); the real families download them from a real
HTTP server on 127.0.0.1 and prepare them with the same readers the mini-world goes through.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import matchbench.tracks.compose.families as families  # registers the families
from matchbench.data import INDEX_COLUMNS, get_family
from matchbench.data.formats import aro, coco_captions, docci, sugarcrepe
from matchbench.errors import MatchbenchError
from matchbench.tracks.compose.synth import (
    SUGARCREPE_FILES,
    TEXTURE_WORDS,
    TRAIN_ID0,
    VAL_ID0,
    Mention,
    Statement,
    holds,
    parse,
    phrase,
    plan,
    true_relations,
    vl_options,
    write_miniworld_vl,
)

SEED = 3
SCENES = {"train": 40, "sugarcrepe": 24, "aro": 16, "docci_train": 4, "docci_test": 10}
ARO_KEYS = {"image_id", "image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h"}
ARO_KEYS |= {"true_caption", "false_caption"}


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vl")
    write_miniworld_vl(root, seed=SEED, progress=False, scenes=SCENES)
    return root


@pytest.fixture(scope="module")
def scenes():
    return plan(SEED, vl_options({"scenes": SCENES}))


def copy(world: Path, tmp_path: Path, *parts: str) -> Path:
    raw = tmp_path / "raw"
    for part in parts:
        shutil.copytree(world / part, raw / part)
    return raw


def load(path: Path):
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- the generator


def test_generation_is_deterministic(tmp_path):
    tiny = {"train": 3, "sugarcrepe": 3, "aro": 2, "docci_train": 1, "docci_test": 2}
    digests = []
    for run, seed in enumerate((5, 5, 6)):
        write_miniworld_vl(tmp_path / str(run), seed=seed, progress=False, scenes=tiny)
        digests.append(tree_digest(tmp_path / str(run)))
    assert digests[0] == digests[1] != digests[2]


def test_statements_are_checked_against_the_scene_graph(scenes):
    sc = next(s for s in scenes["sugarcrepe"] if len(s.objects) == 2)
    a, b = sc.objects
    rel = true_relations(a, b)[0]
    st = Statement((Mention(a.shape, a.colour), Mention(b.shape, b.colour)), (0, rel, 1))
    assert holds(sc, st) and parse(phrase(st)) == st
    swapped = Statement((Mention(a.shape, b.colour), Mention(b.shape, a.colour)), (0, rel, 1))
    assert not holds(sc, swapped)
    assert not holds(sc, Statement(st.entities, (1, rel, 0)))
    assert not holds(sc, Statement((Mention(a.shape), Mention(a.shape))))  # two distinct objects
    with pytest.raises(ValueError):
        parse("a red unicorn")


def test_every_caption_and_negative_holds_or_fails_on_its_scene(world, scenes):
    """Read the written files back and check each text against its scene graph."""
    counts = {}
    for kind in SUGARCREPE_FILES:
        items = load(world / "sugarcrepe" / "data" / f"{kind}.json")
        counts[kind] = len(items)
        for item in items.values():
            sc = scenes["sugarcrepe"][int(Path(item["filename"]).stem) - VAL_ID0]
            assert holds(sc, parse(item["caption"])), item
            assert not holds(sc, parse(item["negative_caption"])), item
            assert item["caption"] != item["negative_caption"]
    assert all(counts.values()) and counts["add_obj"] == SCENES["sugarcrepe"]
    for name in ("visual_genome_relation.json", "visual_genome_attribution.json"):
        for item in load(world / "aro" / name):
            sc = scenes["aro"][int(item["image_id"]) - 1]
            assert holds(sc, parse(item["true_caption"])), item
            assert not holds(sc, parse(item["false_caption"])), item
    coco = load(world / "coco" / "annotations" / "captions_train2017.json")
    for ann in coco["annotations"]:
        sc = scenes["train"][ann["image_id"] - TRAIN_ID0]
        st = parse(ann["caption"])
        assert len(st.entities) == 1 and holds(sc, st)  # alt-text names one thing
    lines = (world / "coco" / "annotations" / "descriptions_train2017.jsonlines").read_text()
    for n, line in enumerate(lines.splitlines()):
        rich, sc = json.loads(line)["description"], scenes["train"][n]
        assert rich.count(". ") >= 2  # several sentences
        for o in sc.objects:
            assert f"{o.size} {o.colour} {TEXTURE_WORDS[o.texture]} {o.shape}" in rich
        for i, a in enumerate(sc.objects):
            for b in sc.objects[i + 1 :]:
                said = f"The {a.colour} {a.shape} is {' and '.join(true_relations(a, b))} the "
                assert said + f"{b.colour} {b.shape}." in rich


def test_training_scenes_never_appear_in_the_benchmarks(scenes):
    train = {s.signature() for s in scenes["train"]}
    for group, ss in scenes.items():
        if group != "train":
            assert not train & {s.signature() for s in ss}
    assert all(len(s.objects) >= 2 for s in scenes["aro"])
    assert {len(s.objects) for s in scenes["train"]} == {1, 2, 3}


def test_generator_options_are_checked(tmp_path):
    fam = get_family("miniworld-vl")
    with pytest.raises(MatchbenchError, match="unknown key 'sceens'"):
        fam.download(tmp_path / "raw", {"sceens": {}})
    with pytest.raises(MatchbenchError, match="option objects = \\[3, 1\\]"):
        fam.download(tmp_path / "raw", {"objects": [3, 1]})
    with pytest.raises(MatchbenchError, match="shapes and colours need at least 4"):
        fam.download(tmp_path / "raw", {"colours": ["red", "blue", "green"]})
    assert not (tmp_path / "raw").exists()


# --------------------------------------------------------------------------- the formats


def test_the_real_formats_parse(world):
    items = sugarcrepe.read_items(world / "sugarcrepe")
    assert set(items) == set(SUGARCREPE_FILES)
    rel = aro.read_file(world / "aro" / aro.RELATION_FILE, "aro_relation")
    att = aro.read_file(world / "aro" / aro.ATTRIBUTION_FILE, "aro_attribution")
    assert set(load(world / "aro" / aro.RELATION_FILE)[0]) == ARO_KEYS | {"relation_name"}
    assert set(load(world / "aro" / aro.ATTRIBUTION_FILE)[0]) == ARO_KEYS | {"attributes"}
    assert {r["category"] for r in rel} <= {"to the left of", "to the right of", "above", "below"}
    assert all(a["category"] == "_".join(a["attributes"]) for a in att)
    # ARO's phrasing, negatives with the two nouns swapped.
    first = rel[0]
    subj, obj = first["true_caption"].split(f" is {first['relation_name']} ")
    assert first["false_caption"] == f"{obj} is {first['relation_name']} {subj}"
    recs = docci.read_descriptions(world / "docci" / docci.DESCRIPTIONS)
    assert {r["split"] for r in recs} == {"train", "test"}
    assert all(r["example_id"].startswith(r["split"] + "_") for r in recs)
    images, anns = coco_captions.read_captions(
        world / "coco" / "annotations" / "captions_train2017.json"
    )
    assert len(images) == len(anns) == SCENES["train"]
    with Image.open(world / "coco" / "train2017" / images[TRAIN_ID0]["file_name"]) as im:
        assert im.size == (64, 64) and im.format == "JPEG"


def test_aro_conventions_follow_the_official_code():
    # The official notebook's symmetric relations (kept verbatim) and the 25-item rule.
    assert {"next to", "near", "with"} <= aro.SYMMETRIC_RELATIONS
    assert not {"on", "above", "to the left of"} & aro.SYMMETRIC_RELATIONS
    assert aro.MIN_ATTRIBUTE_PAIR_COUNT == 25


# --------------------------------------------------------------------------- the families


def test_families_declare_their_tables():
    for name in ("sugarcrepe", "aro", "docci", "miniworld-vl"):
        assert get_family(name).tables == ("captions.parquet", "caption_pairs.parquet")


def test_miniworld_vl_download_and_prepare(tmp_path, world):
    fam = get_family("miniworld-vl")
    raw, out = tmp_path / "raw", tmp_path / "out"
    fam.download(raw, {"seed": SEED, "progress": False, "scenes": SCENES})
    manifest = load(raw / "MANIFEST.json")
    assert manifest["source"] == "miniworld-vl" and manifest["options"]["seed"] == SEED
    for part in ("coco", "sugarcrepe", "aro", "docci"):
        assert tree_digest(raw / part) == tree_digest(world / part)
    fam.prepare(raw, out, {})
    t = families.read_tables(out)
    index, captions, pairs = (t[k] for k in ("images.parquet", *families.TABLES))
    assert list(index.columns) == INDEX_COLUMNS and index["id"].is_unique
    assert list(captions.columns) == families.CAPTION_COLUMNS
    assert list(pairs.columns) == families.PAIR_COLUMNS and pairs["id"].is_unique
    assert set(pairs.image) | set(captions.image) == set(index.id)
    by = pairs.groupby(["benchmark", "category"]).size()
    for kind in SUGARCREPE_FILES:
        assert by["sugarcrepe", kind] == len(load(raw / "sugarcrepe" / "data" / f"{kind}.json"))
    assert pairs.benchmark.value_counts()["aro_relation"] == len(
        load(raw / "aro" / aro.RELATION_FILE)
    )
    train = captions[captions.image.str.startswith("train2017/")]
    assert len(train) == SCENES["train"] and (train.alt != "").all() and (train.rich != "").all()
    doc = captions[captions.image.str.startswith("docci/")]
    assert doc.split.value_counts().to_dict() == {"test": 10, "train": 4}
    assert (doc.alt == "").all() and (doc.rich != "").all()
    splits = dict(zip(index.id, index.split, strict=True))
    assert {splits[i] for i in pairs.image} == {"test"}
    assert {splits[i] for i in train.image} == {"train"}
    # ARO crops are images of their own, of the box's size.
    item = load(raw / "aro" / aro.ATTRIBUTION_FILE)[0]
    crop_id = f"aro/{item['image_path'][:-4]}/"
    crop_id += "_".join(str(item[k]) for k in aro.BOX_KEYS)
    row = index.set_index("id").loc[crop_id]
    with (
        Image.open(out / row.path) as im,
        Image.open(raw / "aro" / "images" / item["image_path"]) as full,
    ):
        assert im.size == (item["bbox_w"], item["bbox_h"]) == (row.width, row.height)
        box = (
            item["bbox_x"],
            item["bbox_y"],
            item["bbox_x"] + item["bbox_w"],
            item["bbox_y"] + item["bbox_h"],
        )
        assert im.tobytes() == full.convert("RGB").crop(box).tobytes()
    before = {k: (out / k).read_bytes() for k in ("images.parquet", *families.TABLES)}
    fam.prepare(raw, out, {})
    assert before == {k: (out / k).read_bytes() for k in before}


def _zip(path: Path, files: dict[str, Path]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for arc, p in sorted(files.items()):
            zf.write(p, arc)


def _pairs(out: Path) -> pd.DataFrame:
    return pd.read_parquet(out / "caption_pairs.parquet")


def test_sugarcrepe_download_through_a_mirror_and_prepare(http_server, world, tmp_path):
    for f in (world / "sugarcrepe" / "data").glob("*.json"):
        shutil.copy(f, http_server.root / f.name)
    val = world / "coco" / "val2017"
    _zip(http_server.root / "val2017.zip", {f"val2017/{p.name}": p for p in val.iterdir()})
    fam, raw = get_family("sugarcrepe"), tmp_path / "raw"
    fam.download(raw, {"mirror": http_server.url("")})
    manifest = load(raw / "MANIFEST.json")
    assert [s["filename"] for s in manifest["sources"]][-1] == "val2017.zip"
    assert manifest["sources"][0]["url"].startswith("https://raw.githubusercontent.com/")
    fam.prepare(raw, tmp_path / "out", {})
    ref = copy(world, tmp_path / "ref", "sugarcrepe", "coco")
    fam.prepare(ref, tmp_path / "ref_out", {})
    pd.testing.assert_frame_equal(_pairs(tmp_path / "out"), _pairs(tmp_path / "ref_out"))
    assert len(_pairs(tmp_path / "out")) == sum(
        len(v) for v in sugarcrepe.read_items(world / "sugarcrepe").values()
    )
    assert pd.read_parquet(tmp_path / "out" / "captions.parquet").empty


def test_aro_download_through_a_mirror_and_prepare(http_server, world, tmp_path):
    for name in aro.FILES.values():
        shutil.copy(world / "aro" / name, http_server.root / name)
    images = world / "aro" / "images"
    _zip(
        http_server.root / "vgr_vga_images.zip",
        {f"images/{p.name}": p for p in images.iterdir()},
    )
    fam, raw = get_family("aro"), tmp_path / "raw"
    fam.download(raw, {"mirror": http_server.url("")})
    assert http_server.count("vgr_vga_images.zip") == 1
    fam.prepare(raw, tmp_path / "out", {})
    ref = copy(world, tmp_path / "ref", "aro")
    fam.prepare(ref, tmp_path / "ref_out", {})
    got, want = _pairs(tmp_path / "out"), _pairs(tmp_path / "ref_out")
    pd.testing.assert_frame_equal(got, want)
    assert set(got.benchmark) == {"aro_relation", "aro_attribution"}


def test_docci_download_through_a_mirror_and_prepare(http_server, world, tmp_path):
    shutil.copy(world / "docci" / docci.DESCRIPTIONS, http_server.root / docci.DESCRIPTIONS)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(world / "docci" / "images", arcname="images")
    (http_server.root / "docci_images.tar.gz").write_bytes(buf.getvalue())
    fam, raw = get_family("docci"), tmp_path / "raw"
    fam.download(raw, {"mirror": http_server.url("")})
    fam.prepare(raw, tmp_path / "out", {})
    captions = pd.read_parquet(tmp_path / "out" / "captions.parquet")
    recs = docci.read_descriptions(world / "docci" / docci.DESCRIPTIONS)
    assert list(captions.rich) == [r["description"] for r in recs]
    assert list(captions.image) == [f"docci/{r['example_id']}" for r in recs]
    assert _pairs(tmp_path / "out").empty


def test_archive_members_escaping_their_folder_are_refused(http_server, world, tmp_path):
    shutil.copy(world / "docci" / docci.DESCRIPTIONS, http_server.root / docci.DESCRIPTIONS)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("images/../../evil.jpg")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (http_server.root / "docci_images.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(MatchbenchError, match="refusing to extract member"):
        get_family("docci").download(tmp_path / "raw", {"mirror": http_server.url("")})
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path / "raw" / "evil.jpg").exists()


# --------------------------------------------------------------------------- bad input


def _edit_json(path: Path, change) -> None:
    data = load(path)
    change(data)
    path.write_text(json.dumps(data))


def test_sugarcrepe_bad_input(world, tmp_path):
    raw = copy(world, tmp_path, "sugarcrepe", "coco")
    fam, f = get_family("sugarcrepe"), raw / "sugarcrepe" / "data" / "swap_att.json"
    original = f.read_text()
    for change, message in (
        (lambda d: d["0"].pop("negative_caption"), "item '0': missing string 'negative_caption'"),
        (lambda d: d["0"].update(caption="  "), "item '0': empty 'caption'"),
    ):
        f.write_text(original)
        _edit_json(f, change)
        with pytest.raises(MatchbenchError, match=f"{f}: {message}"):
            fam.prepare(raw, tmp_path / "out", {})
    f.write_text(original)
    image = raw / "coco" / "val2017" / load(f)["0"]["filename"]
    image.unlink()
    with pytest.raises(
        MatchbenchError, match=f"{raw / 'sugarcrepe' / 'data'}/.*item .*: image {image} not found"
    ):
        fam.prepare(raw, tmp_path / "out", {})
    assert not (tmp_path / "out" / "images.parquet").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d[1].pop("bbox_w"), "item 1: missing number 'bbox_w'"),
        (lambda d: d[1].pop("relation_name"), "item 1: missing string 'relation_name'"),
        (lambda d: d[1].update(true_caption=""), "item 1: empty 'true_caption'"),
        (lambda d: d[1].update(bbox_x=60, bbox_w=20), "item 1: box x=60 y=.* outside the 64x64"),
        (lambda d: d[1].update(image_path="nope.jpg"), "item 1: image .*nope.jpg not found"),
    ],
)
def test_aro_bad_input(world, tmp_path, change, message):
    raw = copy(world, tmp_path, "aro")
    f = raw / "aro" / aro.RELATION_FILE
    _edit_json(f, change)
    with pytest.raises(MatchbenchError, match=f"{f}: {message}"):
        get_family("aro").prepare(raw, tmp_path / "out", {})


def test_aro_box_tolerance_and_attributes(world, tmp_path):
    raw = copy(world, tmp_path, "aro")
    rel, att = raw / "aro" / aro.RELATION_FILE, raw / "aro" / aro.ATTRIBUTION_FILE
    _edit_json(rel, lambda d: d[0].update(bbox_x=0, bbox_w=65))  # 1 px past: PIL pads it
    get_family("aro").prepare(raw, tmp_path / "out", {})
    with pytest.raises(MatchbenchError, match="outside the 64x64 image .*tolerance 0 px"):
        get_family("aro").prepare(raw, tmp_path / "out", {"box_tolerance": 0})
    _edit_json(att, lambda d: d[2].update(attributes=["red"]))
    with pytest.raises(MatchbenchError, match=f"{att}: item 2: 'attributes' must be a list of two"):
        get_family("aro").prepare(raw, tmp_path / "out", {})


def test_docci_and_coco_bad_input(world, tmp_path):
    raw = copy(world, tmp_path, "docci", "coco")
    path = raw / "docci" / docci.DESCRIPTIONS
    lines = path.read_text().splitlines()
    fam = get_family("docci")
    for n, (key, value, message) in enumerate(
        [
            ("description", None, "line 2: missing string 'description'"),
            ("description", " ", "line 2: empty 'description'"),
            ("split", "dev", "train_00001: unknown split 'dev'"),
        ]
    ):
        rec = json.loads(lines[1])
        if value is None:
            rec.pop(key)
        else:
            rec[key] = value
        path.write_text("\n".join([lines[0], json.dumps(rec), *lines[2:]]) + "\n")
        with pytest.raises(MatchbenchError, match=f"{path}: {message}"):
            fam.prepare(raw, tmp_path / f"out{n}", {})
    path.write_text("\n".join(lines) + "\n")
    image = raw / "docci" / "images" / json.loads(lines[0])["image_file"]
    image.unlink()
    with pytest.raises(MatchbenchError, match=f"{path}: .*: image {image} not found"):
        fam.prepare(raw, tmp_path / "out", {})

    ann = raw / "coco" / "annotations" / "captions_train2017.json"
    _edit_json(ann, lambda d: d["annotations"][0].update(caption=""))
    with pytest.raises(MatchbenchError, match=r"annotations\[0\] \(id 1\): empty 'caption'"):
        coco_captions.read_captions(ann)
    _edit_json(ann, lambda d: d["annotations"][0].pop("caption"))
    with pytest.raises(MatchbenchError, match=r"annotations\[0\] \(id 1\): missing 'caption'"):
        coco_captions.read_captions(ann)
    _edit_json(ann, lambda d: d["annotations"][0].update(caption="a cat", image_id=-5))
    with pytest.raises(MatchbenchError, match="image_id -5 is not in 'images'"):
        coco_captions.read_captions(ann)
