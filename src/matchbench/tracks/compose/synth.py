"""The mini-world's vision-language part: scenes of objects with attributes and relations.

A scene holds one to three objects, each a mini-world shape (``data/synth/world.py``) with a
colour from a small named palette, a size (small / large), a texture, and a cell of a 3 x 3
grid; shapes and colours are distinct within a scene, so "the red square" names one object.
Relations follow from the cells (``a`` is left of ``b`` when its column is smaller, above
when its row is smaller), so a statement about a scene is true or false exactly, and every
caption written is checked against its scene graph before it is written (:func:`holds`):
positives true, negatives false.

Captions are built from :class:`Statement` objects (entities with some attributes, and at
most one relation) and :func:`parse` reads them back, so a test can check a written file
against the scenes. From one seed :func:`write_miniworld_vl` writes, in the real layouts:

- ``coco/``: the training corpus; ``annotations/captions_train2017.json`` (COCO captions:
  one alt-text-like caption naming one object per image), ``train2017/<id:012d>.jpg``, and
  ``annotations/descriptions_train2017.jsonlines`` (the rich descriptions, one DOCCI record
  per image: ``example_id``, ``split``, ``image_file``, ``description``);
- ``coco/val2017/`` + ``sugarcrepe/data/{add_obj,...,swap_att}.json`` (SugarCrepe);
- ``aro/visual_genome_{relation,attribution}.json`` + ``aro/images/`` (ARO);
- ``docci/docci_descriptions.jsonlines`` + ``docci/images/`` (DOCCI).

Scene graphs are split by a hash of their content, so no test scene repeats a training
scene (the same objects in the same cells), whatever the counts asked for. The output is a
pure function of the seed and the options (fixed JPEG quality, canonical JSON).
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping
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
    render_objects,
)
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, write_json, write_text
from matchbench.progress import bar as progress_bar

SHAPES = tuple(CATEGORIES)
# Hue, saturation, value: six hues far apart on the wheel, bright enough to stay their colour
# under a texture (which darkens to 55%) on the dim, desaturated backgrounds below.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.0, 0.85, 0.9),
    "orange": (0.075, 0.9, 0.95),
    "yellow": (0.15, 0.85, 0.95),
    "green": (0.33, 0.75, 0.7),
    "blue": (0.61, 0.85, 0.9),
    "purple": (0.8, 0.6, 0.75),
}
SIZES: dict[str, tuple[float, float]] = {"small": (0.095, 0.11), "large": (0.15, 0.165)}
TEXTURE_WORDS = {"solid": "plain", "stripes": "striped", "checker": "checkered", "dots": "dotted"}
RELATIONS = ("to the left of", "to the right of", "above", "below")
OPPOSITE = {
    "to the left of": "to the right of",
    "to the right of": "to the left of",
    "above": "below",
    "below": "above",
}
GRID = 3
CELL_NAMES = {
    (0, 0): "at the top left",
    (1, 0): "at the top",
    (2, 0): "at the top right",
    (0, 1): "on the left",
    (1, 1): "in the centre",
    (2, 1): "on the right",
    (0, 2): "at the bottom left",
    (1, 2): "at the bottom",
    (2, 2): "at the bottom right",
}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
SUGARCREPE_FILES = (
    "add_obj",
    "add_att",
    "replace_obj",
    "replace_att",
    "replace_rel",
    "swap_obj",
    "swap_att",
)
GROUPS = ("train", "sugarcrepe", "aro", "docci_train", "docci_test")
HELD_OUT = 0.25  # fraction of scene graphs (by hash) reserved for the benchmarks


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Obj:
    """One object of a scene: what captions talk about, and how it is drawn."""

    shape: str
    colour: str
    size: str
    texture: str
    col: int  # grid cell, 0 = left
    row: int  # 0 = top
    cx: float  # centre, fraction of the width
    cy: float
    scale: float  # radius / image side
    angle: float  # radians
    texture_angle: float


@dataclass(frozen=True)
class Scene:
    name: str  # file stem
    group: str  # one of GROUPS
    objects: tuple[Obj, ...]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    bg_angle: float
    dark: bool

    def signature(self) -> str:
        return "|".join(
            sorted(
                f"{o.shape},{o.colour},{o.size},{o.texture},{o.col},{o.row}" for o in self.objects
            )
        )


def relation_holds(a: Obj, rel: str, b: Obj) -> bool:
    if rel == "to the left of":
        return a.col < b.col
    if rel == "to the right of":
        return a.col > b.col
    if rel == "above":
        return a.row < b.row
    if rel == "below":
        return a.row > b.row
    raise ValueError(rel)


def true_relations(a: Obj, b: Obj) -> list[str]:
    return [r for r in RELATIONS if relation_holds(a, r, b)]


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _held_out(signature: str) -> bool:
    digest = hashlib.sha256(signature.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HELD_OUT


def _sample_scene(rng: np.random.Generator, name: str, group: str, opts: VLOptions) -> Scene:
    lo, hi = opts.objects
    n = int(rng.integers(lo, hi + 1))
    shapes = rng.choice(len(opts.shapes), size=n, replace=False)
    colours = rng.choice(len(opts.colours), size=n, replace=False)
    cells = rng.choice(GRID * GRID, size=n, replace=False)
    objs = []
    for k in range(n):
        size = str(rng.choice(["small", "large"]))
        col, row = int(cells[k] % GRID), int(cells[k] // GRID)
        jitter = rng.uniform(-0.03, 0.03, size=2)
        objs.append(
            Obj(
                shape=opts.shapes[int(shapes[k])],
                colour=opts.colours[int(colours[k])],
                size=size,
                texture=str(rng.choice(list(opts.textures))),
                col=col,
                row=row,
                cx=float((col + 0.5) / GRID + jitter[0]),
                cy=float((row + 0.5) / GRID + jitter[1]),
                scale=float(rng.uniform(*SIZES[size])),
                angle=math.radians(float(rng.uniform(-15, 15))),
                texture_angle=float(rng.uniform(0, math.pi)),
            )
        )
    # Dim, desaturated backgrounds of any hue: the objects' colours stay nameable on them.
    dark = bool(rng.random() < 0.5)
    v0 = rng.uniform(0.15, 0.35) if dark else rng.uniform(0.55, 0.75)
    bg = []
    for _ in range(2):
        r, g, b = colorsys.hsv_to_rgb(
            rng.uniform(0, 1), rng.uniform(0, 0.2), v0 + rng.uniform(-0.08, 0.08)
        )
        bg.append((int(r * 255), int(g * 255), int(b * 255)))
    return Scene(
        name=name,
        group=group,
        objects=tuple(objs),
        background=(bg[0], bg[1]),
        bg_angle=float(rng.uniform(0, 2 * math.pi)),
        dark=dark,
    )


def plan(seed: int, opts: VLOptions) -> dict[str, list[Scene]]:
    """Every scene of every group; no pixel is drawn."""
    out: dict[str, list[Scene]] = {}
    for g, group in enumerate(GROUPS):
        scenes = []
        for i in range(opts.counts[group]):
            rng = _rng(seed, g, i)
            for _ in range(1000):
                sc = _sample_scene(rng, f"{group}_{i:06d}", group, opts)
                # The training corpus and the benchmarks draw from disjoint scene graphs.
                if _held_out(sc.signature()) == (group != "train") and (
                    group not in ("aro",) or len(sc.objects) >= 2
                ):
                    break
            else:  # pragma: no cover - the odds are astronomically small
                raise MatchbenchError(f"miniworld-vl: cannot sample scene {i} of {group}")
            scenes.append(sc)
        out[group] = scenes
    return out


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True)
class Mention:
    """An entity a caption names: a shape and some of its attributes (None: not said)."""

    shape: str | None
    colour: str | None = None
    size: str | None = None
    texture: str | None = None

    def matches(self, o: Obj) -> bool:
        return all(
            getattr(self, k) is None or getattr(self, k) == getattr(o, k)
            for k in ("shape", "colour", "size", "texture")
        )


@dataclass(frozen=True)
class Statement:
    """``entities`` exist (distinct objects), and ``relation`` (i, rel, j) holds between two."""

    entities: tuple[Mention, ...]
    relation: tuple[int, str, int] | None = None
    style: str = "caption"  # caption (SugarCrepe, alt-text) | aro_relation | aro_attribution


def holds(scene: Scene, st: Statement) -> bool:
    """Whether the statement is true of the scene graph (some injective assignment)."""
    objs = scene.objects
    for perm in itertools.permutations(range(len(objs)), len(st.entities)):
        if not all(m.matches(objs[k]) for m, k in zip(st.entities, perm, strict=True)):
            continue
        if st.relation is not None:
            i, rel, j = st.relation
            if not relation_holds(objs[perm[i]], rel, objs[perm[j]]):
                continue
        return True
    return False


def _noun_phrase(m: Mention, article: str) -> str:
    words = [m.size, m.colour, TEXTURE_WORDS[m.texture] if m.texture else None, m.shape]
    text = " ".join(w for w in words if w)
    if article == "a" and text[0] in "aeiou":
        article = "an"
    return f"{article} {text}"


def phrase(st: Statement) -> str:
    """The caption of a statement (the grammar :func:`parse` reads)."""
    if st.style == "aro_relation":
        i, rel, j = st.relation  # type: ignore[misc]
        return f"the {st.entities[i].shape} is {rel} the {st.entities[j].shape}"
    if st.style == "aro_attribution":
        return " and ".join(_noun_phrase(m, "the") for m in st.entities)
    if st.relation is not None:
        i, rel, j = st.relation
        return f"{_noun_phrase(st.entities[i], 'a')} {rel} {_noun_phrase(st.entities[j], 'a')}"
    return " and ".join(_noun_phrase(m, "a") for m in st.entities)


_WORDS = {
    **{s: "size" for s in SIZES},
    **{c: "colour" for c in COLOURS},
    **{w: "texture" for w in TEXTURE_WORDS.values()},
    **{s: "shape" for s in SHAPES},
}
_TEXTURE_OF = {w: t for t, w in TEXTURE_WORDS.items()}
_REL = "|".join(re.escape(r) for r in RELATIONS)


def _parse_np(text: str) -> Mention:
    words = text.split()
    if not words or words[0] not in ("a", "an", "the"):
        raise ValueError(f"not a noun phrase: {text!r}")
    attrs: dict[str, str] = {}
    for w in words[1:]:
        kind = _WORDS.get(w)
        if kind is None or kind in attrs:
            raise ValueError(f"unknown or repeated word {w!r} in {text!r}")
        attrs[kind] = _TEXTURE_OF[w] if kind == "texture" else w
    if "shape" not in attrs:
        raise ValueError(f"no shape in {text!r}")
    return Mention(**attrs)


def parse(text: str) -> Statement:
    """Read back a caption :func:`phrase` wrote (``ValueError`` for anything else)."""
    m = re.fullmatch(rf"the (\w+) is ({_REL}) the (\w+)", text)
    if m:
        a, b = Mention(m.group(1)), Mention(m.group(3))
        if a.shape not in SHAPES or b.shape not in SHAPES:
            raise ValueError(text)
        return Statement((a, b), (0, m.group(2), 1), "aro_relation")
    m = re.fullmatch(rf"(an? [\w ]+?) ({_REL}) (an? [\w ]+)", text)
    if m:
        return Statement((_parse_np(m.group(1)), _parse_np(m.group(3))), (0, m.group(2), 1))
    parts = text.split(" and ")
    style = "aro_attribution" if text.startswith("the ") else "caption"
    return Statement(tuple(_parse_np(p) for p in parts), None, style)


# --------------------------------------------------------------------------- captions


def _mention(o: Obj, rng: np.random.Generator, colour: bool = True) -> Mention:
    """A mention of ``o``: its shape and colour, sometimes its size or texture as well."""
    return Mention(
        o.shape,
        o.colour if colour else None,
        o.size if rng.random() < 0.3 else None,
        o.texture if rng.random() < 0.2 else None,
    )


def alt_text(scene: Scene, rng: np.random.Generator) -> tuple[str, Statement]:
    """A short caption naming one object, as alt-text does ("a red square")."""
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    st = Statement((Mention(o.shape, o.colour, o.size if rng.random() < 0.3 else None),))
    return phrase(st), st


def _the(o: Obj) -> str:
    return f"the {o.colour} {o.shape}"


def rich_caption(scene: Scene) -> str:
    """Every object, attribute and relation, in several sentences."""
    objs = scene.objects
    n = len(objs)
    shade = "dark" if scene.dark else "light"
    noun = "object" if n == 1 else "objects"
    sentences = [f"{NUMBER_WORDS[n].capitalize()} {noun} on a {shade} background."]
    for o in objs:
        np_ = _noun_phrase(Mention(o.shape, o.colour, o.size, o.texture), "a")
        sentences.append(f"{np_[0].upper()}{np_[1:]} is {CELL_NAMES[o.col, o.row]}.")
    for a, b in itertools.combinations(objs, 2):
        rels = true_relations(a, b)
        sentences.append(f"{_the(a).capitalize()} is {' and '.join(rels)} {_the(b)}.")
    if n == 1:
        sentences.append("Nothing else is in the picture.")
    return " ".join(sentences)


def _base(scene: Scene, rng: np.random.Generator, relation: bool) -> Statement:
    """A true statement about one object, or two (with a relation when ``relation``)."""
    objs = scene.objects
    if len(objs) == 1:
        return Statement((_mention(objs[0], rng),))
    a, b = (objs[int(k)] for k in rng.choice(len(objs), size=2, replace=False))
    if relation:
        rels = true_relations(a, b)
        return Statement((_mention(a, rng), _mention(b, rng)), (0, str(rng.choice(rels)), 1))
    return Statement((_mention(a, rng), _mention(b, rng)))


def _absent(values: tuple[str, ...], present: set[str], rng: np.random.Generator) -> str | None:
    choices = [v for v in values if v not in present]
    return str(rng.choice(choices)) if choices else None


def sugarcrepe_item(
    kind: str, scene: Scene, rng: np.random.Generator, opts: VLOptions
) -> tuple[Statement, Statement] | None:
    """(positive, negative) of one SugarCrepe kind, or None when the scene cannot give one."""
    objs = scene.objects
    shapes = {o.shape for o in objs}
    colours = {o.colour for o in objs}
    two = len(objs) >= 2
    if kind in ("replace_rel", "swap_obj", "swap_att") and not two:
        return None
    if kind == "replace_rel":
        pos = _base(scene, rng, relation=True)
        i, rel, j = pos.relation  # type: ignore[misc]
        return pos, replace(pos, relation=(i, OPPOSITE[rel], j))
    if kind in ("swap_obj", "swap_att"):
        pos = _base(scene, rng, relation=bool(rng.random() < 0.5))
        a, b = pos.entities
        key = "shape" if kind == "swap_obj" else "colour"
        swapped = (
            replace(a, **{key: getattr(b, key)}),
            replace(b, **{key: getattr(a, key)}),
        )
        return pos, replace(pos, entities=swapped)
    pos = _base(scene, rng, relation=two and bool(rng.random() < 0.5))
    k = int(rng.integers(len(pos.entities)))
    ents = list(pos.entities)
    if kind == "replace_obj":
        new = _absent(opts.shapes, shapes, rng)
        if new is None:
            return None
        ents[k] = replace(ents[k], shape=new)
    elif kind == "replace_att":
        new = _absent(opts.colours, colours, rng)
        if new is None:
            return None
        ents[k] = replace(ents[k], colour=new)
    elif kind == "add_obj":
        if pos.relation is not None:
            pos = Statement(pos.entities)
            ents = list(pos.entities)
        shape, colour = _absent(opts.shapes, shapes, rng), str(rng.choice(list(opts.colours)))
        if shape is None:
            return None
        ents.append(Mention(shape, colour))
    elif kind == "add_att":
        # The positive leaves one entity's colour out; the negative adds a wrong one.
        ents[k] = replace(ents[k], colour=None)
        pos = replace(pos, entities=tuple(ents))
        ents = list(pos.entities)
        new = _absent(opts.colours, colours, rng)
        if new is None:
            return None
        ents[k] = replace(ents[k], colour=new)
    else:
        raise ValueError(kind)
    return pos, replace(pos, entities=tuple(ents))


def aro_items(
    scene: Scene, rng: np.random.Generator
) -> list[tuple[str, Statement, Statement, int, int]]:
    """ARO items of a scene: for each pair of objects one VG-Relation and one VG-Attribution
    item, as (benchmark, true, false, index of a, index of b). Negatives as ARO makes them:
    the relation's two nouns swapped; the two attributes swapped."""
    items = []
    for ia, ib in itertools.combinations(range(len(scene.objects)), 2):
        if rng.random() < 0.5:
            ia, ib = ib, ia
        a, b = scene.objects[ia], scene.objects[ib]
        rel = str(rng.choice(true_relations(a, b)))
        true = Statement((Mention(a.shape), Mention(b.shape)), (0, rel, 1), "aro_relation")
        false = Statement((Mention(b.shape), Mention(a.shape)), (0, rel, 1), "aro_relation")
        items.append(("aro_relation", true, false, ia, ib))
        true = Statement(
            (Mention(a.shape, a.colour), Mention(b.shape, b.colour)), None, "aro_attribution"
        )
        false = Statement(
            (Mention(a.shape, b.colour), Mention(b.shape, a.colour)), None, "aro_attribution"
        )
        items.append(("aro_attribution", true, false, ia, ib))
    return items


