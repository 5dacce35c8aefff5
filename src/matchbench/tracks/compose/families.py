"""Compose dataset families: ``sugarcrepe``, ``aro``, ``docci`` and ``miniworld-vl``.

Each family's ``prepare`` reads the official layout through the readers of
``data/formats/`` (``sugarcrepe``, ``aro``, ``docci``, ``coco_captions``) and writes, under
``data/<dataset>/`` (the contract of ``tracks/compose/__init__.py``):

- ``images.parquet``: every image an item or caption uses (``class`` "", ``label`` -1);
  ids ``val2017/<stem>`` (SugarCrepe's COCO images), ``train2017/<stem>`` (a COCO-captions
  training corpus), ``docci/<example_id>``, and ``aro/<image stem>/<x>_<y>_<w>_<h>`` for
  ARO's crops, which ``prepare`` cuts out of the images as the official loader does and
  stores as PNG under ``images/aro/`` (one file per distinct box);
- ``captions.parquet``: ``image``, ``split``, ``alt``, ``rich`` (one row per COCO caption,
  with the image's rich description; one row per DOCCI record, in ``rich``);
- ``caption_pairs.parquet``: ``id``, ``benchmark``, ``category``, ``image``, ``positive``,
  ``negative`` for SugarCrepe and ARO items.

``miniworld-vl`` generates its raw files (``tracks/compose/synth.py``) in those same layouts
and is then prepared by the same code as the real downloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from matchbench.data import options_object, register_family, resolve_options
from matchbench.data.download import DOWNLOAD_OPTIONS, DOWNLOADS_DIR, fetch
from matchbench.data.formats import aro, coco_captions, docci, sugarcrepe
from matchbench.data.imagefolder import ImageRows
from matchbench.data.synth.world import CATEGORIES, TEXTURES
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json, write_parquet

TABLES = ("captions.parquet", "caption_pairs.parquet")
CAPTION_COLUMNS = ["image", "split", "alt", "rich"]
PAIR_COLUMNS = ["id", "benchmark", "category", "image", "positive", "negative"]
# DOCCI's splits in the contract's names: the two small qualitative sets count as val.
DOCCI_SPLITS = {"train": "train", "test": "test", "qual_dev": "val", "qual_test": "val"}

SUGARCREPE_BASE = "https://raw.githubusercontent.com/RAIVNLab/sugar-crepe/main/data"
COCO_VAL2017 = {
    "url": "http://images.cocodataset.org/zips/val2017.zip",
    "checksum": None,
    "filename": "val2017.zip",
    "extract": True,
}
SUGARCREPE_SOURCES = [
    {"url": f"{SUGARCREPE_BASE}/{name}.json", "checksum": None, "filename": f"{name}.json"}
    for name in sugarcrepe.FILES
] + [COCO_VAL2017]
# ARO's files are on Google Drive (the ids of dataset_zoo/aro_datasets.py, fetched there
# with gdown); the direct-download form below is Drive's, not the authors'.
_DRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
ARO_SOURCES = [
    {
        "url": _DRIVE + "1kX2iCHEv0CADL8dSO1nMdW-V0NqIAiP3",
        "checksum": None,
        "filename": aro.RELATION_FILE,
    },
    {
        "url": _DRIVE + "13tWvOrNOLHxl3Rm9cR3geAdHx2qR3-Tw",
        "checksum": None,
        "filename": aro.ATTRIBUTION_FILE,
    },
    {
        "url": _DRIVE + "1qaPlrwhGNMrR3a11iopZUT_GPP_LrgP9",
        "checksum": None,
        "filename": "vgr_vga_images.zip",
        "extract": True,
    },
]
DOCCI_SOURCES = [
    {
        "url": "https://storage.googleapis.com/docci/data/docci_descriptions.jsonlines",
        "checksum": None,
        "filename": docci.DESCRIPTIONS,
    },
    {
        "url": "https://storage.googleapis.com/docci/data/docci_images.tar.gz",
        "checksum": None,
        "filename": "docci_images.tar.gz",
        "extract": True,
    },
]
BOX_TOLERANCE = {
    "type": "number",
    "minimum": 0,
    "default": 2.0,
    "description": "pixels an ARO box may reach past its image (PIL pads the crop, as officially)",
}


# --------------------------------------------------------------------------- tables


class Tables:
    """The three tables of a prepared dataset, filled by the readers below."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.images = ImageRows(out_dir)
        self.captions: list[dict[str, str]] = []
        self.pairs: list[dict[str, str]] = []

    def image(self, image_id: str, path: Path, split: str, source: str | Path) -> str:
        return self.images.add(image_id, path, split, source)

    def write(self) -> None:
        if not self.images.rows:
            raise MatchbenchError(f"{self.out_dir}: no image to index")
        ids = [p["id"] for p in self.pairs]
        if len(set(ids)) != len(ids):
            raise MatchbenchError(f"{self.out_dir}: caption pair ids are not unique")
        index = self.images.frame()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_parquet(self.out_dir / "images.parquet", index)
        write_parquet(
            self.out_dir / "captions.parquet",
            pd.DataFrame(self.captions, columns=CAPTION_COLUMNS).astype(str),
        )
        write_parquet(
            self.out_dir / "caption_pairs.parquet",
            pd.DataFrame(self.pairs, columns=PAIR_COLUMNS).astype(str),
        )


