"""ILIAS dataset families: ``ilias`` (the release) and ``miniworld-ilias`` (generated).

Both write and read ILIAS's own layout (``ilias-vrg/ilias`` ``download/README.md``,
``download/download_ilias.sh``)::

    <raw>/ilias_core/<instance>/query/Q{iii}_{qq}.jpg, Q{iii}_{qq}_bbox.txt, T{iii}.txt
    <raw>/ilias_core/<instance>/pos/P{iii}_{pp}.jpg, P{iii}_{pp}_bbox.txt
    <raw>/image_ids/{image_query_ids,text_query_ids,positive_ids}.txt
    <raw>/misc/taxonomy.json          {coarse: {mid: {fine: [instances]}}}
    <raw>/checksums.txt               "<sha256>  <url>" lines
    <raw>/yfcc100m/<shard>.tar        the distractors, webdataset members <key>.jpg

``download`` brings the core (everything but the shards); the distractors are a scatter of
independent jobs, one a shard (``shard_names``, ``download_shard``, ``distractor_count``), so
adding shards fetches only the new ones. ``prepare`` reads the core with the official
conventions and writes, atomically and sorted (the same bytes on a rerun):

- ``images.parquet`` (the common index): image queries **cropped to their box** as the
  official ``crop_resize`` does (``feature_extraction/src/datasets/generators.py``: the union
  of the ``Q*_bbox.txt`` lines, clipped to the image, after ``exif_transpose``), stored as PNG
  under ``crops/``, split ``query``; positives, whole, hard-linked (or copied) under
  ``images/``, split ``positive``; ``id`` the ILIAS id, ``class`` the taxonomy path
  ``<coarse>/<mid>/<fine>`` (the fine level alone is ambiguous: ILIAS has 43 fine categories
  named ``other``), ``label`` the instance's index among the sorted instances;
- ``retrieval_queries.parquet``: ``query`` (the ILIAS id), ``kind`` (``image`` | ``text``),
  ``instance``, ``text`` (a text query's description, ``""`` for an image query),
  ``n_positives``;
- ``retrieval_positives.parquet``: ``id``, ``instance``, ``scale``, ``clutter`` (from
  ``positive_ids.txt``).

The ground truth of a query is every positive of its instance (the official ``ILIAS.gt``).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from matchbench.data import INDEX_COLUMNS, options_object, register_family, resolve_options
from matchbench.data.download import DOWNLOADS_DIR, download_url, extract_archive, fetch
from matchbench.data.formats import ilias
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, atomic_path, read_json, write_json, write_parquet, write_text
from matchbench.tracks.retrieval import tables

QUERIES, POSITIVES = f"{tables.QUERIES}.parquet", f"{tables.POSITIVES}.parquet"
TABLES = (QUERIES, POSITIVES)
QUERY_COLUMNS, POSITIVE_COLUMNS = tables.QUERY_COLUMNS, tables.POSITIVE_COLUMNS

PORTAL = "https://vrg.fel.cvut.cz/ilias_data"
TAXONOMY_URL = "https://raw.githubusercontent.com/ilias-vrg/ilias/main/misc/taxonomy.json"
SHARD_PATTERN = "yfcc100m_{k:05d}"
SHARD_IMAGES = 100_000  # images in a YFCC100M shard of the release (download/README.md)
MAX_SHARDS = 100_000

CORE_DIR, IDS_DIR, MISC_DIR, SHARD_DIR = "ilias_core", "image_ids", "misc", "yfcc100m"
CORE_TAR, CHECKSUMS, TAXONOMY = "ilias_core.tar", "checksums.txt", "taxonomy.json"
CROPS, COPIES = "crops", "images"
MANIFEST = "MANIFEST.json"


# --------------------------------------------------------------------------- options

_PATTERN_OPTION = {
    "type": "string",
    "pattern": r"\{k(:[^{}]*)?\}",
    "default": SHARD_PATTERN,
    "description": "shard names as a Python format of k = 0, 1, ... (no .tar)",
}
_TOLERANCE_OPTION = {
    "type": "integer",
    "minimum": 0,
    "default": 2,
    "description": "pixels a query box may reach past its image (clipped, as officially)",
}


def _check_pattern(pattern: str) -> None:
    try:
        first, second = pattern.format(k=0), pattern.format(k=1)
    except (KeyError, IndexError, ValueError) as e:
        raise MatchbenchError(
            f"option shard_pattern {pattern!r}: not a format of k alone ({e})"
        ) from None
    for name in (first, second):
        if not name or "/" in name or "\\" in name or name in (".", "..") or name.endswith(".tar"):
            raise MatchbenchError(
                f"option shard_pattern {pattern!r} gives {name!r}: expected a plain file "
                "name without .tar"
            )
    if first == second:
        raise MatchbenchError(f"option shard_pattern {pattern!r}: gives one name for every k")


def shard_names(options: Mapping[str, Any], n: int) -> list[str]:
    """The first ``n`` shard names of ``options["shard_pattern"]``."""
    if n < 0:
        raise MatchbenchError(f"shard count {n}: expected 0 or more")
    pattern = options["shard_pattern"]
    _check_pattern(pattern)
    return [pattern.format(k=k) for k in range(n)]


def shard_index(options: Mapping[str, Any], name: str) -> int:
    """The k whose shard is ``name``."""
    pattern = options["shard_pattern"]
    _check_pattern(pattern)
    for k in range(MAX_SHARDS):
        if pattern.format(k=k) == name:
            return k
    raise MatchbenchError(
        f"shard {name!r} is not named by shard_pattern {pattern!r} (k < {MAX_SHARDS})"
    )


def _shard_path(raw_dir: Path, name: str, dest: str | Path | None) -> Path:
    """Where shard ``name`` goes: ``dest``, or ILIAS's ``<raw>/yfcc100m/<name>.tar``."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise MatchbenchError(f"shard {name!r}: expected a plain name (without .tar)")
    return Path(dest) if dest is not None else raw_dir / SHARD_DIR / f"{name}.tar"


