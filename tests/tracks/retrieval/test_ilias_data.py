"""ILIAS data: the mini-world's instances and shards, the families, the distractor tars.

The mini-world writes ILIAS's own layout (``tracks/retrieval/synth.py``); the real family's
parser prepares it; the real family downloads it (the core, then a shard) from a real HTTP
server on 127.0.0.1 with sha256 checks; the shards are indexed and read in place, by
DataLoader workers too.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader

import matchbench.tracks.retrieval.families as families  # registers the families
from matchbench.data import INDEX_COLUMNS, get_family, resolve_options
from matchbench.data.formats import ilias
from matchbench.errors import MatchbenchError
from matchbench.images import to_uint8_tensor
from matchbench.tracks.compose.synth import COLOURS, TEXTURE_WORDS
from matchbench.tracks.retrieval import shards, synth
from matchbench.tracks.retrieval.shards import ShardImages, members, read_checksums, verify
from matchbench.tracks.retrieval.synth import Design, IliasOptions

SEED = 3
OPTS = {
    "seed": SEED,
    "instances": 6,
    "image_queries": 2,
    "positives": 3,
    "image_size": 64,
    "shard_size": 12,
    "progress": False,
}
SHARD0 = "yfcc100m_00000"


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def tables(out: Path) -> dict[str, pd.DataFrame]:
    return {n: pd.read_parquet(out / n) for n in ("images.parquet", *families.TABLES)}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("ilias") / "raw"
    get_family("miniworld-ilias").download(raw, OPTS)
    return raw


@pytest.fixture(scope="module")
def prepared(world, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ilias_out")
    get_family("miniworld-ilias").prepare(world, out, OPTS)
    return out


def copy_raw(world: Path, tmp_path: Path) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(world, raw)
    return raw


def shard_bytes(tmp_path: Path, name: str = SHARD0, **options) -> bytes:
    raw = tmp_path / f"gen-{name}-{len(options)}"
    path = get_family("miniworld-ilias").download_shard(raw, {**OPTS, **options}, name)
    return path.read_bytes()


# --------------------------------------------------------------------------- the generator


def test_generation_is_deterministic(tmp_path, world):
    fam = get_family("miniworld-ilias")
    fam.download(tmp_path / "same", OPTS)
    fam.download(tmp_path / "other", {**OPTS, "seed": SEED + 1})
    assert tree_digest(tmp_path / "same") == tree_digest(world)
    assert tree_digest(tmp_path / "other") != tree_digest(world)


def test_a_shard_is_a_function_of_its_index_alone(tmp_path):
    fam = get_family("miniworld-ilias")
    assert fam.shard_names(OPTS, 5)[:3] == fam.shard_names(OPTS, 3)
    assert fam.shard_names(OPTS, 2) == ["yfcc100m_00000", "yfcc100m_00001"]
    assert fam.distractor_count(OPTS) == OPTS["shard_size"]
    alone = fam.download_shard(tmp_path / "alone", OPTS, "yfcc100m_00002").read_bytes()
    for name in fam.shard_names(OPTS, 4):  # after others, in another folder
        path = fam.download_shard(tmp_path / "all", OPTS, name)
    assert path.read_bytes() != alone
    assert (tmp_path / "all" / "yfcc100m" / "yfcc100m_00002.tar").read_bytes() == alone
    # A shorter shard is the start of a longer one.
    short = tmp_path / "short.tar"
    short.write_bytes(shard_bytes(tmp_path, shard_size=5))
    full = tmp_path / "all" / "yfcc100m" / "yfcc100m_00000.tar"
    got, want = members(short), members(full)[:5]
    assert [m.key for m in got] == [m.key for m in want]
    assert [ShardImages(short, got, 64).read(i) for i in range(5)] == [
        ShardImages(full, want, 64).read(i) for i in range(5)
    ]


def test_no_distractor_or_clutter_object_looks_like_a_core_instance():
    opts = IliasOptions(instances=6, shard_size=300)
    w = synth.world(SEED, *opts.world)
    looks = synth.core_looks(SEED, *opts.world)
    assert len(looks) == len(w.core) == 6
    assert not looks & {d.look() for d in w.common}
    for inst, near in zip(w.core, w.near, strict=True):
        assert len({d.look() for d in near}) == synth.NEAR
        assert all(d.group == inst.design.group and d.look() not in looks for d in near)
    scenes = synth.distractor_scenes(SEED, 0, opts)
    seen = [p.design for sc in scenes for p in sc.objects]
    assert not looks & {d.look() for d in seen}
    # Near-duplicates (a core instance's shape and colour) are among the distractors.
    groups = {i.design.group for i in w.core}
    targets = [sc.objects[sc.target].design for sc in scenes]
    share = sum(d.group in groups for d in targets) / len(targets)
    assert 0.2 < share < 0.45
    assert all(1 <= sc.clutter <= 8 for sc in scenes)


def test_the_scenes_look_is_an_option():
    # Large, alone, never hidden: every distractor's object spans the asked share of the image.
    opts = IliasOptions.of(
        {
            "instances": 6,
            "shard_size": 50,
            "object_scale": [0.3, 0.35],
            "clutter": [0, 0],
            "occlusion": 0.0,
            "image_size": 96,
        }
    )
    scenes = synth.distractor_scenes(SEED, 0, opts)
    assert all(len(sc.objects) == 1 and sc.clutter == 0 for sc in scenes)
    for sc in scenes:
        x0, y0, x1, y1 = sc.box
        assert 0.3 * 96 * 1.5 < max(x1 - x0, y1 - y0) <= 2 * synth.EXTENT * 0.35 * 96 + 2
    crowded = synth.distractor_scenes(
        SEED, 0, IliasOptions(instances=6, shard_size=50, clutter=(6, 6), occlusion=1.0)
    )
    assert all(len(sc.objects) == 7 and sc.clutter == 6 for sc in crowded)
    # A range given as a YAML list draws the same scenes as the default tuple. (That the
    # defaults reproduce the shards written before these options existed was checked by `cmp`
    # when they were added, f456434.)
    same = IliasOptions.of({"instances": 6, "shard_size": 20, "clutter": [1, 8]})
    assert synth.distractor_scenes(SEED, 1, same) == synth.distractor_scenes(
        SEED, 1, IliasOptions(instances=6, shard_size=20)
    )
    with pytest.raises(MatchbenchError, match=r"options.object_scale: \[0.3, 0.2\] is not a"):
        IliasOptions.of({"object_scale": [0.3, 0.2]})


def test_designs_are_compared_by_their_look_under_symmetric_turns():
    square = Design("square", "red", "stripes", 0.3, 0, "none", "", -1)
    assert Design("square", "red", "stripes", 0.3, 90, "none", "", -1).look() == square.look()
    assert Design("square", "red", "stripes", 0.3, 45, "none", "", -1).look() != square.look()
    arrow = Design("arrow", "red", "stripes", 0.3, 0, "none", "", -1)  # no symmetric turn
    assert Design("arrow", "red", "stripes", 0.3, 90, "none", "", -1).look() != arrow.look()
    centre = Design("cross", "blue", "checker", 0.3, 0, "disc", "dark", 0)
    assert synth.emblem_spots("cross")[0] == (0.0, 0.0)
    assert Design("cross", "blue", "checker", 0.3, 0, "ring", "dark", 0).look() != centre.look()


def test_instances_come_in_groups_told_apart_by_details():
    core = synth.core_instances(SEED, 60, 3)
    groups: dict[tuple[str, str], list[Design]] = {}
    for inst in core:
        groups.setdefault(inst.design.group, []).append(inst.design)
    assert sorted(len(g) for g in groups.values()) == [3] * 20
    assert all(len({d.texture for d in g}) == 3 for g in groups.values())
    assert len({i.design.look() for i in core}) == 60
    assert [i.name.rsplit("_", 1)[1] for i in core] == [f"{k:03d}" for k in range(60)]
    # Text queries: unique here, in the vision-language mini-world's words.
    texts = [synth.describe(i.design) for i in core]
    assert len(set(texts)) == 60
    words = {"a", "with", "texture", *COLOURS, *synth.SHAPES, *TEXTURE_WORDS.values()}
    assert all(set(t.split()) <= words for t in texts)
    plain = Design("star", "red", "solid", 0, 0, "none", "", -1)
    assert synth.describe(plain) == "a plain red star"


# --------------------------------------------------------------------------- prepare


def test_prepare_reads_the_miniworld_layout(world, prepared):
    t = tables(prepared)
    index, queries, positives = (t[n] for n in ("images.parquet", *families.TABLES))
    assert list(index.columns) == INDEX_COLUMNS and index["id"].is_unique
    assert list(queries.columns) == families.QUERY_COLUMNS
    assert list(positives.columns) == families.POSITIVE_COLUMNS
    assert index.split.value_counts().to_dict() == {"positive": 18, "query": 12}
    assert list(index.id) == sorted(index.id) and list(queries["query"]) == sorted(queries["query"])
    ids = ilias.read_ids(world)
    assert set(index.id[index.split == "query"]) == set(ids["image_queries"])
    assert queries.kind.value_counts().to_dict() == {"image": 12, "text": 6}
    assert (queries.n_positives == 3).all()
    # Image queries: the crop by the box, losslessly.
    for row in index[index.split == "query"].itertuples():
        src = world / "ilias_core" / row.id
        x, y, w, h = map(int, src.with_name(f"{src.stem}_bbox.txt").read_text().split())
        with Image.open(prepared / row.path) as crop, Image.open(src) as full:
            assert crop.format == "PNG" and crop.size == (w, h) == (row.width, row.height)
            want = ImageOps.exif_transpose(full).convert("RGB").crop((x, y, x + w, y + h))
            assert crop.tobytes() == want.tobytes()
        assert w < OPTS["image_size"] and h < OPTS["image_size"]  # the crop matters
    # Positives: the files themselves; scale and clutter from positive_ids.txt.
    for row in index[index.split == "positive"].itertuples():
        assert row.path == f"images/{row.id}"
        assert (prepared / row.path).read_bytes() == (world / "ilias_core" / row.id).read_bytes()
    listed = zip(positives.scale, positives.clutter, strict=True)
    assert dict(zip(positives.id, listed, strict=True)) == ids["positives"]
    assert (positives.scale < 0.35).all() and (positives.clutter >= 1).all()
    # Text queries: the T*.txt description; classes the taxonomy path; a label per instance.
    for q in queries[queries.kind == "text"].itertuples():
        assert q.text == (world / "ilias_core" / q.query).read_text().strip() != ""
    core = {i.name: "/".join(i.taxonomy) for i in synth.core_instances(SEED, 6, 3)}
    assert list(index["class"]) == [core[i] for i in index.instance]
    label = {inst: k for k, inst in enumerate(sorted(core))}
    assert list(index.label) == [label[i] for i in index.instance]


def test_prepare_is_byte_stable(world, prepared, tmp_path):
    get_family("miniworld-ilias").prepare(world, tmp_path, OPTS)
    for name in ("images.parquet", *families.TABLES):
        assert (tmp_path / name).read_bytes() == (prepared / name).read_bytes()
    assert tree_digest(tmp_path / "crops") == tree_digest(prepared / "crops")


def test_a_query_crop_is_the_union_of_its_boxes_clipped(world, tmp_path):
    raw = copy_raw(world, tmp_path)
    q = ilias.read_ids(raw)["image_queries"][0]
    src = raw / "ilias_core" / q
    # Two boxes, the second one pixel past the right edge (within the tolerance).
    src.with_name(f"{src.stem}_bbox.txt").write_text("5 6 10 10\n50 20 15 8\n")
    get_family("miniworld-ilias").prepare(raw, tmp_path / "out", OPTS)
    row = pd.read_parquet(tmp_path / "out" / "images.parquet").set_index("id").loc[q]
    assert (row.width, row.height) == (64 - 5, 28 - 6)
    assert families.crop_box([(5, 6, 10, 10), (50, 20, 15, 8)], 64, 64) == (5, 6, 64, 28)
    with pytest.raises(MatchbenchError, match="outside the 64x64 image .tolerance 0 px"):
        get_family("miniworld-ilias").prepare(raw, tmp_path / "out", {**OPTS, "box_tolerance": 0})


def _first(raw: Path, key: str) -> str:
    return sorted(ilias.read_ids(raw)[key])[0]


def _box(text: str):
    def spoil(raw: Path) -> Path:
        src = raw / "ilias_core" / _first(raw, "image_queries")
        box = src.with_name(f"{src.stem}_bbox.txt")
        box.write_text(text)
        return box

    return spoil


def _no_positives(raw: Path) -> Path:
    ids = raw / "image_ids" / "positive_ids.txt"
    inst = ilias.instance_of(_first(raw, "image_queries"))
    lines = [x for x in ids.read_text().splitlines() if not x.startswith(f"{inst}/")]
    ids.write_text("\n".join(lines) + "\n")
    return raw / "image_ids" / "image_query_ids.txt"


def _missing(raw: Path) -> Path:
    (raw / "ilias_core" / _first(raw, "positives")).unlink()
    return raw / "image_ids" / "positive_ids.txt"


def _empty_text(raw: Path) -> Path:
    path = raw / "ilias_core" / _first(raw, "text_queries")
    path.write_text("  \n")
    return path


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_box("60 10 20 20\n"), ":1: box x=60 y=10 w=20 h=20 is outside the 64x64 image"),
        (_box("10 10 8 8\n10 10 0 20\n"), ":2: box x=10 y=10 w=0 h=20 has no area"),
        (_no_positives, ": query '.*': instance '.*' has no positive in positive_ids.txt"),
        (_missing, ": id '.*/pos/P.*.jpg': .* not found"),
        (_empty_text, ": empty text query"),
    ],
    ids=["box-outside", "box-no-area", "query-without-positives", "id-without-file", "empty-text"],
)
def test_bad_input_is_one_line_naming_the_file(world, tmp_path, spoil, message):
    raw = copy_raw(world, tmp_path)
    where = spoil(raw)
    with pytest.raises(MatchbenchError, match=message) as e:
        get_family("miniworld-ilias").prepare(raw, tmp_path / "out", OPTS)
    assert str(e.value).startswith(str(where)) and "\n" not in str(e.value)
    assert not (tmp_path / "out").exists()


def test_the_uned_part_is_other_instances_for_training(tmp_path):
    fam = get_family("miniworld-ilias")
    opts = {**OPTS, "part": "uned", "uned_instances": 5, "uned_views": 3}
    fam.download(tmp_path / "raw", opts)
    fam.prepare(tmp_path / "raw", tmp_path / "out", opts)
    t = tables(tmp_path / "out")
    index = t["images.parquet"]
    assert list(index.columns) == INDEX_COLUMNS and len(index) == 15
    assert set(index.split) == {"train"}
    label = {inst: k for k, inst in enumerate(sorted(set(index.instance)))}
    assert list(index.label) == [label[i] for i in index.instance]
    assert index.id.iloc[0].startswith(f"train/{index.instance.iloc[0]}/")
    assert all(t[n].empty and list(t[n].columns) for n in families.TABLES)
    uned = synth.uned_instances(SEED, 6, 3, 5)
    core = synth.core_instances(SEED, 6, 3)
    assert not {u.design.look() for u in uned} & synth.core_looks(SEED, 6, 3)
    assert not {u.name for u in uned} & {c.name for c in core}
    assert set(index.instance) == {u.name for u in uned}
    with pytest.raises(MatchbenchError, match="part 'uned' has no distractors"):
        fam.shard_names(opts, 1)


# --------------------------------------------------------------------------- the real family


@pytest.fixture
def portal(http_server, world, tmp_path) -> Path:
    """The mini-world served in the portal's layout, ``checksums.txt`` with full URLs."""
    root = http_server.root
    shutil.copy(world / "ilias_core.tar", root / "ilias_core.tar")
    shutil.copytree(world / "image_ids", root / "image_ids")
    shutil.copytree(world / "misc", root / "misc")
    (root / "yfcc100m").mkdir()
    (root / "yfcc100m" / f"{SHARD0}.tar").write_bytes(shard_bytes(tmp_path))
    write_checksums(http_server)
    return root


