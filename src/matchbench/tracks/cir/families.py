"""Composed image retrieval dataset families: ``cirr``, ``circo``, ``fashioniq``, ``miniworld-cir``.

``prepare`` reads each official layout through ``data/formats/`` (``cirr``, ``circo``,
``fashioniq``) and writes ``images.parquet``, ``cir_queries.parquet`` and
``cir_gallery.parquet`` as ``tracks/cir/tables.py`` describes. The annotations download from
the authors' repositories; CIRCO's gallery is COCO 2017 unlabeled (downloaded); CIRR's
images (NLVR2) and FashionIQ's are not freely downloadable, so those families read them from
the folder given in their option ``images``.

``miniworld-cir`` generates one benchmark (option ``benchmark``) in its real layout
(``tracks/cir/synth.py``) and is prepared by the same code as the real downloads. It also
writes the held ground truth of CIRR test1 / CIRCO test, as their evaluation servers keep
it, under ``<benchmark>/server/``, which ``prepare`` never reads: the root for
``matchbench score --annotations ... --split test1|test`` (see :class:`MiniWorldCIR`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from matchbench.data import options_object, register_family, resolve_options
from matchbench.data.download import DOWNLOAD_OPTIONS, DOWNLOADS_DIR, fetch
from matchbench.data.formats import circo, cirr, fashioniq
from matchbench.data.imagefolder import ImageRows
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, read_json, write_json, write_parquet
from matchbench.tracks.cir.tables import (
    GALLERY,
    GALLERY_COLUMNS,
    LIST_COLUMNS,
    QUERIES,
    QUERY_COLUMNS,
    TABLES,
    fashioniq_caption,
)

# The contract's split names; CIRR calls its test split test1.
CIRR_SPLITS = {"train": "train", "val": "val", "test1": "test"}

CIRR_BASE = "https://raw.githubusercontent.com/Cuberick-Orion/CIRR/cirr_dataset"
CIRR_SOURCES = [
    {"url": f"{CIRR_BASE}/{folder}/{kind}.rc2.{split}.json", "checksum": None}
    for split in cirr.SPLITS
    for folder, kind in (("captions", "cap"), ("image_splits", "split"))
]
CIRCO_BASE = "https://raw.githubusercontent.com/miccunifi/CIRCO/main/annotations"
COCO_UNLABELED = [
    {
        "url": "http://images.cocodataset.org/zips/unlabeled2017.zip",
        "checksum": None,
        "extract": True,
    },
    {
        "url": "http://images.cocodataset.org/annotations/image_info_unlabeled2017.zip",
        "checksum": None,
        "extract": True,
    },
]
CIRCO_SOURCES = [
    {"url": f"{CIRCO_BASE}/{split}.json", "checksum": None} for split in circo.SPLITS
] + COCO_UNLABELED
FASHIONIQ_BASE = "https://raw.githubusercontent.com/XiaoxiaoGuo/fashion-iq/master"
FASHIONIQ_SPLITS = ("train", "val", "test")
FASHIONIQ_SOURCES = [
    {"url": f"{FASHIONIQ_BASE}/{folder}/{kind}.{cat}.{split}.json", "checksum": None}
    for cat in fashioniq.CATEGORIES
    for split in FASHIONIQ_SPLITS
    for folder, kind in (("captions", "cap"), ("image_splits", "split"))
]
IMAGES_OPTION = {
    "type": ["string", "null"],
    "minLength": 1,
    "default": None,
    "description": "the folder of the dataset's images (not freely downloadable)",
}


# --------------------------------------------------------------------------- tables


class CIRTables:
    """``images.parquet`` and the two tables of tables.py, filled by the readers below."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.images = ImageRows(out_dir)
        self.queries: list[dict[str, Any]] = []
        self.gallery: list[dict[str, str]] = []

    def image(self, image_id: str, path: Path, split: str, source: str | Path) -> str:
        return self.images.add(image_id, path, split, source)

    def add_gallery(self, name: str, images: list[str]) -> None:
        self.gallery.extend({"gallery": name, "image": i} for i in images)

    def query(self, **row: Any) -> None:
        for c in LIST_COLUMNS:
            row[c] = [str(v) for v in row.get(c, [])]
        for c in QUERY_COLUMNS:
            row.setdefault(c, "")
        self.queries.append(row)

    def write(self) -> None:
        if not self.queries:
            raise MatchbenchError(f"{self.out_dir}: no composed query to index")
        ids = [q["id"] for q in self.queries]
        if len(set(ids)) != len(ids):
            dup = next(i for k, i in enumerate(ids) if i in ids[:k])
            raise MatchbenchError(f"{self.out_dir}: query id {dup!r} appears twice")
        index = self.images.frame()
        queries = pd.DataFrame(self.queries, columns=QUERY_COLUMNS)
        scalar = [c for c in QUERY_COLUMNS if c not in LIST_COLUMNS]
        queries[scalar] = queries[scalar].astype(str)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_parquet(self.out_dir / "images.parquet", index)
        write_parquet(self.out_dir / f"{QUERIES}.parquet", queries)
        write_parquet(
            self.out_dir / f"{GALLERY}.parquet",
            pd.DataFrame(self.gallery, columns=GALLERY_COLUMNS).astype(str),
        )


