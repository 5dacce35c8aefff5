"""Mini-world correspondence pairs, written in the layouts of the real benchmarks.

Objects of the mini-world's shape categories (polygons whose vertices are the semantic
keypoints) are seen in several images each, under a limited rotation (default +-30 degrees,
so that "the top corner" means the same thing in every image, as SPair-71k's mostly upright
objects do), a scale, an optional mirror, a position that may leave part of the object out of
frame, and an optional occluder in front of it; a small disc near vertex 0 tells the vertices
of a symmetric shape apart. Instances and images are disjoint across splits.

Everything about a scene is decided before anything is drawn (:func:`plan`), so visibility,
boxes and the difficulty flags are exact functions of the sampled transforms, and the writers
only serialise the plan:

- :func:`write_spair`: ``SPair-71k/`` as the official release lays it out (``JPEGImages``,
  ``ImageAnnotation``, ``PairAnnotation/{trn,val,test}``, ``Layout/large/{trn,val,test}.txt``);
- :func:`write_pfpascal`: ``PF-dataset-PASCAL/{JPEGImages,Annotations}`` + ``<split>_pairs.csv``;
- :func:`write_ap10k`: the ``ap-10k`` folder as GeoAware-SC's ``prepare_ap10k.sh`` leaves it.

The output is a pure function of the seed and the options: JPEG quality is fixed, no file
carries a timestamp, and a rerun writes the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from matchbench.data.synth.world import (
    CATEGORIES,
    TEXTURES,
    Instance,
    View,
    keypoints,
    make_instance,
    render_scene,
)
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json, write_text
from matchbench.progress import bar as progress_bar

SPLITS = ("train", "val", "test")
SPAIR_SPLIT = {"train": "trn", "val": "val", "test": "test"}
# SPair-71k's ImageAnnotation lists 30 keypoint slots for every category (GeoAware-SC's
# utils_dataset.load_spair_data reads kps["0"] ... kps["29"]); unused slots are null.
SPAIR_KPS_SLOTS = 30


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SceneOptions:
    """What the correspondence scenes look like (the ``miniworld-spair`` family's options)."""

    categories: tuple[str, ...] = tuple(CATEGORIES)
    image_size: tuple[int, int] = (64, 112)  # each side drawn uniformly in [min, max] pixels
    pairs: Mapping[str, int] = field(default_factory=lambda: {"train": 600, "val": 0, "test": 300})
    images_per_category: Mapping[str, int] = field(
        default_factory=lambda: {"train": 24, "val": 0, "test": 16}
    )
    instances_per_category: int = 8  # per split
    rotation: float = 30.0  # degrees, uniform in [-rotation, rotation]
    scale: tuple[float, float] = (0.22, 0.4)  # object radius / shorter image side
    mirror_prob: float = 0.3
    truncation_prob: float = 0.15
    occlusion_prob: float = 0.25
    max_clutter: int = 3
    gradient: bool = True
    textures: tuple[str, ...] = TEXTURES
    mark: bool = True
    min_keypoints: int = 1  # a pair needs at least this many keypoints visible in both
    jpeg_quality: int = 90


OPTION_HELP = {
    "seed": "non-negative integer; the same seed writes the same bytes",
    "categories": f"non-empty subset of {list(CATEGORIES)}",
    "image_size": "[min, max] side in pixels (16 <= min <= max)",
    "pairs": "{train, val, test} number of pairs",
    "images_per_category": "{train, val, test} images per category",
    "instances_per_category": "objects per category and split (>= 1)",
    "rotation": "maximum rotation in degrees (0-90)",
    "scale": "[min, max] object radius as a fraction of the shorter side (0 < min <= max <= 1)",
    "mirror_prob": "probability in [0, 1]",
    "truncation_prob": "probability in [0, 1]",
    "occlusion_prob": "probability in [0, 1]",
    "max_clutter": "non-negative integer",
    "gradient": "true or false",
    "textures": f"non-empty subset of {list(TEXTURES)}",
    "mark": "true or false",
    "min_keypoints": "integer >= 1",
    "jpeg_quality": "integer 1-95",
}


def scene_options(options: Mapping[str, Any], where: str = "miniworld-spair") -> SceneOptions:
    """Check a config's options (all but ``seed`` and ``progress``) into :class:`SceneOptions`."""
    unknown = sorted(set(options) - set(OPTION_HELP) - {"progress"})
    if unknown:
        raise MatchbenchError(
            f"dataset {where}: unknown option(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(OPTION_HELP))})"
        )
    d = SceneOptions()
    o = {k: v for k, v in options.items() if k not in ("seed", "progress")}

    def bad(key: str) -> MatchbenchError:
        return MatchbenchError(
            f"dataset {where}: option {key} = {o[key]!r}, expected {OPTION_HELP[key]}"
        )

    def integer(key: str, default: int, lo: int, hi: int | None = None) -> int:
        v = o.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise bad(key)
        return v

    def number(key: str, default: float, lo: float, hi: float) -> float:
        v = o.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
            raise bad(key)
        return float(v)

    def flag(key: str, default: bool) -> bool:
        v = o.get(key, default)
        if not isinstance(v, bool):
            raise bad(key)
        return v

    def subset(key: str, default: tuple[str, ...], known: Sequence[str]) -> tuple[str, ...]:
        v = o.get(key, default)
        if (
            not isinstance(v, list | tuple)
            or not v
            or any(x not in known for x in v)
            or len(set(v)) != len(v)
        ):
            raise bad(key)
        return tuple(v)

    def per_split(key: str, default: Mapping[str, int]) -> dict[str, int]:
        v = o.get(key, default)
        if not isinstance(v, Mapping) or set(v) - set(SPLITS):
            raise bad(key)
        out = {s: v.get(s, 0) for s in SPLITS}
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in out.values()):
            raise bad(key)
        return out

    def span(key: str, default: tuple, lo: float, hi: float, kind: type) -> tuple:
        v = o.get(key, default)
        ok = (
            isinstance(v, list | tuple)
            and len(v) == 2
            and all(isinstance(x, kind | int) and not isinstance(x, bool) for x in v)
            and lo <= v[0] <= v[1] <= hi
        )
        if not ok or (kind is float and v[0] <= 0):
            raise bad(key)
        return (kind(v[0]), kind(v[1]))

    opts = SceneOptions(
        categories=subset("categories", d.categories, list(CATEGORIES)),
        image_size=span("image_size", d.image_size, 16, 4096, int),
        pairs=per_split("pairs", d.pairs),
        images_per_category=per_split("images_per_category", d.images_per_category),
        instances_per_category=integer("instances_per_category", d.instances_per_category, 1),
        rotation=number("rotation", d.rotation, 0, 90),
        scale=span("scale", d.scale, 0, 1, float),
        mirror_prob=number("mirror_prob", d.mirror_prob, 0, 1),
        truncation_prob=number("truncation_prob", d.truncation_prob, 0, 1),
        occlusion_prob=number("occlusion_prob", d.occlusion_prob, 0, 1),
        max_clutter=integer("max_clutter", d.max_clutter, 0),
        gradient=flag("gradient", d.gradient),
        textures=subset("textures", d.textures, TEXTURES),
        mark=flag("mark", d.mark),
        min_keypoints=integer("min_keypoints", d.min_keypoints, 1),
        jpeg_quality=integer("jpeg_quality", d.jpeg_quality, 1, 95),
    )
    for split in SPLITS:
        if opts.pairs[split] and opts.images_per_category[split] < 2:
            raise MatchbenchError(
                f"dataset {where}: option pairs.{split} = {opts.pairs[split]} needs "
                f"images_per_category.{split} >= 2"
            )
    return opts


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, eq=False)
class Scene:
    """One image: an instance in a view, with its ground truth (integer pixel coordinates)."""

    name: str  # file stem, unique within its category
    split: str  # train / val / test
    category: str
    instance: int  # index of the instance in its (split, category) pool
    obj: Instance
    view: View
    width: int
    height: int
    occluder: tuple[float, float, float, float] | None  # x1, y1, x2, y2 (pixel centres)
    occluder_grey: float
    kps: np.ndarray  # (K, 2) int64, every vertex, rounded to the nearest pixel
    in_frame: np.ndarray  # (K,) bool
    visible: np.ndarray  # (K,) bool: in frame and not under the occluder
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2 of the object, clipped to the image

    @property
    def truncated(self) -> bool:
        return bool((~self.in_frame).any())

    @property
    def occluded(self) -> bool:
        return bool((self.in_frame & ~self.visible).any())

    @property
    def radius(self) -> float:
        """Object radius in pixels (what scale variation compares)."""
        return self.view.scale * min(self.width, self.height)