def checked(scene: Scene, pos: Statement, neg: Statement | None = None) -> bool:
    """The positive holds and the negative does not (as captions, read back from text)."""
    ok = holds(scene, parse(phrase(pos)))
    return ok and (neg is None or not holds(scene, parse(phrase(neg))))


# --------------------------------------------------------------------------- rendering


def object_box(o: Obj, size: int) -> tuple[float, float, float, float]:
    """x1, y1, x2, y2 (pixels) of the object's polygon."""
    k = _keypoints(o, size)
    return float(k[:, 0].min()), float(k[:, 1].min()), float(k[:, 0].max()), float(k[:, 1].max())


def _instance(o: Obj) -> Instance:
    h, s, v = COLOURS[o.colour]
    return Instance(o.shape, h, s, v, o.texture, 0.07, o.texture_angle, 1.0)


def _view(o: Obj) -> View:
    return View(o.angle, o.scale, o.cx, o.cy, False, ((0, 0, 0), (0, 0, 0)), 0.0, 0, False)


def _keypoints(o: Obj, size: int) -> np.ndarray:
    return keypoints(_instance(o), _view(o), size, size)


def render(scene: Scene, size: int, seed: int) -> Any:
    g = GROUPS.index(scene.group)
    rng = _rng(seed, 100 + g, int(scene.name.rsplit("_", 1)[1]))
    bg = View(0.0, 0.0, 0.0, 0.0, False, scene.background, scene.bg_angle, 0, False)
    return render_objects(
        [(_instance(o), _view(o)) for o in scene.objects], size, size, rng, background=bg
    )


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class VLOptions:
    counts: Mapping[str, int] = field(
        default_factory=lambda: {
            "train": 2000,
            "sugarcrepe": 150,
            "aro": 150,
            "docci_train": 0,
            "docci_test": 200,
        }
    )
    image_size: int = 64
    objects: tuple[int, int] = (1, 3)
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    textures: tuple[str, ...] = TEXTURES
    jpeg_quality: int = 90