# --------------------------------------------------------------------------- prepare


def read_taxonomy(path: Path) -> dict[str, str]:
    """``misc/taxonomy.json`` as {instance: "<coarse>/<mid>/<fine>"}."""
    data = read_json(path, "ILIAS taxonomy")
    out: dict[str, str] = {}
    bad = MatchbenchError(f"{path}: expected {{coarse: {{mid: {{fine: [instance names]}}}}}}")
    if not isinstance(data, dict):
        raise bad
    for coarse, mids in data.items():
        if not isinstance(mids, dict):
            raise bad
        for mid, fines in mids.items():
            if not isinstance(fines, dict):
                raise bad
            for fine, names in fines.items():
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise bad
                for n in names:
                    where = f"{coarse}/{mid}/{fine}"
                    if out.setdefault(n, where) != where:
                        raise MatchbenchError(f"{path}: instance {n!r} is in two categories")
    return out


def _image_size(path: Path) -> tuple[int, int]:
    """Width and height after ``exif_transpose`` (the frame boxes are given in), from the
    header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise MatchbenchError(f"{path}: not a readable image ({e})") from None
    return (h, w) if turned else (w, h)


def read_boxes(path: Path, width: int, height: int, tolerance: int) -> list[tuple[int, ...]]:
    """The ``x y w h`` lines of a ``*_bbox.txt`` (top-left corner and size, whole pixels);
    a box without area, or reaching more than ``tolerance`` pixels past the image, is an
    error naming the file and line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MatchbenchError(f"{path}: box file not found") from None
    except OSError as e:
        raise MatchbenchError(f"{path}: cannot read ({e.strerror})") from None
    boxes = []
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            x, y, w, h = (int(v) for v in line.split())
        except ValueError:
            raise MatchbenchError(
                f"{path}:{lineno}: expected 'x y w h' (four whole numbers), got {line!r}"
            ) from None
        if w <= 0 or h <= 0:
            raise MatchbenchError(f"{path}:{lineno}: box x={x} y={y} w={w} h={h} has no area")
        t = tolerance
        if x < -t or y < -t or x + w > width + t or y + h > height + t:
            raise MatchbenchError(
                f"{path}:{lineno}: box x={x} y={y} w={w} h={h} is outside the "
                f"{width}x{height} image (tolerance {t} px)"
            )
        boxes.append((x, y, w, h))
    if not boxes:
        raise MatchbenchError(f"{path}: no box")
    return boxes