def _find(raw_dir: Path, name: str, *subdirs: str) -> Path:
    """``name`` in the raw folder, its downloads, or the given sub-folders."""
    for folder in (raw_dir, raw_dir / DOWNLOADS_DIR, *(raw_dir / s for s in subdirs)):
        if (folder / name).exists():
            return folder / name
    raise MatchbenchError(
        f"{raw_dir}: {name} not found; run `matchbench download` for this dataset first"
    )


# --------------------------------------------------------------------------- readers


def add_sugarcrepe(t: Tables, data_dir: Path, image_root: Path) -> None:
    """The seven files (each present one), on COCO val2017 images."""
    base = sugarcrepe.data_dir(data_dir)
    for name in sugarcrepe.FILES:
        path = base / f"{name}.json"
        if not path.is_file():
            continue
        for item_id, item in sugarcrepe.read_file(path).items():
            image = sugarcrepe.image_path(image_root, item, path, item_id)
            t.pairs.append(
                {
                    "id": f"sugarcrepe/{name}/{item_id}",
                    "benchmark": "sugarcrepe",
                    "category": name,
                    "image": t.image(f"val2017/{image.stem}", image, "test", path),
                    "positive": item["caption"],
                    "negative": item["negative_caption"],
                }
            )


def add_aro(t: Tables, root: Path, images: Path, tolerance: float) -> None:
    """VG-Relation and VG-Attribution (the files in ``root``, ``image_path`` relative to
    ``images``), each item's box cropped into an image of its own (PNG, so the crop holds
    exactly the pixels the official loader passes on)."""
    files = [(b, root / n) for b, n in aro.FILES.items() if (root / n).is_file()]
    if not files:
        raise MatchbenchError(
            f"{root}: neither {aro.RELATION_FILE} nor {aro.ATTRIBUTION_FILE} found; run "
            "`matchbench download` for this dataset first"
        )
    crops = t.out_dir / "images" / "aro"
    cut: dict[str, tuple[str, Path]] = {}  # image id -> (crop path below crops/, its file)
    with atomic_dir(crops) as tmp:
        for benchmark, path in files:
            for item in aro.read_file(path, benchmark):
                src = images / item["image_path"]
                if not src.is_file():
                    raise MatchbenchError(f"{path}: item {item['index']}: image {src} not found")
                stem = Path(item["image_path"]).with_suffix("").as_posix()
                key = "_".join(f"{item[k]:g}" for k in aro.BOX_KEYS)
                image_id = f"aro/{stem}/{key}"
                if image_id not in cut:
                    with Image.open(src) as im:
                        box = aro.crop_box(item, im.size, path, tolerance)
                        dest = tmp / stem / f"{key}.png"
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        im.convert("RGB").crop(box).save(dest, format="PNG")
                    cut[image_id] = (f"{stem}/{key}.png", path)
                t.pairs.append(
                    {
                        "id": f"{benchmark}/{item['index']}",
                        "benchmark": benchmark,
                        "category": item["category"],
                        "image": image_id,
                        "positive": item["true_caption"],
                        "negative": item["false_caption"],
                    }
                )
    for image_id, (rel, source) in cut.items():
        t.image(image_id, crops / rel, "test", source)


def add_docci(t: Tables, path: Path, images: Path) -> None:
    for rec in docci.read_descriptions(path):
        split = DOCCI_SPLITS.get(rec["split"])
        if split is None:
            raise MatchbenchError(
                f"{path}: {rec['example_id']}: unknown split {rec['split']!r} "
                f"(expected one of {', '.join(DOCCI_SPLITS)})"
            )
        image = docci.image_path(images, rec, path)
        image_id = t.image(f"docci/{rec['example_id']}", image, split, path)
        t.captions.append(
            {"image": image_id, "split": split, "alt": "", "rich": rec["description"]}
        )