def vl_options(options: Mapping[str, Any], where: str = "miniworld-vl") -> VLOptions:
    """The generator's options (checked by the family's schema) into :class:`VLOptions`."""
    d = VLOptions()
    counts = {**d.counts, **dict(options.get("scenes", {}))}
    objects = tuple(options.get("objects", d.objects))
    if not 1 <= objects[0] <= objects[1] <= 3:
        raise MatchbenchError(
            f"dataset {where}: option objects = {list(objects)}, expected [min, max] with 1 <= min <= max <= 3"
        )
    opts = VLOptions(
        counts=counts,
        image_size=int(options.get("image_size", d.image_size)),
        objects=(int(objects[0]), int(objects[1])),
        shapes=tuple(options.get("shapes", d.shapes)),
        colours=tuple(options.get("colours", d.colours)),
        textures=tuple(options.get("textures", d.textures)),
        jpeg_quality=int(options.get("jpeg_quality", d.jpeg_quality)),
    )
    if counts["aro"] and opts.objects[1] < 2:
        raise MatchbenchError(f"dataset {where}: option scenes.aro needs objects with max >= 2")
    if len(opts.shapes) < opts.objects[1] + 1 or len(opts.colours) < opts.objects[1] + 1:
        raise MatchbenchError(
            f"dataset {where}: options shapes and colours need at least {opts.objects[1] + 1} "
            "names each (one more than the most objects in a scene, for the negatives)"
        )
    return opts