@dataclass(frozen=True, eq=False)
class Pair:
    name: str  # 000001-<src>-<trg>:<category>
    pair_id: int  # running number within the split, from 1
    split: str
    category: str
    src: Scene
    trg: Scene
    kps_ids: np.ndarray  # indices of the keypoints visible in both
    rotation_range: float  # the rotation option, in degrees (viewpoint bins are relative to it)

    @property
    def flags(self) -> dict[str, int]:
        return difficulty_flags(self.src, self.trg, self.rotation_range)


def difficulty_flags(src: Scene, trg: Scene, rotation: float) -> dict[str, int]:
    """SPair-71k's difficulty flags, from the sampled transforms.

    ``viewpoint_variation`` and ``scale_variation`` are 0 (easy), 1 (medium) or 2 (hard):
    viewpoint from the rotation difference (under half the rotation range, under the whole
    range, above), scale from the ratio of the object radii (< 1.5, < 2, above).
    ``truncation`` and ``occlusion`` are 0 (neither image), 1 (source only), 2 (target only),
    3 (both); ``mirror`` is 1 when exactly one of the two views is mirrored.
    """
    turn = abs(math.degrees(src.view.angle - trg.view.angle))
    viewpoint = 0 if turn < rotation / 2 else 1 if turn < rotation else 2
    ratio = max(src.radius, trg.radius) / min(src.radius, trg.radius)
    scale = 0 if ratio < 1.5 else 1 if ratio < 2.0 else 2
    return {
        "viewpoint_variation": viewpoint,
        "scale_variation": scale,
        "truncation": int(src.truncated) + 2 * int(trg.truncated),
        "occlusion": int(src.occluded) + 2 * int(trg.occluded),
        "mirror": int(src.view.mirror != trg.view.mirror),
    }


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _position(
    rng: np.random.Generator, offsets: np.ndarray, width: int, height: int, truncate: bool
) -> tuple[float, float]:
    """Object centre (pixels): wholly in frame, or sticking out of one side when ``truncate``."""
    lo, hi = offsets.min(axis=0), offsets.max(axis=0)
    size = np.array([width - 1, height - 1], dtype=np.float64)
    low, high = -lo, size - hi  # centre range keeping every vertex in frame
    centre = np.where(low <= high, low + rng.random(2) * np.maximum(high - low, 0), size / 2)
    if truncate:
        axis, side = int(rng.integers(2)), int(rng.integers(2))
        out = rng.uniform(0.15, 0.45) * (hi[axis] - lo[axis])  # how far it sticks out
        centre[axis] = -lo[axis] - out if side == 0 else size[axis] - hi[axis] + out
    return float(centre[0]), float(centre[1])


