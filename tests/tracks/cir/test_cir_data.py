"""Composed retrieval data: the mini-world's edits and layouts, the families, the scorers.

The generator writes CIRR, CIRCO and FashionIQ in their real layouts; the official-format
readers (``data/formats``) and the submission scorers (``stages/score.py``) read them, the
families prepare them into the tables of ``tracks/cir/tables.py``, and the real families
download their annotations from a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import matchbench.tracks.cir.families as families  # registers the families
from matchbench.data import INDEX_COLUMNS, get_family
from matchbench.data.formats import circo, cirr, fashioniq
from matchbench.errors import MatchbenchError
from matchbench.tracks.cir.score import score_circo, score_cirr, score_fashioniq
from matchbench.tracks.cir.synth import (
    FASHIONIQ_SHAPES,
    SERVER_DIR,
    World,
    cir_options,
    graph,
    plan,
    write_miniworld_cir,
)
from matchbench.tracks.cir.tables import GALLERY_COLUMNS, QUERY_COLUMNS, read_queries
from matchbench.tracks.compose.synth import _held_out

SEED = 5
SMALL = {
    "cirr": {"queries": {"val": 24, "test1": 8}, "distractors": 40},
    "circo": {"queries": {"val": 20, "test": 6}, "distractors": 30},
    "fashioniq": {"queries": {"val": 12}, "distractors": 30},
    "triplets": {"queries": {"train": 40}},
}


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _world(bench: str) -> World:
    return plan(bench, SEED, cir_options({"benchmark": bench, **SMALL[bench]}))


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cir")
    for bench, opts in SMALL.items():
        write_miniworld_cir(root / bench, benchmark=bench, seed=SEED, progress=False, **opts)
    return {b: root / b for b in SMALL}


def _prepared(tmp_path: Path, bench: str, **opts) -> dict[str, pd.DataFrame]:
    fam = get_family("miniworld-cir")
    o = {"benchmark": bench, "seed": SEED, "progress": False, **SMALL[bench], **opts}
    fam.download(tmp_path / "raw", o)
    o.pop("progress")
    fam.prepare(tmp_path / "raw", tmp_path / "out", o)
    return families.read_tables(tmp_path / "out")


# --------------------------------------------------------------------------- generator


def test_generation_is_deterministic(tmp_path):
    for bench in ("cirr", "circo"):
        a, b = tmp_path / f"{bench}-a", tmp_path / f"{bench}-b"
        write_miniworld_cir(a, benchmark=bench, seed=SEED, progress=False, **SMALL[bench])
        write_miniworld_cir(b, benchmark=bench, seed=SEED, progress=False, **SMALL[bench])
        assert tree_digest(a) == tree_digest(b)
    c = tmp_path / "c"
    write_miniworld_cir(c, benchmark="cirr", seed=SEED + 1, progress=False, **SMALL["cirr"])
    assert tree_digest(c) != tree_digest(tmp_path / "cirr-a")


@pytest.mark.parametrize("bench", ["cirr", "circo", "fashioniq", "triplets"])
def test_ground_truth_is_every_image_of_the_edited_graph(bench):
    world = _world(bench)
    assert world.queries
    for q in world.queries:
        gallery = (
            "all"
            if bench == "circo"
            else next(g for g, names in world.galleries.items() if q.reference in names)
        )
        want = graph(q.edit.scene)
        same = [n for n in world.galleries[gallery] if graph(world.images[n]) == want]
        assert sorted(same) == sorted(q.gt) and q.gt[0] == q.target
        assert graph(world.images[q.reference]) != want
        assert q.edit.text.strip()
        if bench in ("cirr", "triplets"):
            assert q.gt == [q.target] and q.target in q.members and q.reference in q.members
    if bench == "circo":
        assert max(len(q.gt) for q in world.queries) > 1  # several renders of a target graph


def test_edits_say_what_changed():
    world = _world("cirr")
    for q in world.queries:
        ref, tgt = world.images[q.reference], q.edit.scene
        before = {(o.shape, o.colour, o.size, o.texture, o.col, o.row) for o in ref.objects}
        after = {(o.shape, o.colour, o.size, o.texture, o.col, o.row) for o in tgt.objects}
        if q.edit.kind == "background":
            assert before == after and ref.dark != tgt.dark
            assert ("dark" if tgt.dark else "light") in q.edit.text
            continue
        assert ref.dark == tgt.dark
        if q.edit.kind == "add":
            assert len(after - before) == 1 and before < after
            (new,) = after - before
            assert all(w in q.edit.text for w in (new[0], new[1], new[2]))
        elif q.edit.kind == "remove":
            assert len(before - after) == 1 and after < before
            (gone,) = before - after
            assert f"the {gone[1]} {gone[0]}" in q.edit.text
        else:
            assert len(before - after) == 1 and len(after - before) == 1


def test_fashioniq_categories_are_groups_of_shapes():
    world = _world("fashioniq")
    for gallery, names in world.galleries.items():
        cat = gallery.split("/")[0]
        for n in names:
            assert {o.shape for o in world.images[n].objects} <= set(FASHIONIQ_SHAPES[cat])
    groups = list(FASHIONIQ_SHAPES.values())
    assert sum(len(g) for g in groups) == len(set().union(*groups))


def test_benchmark_and_training_scenes_are_disjoint():
    bench = {graph(sc) for b in ("cirr", "circo", "fashioniq") for sc in _world(b).images.values()}
    train = _world("triplets").images.values()
    assert all(
        _held_out(sc.signature()) for b in ("cirr", "circo") for sc in _world(b).images.values()
    )
    assert not any(_held_out(sc.signature()) for sc in train)
    assert not bench & {graph(sc) for sc in train}


# --------------------------------------------------------------------------- real formats


def test_the_official_readers_read_the_layouts(raw):
    world = _world("cirr")
    for split in ("val", "test1"):
        qs = cirr.read_queries(cirr.captions_path(raw["cirr"], split))
        gallery = cirr.read_gallery(raw["cirr"], split)
        assert len(gallery) == len(world.galleries[split])
        assert all((q["target"] is None) == (split == "test1") for q in qs)
        for q in qs:
            assert q["reference"] in gallery and len(q["members"]) == 6
            if q["target"]:
                assert q["target"] in q["members"]
    train = cirr.read_queries(cirr.captions_path(raw["triplets"], "train"))
    assert len(train) == 40
    paths = json.loads((raw["triplets"] / "image_splits" / "split.rc2.train.json").read_text())
    assert all((raw["triplets"] / p).is_file() and p.startswith("./train/") for p in paths.values())

    val = circo.read_queries(circo.annotations_path(raw["circo"], "val"))
    test = circo.read_queries(circo.annotations_path(raw["circo"], "test"))
    assert len(val) == 20 and len(test) == 6 and all(q["gt"] is None for q in test)
    images = raw["circo"] / "COCO2017_unlabeled" / "unlabeled2017"
    for q in val:
        assert q["gt"][0] == q["target"] and q["aspects"]
        assert all((images / f"{g:012d}.jpg").is_file() for g in q["gt"])

    for cat in fashioniq.CATEGORIES:
        qs = fashioniq.read_queries(fashioniq.captions_path(raw["fashioniq"], cat, "val"))
        gallery = fashioniq.read_gallery(raw["fashioniq"], cat, "val")
        assert len(qs) == 12
        for q in qs:
            assert len(q["captions"]) == 2 and q["target"] in gallery
            assert q["candidate"] in gallery
            assert (raw["fashioniq"] / "images" / f"{q['target']}.png").is_file()


def _cirr_submission(root: Path, perfect: bool, tmp: Path, split: str = "val") -> list[Path]:
    """CIRR's two test-server files for ``split`` of the layout at ``root``: the target first
    (perfect) or last of a shuffled list."""
    gallery = cirr.read_gallery(root, split)
    rng = random.Random(0)
    out = []
    for metric in ("recall", "recall_subset"):
        doc = {"version": "rc2", "metric": metric}
        for q in cirr.read_queries(cirr.captions_path(root, split)):
            pool = gallery if metric == "recall" else q["members"]
            rest = [n for n in pool if n not in (q["reference"], q["target"])]
            rng.shuffle(rest)
            doc[q["pairid"]] = ([q["target"]] + rest if perfect else rest + [q["target"]])[:50]
        out.append(tmp / f"{metric}.json")
        out[-1].write_text(json.dumps(doc))
    return out


def _circo_submission(
    ann: Path, images: Path, perfect: bool, path: Path, split: str = "val"
) -> Path:
    """CIRCO's test-server file for ``split`` of the annotations at ``ann``: the ground truth
    first (perfect) or none of it in the top 50."""
    ids = sorted(int(p.stem) for p in images.iterdir())
    rng = random.Random(0)
    doc = {}
    for q in circo.read_queries(circo.annotations_path(ann, split)):
        rest = [i for i in ids if i not in q["gt"] and i != q["reference"]]
        rng.shuffle(rest)
        doc[q["id"]] = (q["gt"] + rest)[:50] if perfect else rest[:50]
    path.write_text(json.dumps(doc))
    return path


def test_perfect_submissions_score_one_and_shuffled_ones_low(raw, tmp_path):
    res = score_cirr(_cirr_submission(raw["cirr"], True, tmp_path), raw["cirr"], "val", 10, 0)
    assert res["metrics"]["recall@1"]["value"] == 1.0
    assert res["metrics"]["recall_subset@1"]["value"] == 1.0
    res = score_cirr(_cirr_submission(raw["cirr"], False, tmp_path), raw["cirr"], "val", 10, 0)
    assert res["metrics"]["recall@10"]["value"] < 0.2

    images = raw["circo"] / "COCO2017_unlabeled" / "unlabeled2017"
    for perfect in (True, False):
        path = _circo_submission(raw["circo"], images, perfect, tmp_path / "circo.json")
        res = score_circo([path], raw["circo"], "val", 10, 0)
        assert res["metrics"]["map@5"]["value"] == (1.0 if perfect else 0.0)

    rng = random.Random(0)

    for perfect in (True, False):
        doc = {}
        for cat in fashioniq.CATEGORIES:
            gallery = fashioniq.read_gallery(raw["fashioniq"], cat, "val")
            entries = {}
            for q in fashioniq.read_queries(fashioniq.captions_path(raw["fashioniq"], cat, "val")):
                rest = [n for n in gallery if n != q["target"]]
                rng.shuffle(rest)
                entries[q["index"]] = ([q["target"]] + rest if perfect else rest)[:50]
            doc[cat] = entries
        (tmp_path / "fiq.json").write_text(json.dumps(doc))
        res = score_fashioniq([tmp_path / "fiq.json"], raw["fashioniq"], "val", 10, 0)
        assert res["metrics"]["recall@10"]["value"] == (1.0 if perfect else 0.0)


# --------------------------------------------------------------------------- the evaluation server


def _same_graph(world: World, gallery: str, q) -> list[str]:
    """The gallery's images of the query's edited graph: its ground truth by construction."""
    want = graph(q.edit.scene)
    return [n for n in world.galleries[gallery] if graph(world.images[n]) == want]


def test_the_server_holds_the_hidden_splits_ground_truth(raw):
    world = _world("cirr")
    public, server = raw["cirr"], raw["cirr"] / SERVER_DIR
    assert (server / "captions" / "cap.rc2.test1.json").is_file()
    assert (server / "image_splits" / "split.rc2.test1.json").is_file()
    assert sorted(p.relative_to(server).as_posix() for p in server.rglob("*")) == [
        "captions",
        "captions/cap.rc2.test1.json",
        "image_splits",
        "image_splits/split.rc2.test1.json",
    ]
    hidden = cirr.read_queries(cirr.captions_path(public, "test1"))
    held = cirr.read_queries(cirr.captions_path(server, "test1"))
    assert [q["pairid"] for q in held] == [q["pairid"] for q in hidden] and len(held) == 8
    assert [{**q, "target": None} for q in held] == hidden
    assert cirr.read_gallery(server, "test1") == cirr.read_gallery(public, "test1")
    by_id = {str(q.id): q for q in world.queries if q.split == "test1"}
    entries = json.loads((server / "captions" / "cap.rc2.test1.json").read_text())
    for q, entry in zip(held, entries, strict=True):
        assert [q["target"]] == _same_graph(world, "test1", by_id[q["pairid"]])
        assert entry["target_soft"] == {q["target"]: 1.0}

    world = _world("circo")
    public, server = raw["circo"], raw["circo"] / SERVER_DIR
    assert sorted(p.relative_to(server).as_posix() for p in server.rglob("*")) == [
        "annotations",
        "annotations/test.json",
    ]
    hidden = circo.read_queries(circo.annotations_path(public, "test"))
    held = circo.read_queries(circo.annotations_path(server, "test"))
    assert [q["id"] for q in held] == [q["id"] for q in hidden] and len(held) == 6
    assert [{**q, "target": None, "gt": None} for q in held] == hidden
    by_id = {str(q.id): q for q in world.queries if q.split == "test"}
    for q in held:
        same = _same_graph(world, "all", by_id[q["id"]])
        assert sorted(q["gt"]) == sorted(int(n) for n in same) and q["gt"][0] == q["target"]
    assert max(len(q["gt"]) for q in held) > 1  # several renders of a target graph


@pytest.mark.parametrize("bench", ["cirr", "circo"])
def test_prepare_never_reads_the_server(tmp_path, bench):
    tables = _prepared(tmp_path, bench)
    server = tmp_path / "raw" / bench / SERVER_DIR
    files = [p for p in server.rglob("*") if p.is_file()]
    assert files
    for f in files:
        f.write_text("not the public files")
    o = {"benchmark": bench, "seed": SEED, **SMALL[bench]}
    get_family("miniworld-cir").prepare(tmp_path / "raw", tmp_path / "again", o)
    again = families.read_tables(tmp_path / "again")
    for name, table in tables.items():
        pd.testing.assert_frame_equal(table, again[name])


def test_submissions_score_against_the_server(raw, tmp_path):
    server = raw["cirr"] / SERVER_DIR
    perfect = _cirr_submission(server, True, tmp_path, "test1")
    with pytest.raises(MatchbenchError, match="kept by the CIRR evaluation server"):
        score_cirr(perfect, raw["cirr"], "test1", 10, 0)
    res = score_cirr(perfect, server, "test1", 10, 0)
    assert res["split"] == "test1" and res["extra"]["queries"] == 8
    assert res["metrics"]["recall@1"]["value"] == 1.0
    assert res["metrics"]["recall_subset@1"]["value"] == 1.0
    res = score_cirr(_cirr_submission(server, False, tmp_path, "test1"), server, "test1", 10, 0)
    assert res["metrics"]["recall@10"]["value"] < 0.2
    assert res["metrics"]["recall_subset@1"]["value"] < 0.5

    server = raw["circo"] / SERVER_DIR
    images = raw["circo"] / "COCO2017_unlabeled" / "unlabeled2017"
    for perfect in (True, False):
        path = _circo_submission(server, images, perfect, tmp_path / "circo.json", "test")
        res = score_circo([path], server, "test", 10, 0)
        assert res["split"] == "test" and res["extra"]["queries"] == 6
        assert res["metrics"]["map@50"]["value"] == (1.0 if perfect else 0.0)


def test_the_score_command_reads_the_server(raw, tmp_path):
    """`matchbench score` as a user runs it on the evaluation's test-server files."""
    exe = str(Path(sys.executable).parent / "matchbench")
    cirr_files = _cirr_submission(raw["cirr"] / SERVER_DIR, True, tmp_path, "test1")
    circo_file = _circo_submission(
        raw["circo"] / SERVER_DIR,
        raw["circo"] / "COCO2017_unlabeled" / "unlabeled2017",
        True,
        tmp_path / "circo_test.json",
        "test",
    )
    for bench, split, files, metric in (
        ("cirr", "test1", cirr_files, "recall@1"),
        ("circo", "test", [circo_file], "map@10"),
    ):
        out = tmp_path / f"{bench}.json"
        # fmt: off
        args = [
            exe, "score", "--benchmark", bench, "--split", split,
            "--annotations", str(raw[bench] / SERVER_DIR),
            "--predictions", *map(str, files),
            "--model", "perfect", "--out", str(out), "--bootstrap", "50",
        ]
        # fmt: on
        proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"wrote {out}" in proc.stdout
        doc = json.loads(out.read_text())
        assert (doc["dataset"], doc["split"], doc["model"]) == (bench, split, "perfect")
        assert doc["metrics"][metric]["value"] == 1.0


