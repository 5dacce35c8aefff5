"""The mini-world's composed image retrieval benchmarks: scenes, exact edits, real layouts.

Scenes are those of the vision-language mini-world (``tracks/compose/synth.py``: one to three
objects with a shape, colour, size, texture and grid cell, on a dark or light background), so
a CLIP trained on its corpus knows every word. An :class:`Edit` changes a scene graph in one
known way (an object's colour, shape, size or texture; an object added or removed; an object
moved so that a relation flips; the background made dark or light) and says so in a
modification text in CIRR's free style ("change the red square to blue", "add a small green
plain star at the top left"), with a second phrasing for FashionIQ's two captions.

A scene graph (:func:`graph`) is the objects' shape, colour, size, texture and cell plus the
background's darkness; a target is the edited graph rendered afresh. Ground truth is exact
because every gallery holds each graph at most once (CIRR, FashionIQ: the target is the only
image with its graph), or, for CIRCO, exactly the 1-4 renders of a target graph (other poses,
another background of the same darkness): every ground truth satisfies the edit and no other
gallery image does. :func:`plan` builds all of it without drawing a pixel; the writers check
it (:func:`check_world`) before they write. Benchmark scenes (references, targets,
distractors) take held-out scene graphs (``_held_out`` of the compose mini-world), training
triplets the others, so no training triplet shows a benchmark scene.

From one seed :func:`write_miniworld_cir` writes one benchmark in its real layout:

- ``cirr``: ``captions/cap.rc2.{val,test1}.json``, ``image_splits/split.rc2.{val,test1}.json``,
  images ``dev/<name>.png``, ``test1/<name>.png`` (``Cuberick-Orion/CIRR``); an image set is a
  reference and five edits of it; each set gives ``queries_per_set`` queries, the set being
  their ``img_set.members``; test1 has no ``target_hard`` / ``target_soft``;
- ``triplets``: training triplets in CIRR's layout, split ``train`` (``train/<dir>/<name>.png``),
  one triplet per edit of a set;
- ``circo``: ``annotations/{val,test}.json`` (``miccunifi/CIRCO``; test without
  ``target_img_id`` / ``gt_img_ids``), the gallery in ``COCO2017_unlabeled/unlabeled2017/<id:012d>.jpg``
  with ``COCO2017_unlabeled/annotations/image_info_unlabeled2017.json``; each query's gallery
  also holds ``similar`` other edits of its reference;
- ``fashioniq``: ``captions/cap.<category>.<split>.json``, ``image_splits/split.<category>.<split>.json``,
  ``images/<asin>.png``. A category is a group of shapes (:data:`FASHIONIQ_SHAPES`: dress =
  triangle, arrow, crescent; shirt = square, pentagon, hexagon; toptee = star, cross); scenes
  hold one object by default and edits change an attribute (colour, shape within the group,
  size, texture).

The hidden splits (CIRR ``test1``, CIRCO ``test``) keep their ground truth where the real
benchmarks do, off the public files; the mini-world plays the evaluation server and writes
it, in the same official layout, under ``server/`` (:data:`SERVER_DIR`), a folder that
``prepare`` never reads:

- ``cirr``: ``server/captions/cap.rc2.test1.json`` (with ``target_hard`` / ``target_soft``)
  and ``server/image_splits/split.rc2.test1.json`` (the same gallery; paths relative to the
  benchmark's root, the scorer reads only the names);
- ``circo``: ``server/annotations/test.json`` (with ``target_img_id`` / ``gt_img_ids``).

In a run the benchmark's root is ``data/raw/<dataset>/<benchmark>`` (``miniworld-cir``), so the
test-server files the ``cir`` evaluation writes (``results/metrics/cir/<dataset>/<model>.submission/``)
are scored against it by::

    matchbench score --benchmark cirr --split test1 --annotations data/raw/mini-cirr/cirr/server \
        --predictions results/metrics/cir/mini-cirr/<model>.submission/cirr_test1_recall.json \
                      results/metrics/cir/mini-cirr/<model>.submission/cirr_test1_recall_subset.json \
        --model <model>
    matchbench score --benchmark circo --split test --annotations data/raw/mini-circo/circo/server \
        --predictions results/metrics/cir/mini-circo/<model>.submission/circo_test.json \
        --model <model>

(each writes ``results/metrics/cir/<benchmark>/<model>.json`` unless ``--out`` says otherwise).

Images are encoded as JPEG at ``jpeg_quality`` (the corpus a CLIP is trained on) and stored
decoded as PNG where the real dataset's images are PNG. The output is a pure function of the
seed and the options (canonical JSON, fixed encoders).
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from matchbench.data.synth.world import TEXTURES, View, render_objects
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json
from matchbench.progress import bar as progress_bar
from matchbench.tracks.compose.synth import (
    CELL_NAMES,
    COLOURS,
    GRID,
    RELATIONS,
    SHAPES,
    SIZES,
    TEXTURE_WORDS,
    Obj,
    Scene,
    VLOptions,
    _held_out,
    _instance,
    _rng,
    _sample_scene,
    _view,
    relation_holds,
)

BENCHMARKS = ("cirr", "circo", "fashioniq", "triplets")
EDIT_KINDS = ("colour", "shape", "size", "texture", "add", "remove", "relation", "background")
FASHIONIQ_KINDS = ("colour", "shape", "size", "texture")
FASHIONIQ_SHAPES: dict[str, tuple[str, ...]] = {
    "dress": ("triangle", "arrow", "crescent"),
    "shirt": ("square", "pentagon", "hexagon"),
    "toptee": ("star", "cross"),
}
# CIRCO's semantic aspects (Baldrati et al. 2023, Table 1) for each kind of edit.
ASPECTS: dict[str, tuple[str, ...]] = {
    "colour": ("direct addressing",),
    "texture": ("direct addressing",),
    "size": ("direct addressing", "comparative"),
    "shape": ("compare & change",),
    "add": ("addition",),
    "remove": ("negation",),
    "relation": ("spatial relations & background",),
    "background": ("spatial relations & background",),
}
CIRR_DIRS = {"train": "train", "val": "dev", "test1": "test1"}
SET_SIZE = 6  # CIRR's img_set: the reference and five images like it
DEFAULT_QUERIES: dict[str, dict[str, int]] = {
    "cirr": {"val": 150, "test1": 50},
    "circo": {"val": 100, "test": 50},
    "fashioniq": {"val": 60},  # per category
    "triplets": {"train": 1500},
}
DEFAULT_DISTRACTORS = {"cirr": 100, "circo": 150, "fashioniq": 30, "triplets": 0}
SPLITS = {
    "cirr": ("val", "test1"),
    "circo": ("val", "test"),
    "fashioniq": ("train", "val", "test"),
    "triplets": ("train",),
}
# Keys of the random streams: one per benchmark, so no two images share noise by accident.
_STREAM = {"cirr": 11, "circo": 12, "fashioniq": 13, "triplets": 14}
_NAMES = 999_999_999  # the stream that names a split's images
# The split whose ground truth only the benchmark's evaluation server holds; the mini-world
# writes it, in the same layout, under SERVER_DIR, a folder that ``prepare`` never reads.
HIDDEN_SPLIT = {"cirr": "test1", "circo": "test"}
SERVER_DIR = "server"


# --------------------------------------------------------------------------- scene graphs


def graph(scene: Scene) -> str:
    """The scene graph ground truth is defined on: objects (shape, colour, size, texture,
    cell) and the background's darkness; poses, exact colours and noise are not part of it."""
    return f"{scene.signature()}#{'dark' if scene.dark else 'light'}"