def write_checksums(server, **digests: str) -> None:
    lines = []
    for rel in ("ilias_core.tar", f"yfcc100m/{SHARD0}.tar"):
        digest = (
            digests.get(Path(rel).name)
            or hashlib.sha256((server.root / rel).read_bytes()).hexdigest()
        )
        lines.append(f"{digest}  {server.url(rel)}\n")
    (server.root / "checksums.txt").write_text("".join(lines))


def ilias_options(server) -> dict:
    return {"base_url": server.url(""), "taxonomy_url": server.url("misc/taxonomy.json")}


def test_ilias_downloads_the_core_and_a_shard(portal, http_server, world, prepared, tmp_path):
    fam, raw, opts = get_family("ilias"), tmp_path / "raw", ilias_options(http_server)
    fam.download(raw, opts)
    assert tree_digest(raw / "ilias_core") == tree_digest(world / "ilias_core")
    assert tree_digest(raw / "image_ids") == tree_digest(world / "image_ids")
    assert (raw / "misc" / "taxonomy.json").read_bytes() == (
        world / "misc" / "taxonomy.json"
    ).read_bytes()
    assert set(read_checksums(raw / "checksums.txt")) == {"ilias_core.tar", f"{SHARD0}.tar"}
    fam.download(raw, opts)  # current: nothing fetched again but checksums.txt
    assert http_server.count("ilias_core.tar") == 1 and http_server.count("checksums.txt") == 2
    fam.prepare(raw, tmp_path / "out", opts)
    got, want = tables(tmp_path / "out"), tables(prepared)
    for name in want:
        pd.testing.assert_frame_equal(got[name], want[name])
    assert fam.shard_names(opts, 1) == [SHARD0] and fam.distractor_count(opts) == 100_000
    path = fam.download_shard(raw, opts, SHARD0)
    assert path == raw / "yfcc100m" / f"{SHARD0}.tar"
    assert path.read_bytes() == (portal / "yfcc100m" / f"{SHARD0}.tar").read_bytes()
    fam.download_shard(raw, opts, SHARD0)  # verified in place: no second transfer
    assert http_server.count(f"yfcc100m/{SHARD0}.tar") == 1
    elsewhere = fam.download_shard(raw, opts, SHARD0, tmp_path / "shards" / f"{SHARD0}.tar")
    assert elsewhere.read_bytes() == path.read_bytes()
    with pytest.raises(MatchbenchError, match="no checksum for yfcc100m_00001.tar"):
        fam.download_shard(raw, opts, "yfcc100m_00001")