def _caption(text: str, where: str) -> str:
    if not text.strip():
        raise MatchbenchError(f"{where}: empty modification text")
    return text


# --------------------------------------------------------------------------- readers


def add_cirr(t: CIRTables, root: Path, images: Path, benchmark: str = "cirr") -> None:
    """Every split of a CIRR layout whose caption file is present; image paths from the
    ``image_splits`` files, relative to ``images`` (the folder of ``dev/``, ``test1/``, ``train/``)."""
    base = root / "cirr" if not (root / "captions").is_dir() and (root / "cirr").is_dir() else root
    found = [s for s in cirr.SPLITS if (base / "captions" / f"cap.rc2.{s}.json").is_file()]
    if not found:
        raise MatchbenchError(
            f"{base / 'captions'}: no CIRR caption file cap.rc2.<split>.json; run "
            "`matchbench download` for this dataset first"
        )
    for split in found:
        cap = cirr.captions_path(base, split)
        split_file = base / "image_splits" / f"split.rc2.{split}.json"
        if not split_file.is_file():
            raise MatchbenchError(f"{split_file}: not found (the image split of {cap.name})")
        paths = read_json(split_file)
        if not isinstance(paths, dict) or not all(isinstance(v, str) for v in paths.values()):
            raise MatchbenchError(f"{split_file}: expected an object mapping image names to paths")
        ours = CIRR_SPLITS[split]
        for name in sorted(paths):
            t.image(name, images / paths[name], ours, split_file)
        t.add_gallery(ours, sorted(paths))
        for q in cirr.read_queries(cap):
            where = f"{cap}: pairid {q['pairid']}"
            for role, name in (("reference", q["reference"]), ("target_hard", q["target"])):
                if name is not None and name not in paths:
                    raise MatchbenchError(f"{where}: {role} {name!r} is not in {split_file.name}")
            if q["target"] is not None and q["target"] not in q["members"]:
                raise MatchbenchError(
                    f"{where}: img_set.members lacks the target_hard {q['target']!r}"
                )
            stray = [m for m in q["members"] if m not in paths]
            if stray:
                raise MatchbenchError(
                    f"{where}: img_set member {stray[0]!r} is not in {split_file.name}"
                )
            caption = _caption(q["caption"], where)
            t.query(
                id=f"{ours}/{q['pairid']}",
                benchmark=benchmark,
                split=ours,
                gallery=ours,
                reference=q["reference"],
                caption=caption,
                captions=[caption],
                targets=[q["target"]] if q["target"] is not None else [],
                members=q["members"],
                submission=q["pairid"],
            )


def _coco_images(images: Path, info: Path | None) -> dict[str, Path]:
    """COCO 2017 unlabeled: image id -> file, from ``image_info_unlabeled2017.json`` where
    given, else from the folder's ``<id>.jpg`` files."""
    if info is not None:
        data = read_json(info)
        records = data.get("images") if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise MatchbenchError(f"{info}: expected a COCO image-info object with 'images'")
        out = {}
        for k, rec in enumerate(records):
            if not isinstance(rec, dict) or "id" not in rec or "file_name" not in rec:
                raise MatchbenchError(f"{info}: images[{k}]: expected 'id' and 'file_name'")
            out[str(int(rec["id"]))] = images / str(rec["file_name"])
        return out
    return {str(int(p.stem)): p for p in sorted(images.glob("*.jpg")) if p.stem.isdigit()}