def _background(rng: np.random.Generator, dark: bool) -> tuple[Any, float]:
    """Two dim, desaturated colours of the given darkness, as the compose mini-world draws."""
    v0 = rng.uniform(0.15, 0.35) if dark else rng.uniform(0.55, 0.75)
    bg = []
    for _ in range(2):
        r, g, b = colorsys.hsv_to_rgb(
            rng.uniform(0, 1), rng.uniform(0, 0.2), v0 + rng.uniform(-0.08, 0.08)
        )
        bg.append((int(r * 255), int(g * 255), int(b * 255)))
    return (bg[0], bg[1]), float(rng.uniform(0, 2 * math.pi))


def _placed(o: Obj, rng: np.random.Generator, col: int, row: int, size: str) -> Obj:
    jitter = rng.uniform(-0.03, 0.03, size=2)
    return replace(
        o,
        col=col,
        row=row,
        size=size,
        cx=float((col + 0.5) / GRID + jitter[0]),
        cy=float((row + 0.5) / GRID + jitter[1]),
        scale=float(rng.uniform(*SIZES[size])),
        angle=math.radians(float(rng.uniform(-15, 15))),
        texture_angle=float(rng.uniform(0, math.pi)),
    )


def rejitter(scene: Scene, rng: np.random.Generator, name: str) -> Scene:
    """The same scene graph, posed and lit anew (another background of the same darkness)."""
    objs = tuple(_placed(o, rng, o.col, o.row, o.size) for o in scene.objects)
    background, angle = _background(rng, scene.dark)
    return replace(scene, name=name, objects=objs, background=background, bg_angle=angle)