def crop_box(boxes: list[tuple[int, ...]], width: int, height: int) -> tuple[int, int, int, int]:
    """The union of the boxes clipped to the image, as x0, y0, x1, y1 (``crop_resize``)."""
    x0 = min(max(0, min(b[0] for b in boxes)), width)
    y0 = min(max(0, min(b[1] for b in boxes)), height)
    x1 = min(max(0, max(b[0] + b[2] for b in boxes)), width)
    y1 = min(max(0, max(b[1] + b[3] for b in boxes)), height)
    return x0, y0, x1, y1


def _crop(src: Path, box: tuple[int, int, int, int], dest: Path) -> tuple[int, int]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(src) as im:
            img = ImageOps.exif_transpose(im).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise MatchbenchError(f"{src}: not a readable image ({e})") from None
    crop = img.crop(box)
    dest.parent.mkdir(parents=True, exist_ok=True)
    crop.save(dest, format="PNG")
    return crop.size


def _link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError:  # another file system, or none with links
        shutil.copyfile(src, dest)


def _empty_tables(out_dir: Path) -> None:
    write_parquet(out_dir / QUERIES, _queries([]))
    write_parquet(out_dir / POSITIVES, _positives([]))


def _queries(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(sorted(rows, key=lambda r: r["query"]), columns=QUERY_COLUMNS)
    return df.astype(
        {"query": str, "kind": str, "instance": str, "text": str, "n_positives": "int64"}
    )


def _positives(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(sorted(rows, key=lambda r: r["id"]), columns=POSITIVE_COLUMNS)
    return df.astype({"id": str, "instance": str, "scale": "float64", "clutter": "int64"})


def _index(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(sorted(rows, key=lambda r: r["id"]), columns=INDEX_COLUMNS)
    return df.astype({"label": "int64", "width": "int64", "height": "int64"})


def prepare_ilias(raw_dir: str | Path, out_dir: str | Path, box_tolerance: int = 2) -> None:
    """The three tables of the module docstring from an ILIAS layout. Every check runs
    before anything is written: an id with no file, an image query without its box file or
    with a box outside its image, a query whose instance has no positive, an empty text
    query (each a one-line error naming the file)."""
    raw, out = Path(raw_dir), Path(out_dir)
    core = raw / CORE_DIR
    if not core.is_dir():
        raise MatchbenchError(f"{core}: not found; run `matchbench download` for this dataset")
    base = ilias.ids_dir(raw)
    ids = ilias.read_ids(raw)
    classes = read_taxonomy(raw / MISC_DIR / TAXONOMY)
    positives: dict[str, tuple[float, int]] = ids["positives"]
    inst_of = ilias.instance_of
    counts = Counter(inst_of(p) for p in positives)

    def file_of(item: str, listed_in: str) -> Path:
        path = core / item
        if not path.is_file():
            raise MatchbenchError(f"{base / listed_in}: id {item!r}: {path} not found")
        return path

    def n_positives(item: str, listed_in: str) -> int:
        inst = ilias.instance_of(item)
        if not counts[inst]:
            raise MatchbenchError(
                f"{base / listed_in}: query {item!r}: instance {inst!r} has no positive in "
                "positive_ids.txt"
            )
        return counts[inst]

    # 1. Read and check everything.
    crops: dict[str, tuple[Path, tuple[int, int, int, int]]] = {}
    query_rows: list[dict[str, Any]] = []
    for q in ids["image_queries"]:
        path = file_of(q, "image_query_ids.txt")
        n = n_positives(q, "image_query_ids.txt")
        w, h = _image_size(path)
        box_file = path.with_name(f"{path.stem}_bbox.txt")
        crops[q] = (path, crop_box(read_boxes(box_file, w, h, box_tolerance), w, h))
        query_rows.append(dict(zip(QUERY_COLUMNS, (q, "image", inst_of(q), "", n), strict=True)))
    for t in ids["text_queries"]:
        path = file_of(t, "text_query_ids.txt")
        n = n_positives(t, "text_query_ids.txt")
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise MatchbenchError(f"{path}: cannot read the text query ({e})") from None
        if not text:
            raise MatchbenchError(f"{path}: empty text query")
        query_rows.append(dict(zip(QUERY_COLUMNS, (t, "text", inst_of(t), text, n), strict=True)))
    sources = {p: file_of(p, "positive_ids.txt") for p in sorted(positives)}
    instances = sorted({ilias.instance_of(i) for i in [*crops, *sources, *ids["text_queries"]]})
    label = {inst: k for k, inst in enumerate(instances)}

    def row(item: str, path: str, split: str, size: tuple[int, int]) -> dict[str, Any]:
        inst = ilias.instance_of(item)
        return {
            "id": item,
            "path": path,
            "split": split,
            "class": classes.get(inst, ""),
            "label": label[inst],
            "instance": inst,
            "width": size[0],
            "height": size[1],
        }

    # 2. The images: crops decoded and stored losslessly, positives linked.
    from matchbench.data.imagefolder import check_image

    index = []
    with atomic_dir(out / CROPS) as tmp:
        for q, (src, box) in sorted(crops.items()):
            rel = Path(q).with_suffix(".png").as_posix()
            size = _crop(src, box, tmp / rel)
            index.append(row(q, f"{CROPS}/{rel}", "query", size))
    with atomic_dir(out / COPIES) as tmp:
        for p, src in sources.items():
            _link(src, tmp / p)
            index.append(row(p, f"{COPIES}/{p}", "positive", check_image(tmp / p)))

    # 3. The tables, the index last.
    pos_rows = [
        {"id": p, "instance": ilias.instance_of(p), "scale": s, "clutter": c}
        for p, (s, c) in positives.items()
    ]
    write_parquet(out / QUERIES, _queries(query_rows))
    write_parquet(out / POSITIVES, _positives(pos_rows))
    write_parquet(out / "images.parquet", _index(index))


def prepare_uned(raw_dir: str | Path, out_dir: str | Path) -> None:
    """``train/<instance>/<n>.jpg`` into ``images.parquet`` (split ``train``, ``instance``,
    ``label`` its index among the sorted instances, ``class`` its taxonomy path; paths into
    the raw folder), and empty retrieval tables (the family declares them)."""
    from matchbench.data.imagefolder import IMAGE_SUFFIXES, check_image

    raw, out = Path(raw_dir), Path(out_dir)
    train = raw / "train"
    if not train.is_dir():
        raise MatchbenchError(f"{train}: not found; run `matchbench download` for this dataset")
    classes = read_taxonomy(raw / MISC_DIR / TAXONOMY)
    instances = sorted(d.name for d in train.iterdir() if d.is_dir())
    rows = []
    for k, inst in enumerate(instances):
        for f in sorted((train / inst).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            w, h = check_image(f)
            rows.append(
                {
                    "id": f"train/{inst}/{f.stem}",
                    "path": os.path.relpath(f, out),
                    "split": "train",
                    "class": classes.get(inst, ""),
                    "label": k,
                    "instance": inst,
                    "width": w,
                    "height": h,
                }
            )
    if not rows:
        raise MatchbenchError(f"{train}: no images")
    out.mkdir(parents=True, exist_ok=True)
    _empty_tables(out)
    write_parquet(out / "images.parquet", _index(rows))


# --------------------------------------------------------------------------- ilias


def _checksum(sums: Mapping[str, str], name: str) -> str | None:
    return f"sha256:{sums[name]}" if name in sums else None


def shard_source(path: Path, name: str) -> tuple[Any, list[str]]:
    """A shard's images, as a function of the image size (``ShardImages``), and their ids:
    what ``matchbench extract --shard`` reads."""
    import functools

    from matchbench.tracks.retrieval.shards import ShardImages, ids, members

    if not Path(path).is_file():
        raise MatchbenchError(
            f"{path}: distractor shard {name} not found; run `matchbench download --shard {name}`"
        )
    found = members(path)
    if not found:
        raise MatchbenchError(f"{path}: distractor shard {name} holds no .jpg image")
    return functools.partial(ShardImages, Path(path), found), ids(name, found)


@register_family("ilias")
class Ilias:
    """ILIAS (Kordopatis-Zilos et al., CVPR 2025) from its portal (``base_url``): the core
    (``ilias_core.tar``, the id lists, ``checksums.txt``) and the taxonomy (``taxonomy_url``,
    the repository's ``misc/taxonomy.json``); each YFCC100M shard by ``download_shard``,
    checked against ``checksums.txt``. Shard names follow ``shard_pattern``: the default,
    ``yfcc100m_{k:05d}``, is the name the official extraction's features take
    (``features_distractors_00000.hdf5``) and could not be checked against the portal."""

    name = "ilias"
    tables = TABLES
    options_schema = options_object(
        base_url={
            "type": "string",
            "minLength": 1,
            "default": PORTAL,
            "description": "the portal, or a mirror: a URL or folder with checksums.txt, "
            "ilias_core.tar, image_ids/ and yfcc100m/",
        },
        taxonomy_url={
            "type": "string",
            "minLength": 1,
            "default": TAXONOMY_URL,
            "description": "misc/taxonomy.json of the official repository (a URL or file)",
        },
        shard_pattern=_PATTERN_OPTION,
        mini={
            "type": "boolean",
            "default": False,
            "description": "mini-ILIAS: the 5M distractors of mini_ilias_yfcc100m_ids.txt "
            "(accepted; not used yet)",
        },
        box_tolerance=_TOLERANCE_OPTION,
    )

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        raw, base = Path(raw_dir), o["base_url"].rstrip("/")
        raw.mkdir(parents=True, exist_ok=True)
        # checksums.txt first, afresh (it grows with the portal): it verifies the rest.
        fresh = raw / f"{CHECKSUMS}.new"
        fresh.unlink(missing_ok=True)
        download_url(f"{base}/{CHECKSUMS}", fresh, resume=False)
        from matchbench.tracks.retrieval.shards import read_checksums

        sums = read_checksums(fresh)
        os.replace(fresh, raw / CHECKSUMS)
        sources = [{"url": f"{base}/{CORE_TAR}", "checksum": _checksum(sums, CORE_TAR)}]
        sources += [
            {"url": f"{base}/{IDS_DIR}/{n}", "checksum": _checksum(sums, n)} for n in ilias.FILES
        ]
        sources += [
            {"url": o["taxonomy_url"], "filename": TAXONOMY, "checksum": _checksum(sums, TAXONOMY)}
        ]
        manifest = fetch(sources, raw)
        downloads = raw / DOWNLOADS_DIR
        with atomic_dir(raw / IDS_DIR) as tmp:
            for n in ilias.FILES:
                shutil.copyfile(downloads / n, tmp / n)
        with atomic_dir(raw / MISC_DIR) as tmp:
            shutil.copyfile(downloads / TAXONOMY, tmp / TAXONOMY)
        core = next(s for s in manifest["sources"] if s["filename"] == CORE_TAR)
        _extract_core(raw, raw / core["path"], core["sha256"])

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        prepare_ilias(raw_dir, out_dir, o["box_tolerance"])

    def shard_names(self, options: dict[str, Any], n: int) -> list[str]:
        return shard_names(resolve_options(self, options), n)

    def distractor_count(self, options: dict[str, Any]) -> int:
        resolve_options(self, options)
        return SHARD_IMAGES

    def shard_source(self, path: Path, options: dict[str, Any], name: str) -> tuple[Any, list[str]]:
        return shard_source(path, name)

    def download_shard(
        self, raw_dir: Path, options: dict[str, Any], name: str, dest: Path | None = None
    ) -> Path:
        """``<base_url>/yfcc100m/<name>.tar`` into ``dest`` (default
        ``raw_dir/yfcc100m/<name>.tar``), verified against ``raw_dir/checksums.txt`` and
        indexed (:func:`shards.members`) before it is renamed into place: a mismatch or a cut
        shard leaves no file."""
        from matchbench.tracks.retrieval.shards import members, read_checksums, verify

        o = resolve_options(self, options)
        raw = Path(raw_dir)
        dest = _shard_path(raw, name, dest)
        listed = raw / CHECKSUMS
        if not listed.is_file():
            raise MatchbenchError(f"{listed}: not found; run `matchbench download` first")
        sums = read_checksums(listed)
        file = f"{name}.tar"
        if file not in sums:
            raise MatchbenchError(
                f"{listed}: no checksum for {file} (check shard_pattern, or download the core "
                "again for a newer checksums.txt)"
            )
        if dest.is_file():
            try:
                verify(dest, sums, name=file)
                return dest
            except MatchbenchError:
                dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f"{dest.name}.download")
        url = f"{o['base_url'].rstrip('/')}/{SHARD_DIR}/{file}"
        download_url(url, part, checksum=f"sha256:{sums[file]}")
        try:
            members(part)
        except MatchbenchError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, dest)
        return dest


def _extract_core(raw: Path, tar: Path, digest: str) -> None:
    """``ilias_core.tar`` into ``raw/ilias_core/`` (its top folder ``ilias_core/``, as
    ``download_ilias.sh`` extracts it beside the tar; a tar without one is taken as the
    folder's content), unless the same tar was extracted there already."""
    stamp = raw / DOWNLOADS_DIR / f"{CORE_TAR}.extracted"
    dest = raw / CORE_DIR
    if dest.is_dir() and stamp.is_file() and stamp.read_text().strip() == digest:
        return
    staging = raw / f".{CORE_DIR}.extract"
    extract_archive(tar, staging)
    entries = list(staging.iterdir())
    top = staging / CORE_DIR if [e.name for e in entries] == [CORE_DIR] else staging
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(top, dest)
    shutil.rmtree(staging, ignore_errors=True)
    write_text(stamp, digest + "\n")


# --------------------------------------------------------------------------- the mini-world


def _miniworld_schema() -> dict[str, dict[str, Any]]:
    def count(default: int, maximum: int, what: str) -> dict[str, Any]:
        return {
            "type": "integer",
            "minimum": 1,
            "maximum": maximum,
            "default": default,
            "description": what,
        }

    def span(item: dict[str, Any], default: list[Any], what: str) -> dict[str, Any]:
        return {
            "type": "array",
            "items": item,
            "minItems": 2,
            "maxItems": 2,
            "default": default,
            "description": f"[min, max] {what}",
        }

    return {
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "part": {
            "enum": ["core", "uned"],
            "default": "core",
            "description": "core: ILIAS's layout and distractor shards; uned: a training set "
            "of other instances (train/<instance>/<n>.jpg) for the linear adaptation",
        },
        "instances": count(60, 1000, "core instances"),
        "group_size": count(3, 16, "instances sharing a shape and colour"),
        "image_queries": count(1, 99, "image queries per instance"),
        "positives": count(5, 99, "positives per instance"),
        "image_size": {"type": "integer", "minimum": 32, "maximum": 1024, "default": 96},
        "shard_size": count(2500, 99_999, "distractors per shard"),
        "near_duplicates": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.3,
            "description": "share of distractors around a near-duplicate of a core instance",
        },
        "object_scale": span(
            {"type": "number", "minimum": 0.02, "maximum": 0.4},
            [0.09, 0.26],
            "radius of a positive's (and a distractor's) object, as a share of the image side",
        ),
        "clutter": span(
            {"type": "integer", "minimum": 0, "maximum": 32},
            [1, 8],
            "number of other objects in a positive's (and a distractor's) image",
        ),
        "occlusion": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "default": 0.5,
            "description": "chance that one of them stands in front of the object",
        },
        "uned_instances": count(150, 9000, "instances of part uned"),
        "uned_views": count(8, 999, "images per instance of part uned"),
        "jpeg_quality": {"type": "integer", "minimum": 1, "maximum": 95, "default": 90},
        "shard_pattern": _PATTERN_OPTION,
        "box_tolerance": _TOLERANCE_OPTION,
        "progress": {"type": "boolean", "description": "show a progress bar (default true)"},
    }