# --------------------------------------------------------------------------- families


def test_families_declare_their_tables():
    for name in ("cirr", "circo", "fashioniq", "miniworld-cir"):
        assert get_family(name).tables == ("cir_queries.parquet", "cir_gallery.parquet")


@pytest.mark.parametrize("bench", ["cirr", "circo", "fashioniq", "triplets"])
def test_miniworld_cir_download_and_prepare(tmp_path, bench):
    tables = _prepared(tmp_path, bench)
    images, queries = tables["images.parquet"], tables["cir_queries.parquet"]
    gallery = tables["cir_gallery.parquet"]
    assert list(images.columns) == INDEX_COLUMNS
    assert list(queries.columns) == QUERY_COLUMNS
    assert list(gallery.columns) == GALLERY_COLUMNS
    manifest = json.loads((tmp_path / "raw" / "MANIFEST.json").read_text())
    assert manifest["source"] == "miniworld-cir" and manifest["options"]["benchmark"] == bench
    q = read_queries(tmp_path / "out" / "cir_queries.parquet")
    assert q["id"].is_unique and set(q["benchmark"]) == {bench}
    known = set(images["id"])
    assert set(gallery["image"]) <= known and set(q["reference"]) <= known
    for row in q.itertuples():
        members = set(gallery.loc[gallery["gallery"] == row.gallery, "image"])
        assert row.reference in members and set(row.targets) <= members
        assert row.caption
    for p in images["path"]:
        assert (tmp_path / "out" / p).is_file()
    if bench == "cirr":
        assert set(q["split"]) == {"val", "test"} and set(gallery["gallery"]) == {"val", "test"}
        assert all(not t for t in q.loc[q["split"] == "test", "targets"])
        assert all(len(m) == 6 for m in q["members"])
    if bench == "circo":
        assert set(gallery["gallery"]) == {"all"} and all(q["shared_concept"])
        assert all(a for a in q["aspects"])
    if bench == "fashioniq":
        assert set(q["category"]) == set(fashioniq.CATEGORIES)
        assert all(len(c) == 2 for c in q["captions"])
        assert all(" and " in c for c in q["caption"])