def _scene(
    rng: np.random.Generator,
    opts: SceneOptions,
    *,
    name: str,
    split: str,
    category: str,
    instance: int,
    obj: Instance,
) -> Scene:
    width, height = (int(v) for v in rng.integers(opts.image_size[0], opts.image_size[1] + 1, 2))
    bg = tuple(tuple(int(c) for c in rng.integers(0, 256, size=3)) for _ in range(2))
    if not opts.gradient:
        bg = (bg[0], bg[0])
    view = View(
        angle=math.radians(float(rng.uniform(-opts.rotation, opts.rotation))),
        scale=float(rng.uniform(*opts.scale)),
        cx=0.0,
        cy=0.0,
        mirror=bool(rng.random() < opts.mirror_prob),
        background=bg,  # type: ignore[arg-type]
        bg_angle=float(rng.uniform(0, 2 * math.pi)),
        clutter=int(rng.integers(0, opts.max_clutter + 1)),
        occluder=False,
    )
    offsets = keypoints(obj, view, width, height)  # centred on (0, 0)
    cx, cy = _position(rng, offsets, width, height, bool(rng.random() < opts.truncation_prob))
    view = replace(view, cx=cx / width, cy=cy / height)
    exact = keypoints(obj, view, width, height)
    kps = np.rint(exact).astype(np.int64)
    in_frame = (kps[:, 0] >= 0) & (kps[:, 0] < width) & (kps[:, 1] >= 0) & (kps[:, 1] < height)
    occluder, grey, visible = None, 128.0, in_frame.copy()
    if rng.random() < opts.occlusion_prob and in_frame.any():
        # A box over one in-frame vertex (and whatever else it reaches).
        j = int(rng.choice(np.flatnonzero(in_frame)))
        radius = view.scale * min(width, height)
        half = rng.uniform(0.2, 0.4, size=2) * radius
        centre = kps[j] + rng.uniform(-0.5, 0.5, size=2) * half
        occluder = (
            float(centre[0] - half[0]),
            float(centre[1] - half[1]),
            float(centre[0] + half[0]),
            float(centre[1] + half[1]),
        )
        grey = float(rng.uniform(60, 200))
        under = (
            (kps[:, 0] >= occluder[0])
            & (kps[:, 0] <= occluder[2])
            & (kps[:, 1] >= occluder[1])
            & (kps[:, 1] <= occluder[3])
        )
        visible &= ~under
    bbox = (
        max(0, math.floor(exact[:, 0].min())),
        max(0, math.floor(exact[:, 1].min())),
        min(width - 1, math.ceil(exact[:, 0].max())),
        min(height - 1, math.ceil(exact[:, 1].max())),
    )
    return Scene(
        name=name,
        split=split,
        category=category,
        instance=instance,
        obj=obj,
        view=view,
        width=width,
        height=height,
        occluder=occluder,
        occluder_grey=grey,
        kps=kps,
        in_frame=in_frame,
        visible=visible,
        bbox=bbox,  # type: ignore[arg-type]
    )