def test_a_shard_with_a_wrong_checksum_leaves_no_file(portal, http_server, tmp_path):
    wrong = "0" * 64
    write_checksums(http_server, **{f"{SHARD0}.tar": wrong})
    fam, raw, opts = get_family("ilias"), tmp_path / "raw", ilias_options(http_server)
    fam.download(raw, opts)
    actual = hashlib.sha256((portal / "yfcc100m" / f"{SHARD0}.tar").read_bytes()).hexdigest()
    with pytest.raises(
        MatchbenchError, match=f"{SHARD0}.tar: expected sha256:{wrong}, got sha256:{actual}"
    ):
        fam.download_shard(raw, opts, SHARD0)
    assert not any((raw / "yfcc100m").glob("*"))


def test_a_truncated_shard_leaves_no_file(portal, http_server, tmp_path):
    shard = portal / "yfcc100m" / f"{SHARD0}.tar"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])  # served whole, and listed so: a corrupt upload
    write_checksums(http_server)
    fam, raw, opts = get_family("ilias"), tmp_path / "raw", ilias_options(http_server)
    fam.download(raw, opts)
    with pytest.raises(MatchbenchError, match="truncated or corrupt tar shard"):
        fam.download_shard(raw, opts, SHARD0)
    assert not any((raw / "yfcc100m").glob("*"))