def render_cir(scene: Scene, size: int, rng: np.random.Generator) -> Image.Image:
    """``tracks/compose/synth.render`` with the caller's random stream."""
    bg = View(0.0, 0.0, 0.0, 0.0, False, scene.background, scene.bg_angle, 0, False)
    return render_objects(
        [(_instance(o), _view(o)) for o in scene.objects], size, size, rng, background=bg
    )


# --------------------------------------------------------------------------- edits


@dataclass(frozen=True)
class Edit:
    kind: str  # one of EDIT_KINDS
    text: str  # CIRR-style modification text
    captions: tuple[str, str]  # FashionIQ-style: two phrasings of the same change
    scene: Scene  # the edited scene graph (the reference's poses where they stay)
    concept: str  # what the reference and the target share (CIRCO's shared_concept)


def _the(o: Obj) -> str:
    return f"the {o.colour} {o.shape}"


def _a(words: str) -> str:
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _pick(rng: np.random.Generator, options: list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _other(rng: np.random.Generator, values: tuple[str, ...], taken: set[str]) -> str | None:
    free = [v for v in values if v not in taken]
    return free[int(rng.integers(len(free)))] if free else None


def _concept(objs: tuple[Obj, ...], keep: int | None) -> str:
    """The shape kept by the edit (an object the edit does not touch, else the edited one's)."""
    others = [o for i, o in enumerate(objs) if i != keep]
    if others:
        return others[0].shape
    return objs[0].shape if keep is None else f"{objs[keep].colour} object"


def make_edit(scene: Scene, kind: str, rng: np.random.Generator, opts: VLOptions) -> Edit | None:
    """One edit of ``scene`` of the given kind, or None when the scene cannot take it."""
    objs = list(scene.objects)
    n = len(objs)
    k = int(rng.integers(n))
    o = objs[k]
    shapes, colours = {x.shape for x in objs}, {x.colour for x in objs}
    cells = {(x.col, x.row) for x in objs}
    if kind == "colour":
        new = _other(rng, opts.colours, colours)
        if new is None:
            return None
        objs[k] = replace(o, colour=new)
        text = _pick(
            rng,
            [
                f"change {_the(o)} to {new}",
                f"make {_the(o)} {new}",
                f"{_the(o)} should be {new}",
            ],
        )
        caps = (f"is {new}", f"has a {new} colour instead of {o.colour}")
        concept = _concept(scene.objects, None)
    elif kind == "shape":
        new = _other(rng, opts.shapes, shapes)
        if new is None:
            return None
        objs[k] = replace(o, shape=new)
        text = _pick(
            rng,
            [
                f"replace {_the(o)} with {_a(f'{o.colour} {new}')}",
                f"turn {_the(o)} into {_a(new)}",
            ],
        )
        caps = (f"is {_a(new)}", f"is shaped like {_a(new)} rather than {_a(o.shape)}")
        concept = _concept(scene.objects, k)
    elif kind == "size":
        new = "large" if o.size == "small" else "small"
        objs[k] = _placed(o, rng, o.col, o.row, new)
        text = _pick(rng, [f"make {_the(o)} {new}", f"{_the(o)} should be {new}"])
        caps = (f"is {new}", f"is {new} instead of {o.size}")
        concept = _concept(scene.objects, None)
    elif kind == "texture":
        new = _other(rng, opts.textures, {o.texture})
        if new is None:
            return None
        word, old = TEXTURE_WORDS[new], TEXTURE_WORDS[o.texture]
        objs[k] = replace(o, texture=new)
        text = _pick(rng, [f"make {_the(o)} {word}", f"change {_the(o)} to {word}"])
        caps = (f"is {word}", f"is {word} instead of {old}")
        concept = _concept(scene.objects, None)
    elif kind == "add":
        shape, colour = _other(rng, opts.shapes, shapes), _other(rng, opts.colours, colours)
        free = [c for c in CELL_NAMES if c not in cells]
        if n >= opts.objects[1] or shape is None or colour is None or not free:
            return None
        col, row = free[int(rng.integers(len(free)))]
        size = str(rng.choice(["small", "large"]))
        texture = opts.textures[int(rng.integers(len(opts.textures)))]
        new_obj = _placed(
            replace(o, shape=shape, colour=colour, texture=texture), rng, col, row, size
        )
        objs.append(new_obj)
        words = f"{size} {colour} {TEXTURE_WORDS[texture]} {shape}"
        where = CELL_NAMES[col, row]
        text = _pick(rng, [f"add {_a(words)} {where}", f"put {_a(words)} {where}"])
        caps = (f"has {_a(words)} {where}", f"also shows {_a(words)} {where}")
        concept = _concept(scene.objects, None)
    elif kind == "remove":
        if n < 2:
            return None
        del objs[k]
        text = _pick(rng, [f"remove {_the(o)}", f"take away {_the(o)}", f"without {_the(o)}"])
        caps = (f"has no {o.shape}", f"does not show {_the(o)}")
        concept = _concept(scene.objects, k)
    elif kind == "relation":
        if n < 2:
            return None
        j = int(rng.integers(n - 1))
        j = j + 1 if j >= k else j
        b = objs[j]
        choices = []
        for rel in RELATIONS:
            if relation_holds(o, rel, b):
                continue
            for cell in CELL_NAMES:
                if cell in cells:
                    continue
                moved = replace(o, col=cell[0], row=cell[1])
                if relation_holds(moved, rel, b):
                    choices.append((rel, cell))
        if not choices:
            return None
        rel, (col, row) = choices[int(rng.integers(len(choices)))]
        objs[k] = _placed(o, rng, col, row, o.size)
        where = CELL_NAMES[col, row]
        text = _pick(
            rng,
            [
                f"put {_the(o)} {rel} {_the(b)}, {where}",
                f"move {_the(o)} {where} so it is {rel} {_the(b)}",
            ],
        )
        caps = (f"has {_the(o)} {where}", f"shows {_the(o)} {rel} {_the(b)}")
        concept = _concept(scene.objects, None)
    elif kind == "background":
        shade = "light" if scene.dark else "dark"
        background, angle = _background(rng, not scene.dark)
        edited = replace(scene, background=background, bg_angle=angle, dark=not scene.dark)
        text = _pick(
            rng,
            [
                f"make the background {shade}",
                f"change the background to {shade}",
                f"on a {shade} background",
            ],
        )
        caps = (f"is on a {shade} background", f"has a {shade} background")
        return Edit(kind, text, caps, edited, _concept(scene.objects, None))
    else:
        raise ValueError(kind)
    return Edit(kind, text, caps, replace(scene, objects=tuple(objs)), concept)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class CIROptions:
    benchmark: str = "cirr"
    queries: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_QUERIES["cirr"]))
    distractors: int = DEFAULT_DISTRACTORS["cirr"]
    queries_per_set: int = 2  # CIRR: queries sharing one image set
    similar: int = 1  # CIRCO: other edits of each reference in the gallery
    max_gt: int = 4  # CIRCO: renders of each target graph, 1..max_gt
    image_size: int = 64
    objects: tuple[int, int] = (1, 3)
    jpeg_quality: int = 90