@register_family("miniworld-ilias")
class MiniWorldIlias:
    """ILIAS's layout generated from a seed (``tracks/retrieval/synth.py``), prepared by the
    real family's code. Part ``core``: the core, ``checksums.txt`` (``ilias_core.tar`` only;
    a shard is checked when the file lists it) and, one job a shard, distractor shards that
    depend on the seed, their index and the options alone. Part ``uned``: other instances
    for training (disjoint in look from the core of the same ``seed``, ``instances`` and
    ``group_size``)."""

    name = "miniworld-ilias"
    tables = TABLES
    options_schema = options_object(**_miniworld_schema())
    GENERATOR_VERSION = 1

    def check_options(self, options: dict[str, Any], where: str) -> None:
        from matchbench.tracks.retrieval.synth import IliasOptions

        IliasOptions.of(options, where)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        from matchbench.tracks.retrieval.synth import IliasOptions, write_core, write_uned

        o = resolve_options(self, options)
        raw = Path(raw_dir)
        raw.mkdir(parents=True, exist_ok=True)
        # Each part is replaced whole; the shards beside them stay (their own jobs).
        (raw / MANIFEST).unlink(missing_ok=True)
        gen = IliasOptions.of(o)
        write = write_core if o["part"] == "core" else write_uned
        summary = write(raw, seed=o["seed"], opts=gen, progress=o.get("progress", True))
        recorded = {k: v for k, v in o.items() if k != "progress"}
        write_json(
            raw / MANIFEST,
            {
                "source": self.name,
                "generator_version": self.GENERATOR_VERSION,
                "options": recorded,
                **summary,
            },
        )

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        if o["part"] == "uned":
            prepare_uned(raw_dir, out_dir)
        else:
            prepare_ilias(raw_dir, out_dir, o["box_tolerance"])

    def shard_names(self, options: dict[str, Any], n: int) -> list[str]:
        return shard_names(self._core(options), n)

    def distractor_count(self, options: dict[str, Any]) -> int:
        return int(self._core(options)["shard_size"])

    def shard_source(self, path: Path, options: dict[str, Any], name: str) -> tuple[Any, list[str]]:
        return shard_source(path, name)

    def download_shard(
        self, raw_dir: Path, options: dict[str, Any], name: str, dest: Path | None = None
    ) -> Path:
        """Shard ``name`` generated into ``dest`` (default ``raw_dir/yfcc100m/<name>.tar``;
        a temporary file renamed), checked against ``raw_dir/checksums.txt`` when that lists
        it. Needs no other file: the shard is a function of the options and its name."""
        from matchbench.tracks.retrieval.shards import read_checksums, verify
        from matchbench.tracks.retrieval.synth import IliasOptions, write_shard

        o = self._core(options)
        raw = Path(raw_dir)
        index = shard_index(o, name)
        dest = _shard_path(raw, name, dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        listed = raw / CHECKSUMS
        sums = read_checksums(listed) if listed.is_file() else {}
        with atomic_path(dest) as tmp:
            with open(tmp, "wb") as f:
                write_shard(
                    f,
                    seed=o["seed"],
                    index=index,
                    opts=IliasOptions.of(o),
                    progress=o.get("progress", True),
                )
            if f"{name}.tar" in sums:
                verify(tmp, sums, name=f"{name}.tar")
        return dest

    def _core(self, options: dict[str, Any]) -> dict[str, Any]:
        o = resolve_options(self, options)
        if o["part"] != "core":
            raise MatchbenchError(
                f"dataset {self.name}: part {o['part']!r} has no distractors (part core has)"
            )
        return o
