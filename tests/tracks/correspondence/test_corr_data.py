"""Correspondence datasets: the mini-world in the real layouts, and the families that read them.

The fixtures are written by ``matchbench.tracks.correspondence.synth`` in each benchmark's own
format (SPair-71k JSON + layout files, PF-PASCAL ``.mat`` + CSV, AP-10K as GeoAware-SC
prepares it); SPair-71k and PF-PASCAL also go through their real download path, served by a
real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.io import loadmat, savemat

from matchbench.data import INDEX_COLUMNS, families, get_family
from matchbench.errors import MatchbenchError
from matchbench.tracks.correspondence.pairs import FLAGS, PAIR_COLUMNS, read_pairs_table
from matchbench.tracks.correspondence.synth import (
    SceneOptions,
    difficulty_flags,
    plan,
    scene_options,
    write_ap10k,
    write_pfpascal,
    write_spair,
)

SMALL = {
    "categories": ["triangle", "square", "star", "arrow"],
    "pairs": {"train": 24, "val": 8, "test": 16},
    "images_per_category": {"train": 6, "val": 5, "test": 5},
    "instances_per_category": 3,
    "occlusion_prob": 0.4,
    "truncation_prob": 0.3,
}
PAIR_KEYS = {
    "pair_id", "filename", "src_imname", "trg_imname", "src_imsize", "trg_imsize",
    "src_bndbox", "trg_bndbox", "category", "src_pose", "trg_pose", "src_kps", "trg_kps",
    "kps_ids", "viewpoint_variation", "scale_variation", "truncation", "occlusion", "mirror",
}  # fmt: skip


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def spair(tmp_path_factory) -> Path:
    """``<tmp>/SPair-71k`` written from the small options, seed 7."""
    root = tmp_path_factory.mktemp("spair")
    write_spair(root, seed=7, progress=False, **SMALL)
    return root / "SPair-71k"


def copy_spair(spair: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "raw" / "SPair-71k"
    shutil.copytree(spair, dest)
    return dest


def prepare(family: str, raw: Path, out: Path, options: dict | None = None) -> tuple:
    get_family(family).prepare(raw, out, options or {})
    skipped = json.loads((out / "skipped.json").read_text())
    return pd.read_parquet(out / "images.parquet"), read_pairs_table(out / "pairs.parquet"), skipped


# --------------------------------------------------------------------------- the generator


def test_spair_layout_and_keys_are_the_real_ones(spair):
    assert {p.name for p in spair.iterdir()} == {
        "JPEGImages", "ImageAnnotation", "PairAnnotation", "Layout",
    }  # fmt: skip
    sizes = set()
    for jpg in (spair / "JPEGImages").rglob("*.jpg"):
        with Image.open(jpg) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert min(im.size) >= 64 and max(im.size) <= 112
            sizes.add(im.size)
        ann = json.loads(
            (spair / "ImageAnnotation" / jpg.parent.name / f"{jpg.stem}.json").read_text()
        )
        assert [ann["image_width"], ann["image_height"]] == list(im.size)
        assert ann["category"] == jpg.parent.name and ann["filename"] == jpg.name
        assert sorted(map(int, ann["kps"])) == list(range(30))  # 30 slots, as the release
    assert len(sizes) > 10 and any(w != h for w, h in sizes)  # non-square, varying

    for split in ("trn", "val", "test"):
        lines = (spair / "Layout" / "large" / f"{split}.txt").read_text().splitlines()
        files = sorted(p.stem for p in (spair / "PairAnnotation" / split).glob("*.json"))
        assert sorted(lines) == files and lines
        for line in lines:
            number, src, rest = line.split("-")
            trg, category = rest.split(":")
            assert len(number) == 6 and number.isdigit()
            a = json.loads((spair / "PairAnnotation" / split / f"{line}.json").read_text())
            assert set(a) == PAIR_KEYS
            assert (a["src_imname"], a["trg_imname"], a["category"]) == (
                f"{src}.jpg",
                f"{trg}.jpg",
                category,
            )
            assert a["filename"] == line and a["pair_id"] == int(number)
            x1, y1, x2, y2 = a["trg_bndbox"]
            assert 0 <= x1 < x2 < a["trg_imsize"][0] and 0 <= y1 < y2 < a["trg_imsize"][1]
            assert a["trg_imsize"][2] == 3
            assert len(a["src_kps"]) == len(a["trg_kps"]) == len(a["kps_ids"]) >= 1
            # Only keypoints visible in both, at the positions the image annotations give.
            for side in ("src", "trg"):
                img = json.loads(
                    (
                        spair / "ImageAnnotation" / category / f"{a[f'{side}_imname'][:-4]}.json"
                    ).read_text()
                )
                visible = [int(k) for k, v in img["kps"].items() if v is not None]
                assert set(a["kps_ids"]) <= set(visible)
                assert a[f"{side}_kps"] == [img["kps"][str(i)] for i in a["kps_ids"]]
            assert all(f in (0, 1, 2) for f in (a["viewpoint_variation"], a["scale_variation"]))
            assert a["truncation"] in (0, 1, 2, 3) and a["occlusion"] in (0, 1, 2, 3)


def test_generation_is_deterministic(tmp_path):
    tiny = {
        **SMALL,
        "categories": ["star", "arrow"],
        "pairs": {"train": 4, "val": 2, "test": 2},
        "images_per_category": {"train": 3, "val": 3, "test": 3},
    }
    digests = []
    for run, seed in enumerate((7, 7, 8)):
        write_spair(tmp_path / str(run), seed=seed, progress=False, **tiny)
        digests.append(tree_digest(tmp_path / str(run) / "SPair-71k"))
    assert digests[0] == digests[1] != digests[2]


def test_plan_flags_follow_the_transforms():
    opts = scene_options(SMALL)
    scenes, pairs = plan(7, opts)
    for sc in scenes:
        inside = (sc.kps[:, 0] >= 0) & (sc.kps[:, 0] < sc.width) & (sc.kps[:, 1] >= 0)
        inside &= sc.kps[:, 1] < sc.height
        assert (inside == sc.in_frame).all()
        assert sc.truncated == (not inside.all())
        assert not (sc.visible & ~inside).any()
        if sc.occluder is None:
            assert (sc.visible == inside).all() and not sc.occluded
        else:  # the occluder hides at least the vertex it was put on
            assert sc.occluded
        x1, y1, x2, y2 = sc.bbox
        vis = sc.kps[sc.visible]
        assert ((vis[:, 0] >= x1) & (vis[:, 0] <= x2) & (vis[:, 1] >= y1) & (vis[:, 1] <= y2)).all()
        assert abs(math.degrees(sc.view.angle)) <= opts.rotation
    seen = {f: set() for f in FLAGS}
    for p in pairs:
        f = p.flags
        turn = abs(math.degrees(p.src.view.angle - p.trg.view.angle))
        assert f["viewpoint_variation"] == (0 if turn < 15 else 1 if turn < 30 else 2)
        ratio = max(p.src.radius, p.trg.radius) / min(p.src.radius, p.trg.radius)
        assert f["scale_variation"] == (0 if ratio < 1.5 else 1 if ratio < 2 else 2)
        assert f["truncation"] == p.src.truncated + 2 * p.trg.truncated
        assert f["occlusion"] == p.src.occluded + 2 * p.trg.occluded
        assert f["mirror"] == int(p.src.view.mirror != p.trg.view.mirror)
        assert f == difficulty_flags(p.src, p.trg, opts.rotation)
        assert (p.kps_ids == np.flatnonzero(p.src.visible & p.trg.visible)).all()
        assert p.src.split == p.trg.split == p.split and p.src is not p.trg
        assert p.src.instance != p.trg.instance  # two objects, not two views of one
        for k, v in f.items():
            seen[k].add(v)
    assert all(len(v) >= 2 for v in seen.values())  # every flag takes several values


def test_instances_and_images_never_cross_splits():
    scenes, _ = plan(7, scene_options(SMALL))
    owners: dict = {}
    for sc in scenes:
        owners.setdefault(sc.obj, set()).add(sc.split)
        owners.setdefault((sc.category, sc.name), set()).add(sc.split)
    assert all(len(splits) == 1 for splits in owners.values())


def test_generator_options_are_checked():
    with pytest.raises(MatchbenchError, match="unknown option.*'rotaton'"):
        scene_options({"rotaton": 10})
    with pytest.raises(MatchbenchError, match="option rotation = 120"):
        scene_options({"rotation": 120})
    with pytest.raises(MatchbenchError, match="option image_size"):
        scene_options({"image_size": [100, 50]})
    with pytest.raises(MatchbenchError, match="option categories"):
        scene_options({"categories": ["blob"]})
    with pytest.raises(MatchbenchError, match="train triangle: only 20 valid pairs for the 250"):
        plan(0, scene_options({**SMALL, "pairs": {"train": 999}}))
    assert SceneOptions().rotation == 30.0


# --------------------------------------------------------------------------- SPair-71k families


def test_families_are_registered_and_declare_their_pair_tables():
    for name in ("spair71k", "pfpascal", "ap10k", "miniworld-spair"):
        assert name in families()
        assert get_family(name).tables == ("pairs.parquet", "skipped.json")
    assert not getattr(get_family("miniworld"), "tables", ())


def test_miniworld_spair_download_and_prepare(tmp_path):
    fam = get_family("miniworld-spair")
    raw, out = tmp_path / "raw", tmp_path / "out"
    fam.download(raw, {"seed": 7, "progress": False, **SMALL})
    manifest = json.loads((raw / "MANIFEST.json").read_text())
    assert manifest["source"] == "miniworld-spair" and manifest["options"]["seed"] == 7
    assert manifest["pairs"] == SMALL["pairs"]
    index, pairs, skipped = prepare("miniworld-spair", raw, out)
    assert skipped == {}
    assert list(index.columns) == INDEX_COLUMNS and list(pairs.columns) == PAIR_COLUMNS
    assert pairs.groupby("split").size().to_dict() == SMALL["pairs"]
    assert index["id"].is_unique and set(pairs.src) | set(pairs.trg) == set(index.id)
    assert dict(zip(index["class"], index["label"], strict=True)) == {
        c: k for k, c in enumerate(sorted(SMALL["categories"]))
    }
    for _, row in index.sample(5, random_state=0).iterrows():
        with Image.open(out / row.path) as im:
            assert im.size == (row.width, row.height)
        assert row.id == f"{row['class']}/{Path(row.path).stem}"
    first_use = {}
    for split in ("test", "val", "train"):
        for _, p in pairs[pairs.split == split].iterrows():
            first_use.setdefault(p.src, split)
            first_use.setdefault(p.trg, split)
    assert dict(zip(index.id, index.split, strict=True)) == first_use
    for _, p in pairs.iterrows():
        x1, y1, x2, y2 = p.trg_bbox
        assert p.threshold == max(x2 - x1, y2 - y1)
        assert len(p.src_kps) == len(p.trg_kps) >= 2
        assert all(p[f] >= 0 for f in FLAGS)
    # The rerun with the same seed writes the same tables.
    before = (out / "pairs.parquet").read_bytes()
    fam.prepare(raw, out, {})
    assert (out / "pairs.parquet").read_bytes() == before


def test_spair71k_download_through_a_mirror_and_prepare(http_server, spair, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(spair, arcname="SPair-71k")
    (http_server.root / "SPair-71k.tar.gz").write_bytes(buf.getvalue())
    fam, raw = get_family("spair71k"), tmp_path / "raw"
    options = {"mirror": http_server.url("")}
    fam.download(raw, options)
    manifest = json.loads((raw / "MANIFEST.json").read_text())
    (entry,) = manifest["sources"]
    assert entry["checksum"] is None  # none is published; the manifest records what came
    assert entry["sha256"] == hashlib.sha256(buf.getvalue()).hexdigest()
    assert entry["fetched_from"] == http_server.url("SPair-71k.tar.gz")
    index, pairs, skipped = prepare("spair71k", raw, tmp_path / "out", options)
    # Same tables as reading the generated folder directly, paths aside.
    ref_index, ref_pairs, _ = prepare("spair71k", spair.parent, tmp_path / "ref")
    pd.testing.assert_frame_equal(pairs, ref_pairs)
    pd.testing.assert_frame_equal(index.drop(columns="path"), ref_index.drop(columns="path"))
    assert skipped == {}
    fam.download(raw, options)  # up to date: no second request
    assert http_server.count("SPair-71k.tar.gz") == 1
    with pytest.raises(MatchbenchError, match="checksum mismatch"):
        fam.download(
            tmp_path / "raw2", {**options, "checksums": {"SPair-71k.tar.gz": "md5:" + "0" * 32}}
        )
    with pytest.raises(MatchbenchError, match="unknown key 'mirorr' \\(did you mean 'mirror'"):
        fam.download(tmp_path / "raw3", {"mirorr": "x"})


# --------------------------------------------------------------------------- bad SPair input


def _first_pair(root: Path) -> tuple[str, Path]:
    line = (root / "Layout" / "large" / "test.txt").read_text().splitlines()[0]
    return line, root / "PairAnnotation" / "test" / f"{line}.json"


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_keypoint_arrays_of_different_lengths(spair, tmp_path):
    root = copy_spair(spair, tmp_path)
    _, ann = _first_pair(root)
    data = json.loads(ann.read_text())
    _edit(ann, trg_kps=data["trg_kps"] + [[1, 1]])
    with pytest.raises(MatchbenchError, match=f"{ann}: 'src_kps' has .* but 'trg_kps' has"):
        prepare("spair71k", root.parent, tmp_path / "out")


def test_keypoint_outside_its_image(spair, tmp_path):
    root = copy_spair(spair, tmp_path)
    _, ann = _first_pair(root)
    data = json.loads(ann.read_text())
    w = data["trg_imsize"][0]
    kps = data["trg_kps"]
    kps[0] = [w - 1 + 2, kps[0][1]]  # 2 px past the last pixel centre: within tolerance
    _edit(ann, trg_kps=kps)
    prepare("spair71k", root.parent, tmp_path / "out")
    kps[0] = [w + 5, kps[0][1]]
    _edit(ann, trg_kps=kps)
    with pytest.raises(MatchbenchError, match=f"{ann}: trg keypoint 0 .* outside the {w}x"):
        prepare("spair71k", root.parent, tmp_path / "out")
    prepare("spair71k", root.parent, tmp_path / "out", {"kps_tolerance": 10})


def test_missing_image(spair, tmp_path):
    root = copy_spair(spair, tmp_path)
    _, ann = _first_pair(root)
    data = json.loads(ann.read_text())
    image = root / "JPEGImages" / data["category"] / data["src_imname"]
    image.unlink()
    with pytest.raises(MatchbenchError, match=f"{image}: image not found"):
        prepare("spair71k", root.parent, tmp_path / "out")


def test_layout_category_unknown_or_disagreeing(spair, tmp_path):
    root = copy_spair(spair, tmp_path)
    layout = root / "Layout" / "large" / "test.txt"
    line, ann = _first_pair(root)
    lines = layout.read_text()
    layout.write_text(lines.replace(line, line.rsplit(":", 1)[0] + ":giraffe", 1))
    with pytest.raises(MatchbenchError, match="test.txt: line 1: category 'giraffe' has no folder"):
        prepare("spair71k", root.parent, tmp_path / "out")
    other = next(c for c in SMALL["categories"] if not line.endswith(f":{c}"))
    layout.write_text(lines)
    _edit(ann, category=other)
    with pytest.raises(MatchbenchError, match=f"{ann}: category '{other}' disagrees"):
        prepare("spair71k", root.parent, tmp_path / "out")


def test_layout_line_without_annotation_or_malformed(spair, tmp_path):
    root = copy_spair(spair, tmp_path)
    _, ann = _first_pair(root)
    ann.unlink()
    with pytest.raises(MatchbenchError, match=f"line 1: pair annotation {ann} not found"):
        prepare("spair71k", root.parent, tmp_path / "out")
    (root / "Layout" / "large" / "val.txt").write_text("000001-no-category\n")
    with pytest.raises(MatchbenchError, match="val.txt: line 1 .* is not <number>"):
        prepare("spair71k", root.parent, tmp_path / "out")


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(MatchbenchError, match="SPair-71k not found"):
        get_family("spair71k").prepare(tmp_path, tmp_path / "out", {})


# --------------------------------------------------------------------------- PF-PASCAL


@pytest.fixture(scope="module")
def pfpascal(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pf")
    summary = write_pfpascal(root, seed=3, progress=False, **SMALL)
    return root / "pf-pascal", summary


def test_pfpascal_fixture_is_in_the_real_format(pfpascal):
    root, _ = pfpascal
    header = (root / "trn_pairs.csv").read_text().splitlines()[0]
    assert header == "source_image,target_image,class,flip"
    assert (root / "test_pairs.csv").read_text().startswith("source_image,target_image,class\n")
    mat = loadmat(next((root / "PF-dataset-PASCAL" / "Annotations").rglob("*.mat")))
    assert mat["kps"].shape[1] == 2 and mat["bbox"].shape == (1, 4)


def test_pfpascal_prepare(pfpascal, tmp_path):
    root, summary = pfpascal
    index, pairs, skipped = prepare("pfpascal", root, tmp_path / "out")
    # Flipped training rows are augmentation: counted, not kept.
    assert skipped == {
        "flipped duplicate of a training pair (augmentation)": SMALL["pairs"]["train"]
    }
    assert pairs.groupby("split").size().to_dict() == SMALL["pairs"]
    sizes = {r.id: (r.width, r.height) for r in index.itertuples()}
    for p in pairs.itertuples():
        assert p.threshold == max(sizes[p.trg])  # PF-PASCAL: the target image's longer side
        assert np.isfinite(p.src_kps).all() and (np.floor(p.trg_kps) == p.trg_kps).all()
        assert all(getattr(p, f) == -1 for f in FLAGS)
        assert p.category in summary["classes"].values()


def test_pfpascal_download_through_a_mirror(http_server, pfpascal, tmp_path):
    root, _ = pfpascal

    def zipped(name: str, files: dict[str, Path]) -> None:
        with zipfile.ZipFile(http_server.root / name, "w") as zf:
            for arc, path in sorted(files.items()):
                zf.write(path, arc)

    data = root / "PF-dataset-PASCAL"
    zipped(
        "PF-dataset-PASCAL.zip",
        {
            f"PF-dataset-PASCAL/{p.relative_to(data).as_posix()}": p
            for p in data.rglob("*")
            if p.is_file()
        },
    )
    zipped("pf-pascal_image_pairs.zip", {p.name: p for p in root.glob("*.csv")})
    fam, raw = get_family("pfpascal"), tmp_path / "raw"
    fam.download(raw, {"mirror": http_server.url("")})
    _, pairs, _ = prepare("pfpascal", raw, tmp_path / "out")
    _, ref, _ = prepare("pfpascal", root, tmp_path / "ref")
    pd.testing.assert_frame_equal(pairs, ref)


def test_pfpascal_mat_without_kps(pfpascal, tmp_path):
    root = tmp_path / "pf-pascal"
    shutil.copytree(pfpascal[0], root)
    first = (root / "test_pairs.csv").read_text().splitlines()[1]
    src, cls = Path(first.split(",")[0]).stem, int(first.split(",")[2])
    from matchbench.data.formats.pfpascal import CLASSES

    mat = root / "PF-dataset-PASCAL" / "Annotations" / CLASSES[cls - 1] / f"{src}.mat"
    savemat(mat, {"bbox": np.array([[1.0, 1.0, 5.0, 5.0]])})
    with pytest.raises(MatchbenchError, match=f"{mat}: no 'kps' variable"):
        prepare("pfpascal", root, tmp_path / "out")


# --------------------------------------------------------------------------- AP-10K


def test_ap10k_prepare_skips_pairs_with_fewer_than_3_keypoints(tmp_path):
    write_ap10k(tmp_path, seed=5, progress=False, **SMALL)
    root = tmp_path / "ap-10k"
    fam = get_family("ap10k")
    with pytest.raises(MatchbenchError, match="not a prepared AP-10K folder"):
        fam.download(tmp_path / "raw", {})
    fam.download(tmp_path / "raw", {"root": str(root)})  # only checks the folder
    _, planned = plan(5, scene_options(SMALL))
    few = sum(len(p.kps_ids) < 3 for p in planned)
    assert few > 0
    index, pairs, skipped = prepare(
        "ap10k", tmp_path / "raw", tmp_path / "out", {"root": str(root)}
    )
    assert skipped == {"fewer than 3 keypoints visible in both images (GeoAware-SC)": few}
    assert len(pairs) == len(planned) - few
    assert (pairs.src_kps.map(len) >= 6).all()
    for p in pairs.itertuples():
        x1, y1, x2, y2 = p.trg_bbox
        assert p.threshold == max(x2 - x1, y2 - y1)
    first = index.iloc[0]
    assert Path(first.path).parts[-4:-1] == (
        "JPEGImages",
        "Polygonidae" if first["class"] in ("triangle", "square") else "Figuridae",
        first["class"],
    )