def cir_options(options: Mapping[str, Any], where: str = "miniworld-cir") -> CIROptions:
    """The generator's options (``benchmark`` and the rest; None or absent: the benchmark's
    default) into :class:`CIROptions`, checked where a schema cannot."""
    bench = str(options.get("benchmark", "cirr"))
    if bench not in BENCHMARKS:
        raise MatchbenchError(
            f"dataset {where}: option benchmark = {bench!r}, expected one of {', '.join(BENCHMARKS)}"
        )
    queries = dict(options.get("queries") or DEFAULT_QUERIES[bench])
    bad = [s for s in queries if s not in SPLITS[bench]]
    if bad:
        raise MatchbenchError(
            f"dataset {where}: option queries: unknown split {bad[0]!r} for {bench} "
            f"(splits: {', '.join(SPLITS[bench])})"
        )
    default_objects = (1, 1) if bench == "fashioniq" else (1, 3)
    objects = tuple(options.get("objects") or default_objects)
    if not 1 <= objects[0] <= objects[1] <= 3:
        raise MatchbenchError(
            f"dataset {where}: option objects = {list(objects)}, expected [min, max] with 1 <= min <= max <= 3"
        )
    d = CIROptions()
    distractors = options.get("distractors")
    return CIROptions(
        benchmark=bench,
        queries={s: int(n) for s, n in queries.items()},
        distractors=int(DEFAULT_DISTRACTORS[bench] if distractors is None else distractors),
        queries_per_set=int(options.get("queries_per_set") or d.queries_per_set),
        similar=int(options.get("similar", d.similar)),
        max_gt=int(options.get("max_gt") or d.max_gt),
        image_size=int(options.get("image_size") or d.image_size),
        objects=(int(objects[0]), int(objects[1])),
        jpeg_quality=int(options.get("jpeg_quality") or d.jpeg_quality),
    )