def _copy(src: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "bad"
    shutil.copytree(src, dest)
    return dest


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _one_line_error(match: str, fn, *args) -> None:
    with pytest.raises(MatchbenchError, match=match) as e:
        fn(*args)
    assert "\n" not in str(e.value)


def test_cirr_bad_input(raw, tmp_path):
    root = _copy(raw["cirr"], tmp_path)
    cap = root / "captions" / "cap.rc2.val.json"
    original = cap.read_text()
    out = tmp_path / "out"

    def unknown_target(d):
        d[0]["target_hard"] = "dev-nope-0-img0"

    def lacking_target(d):
        d[0]["img_set"]["members"].remove(d[0]["target_hard"])

    def empty(d):
        d[1]["caption"] = "  "

    def unknown_reference(d):
        d[2]["reference"] = "dev-nope-1-img0"

    for change, message in (
        (
            unknown_target,
            "cap.rc2.val.json: pairid .*target_hard 'dev-nope-0-img0' is not in split.rc2.val.json",
        ),
        (lacking_target, "cap.rc2.val.json: pairid .*: img_set.members lacks the target_hard"),
        (empty, "cap.rc2.val.json: pairid .*: empty modification text"),
        (unknown_reference, "cap.rc2.val.json: pairid .*reference 'dev-nope-1-img0' is not in"),
    ):
        cap.write_text(original)
        _edit_json(cap, change)
        _one_line_error(message, families.prepare_cirr, root, out, root)
    cap.write_text(original)
    families.prepare_cirr(root, out, root)
    (root / "image_splits" / "split.rc2.val.json").unlink()
    _one_line_error("split.rc2.val.json: not found", families.prepare_cirr, root, out, root)


def test_circo_bad_input(raw, tmp_path):
    root = _copy(raw["circo"], tmp_path)
    ann = root / "annotations" / "val.json"
    original = ann.read_text()

    def unknown_gt(d):
        d[0]["gt_img_ids"].append(999999)

    def empty(d):
        d[0]["relative_caption"] = ""

    for change, message in (
        (unknown_gt, "val.json: id 0: gt_img_ids 999999 is not an image of the COCO"),
        (empty, "val.json: id 0: empty modification text"),
    ):
        ann.write_text(original)
        _edit_json(ann, change)
        _one_line_error(message, families.prepare_circo, root, tmp_path / "out")


def test_fashioniq_bad_input(raw, tmp_path):
    root = _copy(raw["fashioniq"], tmp_path)
    cap = root / "captions" / "cap.shirt.val.json"
    original = cap.read_text()

    def unknown_target(d):
        d[0]["target"] = "B00NOPE"

    def empty(d):
        d[3]["captions"] = ["", " ."]

    for change, message in (
        (
            unknown_target,
            "cap.shirt.val.json: entry 0: target 'B00NOPE' is not in split.shirt.val.json",
        ),
        (empty, "cap.shirt.val.json: entry 3: empty modification text"),
    ):
        cap.write_text(original)
        _edit_json(cap, change)
        _one_line_error(
            message, families.prepare_fashioniq, root, tmp_path / "out", root / "images"
        )
    cap.write_text(original)
    (root / "image_splits" / "split.toptee.val.json").unlink()
    _one_line_error(
        r"split.toptee.val.json: not found, while split.dress.val.json is",
        families.prepare_fashioniq,
        root,
        tmp_path / "out",
        root / "images",
    )


def test_real_families_need_their_images_option(raw, tmp_path):
    for name in ("cirr", "fashioniq"):
        _one_line_error(
            f"dataset {name}: option images is not set",
            get_family(name).prepare,
            raw["cirr" if name == "cirr" else "fashioniq"],
            tmp_path / "out",
            {},
        )


def test_generator_options_are_checked():
    with pytest.raises(MatchbenchError, match="option queries: unknown split 'test'"):
        cir_options({"benchmark": "cirr", "queries": {"test": 3}})
    with pytest.raises(MatchbenchError, match="miniworld-cir: options"):
        families.resolve_options(get_family("miniworld-cir"), {"benchmark": "coco"})


# --------------------------------------------------------------------------- downloads


def _serve(server, files: dict[str, Path]) -> None:
    for name, path in files.items():
        shutil.copy(path, server.root / name)


def test_cirr_download_through_a_mirror_and_prepare(http_server, raw, tmp_path):
    root = raw["cirr"]
    _serve(
        http_server,
        {
            f"{kind}.rc2.{s}.json": root / folder / f"{kind}.rc2.{s}.json"
            for s in ("val", "test1")
            for folder, kind in (("captions", "cap"), ("image_splits", "split"))
        },
    )
    # The mirror holds the splits the mini-world writes; CIRR's train files are served too.
    for kind in ("cap", "split"):
        (http_server.root / f"{kind}.rc2.train.json").write_text("[]" if kind == "cap" else "{}")
    fam = get_family("cirr")
    fam.download(tmp_path / "raw", {"mirror": http_server.url("")})
    assert (tmp_path / "raw" / "captions" / "cap.rc2.val.json").is_file()
    fam.prepare(tmp_path / "raw", tmp_path / "out", {"images": str(root)})
    q = read_queries(tmp_path / "out" / "cir_queries.parquet")
    assert len(q) == 32 and set(q["split"]) == {"val", "test"}


def test_circo_download_through_a_mirror_and_prepare(http_server, raw, tmp_path):
    import zipfile

    root = raw["circo"]
    _serve(http_server, {f"{s}.json": root / "annotations" / f"{s}.json" for s in ("val", "test")})
    with zipfile.ZipFile(http_server.root / "unlabeled2017.zip", "w") as z:
        for p in sorted((root / "COCO2017_unlabeled" / "unlabeled2017").iterdir()):
            z.write(p, f"unlabeled2017/{p.name}")
    with zipfile.ZipFile(http_server.root / "image_info_unlabeled2017.zip", "w") as z:
        info = root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
        z.write(info, f"annotations/{info.name}")
    fam = get_family("circo")
    fam.download(tmp_path / "raw", {"mirror": http_server.url("")})
    fam.prepare(tmp_path / "raw", tmp_path / "out", {})
    q = read_queries(tmp_path / "out" / "cir_queries.parquet")
    assert len(q) == 26
    gallery = pd.read_parquet(tmp_path / "out" / "cir_gallery.parquet")
    assert len(gallery) == len(list((root / "COCO2017_unlabeled" / "unlabeled2017").iterdir()))


def test_fashioniq_download_through_a_mirror_and_prepare(http_server, raw, tmp_path):
    root = raw["fashioniq"]
    for cat in fashioniq.CATEGORIES:
        for split in ("train", "val", "test"):
            for folder, kind in (("captions", "cap"), ("image_splits", "split")):
                src = root / folder / f"{kind}.{cat}.{split}.json"
                dest = http_server.root / src.name
                if src.is_file():
                    shutil.copy(src, dest)
                else:
                    dest.write_text("[]")
    fam = get_family("fashioniq")
    fam.download(tmp_path / "raw", {"mirror": http_server.url("")})
    fam.prepare(tmp_path / "raw", tmp_path / "out", {"images": str(root / "images")})
    q = read_queries(tmp_path / "out" / "cir_queries.parquet")
    assert len(q) == 36 and set(q["split"]) == {"val"}
