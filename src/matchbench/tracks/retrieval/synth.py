"""The mini-world's ILIAS: instances told apart by their details, in ILIAS's own layout.

ILIAS (Kordopatis-Zilos et al., CVPR 2025, ``ilias-vrg/ilias``) asks for one particular object
among up to 100M images, most of them of other objects, some of the same kind. The mini-world
keeps that structure with the mini-world's outlines (``data/synth/world.py``) and the
vision-language mini-world's named colours and texture words (``tracks/compose/synth.py``):

- an instance is a :class:`Design`: a shape and a colour, a texture (plain, stripes, checker,
  dots) with its period and angle in the object's own frame (it turns with the object), and
  an emblem (none, a disc, a ring or a bar, light or dark, at one of three spots inside the
  outline). Instances come in groups of ``group_size`` sharing shape and colour and differing
  only in those details (a group's members take distinct textures while it has at most
  four); an instance's fine taxonomy category is its group (``<polygon|symbol>`` /
  ``<shape>`` / ``<colour>``);
- image queries (``Q*``) show the instance large and clean, off-centre on a calm background,
  with its box in ``Q*_bbox.txt``: the image is larger than the object, so the crop matters;
- positives (``P*``) show it small (``scale``, box area / image area, about 0.02-0.3) among
  1-8 other objects (``clutter``), half of the time partly hidden by one of them, on varied
  backgrounds and under varied light;
- text queries (``T*.txt``) describe it in the vision-language mini-world's words
  ("a red star with a striped texture", "a plain blue cross"): they name its group and
  texture, not its finer details, so they cannot tell all near-duplicates apart;
- distractors (``yfcc100m/<shard>.tar``, webdataset members ``<key>.jpg``) are scenes drawn
  exactly as positives are, around an everyday object or, for a share ``near_duplicates`` of
  them, around a near-duplicate of a core instance (its shape and colour, one or two details
  changed). Everyday objects are a fixed set of :data:`COMMON` designs of the seed and each
  core instance has :data:`NEAR` near-duplicates (:func:`world`), as a photo collection shows
  the same kinds of things again and again;
- ``uned``: a training set of other instances, ``uned_views`` views each, alternately clean
  (query-like) and cluttered (positive-like), in ``train/<instance>/<n>.jpg``, for the linear
  adaptation of ``linear_adaptation/``.

No object of any scene but the instance's own queries and positives ever *looks* like a core
instance: designs are compared by :meth:`Design.look`, which also identifies two designs that
a turn by a symmetry of their outline makes identical (a square's stripes at 0 and 90 degrees).

Every image of every kind goes through one renderer (:func:`render`), so nothing but the
content tells a positive from a distractor. The distractor shards are the bulk, so it is lean:
each design is drawn once per resolution as a sprite (colour and coverage, outlines from 4 x 4
subpixels, texture and emblem from 2 x 2 samples a pixel) and pasted turned, scaled and shaded
by PIL's affine transform, blend and masked paste; backgrounds are a coarse gradient resized
plus a fixed noise tile; scalar draws use Python's ``random`` (a numpy draw costs ten times
more). Everything is a pure function of the seed and the options, a shard of the seed, its
index and the options whatever the number of shards (fixed JPEG quality, fixed tar headers).
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import math
import random
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from matchbench.data.formats import ilias
from matchbench.data.synth.world import CATEGORIES, TEXTURES
from matchbench.errors import MatchbenchError
from matchbench.io import atomic_dir, atomic_path, write_json, write_text
from matchbench.progress import bar as progress_bar
from matchbench.tracks.compose.synth import COLOURS, TEXTURE_WORDS

SHAPES = tuple(CATEGORIES)
# The taxonomy's coarse level: regular polygons and the other outlines.
COARSE = {
    "triangle": "polygon",
    "square": "polygon",
    "pentagon": "polygon",
    "hexagon": "polygon",
    "star": "symbol",
    "cross": "symbol",
    "arrow": "symbol",
    "crescent": "symbol",
}
# Turns that leave an outline as it was: 360 / n degrees.
SYMMETRY = {
    "triangle": 3,
    "square": 4,
    "pentagon": 5,
    "hexagon": 6,
    "star": 5,
    "cross": 4,
    "arrow": 1,
    "crescent": 1,
}
PERIODS = (0.3, 0.45)  # texture period, in object radii
ANGLES = (0, 45, 90, 135)  # texture angle in the object's frame, degrees
EMBLEMS = ("none", "disc", "ring", "bar")
TONES = {"light": 235.0, "dark": 25.0}
SPOTS = 3  # emblem places per shape (emblem_spots)
DETAILS = ("texture", "period", "angle", "emblem", "tone", "spot")
COMMON, NEAR = 512, 8  # everyday designs of a world; near-duplicates per core instance
SUPERSAMPLE = 4  # subpixels a side for the outlines' coverage
EXTENT = 1.2  # a sprite spans [-EXTENT, EXTENT] object radii (the square reaches 1.14)

CORE_DIR, IDS_DIR, MISC_DIR, SHARD_DIR, UNED_DIR = (
    "ilias_core",
    "image_ids",
    "misc",
    "yfcc100m",
    "train",
)
CORE_TAR, CHECKSUMS, TAXONOMY = "ilias_core.tar", "checksums.txt", "taxonomy.json"
MAX_INSTANCES = 1000  # the three digits of Q{iii}
UNED_ID0 = 1000  # uned instances are numbered after any core's

# Random streams: each part of the world draws from its own.
_CORE, _UNED, _QUERY, _POSITIVE, _SHARD, _UNED_VIEW, _NAMES, _WORLD = range(1, 9)

# Names in ILIAS's style (``bold_bimp_000``): an adjective, a made-up noun, the number.
_ADJECTIVES = str.split(
    "bold bright brisk bubbly cheery chirpy cozy dandy dizzy fizzy frisky giddy jolly lush "
    "merry peppy perky quirky rosy snappy spry sunny witty zesty"
)
_NOUNS = str.split(
    "bimp flup glim puff snop taff tonk toop wib zibby plop riff drob fizz gim mib niff snag "
    "tizz truff wazz dooz biff goon"
)


def _rng(seed: int, *keys: int) -> random.Random:
    """An independent stream for each key path (numpy's SeedSequence mixes the keys)."""
    state = np.random.SeedSequence([seed, *keys]).generate_state(4, dtype=np.uint64)
    return random.Random(int.from_bytes(state.astype("<u8").tobytes(), "little"))


def _pick(rng: random.Random, values: tuple[Any, ...] | list[Any]) -> Any:
    return values[rng.randrange(len(values))]


# --------------------------------------------------------------------------- designs


def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points (N, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = poly[:, 0][None], poly[:, 1][None]
    x2, y2 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return ((crosses & (x < xs)).sum(1) % 2) == 1


def _clearance(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance from each point to the polygon's outline."""
    a, b = poly, np.roll(poly, -1, axis=0)
    ab = b - a
    t = ((points[:, None] - a[None]) * ab[None]).sum(-1) / (ab**2).sum(-1)[None]
    nearest = a[None] + np.clip(t, 0, 1)[..., None] * ab[None]
    return np.sqrt(((points[:, None] - nearest) ** 2).sum(-1)).min(1)


@cache
def emblem_spots(shape: str) -> tuple[tuple[float, float], ...]:
    """Three points at least 0.22 radii inside the outline (room for any emblem), far apart."""
    poly = np.asarray(CATEGORIES[shape], dtype=np.float64)
    g = np.arange(-1.0, 1.0001, 0.05)
    grid = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    room = _clearance(grid, poly)
    ok = _inside(grid, poly) & (room >= 0.22)
    cand, room = grid[ok], room[ok]
    spots = [cand[int(np.argmax(room))]]
    while len(spots) < SPOTS:
        dist = np.min([np.hypot(*(cand - s).T) for s in spots], axis=0)
        spots.append(cand[int(np.argmax(dist))])
    return tuple((round(float(x), 2), round(float(y), 2)) for x, y in spots)


@dataclass(frozen=True)
class Design:
    """What makes an instance itself. Designs are kept :meth:`canonical` (a detail that cannot
    show, such as the period of a plain texture, is normalised away) and compared by
    :meth:`look`."""

    shape: str
    colour: str
    texture: str
    period: float
    angle: int
    emblem: str
    tone: str
    spot: int

    def canonical(self) -> Design:
        d = self
        if d.texture == "solid":
            d = replace(d, period=0.0, angle=0)
        elif d.texture in ("checker", "dots"):
            d = replace(d, angle=d.angle % 90)
        if d.emblem == "none":
            d = replace(d, tone="", spot=-1)
        return d

    @property
    def group(self) -> tuple[str, str]:
        """Shape and colour: what the instances of a group share."""
        return self.shape, self.colour

    def look(self) -> tuple[Any, ...]:
        """What the design looks like, whatever its turn: the smallest, over the turns that
        leave the outline as it was, of the texture's angle and the emblem's place and
        direction. Two designs with the same look are the same object to the eye."""
        n = SYMMETRY[self.shape]
        fold = {"stripes": 180, "checker": 90, "dots": 90}.get(self.texture, 1)
        variants = []
        for k in range(n):
            turn = 360 * k / n
            angle = round((self.angle + turn) % fold, 3) % fold
            where: tuple[float, ...] = ()
            if self.emblem != "none":
                x, y = emblem_spots(self.shape)[self.spot]
                c, s = math.cos(math.radians(turn)), math.sin(math.radians(turn))
                where = (round(c * x - s * y, 2) + 0.0, round(s * x + c * y, 2) + 0.0)
                if self.emblem == "bar":
                    where += (round(turn % 180, 3) % 180,)
            variants.append((angle, where))
        core = (self.shape, self.colour, self.texture, self.period, self.emblem, self.tone)
        return (*core, min(variants))


def _random_details(rng: random.Random, shape: str, colour: str, texture: str) -> Design:
    return Design(
        shape=shape,
        colour=colour,
        texture=texture,
        period=_pick(rng, PERIODS),
        angle=_pick(rng, ANGLES),
        emblem=_pick(rng, EMBLEMS),
        tone=_pick(rng, tuple(TONES)),
        spot=rng.randrange(SPOTS),
    ).canonical()


def random_design(rng: random.Random, avoid: set[tuple[Any, ...]]) -> Design:
    """Any shape, colour and details, looking like none of ``avoid`` (looks)."""
    for _ in range(1000):
        d = _random_details(
            rng, _pick(rng, SHAPES), _pick(rng, tuple(COLOURS)), _pick(rng, TEXTURES)
        )
        if d.look() not in avoid:
            return d
    raise MatchbenchError("miniworld-ilias: cannot draw a new design")  # pragma: no cover


def near_duplicate(rng: random.Random, of: Design, avoid: set[tuple[Any, ...]]) -> Design:
    """``of``'s shape and colour with one or two details changed, looking like neither ``of``
    nor any of ``avoid``."""
    choices: dict[str, tuple[Any, ...]] = {
        "texture": TEXTURES,
        "period": PERIODS,
        "angle": ANGLES,
        "emblem": EMBLEMS,
        "tone": tuple(TONES),
        "spot": tuple(range(SPOTS)),
    }
    for _ in range(1000):
        d = of
        for name in rng.sample(DETAILS, rng.randint(1, 2)):
            d = replace(
                d, **{name: _pick(rng, [v for v in choices[name] if v != getattr(of, name)])}
            )
        # A texture or an emblem where there was none needs the details it lacked.
        if d.texture != "solid" and d.period == 0:
            d = replace(d, period=_pick(rng, PERIODS), angle=_pick(rng, ANGLES))
        if d.emblem != "none" and not d.tone:
            d = replace(d, tone=_pick(rng, tuple(TONES)))
        if d.emblem != "none" and d.spot < 0:
            d = replace(d, spot=rng.randrange(SPOTS))
        d = d.canonical()
        if d.look() != of.look() and d.look() not in avoid:
            return d
    raise MatchbenchError("miniworld-ilias: cannot draw a near-duplicate")  # pragma: no cover


@dataclass(frozen=True)
class Instance:
    name: str
    index: int
    design: Design

    @property
    def taxonomy(self) -> tuple[str, str, str]:
        """(coarse, mid, fine): the outline's kind, the shape, the colour."""
        return COARSE[self.design.shape], self.design.shape, self.design.colour


def _names(seed: int, stream: int, numbers: Iterable[int]) -> list[str]:
    rng = _rng(seed, _NAMES, stream)
    return [f"{_pick(rng, _ADJECTIVES)}_{_pick(rng, _NOUNS)}_{n:03d}" for n in numbers]


@cache
def core_instances(seed: int, instances: int, group_size: int) -> tuple[Instance, ...]:
    """The core: ``instances`` designs of distinct looks, in groups of ``group_size`` sharing
    shape and colour (groups cycle through the 48 pairs, so more than 48 groups merge)."""
    rng = _rng(seed, _CORE)
    pairs = [(s, c) for s in SHAPES for c in COLOURS]
    order = rng.sample(range(len(pairs)), len(pairs))
    designs: list[Design] = []
    seen: set[tuple[Any, ...]] = set()
    for g in range(math.ceil(instances / group_size)):
        shape, colour = pairs[order[g % len(pairs)]]
        textures = rng.sample(TEXTURES, len(TEXTURES))
        for j in range(min(group_size, instances - len(designs))):
            for _ in range(1000):
                d = _random_details(rng, shape, colour, textures[j % len(textures)])
                if d.look() not in seen:
                    break
            else:  # pragma: no cover - hundreds of looks per group
                raise MatchbenchError("miniworld-ilias: cannot draw distinct core designs")
            seen.add(d.look())
            designs.append(d)
    # Groups are interleaved, so an instance's number says nothing of its group.
    placed = rng.sample(designs, len(designs))
    names = _names(seed, _CORE, range(instances))
    return tuple(Instance(n, i, d) for i, (n, d) in enumerate(zip(names, placed, strict=True)))


def core_looks(seed: int, instances: int, group_size: int) -> frozenset[tuple[Any, ...]]:
    return frozenset(i.design.look() for i in core_instances(seed, instances, group_size))


@dataclass(frozen=True)
class World:
    """What scenes draw from: the core, the everyday objects around it (``common``) and each
    core instance's near-duplicates (``near[i]``); none of the latter two looks like a core
    instance."""

    core: tuple[Instance, ...]
    common: tuple[Design, ...]
    near: tuple[tuple[Design, ...], ...]

    def other(self, rng: random.Random) -> Design:
        return _pick(rng, self.common)


@cache
def world(seed: int, instances: int, group_size: int) -> World:
    core = core_instances(seed, instances, group_size)
    looks = core_looks(seed, instances, group_size)
    rng = _rng(seed, _WORLD)
    avoid, common = set(looks), []
    for _ in range(COMMON):
        d = random_design(rng, avoid)
        avoid.add(d.look())
        common.append(d)
    near = []
    for inst in core:
        mine: list[Design] = []
        for _ in range(NEAR):
            mine.append(near_duplicate(rng, inst.design, set(looks) | {m.look() for m in mine}))
        near.append(tuple(mine))
    return World(core, tuple(common), tuple(near))


def uned_instances(seed: int, instances: int, group_size: int, uned: int) -> tuple[Instance, ...]:
    """``uned`` designs of distinct looks, none looking like an instance of the core of the
    same seed, ``instances`` and ``group_size``."""
    rng = _rng(seed, _UNED)
    avoid = set(core_looks(seed, instances, group_size))
    designs = []
    for _ in range(uned):
        d = random_design(rng, avoid)
        avoid.add(d.look())
        designs.append(d)
    names = _names(seed, _UNED, range(UNED_ID0, UNED_ID0 + uned))
    return tuple(Instance(n, i, d) for i, (n, d) in enumerate(zip(names, designs, strict=True)))


def describe(design: Design) -> str:
    """The text query: the vision-language mini-world's words for colour, shape and texture."""
    if design.texture == "solid":
        return f"a {TEXTURE_WORDS['solid']} {design.colour} {design.shape}"
    return f"a {design.colour} {design.shape} with a {TEXTURE_WORDS[design.texture]} texture"


def taxonomy(instances: Iterable[Instance]) -> dict[str, dict[str, dict[str, list[str]]]]:
    """ILIAS's ``misc/taxonomy.json``: {coarse: {mid: {fine: [instance names]}}}."""
    out: dict[str, dict[str, dict[str, list[str]]]] = {}
    for inst in instances:
        coarse, mid, fine = inst.taxonomy
        out.setdefault(coarse, {}).setdefault(mid, {}).setdefault(fine, []).append(inst.name)
    for mids in out.values():
        for fines in mids.values():
            for names in fines.values():
                names.sort()
    return out


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Placed:
    """A design in a scene: centre and radius in pixels, turn in radians, light factor."""

    design: Design
    cx: float
    cy: float
    radius: float
    angle: float
    shade: float

    def outline(self) -> list[tuple[float, float]]:
        """The polygon's vertices in pixels (pixel i spans [i, i + 1))."""
        c, s = math.cos(self.angle) * self.radius, math.sin(self.angle) * self.radius
        cx, cy = self.cx, self.cy
        return [(cx + c * x - s * y, cy + s * x + c * y) for x, y in CATEGORIES[self.design.shape]]

    def box(self, size: int) -> tuple[int, int, int, int] | None:
        """x0, y0, x1, y1: the pixels the outline touches, clipped to the image; None when
        none."""
        xs, ys = zip(*self.outline(), strict=True)
        x0, y0 = max(0, math.floor(min(xs))), max(0, math.floor(min(ys)))
        x1, y1 = min(size, math.ceil(max(xs))), min(size, math.ceil(max(ys)))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _pattern(d: Design, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 where the texture darkens the object, 0 elsewhere, in the object's frame."""
    a = math.radians(d.angle)
    c, s = math.cos(a) / d.period, math.sin(a) / d.period
    ur = c * u + s * v
    if d.texture == "stripes":
        return np.floor(ur) % 2
    vr = c * v - s * u
    if d.texture == "checker":
        return (np.floor(ur) + np.floor(vr)) % 2
    ur = ur % 1 - 0.5
    vr = vr % 1 - 0.5
    return ur * ur + vr * vr < 0.09


def _emblem(d: Design, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """1 on the emblem, 0 elsewhere, in the object's frame."""
    sx, sy = emblem_spots(d.shape)[d.spot]
    du, dv = u - sx, v - sy
    if d.emblem == "bar":
        return (np.abs(du) < 0.22) & (np.abs(dv) < 0.08)
    r2 = du * du + dv * dv
    if d.emblem == "disc":
        return r2 < 0.18**2
    return (r2 > 0.1**2) & (r2 < 0.2**2)


_RGB = {
    name: np.array(colorsys.hsv_to_rgb(*hsv), dtype=np.float32)[:, None, None] * 255
    for name, hsv in COLOURS.items()
}
# Where a sprite pixel is sampled for texture and emblem: 2 x 2, in pixels from its centre.
_SX = np.array([-0.25, 0.25, -0.25, 0.25], dtype=np.float32)[:, None, None]
_SY = np.array([-0.25, -0.25, 0.25, 0.25], dtype=np.float32)[:, None, None]


@lru_cache(maxsize=4096)
def sprite(design: Design, side: int) -> tuple[Image.Image, Image.Image]:
    """The design upright, ``side`` x ``side``: its colour (RGB, the textured surface
    everywhere, so that resampling at the outline blends the object's own colours) and its
    coverage (L, the outline from 4 x 4 subpixels)."""
    k = side / (2 * EXTENT)  # pixels per radius
    g = (np.arange(side, dtype=np.float32) + 0.5) / k - EXTENT
    u, v = g[None, None, :] + _SX / k, g[None, :, None] + _SY / k
    col = np.broadcast_to(_RGB[design.colour], (3, side, side))
    if design.texture != "solid":
        col = col * (1 - 0.45 * _pattern(design, u, v).mean(0, dtype=np.float32))
    if design.emblem != "none":
        m = np.broadcast_to(_emblem(design, u, v), (4, side, side)).mean(0, dtype=np.float32)
        col = col + (TONES[design.tone] - col) * m
    rgb = np.clip(col + 0.5, 0, 255).astype(np.uint8).transpose(1, 2, 0)
    s = SUPERSAMPLE
    cover = Image.new("L", (side * s, side * s), 0)
    # PIL's subpixel j is centred on coordinate j, ours on (j + 0.5) / s.
    at = k * s
    outline = [
        ((x + EXTENT) * at - 0.5, (y + EXTENT) * at - 0.5) for x, y in CATEGORIES[design.shape]
    ]
    ImageDraw.Draw(cover).polygon(outline, fill=255)
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB"), cover.reduce(s)


def sprite_side(radius: float) -> int:
    """The sprite resolution for a radius in pixels: a power of two within a factor sqrt(2)
    of the drawn size, so bilinear resampling neither aliases nor blurs much."""
    return max(16, 2 ** round(math.log2(2 * EXTENT * radius)))


def _draw(canvas: Image.Image, p: Placed) -> None:
    """Paste ``p``'s sprite, turned, scaled and shaded, over its bounding box only: PIL's
    affine transform, blend and masked paste (C loops; numpy on small arrays costs several
    times more)."""
    box = p.box(canvas.size[0])
    if box is None:
        return
    x0, y0, x1, y1 = box
    side = sprite_side(p.radius)
    k = side / (2 * EXTENT)
    q, c, s = k / p.radius, math.cos(p.angle), math.sin(p.angle)
    ax, ay = x0 - p.cx, y0 - p.cy
    # PIL samples the sprite at data . (x + 0.5, y + 0.5, 1) for output pixel (x, y).
    data = (
        q * c,
        q * s,
        q * (c * ax + s * ay) + k * EXTENT,
        -q * s,
        q * c,
        q * (c * ay - s * ax) + k * EXTENT,
    )
    colour, cover = sprite(p.design, side)
    size, affine, bilinear = (x1 - x0, y1 - y0), Image.Transform.AFFINE, Image.Resampling.BILINEAR
    patch = colour.transform(size, affine, data, resample=bilinear)
    if p.shade != 1.0:  # the light: a blend with black (above 1 extrapolated, clipped)
        patch = Image.blend(Image.new("RGB", size), patch, p.shade)
    canvas.paste(patch, (x0, y0), cover.transform(size, affine, data, resample=bilinear))


_COARSE = 9  # backgrounds are computed on a 9 x 9 grid and resized (a gradient stays exact)


@cache
def _grid() -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(0, 1, _COARSE, dtype=np.float32)
    return g[None, :], g[:, None]


@cache
def _noise(size: int) -> Image.Image:
    # One fixed tile per size, cut at a random place per image: sensor noise at no cost.
    tile = np.random.default_rng(2025).normal(128, 5, (2 * size, 2 * size, 3))
    return Image.fromarray(np.clip(tile + 0.5, 0, 255).astype(np.uint8), "RGB")


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255


def _background(rng: random.Random, size: int, calm: bool) -> Image.Image:
    """A desaturated gradient of any hue, dim or light (``calm``: light, paler), sometimes
    with broad soft bands."""
    hue, s0, s1, v0, dv, dh, a = (rng.random() for _ in range(7))
    sat = 0.25 if calm else 0.45
    val = 0.55 + 0.25 * v0 if calm else 0.15 + 0.7 * v0
    c0 = _hsv(hue, sat * s0, val)
    c1 = _hsv(hue + 0.3 * (dh - 0.5), sat * s1, min(1.0, val + 0.3 * (dv - 0.5)))
    gx, gy = _grid()
    a *= 2 * math.pi
    t = (math.cos(a) * 0.5) * gx + (math.sin(a) * 0.5) * gy + 0.5
    if not calm and rng.random() < 0.35:
        b, f, phase = rng.uniform(0, math.pi), rng.uniform(1, 3), rng.uniform(0, 2 * math.pi)
        wave = np.cos((math.cos(b) * gx + math.sin(b) * gy) * (2 * math.pi * f) + phase)
        t = t * (0.9 + 0.2 * (wave > 0))
    small = t[..., None] * (c1 - c0) + c0
    small = Image.fromarray(np.clip(small + 0.5, 0, 255).astype(np.uint8), "RGB")
    # The coarse grid's corner pixel centres onto the image's corners: linear throughout.
    edge = _COARSE - 0.5
    canvas = small.resize((size, size), Image.Resampling.BILINEAR, box=(0.5, 0.5, edge, edge))
    ox, oy = rng.randrange(size), rng.randrange(size)
    noise = _noise(size).crop((ox, oy, ox + size, oy + size))
    return ImageChops.add(canvas, noise, scale=1.0, offset=-128)


def render(objects: Iterable[Placed], size: int, rng: random.Random, calm: bool) -> Image.Image:
    """A ``size`` x ``size`` RGB scene: the background, then ``objects`` in order (later in
    front)."""
    canvas = _background(rng, size, calm)
    for p in objects:
        _draw(canvas, p)
    return canvas


# --------------------------------------------------------------------------- scenes


@dataclass(frozen=True)
class Scene:
    objects: tuple[Placed, ...]
    target: int  # index of the object the scene is about
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the target
    calm: bool

    @property
    def clutter(self) -> int:
        """The other objects in the scene (ILIAS's ``clutter`` of a positive)."""
        return len(self.objects) - 1


@dataclass(frozen=True)
class Clutter:
    """How a cluttered scene (a positive, a distractor, a uned view) looks: the object's
    radius as a share of the image side, how many other objects (1 to 8 by default), the
    chance that one of them hides part of it."""

    scale: tuple[float, float] = (0.09, 0.26)
    others: tuple[int, int] = (1, 8)
    occlusion: float = 0.5


def _place(rng: random.Random, d: Design, size: int, radius: float, turn: float) -> Placed:
    m = EXTENT * radius  # the whole outline inside the image
    return Placed(
        d,
        rng.uniform(m, size - m),
        rng.uniform(m, size - m),
        radius,
        math.radians(rng.uniform(-turn, turn)),
        rng.uniform(0.95, 1.05),
    )


def _target_box(p: Placed, size: int) -> tuple[int, int, int, int]:
    box = p.box(size)
    assert box is not None  # placed inside the image
    return box


def query_scene(rng: random.Random, d: Design, size: int) -> Scene:
    """The instance alone, large, nearly upright, anywhere in the image."""
    p = _place(rng, d, size, rng.uniform(0.24, 0.32) * size, 15)
    return Scene((p,), 0, _target_box(p, size), calm=True)


def cluttered_scene(
    rng: random.Random,
    d: Design,
    size: int,
    others: Callable[[], Design],
    look: Clutter | None = None,
) -> Scene:
    """``d`` small among other objects (``others()``), sometimes one of them in front of it,
    under varied light: how positives, and so distractors, look (``look``: how small, among
    how many, how often hidden; the defaults are ILIAS-like)."""
    look = look or Clutter()
    radius = rng.uniform(*look.scale) * size
    target = replace(_place(rng, d, size, radius, 30), shade=rng.uniform(0.75, 1.1))
    n = rng.randint(*look.others)
    occluded = rng.random() < look.occlusion and n > 0
    objects = []
    for _ in range(n - occluded):
        xy = rng.uniform(0, size), rng.uniform(0, size)
        r = rng.uniform(0.06, 0.22) * size
        turn, shade = rng.uniform(-math.pi, math.pi), rng.uniform(0.75, 1.1)
        objects.append(Placed(others(), *xy, r, turn, shade))
    objects.append(target)
    if occluded:  # in front, its centre at 80% of the two radii from the target's
        r = radius * rng.uniform(0.4, 0.7)
        a, dist = rng.uniform(0, 2 * math.pi), (radius + r) * 0.8
        xy = target.cx + dist * math.cos(a), target.cy + dist * math.sin(a)
        turn, shade = rng.uniform(-math.pi, math.pi), rng.uniform(0.75, 1.1)
        objects.append(Placed(others(), *xy, r, turn, shade))
    return Scene(tuple(objects), n - occluded, _target_box(target, size), calm=False)


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class IliasOptions:
    """The generator's options (each checked by the family's schema)."""

    instances: int = 60
    group_size: int = 3
    image_queries: int = 1
    positives: int = 5
    image_size: int = 96
    shard_size: int = 2500
    near_duplicates: float = 0.3
    uned_instances: int = 150
    uned_views: int = 8
    jpeg_quality: int = 90
    object_scale: tuple[float, float] = Clutter.scale
    clutter: tuple[int, int] = Clutter.others
    occlusion: float = Clutter.occlusion

    @classmethod
    def of(cls, options: Mapping[str, Any], where: str = "miniworld-ilias") -> IliasOptions:
        """The generator's part of a family's (resolved) options, checked where a schema
        cannot (min <= max); errors name the dataset ``where``."""
        found = {k: v for k, v in options.items() if k in cls.__dataclass_fields__}
        for key in ("object_scale", "clutter"):
            if key in found:
                lo, hi = found[key] = tuple(found[key])
                if lo > hi:
                    raise MatchbenchError(
                        f"dataset {where}: options.{key}: [{lo}, {hi}] is not a "
                        "[min, max] range (min > max)"
                    )
        return cls(**found)

    @property
    def look(self) -> Clutter:
        return Clutter(self.object_scale, self.clutter, self.occlusion)

    @property
    def world(self) -> tuple[int, int]:
        return self.instances, self.group_size


def distractor_scenes(seed: int, index: int, opts: IliasOptions) -> list[Scene]:
    """The scenes of shard ``index``: a function of the seed, the index and the options,
    whatever the number of shards (a shorter shard is the start of a longer one)."""
    w = world(seed, *opts.world)
    rng = _rng(seed, _SHARD, index)
    scenes = []
    for _ in range(opts.shard_size):
        near = rng.random() < opts.near_duplicates
        d = _pick(rng, _pick(rng, w.near)) if near else w.other(rng)
        scenes.append(cluttered_scene(rng, d, opts.image_size, lambda: w.other(rng), opts.look))
    return scenes


# --------------------------------------------------------------------------- writers


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def _box_line(box: tuple[int, int, int, int]) -> str:
    x0, y0, x1, y1 = box
    return f"{x0} {y0} {x1 - x0} {y1 - y0}\n"


def _scale(box: tuple[int, int, int, int], size: int) -> float:
    x0, y0, x1, y1 = box
    return (x1 - x0) * (y1 - y0) / (size * size)


def write_core(
    root: str | Path, *, seed: int, opts: IliasOptions, progress: bool = True
) -> dict[str, Any]:
    """``ilias_core/``, ``image_ids/``, ``misc/taxonomy.json``, ``ilias_core.tar`` and
    ``checksums.txt`` under ``root`` (each replaced whole; nothing else is touched, so the
    distractor shards beside them stay); returns a summary.

    ``image_query_ids.txt`` lines are ``<id>,<scale>,0`` (the official reader takes the
    first of several comma-separated fields), ``positive_ids.txt`` lines
    ``<id>,<scale>,<clutter>``; ``checksums.txt`` lists ``ilias_core.tar`` by name."""
    root = Path(root)
    w = world(seed, *opts.world)
    size, q = opts.image_size, opts.jpeg_quality
    query_ids, text_ids, positive_ids = [], [], []
    total = len(w.core) * (opts.image_queries + opts.positives)
    bar = progress_bar(total=total, desc="mini-world ILIAS core", unit="img", disable=not progress)
    with atomic_dir(root / CORE_DIR) as tmp:
        for inst in w.core:
            i, d = inst.index, inst.design
            qdir, pdir = tmp / inst.name / "query", tmp / inst.name / "pos"
            qdir.mkdir(parents=True)
            pdir.mkdir(parents=True)
            for k in range(opts.image_queries):
                rng = _rng(seed, _QUERY, i, k)
                sc = query_scene(rng, d, size)
                stem = f"Q{i:03d}_{k:02d}"
                (qdir / f"{stem}.jpg").write_bytes(_jpeg(render(sc.objects, size, rng, True), q))
                (qdir / f"{stem}_bbox.txt").write_text(_box_line(sc.box))
                query_ids.append(f"{inst.name}/query/{stem}.jpg,{_scale(sc.box, size):.6f},0")
                bar.update()
            (qdir / f"T{i:03d}.txt").write_text(describe(d) + "\n")
            text_ids.append(f"{inst.name}/query/T{i:03d}.txt")
            for k in range(opts.positives):
                rng = _rng(seed, _POSITIVE, i, k)
                sc = cluttered_scene(rng, d, size, lambda r=rng: w.other(r), opts.look)
                stem = f"P{i:03d}_{k:02d}"
                (pdir / f"{stem}.jpg").write_bytes(_jpeg(render(sc.objects, size, rng, False), q))
                (pdir / f"{stem}_bbox.txt").write_text(_box_line(sc.box))
                scale = _scale(sc.box, size)
                positive_ids.append(f"{inst.name}/pos/{stem}.jpg,{scale:.6f},{sc.clutter}")
                bar.update()
    bar.close()
    with atomic_dir(root / IDS_DIR) as tmp:
        for name, lines in zip(ilias.FILES, (query_ids, text_ids, positive_ids), strict=True):
            (tmp / name).write_text("".join(line + "\n" for line in sorted(lines)))
    with atomic_dir(root / MISC_DIR) as tmp:
        write_json(tmp / TAXONOMY, taxonomy(w.core))
    with atomic_path(root / CORE_TAR) as tmp:
        write_tar(tmp, root, CORE_DIR)
    digest = hashlib.sha256((root / CORE_TAR).read_bytes()).hexdigest()
    write_text(root / CHECKSUMS, f"{digest}  {CORE_TAR}\n")
    return {
        "instances": len(w.core),
        "image_queries": len(query_ids),
        "text_queries": len(text_ids),
        "positives": len(positive_ids),
    }


def write_uned(
    root: str | Path, *, seed: int, opts: IliasOptions, progress: bool = True
) -> dict[str, Any]:
    """``train/<instance>/<n>.jpg`` (even n clean, odd n cluttered) and ``misc/taxonomy.json``
    of the uned instances under ``root`` (each replaced whole); returns a summary."""
    root = Path(root)
    uned = uned_instances(seed, opts.instances, opts.group_size, opts.uned_instances)
    w = world(seed, *opts.world)
    size, q = opts.image_size, opts.jpeg_quality
    total = len(uned) * opts.uned_views
    bar = progress_bar(total=total, desc="mini-world uned", unit="img", disable=not progress)
    with atomic_dir(root / UNED_DIR) as tmp:
        for inst in uned:
            folder = tmp / inst.name
            folder.mkdir()
            for n in range(opts.uned_views):
                rng = _rng(seed, _UNED_VIEW, inst.index, n)
                if n % 2 == 0:
                    sc = query_scene(rng, inst.design, size)
                else:
                    sc = cluttered_scene(
                        rng, inst.design, size, lambda r=rng: w.other(r), opts.look
                    )
                img = render(sc.objects, size, rng, sc.calm)
                (folder / f"{n:03d}.jpg").write_bytes(_jpeg(img, q))
                bar.update()
    bar.close()
    with atomic_dir(root / MISC_DIR) as tmp:
        write_json(tmp / TAXONOMY, taxonomy(uned))
    return {"uned_instances": len(uned), "uned_images": total}


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_tar(path: str | Path, root: Path, folder: str) -> None:
    """``root/folder`` as a tar of its files, named from ``folder`` on (sorted, fixed
    headers: the same bytes each time)."""
    files = sorted(p for p in (root / folder).rglob("*") if p.is_file())
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for f in files:
            _member(tar, f.relative_to(root).as_posix(), f.read_bytes())


def shard_key(index: int, k: int) -> str:
    """The webdataset key of image ``k`` of shard ``index`` (unique across shards)."""
    return f"{index:05d}{k:05d}"


def write_shard(
    out: IO[bytes], *, seed: int, index: int, opts: IliasOptions, progress: bool = False
) -> int:
    """Shard ``index`` as a webdataset tar (members ``<key>.jpg``, in key order) into ``out``;
    returns the number of images."""
    scenes = distractor_scenes(seed, index, opts)
    rng = _rng(seed, _SHARD, index, 1)
    bar = progress_bar(
        total=len(scenes), desc=f"distractor shard {index}", unit="img", disable=not progress
    )
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for k, sc in enumerate(scenes):
            img = render(sc.objects, opts.image_size, rng, sc.calm)
            _member(tar, f"{shard_key(index, k)}.jpg", _jpeg(img, opts.jpeg_quality))
            bar.update()
    bar.close()
    return len(scenes)