# --------------------------------------------------------------------------- plans


@dataclass
class Query:
    id: int  # CIRR pairid, CIRCO id, FashionIQ index in its caption file
    split: str
    category: str  # FashionIQ's, else ""
    reference: str  # image name (CIRR, FashionIQ) or str(id) (CIRCO)
    target: str
    edit: Edit
    gt: list[str]  # every gallery image of the target's graph, the target first
    members: list[str] = field(default_factory=list)  # CIRR img_set.members
    set_id: int = -1


@dataclass
class World:
    """One benchmark, planned: every image's scene, the galleries and the queries."""

    benchmark: str
    seed: int
    images: dict[str, Scene] = field(default_factory=dict)  # name -> scene, in drawing order
    image_split: dict[str, str] = field(default_factory=dict)  # name -> split folder
    galleries: dict[str, list[str]] = field(default_factory=dict)  # split or category/split
    queries: list[Query] = field(default_factory=list)

    def add(self, name: str, scene: Scene, gallery: str, split: str) -> str:
        self.images[name] = replace(scene, name=name)
        self.image_split[name] = split
        self.galleries.setdefault(gallery, []).append(name)
        return name


class _Sampler:
    """Scenes and edits of one gallery, each graph new to it, held out or not as asked."""

    def __init__(self, opts: VLOptions, held_out: bool, where: str) -> None:
        self.opts, self.held_out, self.where = opts, held_out, where
        self.used: set[str] = set()

    def fits(self, scene: Scene) -> bool:
        return graph(scene) not in self.used and _held_out(scene.signature()) == self.held_out

    def scene(self, rng: np.random.Generator) -> Scene:
        for _ in range(2000):
            sc = _sample_scene(rng, "x_0", "cir", self.opts)
            if self.fits(sc):
                self.used.add(graph(sc))
                return sc
        raise MatchbenchError(f"{self.where}: cannot sample a new scene graph; ask fewer images")

    def edits(
        self, scene: Scene, rng: np.random.Generator, count: int, kinds: tuple[str, ...]
    ) -> list[Edit]:
        """Up to ``count`` edits of distinct new graphs; each kind is drawn first and then
        tried a few times, so kinds that rarely land on a held-out graph keep their share."""
        out: list[Edit] = []
        left = list(kinds)
        while len(out) < count and left:
            # Kinds not yet used in this set first, so an image set mixes its changes.
            seen = {e.kind for e in out}
            fresh = [k for k in left if k not in seen] or left
            kind = fresh[int(rng.integers(len(fresh)))]
            for _ in range(40):
                e = make_edit(scene, kind, rng, self.opts)
                if e is None:
                    break
                if self.fits(e.scene):
                    self.used.add(graph(e.scene))
                    out.append(e)
                    break
            else:
                left.remove(kind)
                continue
            if e is None:
                left.remove(kind)
        return out


def _vl(opts: CIROptions, shapes: tuple[str, ...] = SHAPES) -> VLOptions:
    return VLOptions(
        image_size=opts.image_size,
        objects=opts.objects,
        shapes=shapes,
        colours=tuple(COLOURS),
        textures=TEXTURES,
        jpeg_quality=opts.jpeg_quality,
    )


def _names(prefix: str, count: int, rng: np.random.Generator) -> list[str]:
    """Image names that do not tell a reference from a target: a shuffled numbering."""
    return [f"{prefix}-{int(p)}-0-img0" for p in rng.permutation(count)]


def _plan_sets(world: World, opts: CIROptions, split: str, s: int, train: bool) -> None:
    """CIRR's image sets (and the training triplets): a reference and five edits of it."""
    vl = _vl(opts)
    code = _STREAM[world.benchmark]
    sampler = _Sampler(vl, held_out=not train, where=f"{world.benchmark} {split}")
    per_set = SET_SIZE - 1 if train else opts.queries_per_set
    n_queries = opts.queries.get(split, 0)
    n_sets = math.ceil(n_queries / per_set)
    planned: list[tuple[Scene, list[Edit]]] = []
    for i in range(n_sets):
        rng = _rng(world.seed, code, s, i)
        ref = sampler.scene(rng)
        for _ in range(50):
            edits = sampler.edits(ref, rng, SET_SIZE - 1, EDIT_KINDS)
            if len(edits) == SET_SIZE - 1:
                break
            sampler.used.difference_update(graph(e.scene) for e in edits)
            sampler.used.discard(graph(ref))
            ref = sampler.scene(rng)
        else:  # pragma: no cover
            raise MatchbenchError(f"{world.benchmark} {split}: cannot edit set {i}")
        planned.append((ref, edits))
    extra = [sampler.scene(_rng(world.seed, code, s, 10**6 + k)) for k in range(opts.distractors)]
    flat = [sc for ref, edits in planned for sc in (ref, *(e.scene for e in edits))] + extra
    it = iter(_names(CIRR_DIRS[split], len(flat), _rng(world.seed, code, s, _NAMES)))
    made = 0
    for i, (ref, edits) in enumerate(planned):
        set_rng = _rng(world.seed, code, s, 2 * 10**6 + i)
        ref_name = world.add(next(it), ref, split, split)
        edit_names = [world.add(next(it), e.scene, split, split) for e in edits]
        members = [ref_name, *edit_names]
        members = [members[int(p)] for p in set_rng.permutation(len(members))]
        for e, target in list(zip(edits, edit_names, strict=True))[:per_set]:
            if made == n_queries:
                break
            pairid = len(world.queries)  # unique across the splits, as CIRR's are
            world.queries.append(
                Query(pairid, split, "", ref_name, target, e, [target], members, i)
            )
            made += 1
    for sc in extra:
        world.add(next(it), sc, split, split)