def add_circo(t: CIRTables, root: Path, images: Path, info: Path | None) -> None:
    """CIRCO's val and test annotations (each present one) on the COCO unlabeled gallery."""
    found = [s for s in circo.SPLITS if (root / "annotations" / f"{s}.json").is_file()]
    if not found:
        raise MatchbenchError(
            f"{root / 'annotations'}: no CIRCO annotation file (val.json, test.json); run "
            "`matchbench download` for this dataset first"
        )
    gallery = _coco_images(images, info)
    source = info or images
    for image_id in sorted(gallery, key=int):
        t.image(image_id, gallery[image_id], "test", source)
    t.add_gallery("all", sorted(gallery, key=int))
    for split in found:
        ann = circo.annotations_path(root, split)
        # The reader keeps no shared_concept: take it from the same entries.
        entries = read_json(ann)
        for q, entry in zip(circo.read_queries(ann), entries, strict=True):
            where = f"{ann}: id {q['id']}"
            named = [("reference_img_id", q["reference"])]
            named += [("target_img_id", q["target"])] if q["target"] is not None else []
            named += [("gt_img_ids", g) for g in q["gt"] or []]
            for role, image_id in named:
                if image_id is None or str(image_id) not in gallery:
                    raise MatchbenchError(
                        f"{where}: {role} {image_id!r} is not an image of the COCO unlabeled gallery"
                    )
            if q["target"] is not None and q["gt"] and q["gt"][0] != q["target"]:
                raise MatchbenchError(f"{where}: gt_img_ids must start with target_img_id")
            caption = _caption(q["caption"], where)
            t.query(
                id=f"{split}/{q['id']}",
                benchmark="circo",
                split=split,
                gallery="all",
                reference=str(q["reference"]),
                caption=caption,
                captions=[caption],
                targets=[str(g) for g in q["gt"] or []],
                aspects=q["aspects"],
                shared_concept=str(entry.get("shared_concept", "")),
                submission=q["id"],
            )


def _fashioniq_image(images: Path, asin: str) -> Path:
    for suffix in (".png", ".jpg"):
        if (images / f"{asin}{suffix}").is_file():
            return images / f"{asin}{suffix}"
    return images / f"{asin}.png"


def add_fashioniq(t: CIRTables, root: Path, images: Path) -> None:
    """Every (category, split) caption file present, each on its category's gallery."""
    pairs = [
        (c, s)
        for c in fashioniq.CATEGORIES
        for s in FASHIONIQ_SPLITS
        if (root / "captions" / f"cap.{c}.{s}.json").is_file()
    ]
    if not pairs:
        raise MatchbenchError(
            f"{root / 'captions'}: no FashionIQ caption file cap.<category>.<split>.json; run "
            "`matchbench download` for this dataset first"
        )
    for cat, split in pairs:
        cap = fashioniq.captions_path(root, cat, split)
        gallery = fashioniq.read_gallery(root, cat, split)
        if gallery is None:
            others = [
                c
                for c in fashioniq.CATEGORIES
                if (root / "image_splits" / f"split.{c}.{split}.json").is_file()
            ]
            missing = root / "image_splits" / f"split.{cat}.{split}.json"
            if others:
                raise MatchbenchError(
                    f"{missing}: not found, while split.{others[0]}.{split}.json is: every "
                    "category needs its gallery"
                )
        queries = fashioniq.read_queries(cap)
        if gallery is None:  # no split file at all: the images the triplets name
            gallery = sorted({n for q in queries for n in (q["candidate"], q["target"]) if n})
        known = set(gallery)
        name = f"{cat}/{split}"
        for asin in gallery:
            t.image(asin, _fashioniq_image(images, asin), split, cap)
        t.add_gallery(name, list(gallery))
        for q in queries:
            where = f"{cap}: entry {q['index']}"
            for role, asin in (("candidate", q["candidate"]), ("target", q["target"])):
                if asin is not None and asin not in known:
                    raise MatchbenchError(
                        f"{where}: {role} {asin!r} is not in split.{cat}.{split}.json"
                    )
            for c in q["captions"] or [""]:
                _caption(c.strip(".?, "), where)
            text = fashioniq_caption(q["captions"])
            t.query(
                id=f"{cat}/{split}/{q['index']}",
                benchmark="fashioniq",
                split=split,
                category=cat,
                gallery=name,
                reference=q["candidate"],
                caption=text,
                captions=q["captions"],
                targets=[q["target"]] if q["target"] is not None else [],
                submission=q["index"],
            )


# --------------------------------------------------------------------------- families