def add_corpus(t: Tables, annotations: Path, images: Path, descriptions: Path | None) -> None:
    """A COCO-captions training corpus (alt-text), with DOCCI-format rich descriptions of the
    same images when ``descriptions`` is given (``image_file`` = the COCO ``file_name``)."""
    records, anns = coco_captions.read_captions(annotations)
    rich: dict[str, str] = {}
    if descriptions is not None:
        for rec in docci.read_descriptions(descriptions):
            rich[rec["image_file"]] = rec["description"]
    by_file = {im["file_name"]: im for im in records.values()}
    unknown = sorted(set(rich) - set(by_file))
    if unknown:
        raise MatchbenchError(
            f"{descriptions}: image_file {unknown[0]!r} is not an image of {annotations}"
        )
    captioned = set()
    for ann in anns:
        im = records[ann["image_id"]]
        path = coco_captions.image_path(images, im, annotations)
        image_id = t.image(
            f"{images.name}/{Path(im['file_name']).stem}", path, "train", annotations
        )
        captioned.add(im["file_name"])
        t.captions.append(
            {
                "image": image_id,
                "split": "train",
                "alt": ann["caption"],
                "rich": rich.get(im["file_name"], ""),
            }
        )
    for file_name in sorted(set(rich) - captioned):
        im = by_file[file_name]
        path = coco_captions.image_path(images, im, annotations)
        image_id = t.image(f"{images.name}/{Path(file_name).stem}", path, "train", annotations)
        t.captions.append({"image": image_id, "split": "train", "alt": "", "rich": rich[file_name]})


# --------------------------------------------------------------------------- families


def _download(sources: list[dict[str, Any]], raw_dir: Path, options: dict[str, Any]) -> None:
    """``fetch`` with the ``mirror`` and ``checksums`` options. A mirror serves each file under
    its ``filename``: the shared ``mirror_url`` takes the name from the URL, which ARO's
    Drive URLs do not carry, so those sources are pointed at the mirror here."""
    mirror = options.get("mirror")
    if mirror:
        base = mirror.rstrip("/")
        sources = [
            s
            if s["url"].rsplit("/", 1)[-1] == s["filename"]
            else {**s, "url": f"{base}/{s['filename']}"}
            for s in sources
        ]
    fetch(sources, raw_dir, base_url=mirror, checksums=dict(options.get("checksums") or {}))


def prepare_sugarcrepe(raw_dir: Path, out_dir: Path) -> None:
    for data in (raw_dir / DOWNLOADS_DIR, raw_dir / "sugarcrepe", raw_dir):
        if any(
            (data / f"{n}.json").is_file() or (data / "data" / f"{n}.json").is_file()
            for n in sugarcrepe.FILES
        ):
            break
    t = Tables(out_dir)
    add_sugarcrepe(t, data, _val2017(raw_dir))
    t.write()


def _val2017(raw_dir: Path) -> Path:
    for cand in (
        raw_dir / "val2017" / "val2017",
        raw_dir / "val2017",
        raw_dir / "coco" / "val2017",
    ):
        if cand.is_dir():
            return cand
    raise MatchbenchError(
        f"{raw_dir}: no val2017/ image folder (COCO 2017 val); run `matchbench download` for "
        "this dataset first"
    )


@register_family("sugarcrepe")
class SugarCrepe:
    """SugarCrepe (Hsieh et al. 2023): the seven official JSON files on COCO val2017."""

    name = "sugarcrepe"
    tables = TABLES
    options_schema = options_object(**DOWNLOAD_OPTIONS)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        _download(SUGARCREPE_SOURCES, Path(raw_dir), resolve_options(self, options))

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        resolve_options(self, options)
        prepare_sugarcrepe(Path(raw_dir), Path(out_dir))


def prepare_aro(raw_dir: Path, out_dir: Path, tolerance: float) -> None:
    """The JSON files downloaded (``.downloads/``) or in the raw folder (or ``aro/``), the
    images in an ``images/`` folder beside them or in the unpacked ``vgr_vga_images/``."""
    for root in (raw_dir / DOWNLOADS_DIR, raw_dir / "aro", raw_dir):
        if any((root / n).is_file() for n in aro.FILES.values()):
            break
    else:
        raise MatchbenchError(
            f"{raw_dir}: no {aro.RELATION_FILE} or {aro.ATTRIBUTION_FILE}; run `matchbench "
            "download` for this dataset first"
        )
    parent = raw_dir / "vgr_vga_images"
    images = aro.images_dir(parent if parent.is_dir() else root)
    t = Tables(out_dir)
    add_aro(t, root, images, tolerance)
    t.write()


@register_family("aro")
class Aro:
    """ARO's VG-Relation and VG-Attribution (Yuksekgonul et al. 2023), crops of their boxes."""

    name = "aro"
    tables = TABLES
    options_schema = options_object(**DOWNLOAD_OPTIONS, box_tolerance=BOX_TOLERANCE)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        _download(ARO_SOURCES, Path(raw_dir), resolve_options(self, options))

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        prepare_aro(Path(raw_dir), Path(out_dir), float(o["box_tolerance"]))