def _plan_circo(world: World, opts: CIROptions) -> None:
    vl = _vl(opts)
    code = _STREAM["circo"]
    sampler = _Sampler(vl, held_out=True, where="circo")
    scenes: list[Scene] = []
    plans = []
    for s, split in enumerate(("val", "test")):
        for i in range(opts.queries.get(split, 0)):
            rng = _rng(world.seed, code, s, i)
            ref = sampler.scene(rng)
            edits = sampler.edits(ref, rng, 1 + opts.similar, EDIT_KINDS)
            if not edits:  # pragma: no cover - every scene takes some edit
                raise MatchbenchError(f"circo {split}: cannot edit query {i}")
            n_gt = int(rng.integers(1, opts.max_gt + 1))
            gts = [edits[0].scene] + [rejitter(edits[0].scene, rng, "x_0") for _ in range(n_gt - 1)]
            first = len(scenes)
            scenes.extend([ref, *gts, *(e.scene for e in edits[1:])])
            plans.append((split, first, len(gts), edits[0]))
    for k in range(opts.distractors):
        scenes.append(sampler.scene(_rng(world.seed, code, 2, k)))
    # COCO ids in a shuffled order, so an id tells nothing of its role.
    perm = _rng(world.seed, code, 3).permutation(len(scenes))
    ids = [str(int(p) + 1) for p in perm]
    order = sorted(range(len(scenes)), key=lambda i: int(ids[i]))
    for i in order:
        world.add(ids[i], scenes[i], "all", "unlabeled2017")
    for qid, (split, first, n_gt, edit) in enumerate(plans):
        gt = ids[first + 1 : first + 1 + n_gt]
        world.queries.append(Query(qid, split, "", ids[first], gt[0], edit, gt))


def _plan_fashioniq(world: World, opts: CIROptions) -> None:
    code = _STREAM["fashioniq"]
    for c, (cat, shapes) in enumerate(FASHIONIQ_SHAPES.items()):
        vl = _vl(opts, shapes)
        for s, split in enumerate(SPLITS["fashioniq"]):
            n = opts.queries.get(split, 0)
            if not n:
                continue
            sampler = _Sampler(vl, held_out=True, where=f"fashioniq {cat} {split}")
            pairs = []
            for i in range(n):
                rng = _rng(world.seed, code, c, s, i)
                for _ in range(100):
                    ref = sampler.scene(rng)
                    edits = sampler.edits(ref, rng, 1, FASHIONIQ_KINDS)
                    if edits:
                        break
                else:  # pragma: no cover
                    raise MatchbenchError(f"fashioniq {cat} {split}: cannot edit triplet {i}")
                pairs.append((ref, edits[0]))
            extra = [
                sampler.scene(_rng(world.seed, code, c, s, 10**6 + k))
                for k in range(opts.distractors)
            ]
            # ASINs: ten characters, as Amazon's, drawn from the stream.
            rng = _rng(world.seed, code, c, s, _NAMES)
            count = 2 * len(pairs) + len(extra)
            asins = _asins(rng, count, taken=set(world.images))
            gallery = f"{cat}/{split}"
            it = iter(asins)
            for i, (ref, edit) in enumerate(pairs):
                r = world.add(next(it), ref, gallery, split)
                t = world.add(next(it), edit.scene, gallery, split)
                world.queries.append(Query(i, split, cat, r, t, edit, [t]))
            for sc in extra:
                world.add(next(it), sc, gallery, split)