def _download(
    sources: list[dict[str, Any]], raw_dir: Path, options: Mapping[str, Any], layout: bool
) -> None:
    """``fetch`` with the ``mirror`` and ``checksums`` options, then the JSON files copied into
    the official layout (``<folder>/<name>``, the folder taken from the URL) when ``layout``."""
    fetch(sources, raw_dir, base_url=options.get("mirror"), checksums=dict(options["checksums"]))
    if not layout:
        return
    by_folder: dict[str, list[str]] = {}
    for s in sources:
        if not s.get("extract"):
            folder, name = s["url"].rsplit("/", 2)[-2:]
            by_folder.setdefault(folder, []).append(name)
    for folder, names in by_folder.items():
        with atomic_dir(raw_dir / folder) as tmp:
            for name in names:
                shutil.copyfile(raw_dir / DOWNLOADS_DIR / name, tmp / name)


def _images_option(family: str, options: Mapping[str, Any], holds: str) -> Path:
    value = options.get("images")
    if not value:
        raise MatchbenchError(
            f"dataset {family}: option images is not set; its images are not freely "
            f"downloadable: set images to the folder that holds {holds}"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise MatchbenchError(f"dataset {family}: option images = {value!r}: no such folder")
    return path


def prepare_cirr(raw_dir: Path, out_dir: Path, images: Path, benchmark: str = "cirr") -> None:
    t = CIRTables(out_dir)
    add_cirr(t, raw_dir, images, benchmark)
    t.write()


@register_family("cirr")
class Cirr:
    """CIRR (Liu et al. 2021): composed queries on NLVR2 images; annotations downloaded,
    images read from the option ``images`` (the folder of ``dev/``, ``test1/``, ``train/``)."""

    name = "cirr"
    tables = TABLES
    options_schema = options_object(**DOWNLOAD_OPTIONS, images=IMAGES_OPTION)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        _download(CIRR_SOURCES, Path(raw_dir), resolve_options(self, options), layout=True)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        images = _images_option(self.name, o, "dev/, test1/ and train/ (NLVR2's images)")
        prepare_cirr(Path(raw_dir), Path(out_dir), images)


def _circo_images(raw_dir: Path) -> tuple[Path, Path | None]:
    for cand in (
        raw_dir / "COCO2017_unlabeled" / "unlabeled2017",
        raw_dir / "unlabeled2017" / "unlabeled2017",
        raw_dir / "unlabeled2017",
    ):
        if cand.is_dir():
            break
    else:
        raise MatchbenchError(
            f"{raw_dir}: no unlabeled2017/ image folder (COCO 2017 unlabeled); run `matchbench "
            "download` for this dataset first"
        )
    for info in (
        raw_dir / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
        raw_dir / "image_info_unlabeled2017" / "annotations" / "image_info_unlabeled2017.json",
    ):
        if info.is_file():
            return cand, info
    return cand, None


def prepare_circo(raw_dir: Path, out_dir: Path) -> None:
    images, info = _circo_images(raw_dir)
    t = CIRTables(out_dir)
    add_circo(t, raw_dir, images, info)
    t.write()


@register_family("circo")
class Circo:
    """CIRCO (Baldrati et al. 2023): several ground truths per query, on COCO 2017 unlabeled."""

    name = "circo"
    tables = TABLES
    options_schema = options_object(**DOWNLOAD_OPTIONS)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        _download(CIRCO_SOURCES, Path(raw_dir), resolve_options(self, options), layout=True)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        resolve_options(self, options)
        prepare_circo(Path(raw_dir), Path(out_dir))


def prepare_fashioniq(raw_dir: Path, out_dir: Path, images: Path) -> None:
    t = CIRTables(out_dir)
    add_fashioniq(t, raw_dir, images)
    t.write()


@register_family("fashioniq")
class FashionIQ:
    """FashionIQ (Wu et al. 2021): dress, shirt and toptee relative captions; annotations
    downloaded, images (``<asin>.png``) read from the option ``images``."""

    name = "fashioniq"
    tables = TABLES
    options_schema = options_object(**DOWNLOAD_OPTIONS, images=IMAGES_OPTION)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        _download(FASHIONIQ_SOURCES, Path(raw_dir), resolve_options(self, options), layout=True)

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        images = _images_option(self.name, o, "the <asin>.png images")
        prepare_fashioniq(Path(raw_dir), Path(out_dir), images)


# --------------------------------------------------------------------------- the mini-world


def _cir_schema() -> dict[str, dict[str, Any]]:
    from matchbench.tracks.cir.synth import BENCHMARKS, SPLITS

    splits = sorted({s for v in SPLITS.values() for s in v})
    count = {"type": "integer", "minimum": 0}
    return {
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "benchmark": {"enum": list(BENCHMARKS), "default": "cirr"},
        "queries": {
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {s: count for s in splits},
            "default": None,
            "description": "queries per split (FashionIQ: per category); null: the benchmark's",
        },
        "distractors": {
            "type": ["integer", "null"],
            "minimum": 0,
            "default": None,
            "description": "extra images per gallery (CIRR: per split; FashionIQ: per category)",
        },
        "queries_per_set": {"type": "integer", "minimum": 1, "maximum": 5, "default": 2},
        "similar": {"type": "integer", "minimum": 0, "maximum": 4, "default": 1},
        "max_gt": {"type": "integer", "minimum": 1, "maximum": 8, "default": 4},
        "image_size": {"type": "integer", "minimum": 32, "maximum": 1024, "default": 64},
        "objects": {
            "type": ["array", "null"],
            "items": {"type": "integer", "minimum": 1, "maximum": 3},
            "minItems": 2,
            "maxItems": 2,
            "default": None,
            "description": "[min, max] objects in a scene; null: [1, 3] ([1, 1] for FashionIQ)",
        },
        "jpeg_quality": {"type": "integer", "minimum": 1, "maximum": 95, "default": 90},
        "progress": {"type": "boolean", "description": "show a progress bar (default true)"},
    }


@register_family("miniworld-cir")
class MiniWorldCIR:
    """One composed retrieval benchmark of the mini-world, generated in its real layout
    under ``<raw>/<benchmark>/`` (``cirr``, ``circo`` or ``fashioniq``; ``triplets`` in ``cirr/``).

    ``<raw>/<benchmark>/server/`` holds the held ground truth of test1/test, for ``matchbench
    score --annotations <raw>/<benchmark>/server --split test1|test``: CIRR's
    ``server/captions/cap.rc2.test1.json`` (with ``target_hard``) and
    ``server/image_splits/split.rc2.test1.json``, CIRCO's ``server/annotations/test.json`` (with
    ``gt_img_ids``). The evaluation's test-server files are scored against it by::

        matchbench score --benchmark cirr --split test1 --annotations data/raw/mini-cirr/cirr/server \
            --predictions results/metrics/cir/mini-cirr/<model>.submission/cirr_test1_recall.json \
                          results/metrics/cir/mini-cirr/<model>.submission/cirr_test1_recall_subset.json \
            --model <model>
        matchbench score --benchmark circo --split test --annotations data/raw/mini-circo/circo/server \
            --predictions results/metrics/cir/mini-circo/<model>.submission/circo_test.json \
            --model <model>
    """

    name = "miniworld-cir"
    tables = TABLES
    options_schema = options_object(**_cir_schema())
    GENERATOR_VERSION = 1

    def check_options(self, options: dict[str, Any], where: str) -> None:
        from matchbench.tracks.cir.synth import cir_options

        cir_options({k: v for k, v in options.items() if k not in ("seed", "progress")}, where)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        from matchbench.tracks.cir.synth import write_miniworld_cir

        opts = resolve_options(self, options)
        self.check_options(opts, self.name)  # before anything is written
        seed = opts.pop("seed")
        progress = opts.pop("progress", True)
        bench = opts.pop("benchmark")
        with atomic_dir(raw_dir) as tmp:
            summary = write_miniworld_cir(
                tmp / _FOLDER[bench], benchmark=bench, seed=seed, progress=progress, **opts
            )
            write_json(
                tmp / "MANIFEST.json",
                {
                    "source": self.name,
                    "generator_version": self.GENERATOR_VERSION,
                    "options": {"seed": seed, "benchmark": bench, **opts},
                    **summary,
                },
            )

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        bench = o["benchmark"]
        raw, out = Path(raw_dir) / _FOLDER[bench], Path(out_dir)
        if bench in ("cirr", "triplets"):
            prepare_cirr(raw, out, raw, bench)
        elif bench == "circo":
            prepare_circo(raw, out)
        else:
            prepare_fashioniq(raw, out, raw / "images")


_FOLDER = {"cirr": "cirr", "triplets": "cirr", "circo": "circo", "fashioniq": "fashioniq"}


def read_tables(out_dir: str | Path) -> Mapping[str, pd.DataFrame]:
    """The three tables of a prepared composed-retrieval dataset."""
    out_dir = Path(out_dir)
    return {name: pd.read_parquet(out_dir / name) for name in ("images.parquet", *TABLES)}