def _pairs_of(
    rng: np.random.Generator, scenes: list[Scene], n: int, opts: SceneOptions, where: str
) -> list[tuple[Scene, Scene]]:
    """``n`` distinct ordered pairs of different images (different objects when there are
    several) with at least ``min_keypoints`` keypoints visible in both."""
    valid = [
        (a, b)
        for a in scenes
        for b in scenes
        if a is not b
        and (a.instance != b.instance or opts.instances_per_category == 1)
        and int((a.visible & b.visible).sum()) >= opts.min_keypoints
    ]
    if len(valid) < n:
        raise MatchbenchError(
            f"dataset {where}: {scenes[0].split} {scenes[0].category}: only {len(valid)} valid "
            f"pairs for the {n} option pairs asks; raise images_per_category or "
            "instances_per_category, or lower min_keypoints / occlusion_prob / truncation_prob"
        )
    chosen = sorted(rng.choice(len(valid), size=n, replace=False).tolist())
    return [valid[i] for i in chosen]


def plan(
    seed: int, opts: SceneOptions, where: str = "miniworld-spair"
) -> tuple[list[Scene], list[Pair]]:
    """Every image and pair the options describe; no pixel is drawn."""
    scenes: list[Scene] = []
    pairs: list[Pair] = []
    cat_index = {c: k for k, c in enumerate(CATEGORIES)}
    for s, split in enumerate(SPLITS):
        per_cat = opts.images_per_category[split]
        total = opts.pairs[split]
        pair_id = 0
        if per_cat == 0:
            continue
        for c, category in enumerate(opts.categories):
            key = (s, cat_index[category])
            pool = _rng(seed, 1, *key)
            objects = [
                make_instance(pool, category, opts.textures)
                for _ in range(opts.instances_per_category)
            ]
            mine = []
            for i in range(per_cat):
                rng = _rng(seed, 2, *key, i)
                k = i % len(objects)  # every object seen, evenly (the pool is random)
                mine.append(
                    _scene(
                        rng,
                        opts,
                        name=f"{SPAIR_SPLIT[split]}_{i:04d}",
                        split=split,
                        category=category,
                        instance=k,
                        obj=objects[k],
                    )
                )
            scenes.extend(mine)
            # Pairs spread evenly over categories, the remainder to the first ones.
            n = total // len(opts.categories) + (c < total % len(opts.categories))
            for a, b in _pairs_of(_rng(seed, 3, *key), mine, n, opts, where):
                pair_id += 1
                pairs.append(
                    Pair(
                        name=f"{pair_id:06d}-{a.name}-{b.name}:{category}",
                        pair_id=pair_id,
                        split=split,
                        category=category,
                        src=a,
                        trg=b,
                        kps_ids=np.flatnonzero(a.visible & b.visible),
                        rotation_range=opts.rotation,
                    )
                )
    if not pairs:
        raise MatchbenchError(f"dataset {where}: the options describe no pair (option pairs)")
    return scenes, pairs