def _asins(rng: np.random.Generator, count: int, taken: set[str]) -> list[str]:
    alphabet = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    out: list[str] = []
    while len(out) < count:
        asin = "B00" + "".join(alphabet[rng.integers(len(alphabet), size=7)])
        if asin not in taken:
            taken.add(asin)
            out.append(asin)
    return out


def plan(benchmark: str, seed: int, opts: CIROptions) -> World:
    """Every image and query of one benchmark; no pixel is drawn."""
    world = World(benchmark, seed)
    if benchmark == "cirr":
        for s, split in enumerate(SPLITS["cirr"]):
            if opts.queries.get(split, 0):
                _plan_sets(world, opts, split, s, train=False)
    elif benchmark == "triplets":
        _plan_sets(world, opts, "train", 0, train=True)
    elif benchmark == "circo":
        _plan_circo(world, opts)
    elif benchmark == "fashioniq":
        _plan_fashioniq(world, opts)
    else:
        raise ValueError(benchmark)
    check_world(world)
    return world


def check_world(world: World) -> None:
    """Ground truth is exact: a query's ground truth is every image of its gallery with the
    edited graph, the target is among them, and the reference is not."""
    gallery_of: dict[str, str] = {}
    by_graph: dict[tuple[str, str], list[str]] = {}
    for g, names in world.galleries.items():
        for n in names:
            gallery_of.setdefault(n, g)
            by_graph.setdefault((g, graph(world.images[n])), []).append(n)
    for q in world.queries:
        g = "all" if world.benchmark == "circo" else gallery_of[q.reference]
        want = graph(q.edit.scene)
        same = by_graph.get((g, want), [])
        if sorted(same) != sorted(q.gt) or q.gt[0] != q.target:
            raise AssertionError(f"{world.benchmark} query {q.id}: ground truth {q.gt} != {same}")
        if graph(world.images[q.reference]) == want:
            raise AssertionError(f"{world.benchmark} query {q.id}: the edit changes nothing")
        if q.members and q.target not in q.members:
            raise AssertionError(f"{world.benchmark} query {q.id}: target not in members")


# --------------------------------------------------------------------------- writers


def _image(scene: Scene, size: int, rng: np.random.Generator, quality: int) -> Image.Image:
    """Rendered and passed through JPEG at ``quality``: the pixels of the training corpus."""
    buf = io.BytesIO()
    render_cir(scene, size, rng).save(buf, format="JPEG", quality=quality, optimize=False)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.convert("RGB")


