"""Scene model and renderer of the mini-world.

Shapes are polygons in a unit frame centred on the origin; their vertices are the
semantically defined keypoints (tip of the arrow, corners of the square, ...), so a keypoint
keeps its meaning across instances of a category, as SPair-71k's do across objects of a class.
Rendering draws at 4x and downsamples, for anti-aliased edges at small sizes.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def _regular(n: int, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (math.cos(phase + 2 * math.pi * i / n), math.sin(phase + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _star(n: int, inner: float) -> list[tuple[float, float]]:
    pts = []
    for i in range(2 * n):
        r = 1.0 if i % 2 == 0 else inner
        a = -math.pi / 2 + math.pi * i / n
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


# Polygon outlines in the unit frame (y down, as in images). Vertex order is the keypoint order.
CATEGORIES: dict[str, list[tuple[float, float]]] = {
    "triangle": _regular(3),
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "pentagon": _regular(5),
    "star": _star(5, 0.45),
    "cross": [
        (-0.3, -1),
        (0.3, -1),
        (0.3, -0.3),
        (1, -0.3),
        (1, 0.3),
        (0.3, 0.3),
        (0.3, 1),
        (-0.3, 1),
        (-0.3, 0.3),
        (-1, 0.3),
        (-1, -0.3),
        (-0.3, -0.3),
    ],
    "arrow": [(0, -1), (0.75, -0.2), (0.3, -0.2), (0.3, 1), (-0.3, 1), (-0.3, -0.2), (-0.75, -0.2)],
    "crescent": [(math.cos(a), math.sin(a)) for a in np.linspace(-math.pi / 2, math.pi / 2, 7)]
    + [(0.45 * math.cos(a), math.sin(a)) for a in np.linspace(math.pi / 2, -math.pi / 2, 7)],
    "hexagon": _regular(6, 0.0),
}

TEXTURES = ("solid", "stripes", "checker", "dots")
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Instance:
    """One textured object: what stays fixed across its views."""

    category: str
    hue: float
    saturation: float
    value: float
    texture: str
    texture_scale: float
    texture_angle: float
    aspect: float  # width / height stretch, fixed per instance

    def rgb(self, value_shift: float = 0.0) -> tuple[int, int, int]:
        v = float(np.clip(self.value + value_shift, 0.0, 1.0))
        r, g, b = colorsys.hsv_to_rgb(self.hue, self.saturation, v)
        return int(r * 255), int(g * 255), int(b * 255)


@dataclass(frozen=True)
class View:
    """Where and how an instance is seen."""

    angle: float  # radians
    scale: float  # object radius as a fraction of the image size
    cx: float  # centre, fraction of the image
    cy: float
    mirror: bool
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    bg_angle: float
    clutter: int
    occluder: bool


def make_instance(
    rng: np.random.Generator, category: str, textures: tuple[str, ...] = TEXTURES
) -> Instance:
    return Instance(
        category=category,
        hue=float(rng.uniform(0, 1)),
        saturation=float(rng.uniform(0.35, 1.0)),
        value=float(rng.uniform(0.45, 1.0)),
        texture=str(rng.choice(textures)),
        texture_scale=float(rng.uniform(0.08, 0.25)),
        texture_angle=float(rng.uniform(0, math.pi)),
        aspect=float(rng.uniform(0.8, 1.25)),
    )


def sample_view(
    rng: np.random.Generator,
    *,
    occlusion_prob: float = 0.0,
    max_clutter: int = 3,
    gradient: bool = True,
) -> View:
    """A random view. ``max_clutter`` distractor discs at most; ``gradient=False`` gives a flat background."""
    scale = float(rng.uniform(0.22, 0.38))
    margin = scale * 0.9
    bg = tuple(tuple(int(c) for c in rng.integers(0, 256, size=3)) for _ in range(2))
    if not gradient:
        bg = (bg[0], bg[0])
    return View(
        angle=float(rng.uniform(-math.pi, math.pi)),
        scale=scale,
        cx=float(rng.uniform(margin, 1 - margin)),
        cy=float(rng.uniform(margin, 1 - margin)),
        mirror=bool(rng.random() < 0.5),
        background=bg,  # type: ignore[arg-type]
        bg_angle=float(rng.uniform(0, 2 * math.pi)),
        clutter=int(rng.integers(0, max_clutter + 1)),
        occluder=bool(rng.random() < occlusion_prob),
    )


def keypoints(instance: Instance, view: View, size: int, height: int | None = None) -> np.ndarray:
    """Pixel (x, y) of every vertex of the instance in this view, shape (K, 2), float64.

    The canvas is ``size`` x ``size``, or ``size`` wide and ``height`` high; ``cx``/``cy`` are
    fractions of the width/height and ``scale`` of the shorter side, so a shape keeps its
    proportions on a non-square canvas.
    """
    width, height = size, size if height is None else height
    unit = min(width, height)
    pts = np.asarray(CATEGORIES[instance.category], dtype=np.float64).copy()
    pts[:, 0] *= instance.aspect
    if view.mirror:
        pts[:, 0] *= -1
    c, s = math.cos(view.angle), math.sin(view.angle)
    rot = pts @ np.array([[c, s], [-s, c]])
    # unit / width is exactly 1.0 on a square canvas: the same floats as before non-square ones.
    sx, sy = view.scale * (unit / width), view.scale * (unit / height)
    return np.stack([(view.cx + sx * rot[:, 0]) * width, (view.cy + sy * rot[:, 1]) * height], 1)


def _background(
    view: View, size: int, rng: np.random.Generator, height: int | None = None
) -> np.ndarray:
    height = size if height is None else height
    yy, xx = np.mgrid[0:height, 0:size]
    xx, yy = xx / max(size - 1, 1), yy / max(height - 1, 1)
    t = np.cos(view.bg_angle) * xx + np.sin(view.bg_angle) * yy
    t = (t - t.min()) / max(np.ptp(t), 1e-6)
    a, b = (np.asarray(c, dtype=np.float64) for c in view.background)
    img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    img += rng.normal(0, 8, size=img.shape)
    return img


def _supersampled(canvas: np.ndarray) -> np.ndarray:
    """Each pixel repeated SUPERSAMPLE x SUPERSAMPLE times: the values ``np.kron`` with a block
    of ones gives (a product by 1.0 is exact), without its multiplications
    (benchmarks/job_overheads.py)."""
    return canvas.repeat(SUPERSAMPLE, axis=0).repeat(SUPERSAMPLE, axis=1)


def _texture(
    instance: Instance,
    size: int,
    height: int | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """A texture field in [0.55, 1.0] that multiplies the instance colour.

    ``size`` wide and ``height`` (default ``size``) high; periods are fractions of the shorter side.
    ``window`` (x0, y0, x1, y1) returns only that part of the field, with the same values.
    """
    height = size if height is None else height
    x0, y0, x1, y1 = window if window is not None else (0, 0, size, height)
    yy, xx = np.mgrid[y0:y1, x0:x1] / min(size, height)
    c, s = math.cos(instance.texture_angle), math.sin(instance.texture_angle)
    u, v = c * xx + s * yy, -s * xx + c * yy
    period = instance.texture_scale
    if instance.texture == "stripes":
        f = (np.floor(u / period) % 2).astype(np.float64)
    elif instance.texture == "checker":
        f = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float64)
    elif instance.texture == "dots":
        du, dv = (u / period) % 1 - 0.5, (v / period) % 1 - 0.5
        f = ((du**2 + dv**2) < 0.09).astype(np.float64)
    else:
        f = np.zeros_like(u)
    return 1.0 - 0.45 * f


def _add_clutter(
    canvas: np.ndarray, count: int, rng: np.random.Generator, width: int, height: int
) -> np.ndarray:
    """Paint ``count`` discs of random colours (behind the object) on the supersampled canvas."""
    colours = []
    for _ in range(count):
        r = rng.uniform(0.04, 0.09) * min(width, height)
        x, y = rng.uniform(0, 1, size=2) * (width, height)
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).ellipse([x - r, y - r, x + r, y + r], fill=255)
        colours.append((np.asarray(mask, dtype=np.float64) / 255, rng.integers(0, 256, size=3)))
    for m, col in colours:
        canvas = canvas * (1 - m[..., None]) + col[None, None] * m[..., None]
    return canvas


def _paint(canvas: np.ndarray, mask: Image.Image, rgb: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, dtype=np.float64) / 255
    return canvas * (1 - m[..., None]) + rgb * m[..., None]


def _finish(canvas: np.ndarray, width: int, height: int) -> Image.Image:
    img = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(radius=SUPERSAMPLE * 0.3)).resize(
        (width, height), Image.Resampling.BOX
    )


def render(
    instance: Instance, view: View, size: int, rng: np.random.Generator
) -> tuple[Image.Image, np.ndarray, np.ndarray]:
    """Render one view. Returns the RGB image, the keypoints (K, 2) and a visibility mask (K,).

    A keypoint is invisible when it falls outside the image or under the occluder.
    """
    big = size * SUPERSAMPLE
    canvas = _background(view, big // SUPERSAMPLE, rng)
    canvas = _supersampled(canvas)
    canvas = _add_clutter(canvas, view.clutter, rng, big, big)

    kps = keypoints(instance, view, size)
    obj = Image.new("L", (big, big), 0)
    ImageDraw.Draw(obj).polygon([tuple(p) for p in kps * SUPERSAMPLE], fill=255)
    colour = np.asarray(instance.rgb(float(rng.normal(0, 0.05))), dtype=np.float64)
    # Shading varies with the pose, as light would.
    shade = 0.85 + 0.15 * math.cos(view.angle)
    canvas = _paint(canvas, obj, colour[None, None] * _texture(instance, big)[..., None] * shade)

    visible = (kps[:, 0] >= 0) & (kps[:, 0] < size) & (kps[:, 1] >= 0) & (kps[:, 1] < size)
    if view.occluder:
        # A grey bar across part of the object hides the keypoints under it.
        w = rng.uniform(0.12, 0.2) * size
        x0 = view.cx * size + rng.uniform(-0.3, 0.3) * view.scale * size - w / 2
        occ = Image.new("L", (big, big), 0)
        ImageDraw.Draw(occ).rectangle([x0 * SUPERSAMPLE, 0, (x0 + w) * SUPERSAMPLE, big], fill=255)
        canvas = _paint(canvas, occ, float(rng.uniform(60, 200)))
        visible &= ~((kps[:, 0] >= x0) & (kps[:, 0] <= x0 + w))
    return _finish(canvas, size, size), kps, visible


def mark_centre(instance: Instance, view: View, width: int, height: int) -> tuple[float, float]:
    """Pixel centre of the identity mark: 60% of the way from the object centre towards a
    point a quarter along the edge from vertex 0 to vertex 1, which lies on no symmetry axis
    of a regular shape, so shape and mark together look different mirrored or turned."""
    k = keypoints(instance, view, width, height)
    cx, cy = view.cx * width, view.cy * height
    tx, ty = 0.75 * k[0] + 0.25 * k[1]
    return cx + 0.6 * (tx - cx), cy + 0.6 * (ty - cy)


def render_scene(
    instance: Instance,
    view: View,
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    mark: bool = False,
    occluder: tuple[float, float, float, float] | None = None,
    occluder_grey: float = 128.0,
) -> Image.Image:
    """Render one view on a ``width`` x ``height`` canvas (the correspondence scenes).

    Unlike :func:`render`, the occluder is given (``x1, y1, x2, y2`` in pixels, drawn in front
    of the object in ``occluder_grey``) so that visibility is decided before rendering, and
    ``mark`` adds a small disc near vertex 0 in a colour contrasting with the object, which
    tells the vertices of a symmetric shape apart (as a face or a tail does on a real object).
    Vertices are drawn so that a keypoint ``(x, y)`` is the centre of pixel ``(x, y)``.
    """
    bw, bh = width * SUPERSAMPLE, height * SUPERSAMPLE
    canvas = _background(view, width, rng, height)
    canvas = _supersampled(canvas)
    canvas = _add_clutter(canvas, view.clutter, rng, bw, bh)

    def big(x: float) -> float:  # pixel-centre coordinate -> supersampled drawing coordinate
        return x * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2

    kps = keypoints(instance, view, width, height)
    obj = Image.new("L", (bw, bh), 0)
    ImageDraw.Draw(obj).polygon([(big(x), big(y)) for x, y in kps], fill=255)
    colour = np.asarray(instance.rgb(float(rng.normal(0, 0.05))), dtype=np.float64)
    shade = 0.85 + 0.15 * math.cos(view.angle)
    tex = _texture(instance, bw, bh)
    canvas = _paint(canvas, obj, colour[None, None] * tex[..., None] * shade)
    if mark:
        mx, my = mark_centre(instance, view, width, height)
        r = 0.14 * view.scale * min(width, height) * SUPERSAMPLE
        disc = Image.new("L", (bw, bh), 0)
        ImageDraw.Draw(disc).ellipse([big(mx) - r, big(my) - r, big(mx) + r, big(my) + r], fill=255)
        canvas = _paint(canvas, disc, 20.0 if instance.value * shade > 0.6 else 235.0)
    if occluder is not None:
        x1, y1, x2, y2 = occluder
        occ = Image.new("L", (bw, bh), 0)
        ImageDraw.Draw(occ).rectangle([big(x1), big(y1), big(x2), big(y2)], fill=255)
        canvas = _paint(canvas, occ, occluder_grey)
    return _finish(canvas, width, height)


def render_objects(
    objects: list[tuple[Instance, View]],
    width: int,
    height: int,
    rng: np.random.Generator,
    *,
    background: View,
) -> Image.Image:
    """Render several objects, painted in order (later ones in front), on one canvas.

    ``background`` gives the background colours, gradient angle and clutter; each object's
    own view its pose, scale and centre. Drawn as :func:`render_scene` draws one object
    (a vertex ``(x, y)`` is the centre of pixel ``(x, y)``), without mark or occluder.
    """
    bw, bh = width * SUPERSAMPLE, height * SUPERSAMPLE
    canvas = _background(background, width, rng, height)
    canvas = _supersampled(canvas)
    canvas = _add_clutter(canvas, background.clutter, rng, bw, bh)
    for instance, view in objects:
        kps = keypoints(instance, view, width, height)
        obj = Image.new("L", (bw, bh), 0)
        pts = [
            (x * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2, y * SUPERSAMPLE + (SUPERSAMPLE - 1) / 2)
            for x, y in kps
        ]
        ImageDraw.Draw(obj).polygon(pts, fill=255)
        colour = np.asarray(instance.rgb(float(rng.normal(0, 0.05))), dtype=np.float64)
        shade = 0.85 + 0.15 * math.cos(view.angle)
        box = obj.getbbox()  # paint only where the polygon is: the rest of the canvas is kept
        if box is None:
            continue
        x0, y0, x1, y1 = box
        tex = _texture(instance, bw, bh, window=(x0, y0, x1, y1))
        canvas[y0:y1, x0:x1] = _paint(
            canvas[y0:y1, x0:x1], obj.crop(box), colour[None, None] * tex[..., None] * shade
        )
    return _finish(canvas, width, height)