def _render_all(
    scenes: list[Scene], seed: int, opts: SceneOptions, progress: bool, desc: str
) -> dict[tuple[str, str], Any]:
    """Render every scene (its own random stream: the same image whatever else is drawn)."""
    images = {}
    cat_index = {c: k for k, c in enumerate(CATEGORIES)}
    for n, sc in enumerate(progress_bar(scenes, desc=desc, unit="img", disable=not progress)):
        rng = _rng(seed, 4, SPLITS.index(sc.split), cat_index[sc.category], n)
        images[sc.category, sc.name] = render_scene(
            sc.obj,
            sc.view,
            sc.width,
            sc.height,
            rng,
            mark=opts.mark,
            occluder=sc.occluder,
            occluder_grey=sc.occluder_grey,
        )
    return images


def _save_jpeg(img: Any, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No EXIF, no optimisation pass: same pixels and quality give the same bytes.
    img.save(path, format="JPEG", quality=quality, optimize=False)


def _points(kps: np.ndarray, ids: np.ndarray) -> list[list[int]]:
    return [[int(x), int(y)] for x, y in kps[ids]]


# --------------------------------------------------------------------------- SPair-71k


def _spair_image_annotation(sc: Scene) -> dict[str, Any]:
    kps = {
        str(i): (
            [int(sc.kps[i, 0]), int(sc.kps[i, 1])] if i < len(sc.kps) and sc.visible[i] else None
        )
        for i in range(max(SPAIR_KPS_SLOTS, len(sc.kps)))
    }
    return {
        "filename": f"{sc.name}.jpg",
        "src_database": "matchbench mini-world",
        "category": sc.category,
        "image_width": sc.width,
        "image_height": sc.height,
        "image_depth": 3,
        "pose": "Left" if sc.view.mirror else "Right",
        "truncated": int(sc.truncated),
        "occluded": int(sc.occluded),
        "difficult": 0,
        "bndbox": list(sc.bbox),
        "kps": kps,
    }


def _spair_pair_annotation(p: Pair) -> dict[str, Any]:
    return {
        "pair_id": p.pair_id,
        "filename": p.name,
        "src_imname": f"{p.src.name}.jpg",
        "trg_imname": f"{p.trg.name}.jpg",
        "src_imsize": [p.src.width, p.src.height, 3],
        "trg_imsize": [p.trg.width, p.trg.height, 3],
        "src_bndbox": list(p.src.bbox),
        "trg_bndbox": list(p.trg.bbox),
        "category": p.category,
        "src_pose": "Left" if p.src.view.mirror else "Right",
        "trg_pose": "Left" if p.trg.view.mirror else "Right",
        "src_kps": _points(p.src.kps, p.kps_ids),
        "trg_kps": _points(p.trg.kps, p.kps_ids),
        "kps_ids": [int(i) for i in p.kps_ids],
        **p.flags,
    }


def write_spair(
    root: str | Path, *, seed: int, progress: bool = True, **options: Any
) -> dict[str, Any]:
    """Write ``root/SPair-71k/`` in the official release's layout; returns a summary.

    ``options`` are those of :class:`SceneOptions` (checked by :func:`scene_options`).
    """
    opts = scene_options(options)
    scenes, pairs = plan(seed, opts)
    images = _render_all(scenes, seed, opts, progress, "mini-world SPair-71k")
    with atomic_dir(Path(root) / "SPair-71k") as tmp:
        for sc in scenes:
            _save_jpeg(
                images[sc.category, sc.name],
                tmp / "JPEGImages" / sc.category / f"{sc.name}.jpg",
                opts.jpeg_quality,
            )
            write_json(
                tmp / "ImageAnnotation" / sc.category / f"{sc.name}.json",
                _spair_image_annotation(sc),
            )
        for split in SPLITS:
            mine = [p for p in pairs if p.split == split]
            folder = tmp / "PairAnnotation" / SPAIR_SPLIT[split]
            folder.mkdir(parents=True, exist_ok=True)
            for p in mine:
                write_json(folder / f"{p.name}.json", _spair_pair_annotation(p))
            write_text(
                tmp / "Layout" / "large" / f"{SPAIR_SPLIT[split]}.txt",
                "".join(f"{p.name}\n" for p in mine),
            )
    return _summary(scenes, pairs)


def _summary(scenes: list[Scene], pairs: list[Pair]) -> dict[str, Any]:
    return {
        "images": len(scenes),
        "pairs": {s: sum(p.split == s for p in pairs) for s in SPLITS},
    }


# --------------------------------------------------------------------------- PF-PASCAL


def _plan_and_render(
    seed: int, progress: bool, options: dict[str, Any], desc: str
) -> tuple[SceneOptions, list[Scene], list[Pair], dict[tuple[str, str], Any]]:
    opts = scene_options(options)
    scenes, pairs = plan(seed, opts)
    return opts, scenes, pairs, _render_all(scenes, seed, opts, progress, desc)


def write_pfpascal(
    root: str | Path, *, seed: int, progress: bool = True, flips: bool = True, **options: Any
) -> dict[str, Any]:
    """Write ``root/pf-pascal/`` as the unified benchmark reads PF-PASCAL; returns a summary.

    ``PF-dataset-PASCAL/JPEGImages/<image>.jpg`` (one flat folder, so an image is named
    ``<class>_<scene>``), ``PF-dataset-PASCAL/Annotations/<class>/<image>.mat`` (``kps``:
    K x 2 with NaN rows for keypoints not visible; ``bbox``: 1 x 4, x1 y1 x2 y2) and
    ``{trn,val,test}_pairs.csv`` (``source_image``, ``target_image``, ``class`` 1-based, and
    on ``trn`` a ``flip`` column; with ``flips`` every training pair is listed a second time
    with ``flip = 1``, as the real training list does). PF-PASCAL's classes are VOC's: the
    k-th mini-world category is written as the k-th VOC class (``pfpascal.CLASSES``).
    """
    from scipy.io import savemat

    from matchbench.data.formats.pfpascal import CLASSES

    opts, scenes, pairs, images = _plan_and_render(seed, progress, options, "mini-world PF-PASCAL")
    if len(opts.categories) > len(CLASSES):
        raise MatchbenchError(f"write_pfpascal: at most {len(CLASSES)} categories")
    voc = {c: CLASSES[k] for k, c in enumerate(opts.categories)}

    def image_name(sc: Scene) -> str:
        return f"{voc[sc.category]}_{sc.name}"

    with atomic_dir(Path(root) / "pf-pascal") as tmp:
        data = tmp / "PF-dataset-PASCAL"
        for sc in scenes:
            _save_jpeg(
                images[sc.category, sc.name],
                data / "JPEGImages" / f"{image_name(sc)}.jpg",
                opts.jpeg_quality,
            )
            kps = sc.kps.astype(np.float64)
            kps[~sc.visible] = np.nan
            mat = data / "Annotations" / voc[sc.category] / f"{image_name(sc)}.mat"
            mat.parent.mkdir(parents=True, exist_ok=True)
            savemat(mat, {"kps": kps, "bbox": np.asarray([sc.bbox], dtype=np.float64)})
        for split in SPLITS:
            lines = ["source_image,target_image,class" + (",flip" if split == "train" else "")]
            for flip in (0, 1) if split == "train" and flips else (0,):
                for p in (p for p in pairs if p.split == split):
                    row = (
                        f"PF-dataset-PASCAL/JPEGImages/{image_name(p.src)}.jpg,"
                        f"PF-dataset-PASCAL/JPEGImages/{image_name(p.trg)}.jpg,"
                        f"{CLASSES.index(voc[p.category]) + 1}"
                    )
                    lines.append(row + (f",{flip}" if split == "train" else ""))
            write_text(tmp / f"{SPAIR_SPLIT[split]}_pairs.csv", "\n".join(lines) + "\n")
    return _summary(scenes, pairs) | {"classes": voc}


# --------------------------------------------------------------------------- AP-10K

# AP-10K's taxonomy is family/species; the mini-world's shapes get two families.
AP10K_FAMILY = {
    "triangle": "Polygonidae",
    "square": "Polygonidae",
    "pentagon": "Polygonidae",
    "hexagon": "Polygonidae",
    "star": "Figuridae",
    "cross": "Figuridae",
    "arrow": "Figuridae",
    "crescent": "Figuridae",
}
AP10K_KEYPOINTS = 17


def write_ap10k(
    root: str | Path, *, seed: int, progress: bool = True, **options: Any
) -> dict[str, Any]:
    """Write ``root/ap-10k/`` as GeoAware-SC's ``data/prepare_ap10k.sh`` leaves AP-10K.

    ``ImageAnnotation/<family>/<species>/<id:012d>.json`` holds the COCO annotation merged
    with its image record (``keypoints``: 17 x (x, y, v), v = 2 visible, 1 labelled but
    occluded, 0 out of frame at (0, 0); ``bbox``: x, y, w, h; ``name``, ``supercategory``,
    ``width``, ``height``, ``file_name``, ...), ``JPEGImages/<family>/<species>/<id:012d>.jpg``
    and ``PairAnnotation/{trn,val,test}/<src id>-<trg id>:<species>.json`` holding
    ``src_json_path`` / ``trg_json_path`` as written by the script (``data/ap-10k/...``).
    Unlike GeoAware-SC's script, pairs with fewer than 3 keypoints visible in both are kept,
    so that a reader's skip rule can be tested. The shapes' vertices fill the first keypoint
    slots; the others are unlabelled.
    """
    opts, scenes, pairs, images = _plan_and_render(seed, progress, options, "mini-world AP-10K")
    if max(len(CATEGORIES[c]) for c in opts.categories) > AP10K_KEYPOINTS:
        raise MatchbenchError(f"write_ap10k: a category has more than {AP10K_KEYPOINTS} vertices")
    ids = {id(sc): n + 1 for n, sc in enumerate(scenes)}

    def rel(sc: Scene) -> Path:
        return Path(AP10K_FAMILY[sc.category], sc.category, f"{ids[id(sc)]:012d}")

    with atomic_dir(Path(root) / "ap-10k") as tmp:
        for sc in scenes:
            _save_jpeg(
                images[sc.category, sc.name],
                tmp / "JPEGImages" / rel(sc).with_suffix(".jpg"),
                opts.jpeg_quality,
            )
            flat = []
            for i in range(AP10K_KEYPOINTS):
                if i < len(sc.kps) and sc.in_frame[i]:
                    flat += [int(sc.kps[i, 0]), int(sc.kps[i, 1]), 2 if sc.visible[i] else 1]
                else:
                    flat += [0, 0, 0]
            x1, y1, x2, y2 = sc.bbox
            write_json(
                tmp / "ImageAnnotation" / rel(sc).with_suffix(".json"),
                {
                    "id": ids[id(sc)],
                    "image_id": ids[id(sc)],
                    "category_id": list(CATEGORIES).index(sc.category) + 1,
                    "keypoints": flat,
                    "num_keypoints": int(sc.visible.sum()),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                    "file_name": f"{ids[id(sc)]:012d}.jpg",
                    "width": sc.width,
                    "height": sc.height,
                    "name": sc.category,
                    "supercategory": AP10K_FAMILY[sc.category],
                },
            )
        for p in pairs:
            src, trg = (
                f"data/ap-10k/ImageAnnotation/{rel(s).as_posix()}.json" for s in (p.src, p.trg)
            )
            name = f"{ids[id(p.src)]:012d}-{ids[id(p.trg)]:012d}:{p.category}"
            write_json(
                tmp / "PairAnnotation" / SPAIR_SPLIT[p.split] / f"{name}.json",
                {"src_json_path": src, "trg_json_path": trg},
            )
    return _summary(scenes, pairs)