def _draw(world: World, opts: CIROptions, paths: Mapping[str, Path], progress: bool) -> None:
    """Render every image of the world to its path (PNG or JPEG by the path's suffix)."""
    code = _STREAM[world.benchmark]
    bar = progress_bar(
        total=len(world.images),
        desc=f"mini-world {world.benchmark}",
        unit="img",
        disable=not progress,
    )
    for i, (name, scene) in enumerate(world.images.items()):
        img = _image(scene, opts.image_size, _rng(world.seed, 100 + code, i), opts.jpeg_quality)
        path = paths[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".png":
            img.save(path, format="PNG", optimize=False)
        else:
            img.save(path, format="JPEG", quality=opts.jpeg_quality, optimize=False)
        bar.update()
    bar.close()


def _cirr_rel(world: World, name: str) -> str:
    split = world.image_split[name]
    if split == "train":
        return f"./train/{int(name.split('-')[1]) % 100}/{name}.png"
    return f"./{CIRR_DIRS[split]}/{name}.png"


def _cirr_queries(world: World, split: str, truth: bool) -> list[dict[str, Any]]:
    """The entries of ``cap.rc2.<split>.json``, with ``target_hard`` / ``target_soft`` when
    ``truth``."""
    entries = []
    for q in (q for q in world.queries if q.split == split):
        entry: dict[str, Any] = {
            "pairid": q.id,
            "reference": q.reference,
            "caption": q.edit.text,
            "img_set": {
                "id": q.set_id,
                "members": q.members,
                "reference_rank": q.members.index(q.reference),
                "target_rank": q.members.index(q.target),
            },
        }
        if truth:
            entry["target_hard"] = q.target
            entry["target_soft"] = {q.target: 1.0}
        entries.append(entry)
    return entries


def write_cirr(root: Path, world: World, opts: CIROptions, progress: bool = True) -> None:
    """CIRR's layout (also for the training triplets, split ``train``); test1's ground truth
    only in ``server/``."""
    _draw(world, opts, {n: root / _cirr_rel(world, n) for n in world.images}, progress)
    for split, names in world.galleries.items():
        gallery = {n: _cirr_rel(world, n) for n in names}
        hidden = split == HIDDEN_SPLIT.get(world.benchmark)
        _write_cirr_split(root, split, gallery, _cirr_queries(world, split, truth=not hidden))
        if hidden:
            # The server's copy keeps the image paths relative to the benchmark's root.
            queries = _cirr_queries(world, split, truth=True)
            _write_cirr_split(root / SERVER_DIR, split, gallery, queries)


def _write_cirr_split(
    root: Path, split: str, gallery: dict[str, str], queries: list[dict[str, Any]]
) -> None:
    write_json(root / "image_splits" / f"split.rc2.{split}.json", gallery)
    write_json(root / "captions" / f"cap.rc2.{split}.json", queries)


def _circo_queries(world: World, split: str, truth: bool) -> list[dict[str, Any]]:
    """The entries of ``annotations/<split>.json``, with ``target_img_id`` / ``gt_img_ids``
    when ``truth``."""
    entries = []
    for q in (q for q in world.queries if q.split == split):
        entry: dict[str, Any] = {
            "id": q.id,
            "reference_img_id": int(q.reference),
            "relative_caption": q.edit.text,
            "shared_concept": q.edit.concept,
            "semantic_aspects": list(ASPECTS[q.edit.kind]),
        }
        if truth:
            entry["target_img_id"] = int(q.target)
            entry["gt_img_ids"] = [int(g) for g in q.gt]
        entries.append(entry)
    return entries


def write_circo(root: Path, world: World, opts: CIROptions, progress: bool = True) -> None:
    """CIRCO's layout on a COCO-2017-unlabeled-like gallery; test's ground truth only in
    ``server/``."""
    images = root / "COCO2017_unlabeled" / "unlabeled2017"
    _draw(world, opts, {n: images / f"{int(n):012d}.jpg" for n in world.images}, progress)
    write_json(
        root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json",
        {
            "info": {"description": "matchbench mini-world (COCO 2017 unlabeled layout)"},
            "licenses": [],
            "images": [
                {
                    "id": int(n),
                    "file_name": f"{int(n):012d}.jpg",
                    "width": opts.image_size,
                    "height": opts.image_size,
                }
                for n in world.images
            ],
        },
    )
    for split in SPLITS["circo"]:
        if not (any(q.split == split for q in world.queries) or split in opts.queries):
            continue
        hidden = split == HIDDEN_SPLIT["circo"]
        write_json(root / "annotations" / f"{split}.json", _circo_queries(world, split, not hidden))
        if hidden:
            write_json(
                root / SERVER_DIR / "annotations" / f"{split}.json",
                _circo_queries(world, split, True),
            )


def write_fashioniq(root: Path, world: World, opts: CIROptions, progress: bool = True) -> None:
    """FashionIQ's layout: one caption and one split file per category and split."""
    _draw(world, opts, {n: root / "images" / f"{n}.png" for n in world.images}, progress)
    for gallery, names in world.galleries.items():
        cat, split = gallery.split("/")
        write_json(root / "image_splits" / f"split.{cat}.{split}.json", names)
        entries = []
        for q in (q for q in world.queries if q.category == cat and q.split == split):
            caps = list(q.edit.captions)
            if _rng(world.seed, 7, q.id, len(cat)).random() < 0.5:
                caps.reverse()  # the two annotators' captions come in either order
            entries.append({"candidate": q.reference, "target": q.target, "captions": caps})
        write_json(root / "captions" / f"cap.{cat}.{split}.json", entries)


WRITERS = {
    "cirr": write_cirr,
    "triplets": write_cirr,
    "circo": write_circo,
    "fashioniq": write_fashioniq,
}


def write_miniworld_cir(
    root: str | Path, *, benchmark: str, seed: int, progress: bool = True, **options: Any
) -> dict[str, Any]:
    """Write one benchmark (``cirr``, ``circo``, ``fashioniq`` or ``triplets``) in its real
    layout under ``root`` (written whole, atomically); returns a summary."""
    opts = cir_options({**options, "benchmark": benchmark})
    world = plan(benchmark, seed, opts)
    with atomic_dir(root) as tmp:
        WRITERS[benchmark](tmp, world, opts, progress)
    kinds: dict[str, int] = {}
    for q in world.queries:
        kinds[q.edit.kind] = kinds.get(q.edit.kind, 0) + 1
    return {
        "benchmark": benchmark,
        "images": len(world.images),
        "queries": {
            s: sum(q.split == s for q in world.queries)
            for s in sorted({q.split for q in world.queries})
        },
        "edits": dict(sorted(kinds.items())),
    }