def _docci_images(raw_dir: Path) -> Path:
    for cand in (
        raw_dir / "docci_images" / "images",
        raw_dir / "docci_images",
        raw_dir / "images",
        raw_dir / "docci" / "images",
    ):
        if cand.is_dir():
            return cand
    raise MatchbenchError(
        f"{raw_dir}: no DOCCI images/ folder; run `matchbench download` for this dataset first"
    )


@register_family("docci")
class Docci:
    """DOCCI (Onoe et al. 2024): long human descriptions, for long-caption retrieval."""

    name = "docci"
    tables = TABLES
    options_schema = options_object(**DOWNLOAD_OPTIONS)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        _download(DOCCI_SOURCES, Path(raw_dir), resolve_options(self, options))

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        resolve_options(self, options)
        raw_dir = Path(raw_dir)
        t = Tables(Path(out_dir))
        add_docci(t, _find(raw_dir, docci.DESCRIPTIONS, "docci"), _docci_images(raw_dir))
        t.write()


# --------------------------------------------------------------------------- the mini-world


def _subset(known: list[str]) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {"enum": known},
        "minItems": 1,
        "uniqueItems": True,
        "default": known,
    }


def _vl_schema() -> dict[str, dict[str, Any]]:
    from matchbench.tracks.compose.synth import COLOURS, GROUPS, VLOptions

    d = VLOptions()
    return {
        "seed": {"type": "integer", "minimum": 0, "default": 0},
        "scenes": {
            "type": "object",
            "additionalProperties": False,
            "properties": {g: {"type": "integer", "minimum": 0} for g in GROUPS},
            "default": dict(d.counts),
            "description": "scenes of the training corpus and of each benchmark",
        },
        "image_size": {"type": "integer", "minimum": 32, "maximum": 1024, "default": 64},
        "objects": {
            "type": "array",
            "items": {"type": "integer", "minimum": 1, "maximum": 3},
            "minItems": 2,
            "maxItems": 2,
            "default": list(d.objects),
            "description": "[min, max] objects in a scene",
        },
        "shapes": _subset(list(CATEGORIES)),
        "colours": _subset(list(COLOURS)),
        "textures": _subset(list(TEXTURES)),
        "jpeg_quality": {"type": "integer", "minimum": 1, "maximum": 95, "default": 90},
        "box_tolerance": BOX_TOLERANCE,
        "progress": {"type": "boolean", "description": "show a progress bar (default true)"},
    }


@register_family("miniworld-vl")
class MiniWorldVL:
    """The mini-world's captions, SugarCrepe, ARO and DOCCI files, generated (no network)."""

    name = "miniworld-vl"
    tables = TABLES
    options_schema = options_object(**_vl_schema())
    GENERATOR_VERSION = 1

    def check_options(self, options: dict[str, Any], where: str) -> None:
        from matchbench.tracks.compose.synth import vl_options

        skip = ("seed", "progress", "box_tolerance")
        vl_options({k: v for k, v in options.items() if k not in skip}, where)

    def download(self, raw_dir: Path, options: dict[str, Any]) -> None:
        from matchbench.tracks.compose.synth import write_miniworld_vl

        opts = resolve_options(self, options)
        self.check_options(opts, self.name)  # before anything is written
        seed = opts.pop("seed")
        progress = opts.pop("progress", True)
        tol = opts.pop("box_tolerance")
        with atomic_dir(raw_dir) as tmp:
            summary = write_miniworld_vl(tmp, seed=seed, progress=progress, **opts)
            write_json(
                tmp / "MANIFEST.json",
                {
                    "source": self.name,
                    "generator_version": self.GENERATOR_VERSION,
                    "options": {"seed": seed, **opts, "box_tolerance": tol},
                    **summary,
                },
            )

    def prepare(self, raw_dir: Path, out_dir: Path, options: dict[str, Any]) -> None:
        o = resolve_options(self, options)
        raw_dir, out_dir = Path(raw_dir), Path(out_dir)
        t = Tables(out_dir)
        coco = raw_dir / "coco"
        add_corpus(
            t,
            coco / "annotations" / "captions_train2017.json",
            coco / "train2017",
            coco / "annotations" / "descriptions_train2017.jsonlines",
        )
        add_sugarcrepe(t, raw_dir / "sugarcrepe", coco / "val2017")
        add_aro(t, raw_dir / "aro", raw_dir / "aro" / "images", float(o["box_tolerance"]))
        add_docci(t, raw_dir / "docci" / docci.DESCRIPTIONS, raw_dir / "docci" / "images")
        t.write()


def read_tables(out_dir: str | Path) -> Mapping[str, pd.DataFrame]:
    """The three tables of a prepared compose dataset."""
    out_dir = Path(out_dir)
    return {name: pd.read_parquet(out_dir / name) for name in ("images.parquet", *TABLES)}