# --------------------------------------------------------------------------- writers


def _save(img: Any, path: Path, quality: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="JPEG", quality=quality, optimize=False)


def _jsonlines(records: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


TRAIN_ID0, VAL_ID0 = 1, 1_000_000  # COCO image ids are unique across train2017 and val2017


def write_miniworld_vl(
    root: str | Path, *, seed: int, progress: bool = True, **options: Any
) -> dict[str, Any]:
    """Write the layouts listed in the module docstring under ``root``; returns a summary."""
    opts = vl_options(options)
    scenes = plan(seed, opts)
    size, q = opts.image_size, opts.jpeg_quality
    total = sum(len(v) for v in scenes.values())
    bar = progress_bar(
        total=total, desc="mini-world vision-language", unit="img", disable=not progress
    )
    summary: dict[str, Any] = {"scenes": {g: len(v) for g, v in scenes.items()}}
    root = Path(root)
    with atomic_dir(root / "coco") as coco:
        images, anns, descriptions = [], [], []
        for i, sc in enumerate(scenes["train"]):
            rng = _rng(seed, 200, i)
            image_id = TRAIN_ID0 + i
            file_name = f"{image_id:012d}.jpg"
            _save(render(sc, size, seed), coco / "train2017" / file_name, q)
            bar.update()
            alt, st = alt_text(sc, rng)
            assert checked(sc, st), (sc.name, alt)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
            anns.append({"id": i + 1, "image_id": image_id, "caption": alt})
            descriptions.append(
                {
                    "example_id": f"train_{i:05d}",
                    "split": "train",
                    "image_file": file_name,
                    "description": rich_caption(sc),
                }
            )
        write_json(
            coco / "annotations" / "captions_train2017.json",
            {
                "info": {"description": "matchbench mini-world"},
                "images": images,
                "annotations": anns,
            },
        )
        write_text(
            coco / "annotations" / "descriptions_train2017.jsonlines", _jsonlines(descriptions)
        )

        files: dict[str, dict[str, Any]] = {k: {} for k in SUGARCREPE_FILES}
        for i, sc in enumerate(scenes["sugarcrepe"]):
            file_name = f"{VAL_ID0 + i:012d}.jpg"
            _save(render(sc, size, seed), coco / "val2017" / file_name, q)
            bar.update()
            for f, kind in enumerate(SUGARCREPE_FILES):
                rng = _rng(seed, 300 + f, i)
                pair = sugarcrepe_item(kind, sc, rng, opts)
                if pair is None:
                    continue
                pos, neg = pair
                if not checked(sc, pos, neg):  # pragma: no cover - the kinds are built true/false
                    raise AssertionError(f"{sc.name} {kind}: {phrase(pos)!r} / {phrase(neg)!r}")
                files[kind][str(len(files[kind]))] = {
                    "filename": file_name,
                    "caption": phrase(pos),
                    "negative_caption": phrase(neg),
                }
    with atomic_dir(root / "sugarcrepe") as sugar:
        for kind, items in files.items():
            write_json(sugar / "data" / f"{kind}.json", items)
    summary["sugarcrepe"] = {k: len(v) for k, v in files.items()}

    with atomic_dir(root / "aro") as aro:
        relation, attribution = [], []
        for i, sc in enumerate(scenes["aro"]):
            image_path = f"{i + 1}.jpg"
            _save(render(sc, size, seed), aro / "images" / image_path, q)
            bar.update()
            for bench, true, false, ia, ib in aro_items(sc, _rng(seed, 400, i)):
                assert checked(sc, true, false), (sc.name, phrase(true))
                boxes = [object_box(sc.objects[k], size) for k in (ia, ib)]
                x1 = max(0, math.floor(min(b[0] for b in boxes)) - 2)
                y1 = max(0, math.floor(min(b[1] for b in boxes)) - 2)
                x2 = min(size, math.ceil(max(b[2] for b in boxes)) + 3)
                y2 = min(size, math.ceil(max(b[3] for b in boxes)) + 3)
                item = {
                    "image_id": str(i + 1),
                    "image_path": image_path,
                    "bbox_x": x1,
                    "bbox_y": y1,
                    "bbox_w": x2 - x1,
                    "bbox_h": y2 - y1,
                    "true_caption": phrase(true),
                    "false_caption": phrase(false),
                }
                if bench == "aro_relation":
                    relation.append({**item, "relation_name": true.relation[1]})  # type: ignore[index]
                else:
                    attribution.append({**item, "attributes": [m.colour for m in true.entities]})
        write_json(aro / "visual_genome_relation.json", relation)
        write_json(aro / "visual_genome_attribution.json", attribution)
    summary["aro"] = {"relation": len(relation), "attribution": len(attribution)}

    with atomic_dir(root / "docci") as docci:
        records = []
        for group, split in (("docci_train", "train"), ("docci_test", "test")):
            for i, sc in enumerate(scenes[group]):
                example_id = f"{split}_{i:05d}"
                _save(render(sc, size, seed), docci / "images" / f"{example_id}.jpg", q)
                bar.update()
                records.append(
                    {
                        "example_id": example_id,
                        "split": split,
                        "image_file": f"{example_id}.jpg",
                        "description": rich_caption(sc),
                    }
                )
        write_text(docci / "docci_descriptions.jsonlines", _jsonlines(records))
    bar.close()
    return summary