def test_a_miniworld_shard_is_checked_when_checksums_list_it(world, tmp_path):
    raw = copy_raw(world, tmp_path)
    good = hashlib.sha256(shard_bytes(tmp_path)).hexdigest()
    fam = get_family("miniworld-ilias")
    with open(raw / "checksums.txt", "a") as f:
        f.write(f"{good}  {SHARD0}.tar\n{'1' * 64}  yfcc100m_00001.tar\n")
    assert fam.download_shard(raw, OPTS, SHARD0).is_file()
    with pytest.raises(MatchbenchError, match="yfcc100m_00001.tar: sha256 mismatch: expected 1111"):
        fam.download_shard(raw, OPTS, "yfcc100m_00001")
    assert sorted(p.name for p in (raw / "yfcc100m").iterdir()) == [f"{SHARD0}.tar"]


# --------------------------------------------------------------------------- shards


def _shard(tmp_path: Path) -> Path:
    path = tmp_path / f"{SHARD0}.tar"
    path.write_bytes(shard_bytes(tmp_path))
    return path


def test_members_index_a_shard_in_tar_order(tmp_path):
    path = _shard(tmp_path)
    found = members(path)
    with tarfile.open(path) as tar:
        listed = tar.getmembers()
    assert [f"{m.key}.jpg" for m in found] == [m.name for m in listed]
    assert [(m.offset_data, m.size) for m in found] == [(t.offset_data, t.size) for t in listed]
    assert shards.ids(SHARD0, found)[0] == f"{SHARD0}.tar/{synth.shard_key(0, 0)}"
    assert len(found) == OPTS["shard_size"]


@pytest.mark.parametrize("cut", ["in-member", "in-header", "at-boundary", "no-end-block"])
def test_a_cut_shard_is_an_error_naming_it(tmp_path, cut):
    path = _shard(tmp_path)
    data = path.read_bytes()
    found = members(path)
    end = found[3].offset_data + found[3].size
    end += -end % 512  # the next header
    at = {
        "in-member": found[3].offset_data + 100,
        "in-header": end + 100,
        "at-boundary": end,
        "no-end-block": found[-1].offset_data + found[-1].size + (-found[-1].size % 512),
    }[cut]
    path.write_bytes(data[:at])
    with pytest.raises(MatchbenchError, match=f"{path}: truncated or corrupt tar shard"):
        members(path)


def _tar(path: Path, entries: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tar.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tar.addfile(info, io.BytesIO(e[1]))
    return path


def _link(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    return info


@pytest.mark.parametrize(
    "entry, message",
    [
        (("../evil.jpg", b"x"), "refusing member '../evil.jpg': absolute path or '..'"),
        (("/abs.jpg", b"x"), "refusing member '/abs.jpg'"),
        (_link("0001.jpg"), "refusing member '0001.jpg': not a regular file"),
        (("0000.jpg", b"again"), "key '0000' appears twice"),
    ],
)
def test_unsafe_members_are_refused(tmp_path, entry, message):
    path = _tar(tmp_path / "s.tar", [("0000.jpg", b"x"), entry])
    with pytest.raises(MatchbenchError, match=message):
        members(path)


def test_other_members_are_skipped_and_keys_follow_webdataset(tmp_path):
    folder = tarfile.TarInfo("a")
    folder.type = tarfile.DIRTYPE
    entries = [folder, ("a/1.json", b"{}"), ("a/1.JPG", b"x"), ("b.c.jpg", b"y"), ("2.jpg", b"z")]
    found = members(_tar(tmp_path / "s.tar", entries))
    assert [m.key for m in found] == ["a/1", "2"]  # b.c.jpg: key b, extension c.jpg
    assert shards.split_key("b.c.jpg") == ("b", "c.jpg")


def test_shard_images_read_members_in_place_with_workers(tmp_path):
    path = _shard(tmp_path)
    found = members(path)
    ds = ShardImages(path, found, 32)
    x = ds[1]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8
    with tarfile.open(path) as tar, Image.open(tar.extractfile(f"{found[1].key}.jpg")) as im:
        assert torch.equal(x, to_uint8_tensor(im.convert("RGB"), 32))
    again = pickle.loads(pickle.dumps(ds))
    assert torch.equal(again[1], x)
    serial = torch.cat(list(DataLoader(ds, batch_size=5, num_workers=0)))
    parallel = torch.cat(list(DataLoader(ds, batch_size=5, num_workers=2)))
    assert serial.shape == (len(found), 3, 32, 32) and torch.equal(serial, parallel)


def test_an_undecodable_member_names_shard_and_key(tmp_path):
    path = _tar(tmp_path / "broken.tar", [("0000.jpg", b"not a jpeg")])
    with pytest.raises(MatchbenchError, match=r"broken.tar/0000: not a readable image"):
        ShardImages(path, members(path), 32)[0]


def test_checksums_are_read_and_verified(tmp_path):
    path = tmp_path / "checksums.txt"
    digest = hashlib.sha256(b"abc").hexdigest()
    path.write_text(f"{digest}  https://host/a/b/x.tar\n\n{digest.upper()} *y.tar\n")
    assert read_checksums(path) == {"x.tar": digest, "y.tar": digest}
    (tmp_path / "x.tar").write_bytes(b"abc")
    assert verify(tmp_path / "x.tar", read_checksums(path)) == digest
    (tmp_path / "x.tar").write_bytes(b"abd")
    with pytest.raises(MatchbenchError, match=f"x.tar: sha256 mismatch: expected {digest}, got "):
        verify(tmp_path / "x.tar", read_checksums(path))
    path.write_text(f"{digest}  x.tar\nnot-a-digest  y.tar\n")
    with pytest.raises(MatchbenchError, match=f"{path}:2: expected '<sha256"):
        read_checksums(path)


# --------------------------------------------------------------------------- options


def test_families_declare_tables_and_defaults():
    for name in ("ilias", "miniworld-ilias"):
        assert get_family(name).tables == (
            "retrieval_queries.parquet",
            "retrieval_positives.parquet",
        )
    mini = resolve_options(get_family("miniworld-ilias"), {})
    assert IliasOptions.of(mini) == IliasOptions()
    real = resolve_options(get_family("ilias"), {})
    assert real["base_url"] == "https://vrg.fel.cvut.cz/ilias_data" and real["mini"] is False


def test_the_shard_pattern_is_an_option():
    fam = get_family("miniworld-ilias")
    assert fam.shard_names({"shard_pattern": "part-{k:03d}"}, 2) == ["part-000", "part-001"]
    with pytest.raises(MatchbenchError, match="shard_pattern"):
        fam.shard_names({"shard_pattern": "{n}"}, 1)
    with pytest.raises(MatchbenchError, match="expected a plain file name"):
        get_family("ilias").shard_names({"shard_pattern": "a/{k}"}, 1)
    with pytest.raises(MatchbenchError, match="is not named by shard_pattern"):
        fam.download_shard(Path("unused"), OPTS, "part-000")
