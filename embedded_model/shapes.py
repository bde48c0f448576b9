"""The procedural dataset of the embedded model: simple scenes, their captions, and measurements.

One place for the palette and the geometry, used by training (`embedded_model.train`), by
evaluation (`embedded_model.evaluate`) and by the tests:

- `sample_scene(rng, split)` draws a scene: one or two objects (shape, colour, size, position)
  on a background colour, with a caption in varied phrasing that names some or all of them.
- `render(scenes, size)` draws scenes as anti-aliased images (a torch tensor, CPU or GPU), from
  signed distance functions; `render_pil` gives PIL images.
- `HELDOUT` is the fixed set of (object colour, shape, background) triples never seen in
  training; `split="heldout"` draws scenes whose first object has such a triple.
- `measure(image)` reads a picture back with simple pixel measurements (background = modal
  palette colour of the border; object = pixels unlike the background; its colour, position,
  size and shape), and `score(scene, image)` says which of the caption's claims it meets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

PALETTE = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 30),
    "green": (30, 170, 60),
    "blue": (30, 80, 220),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "star", "ring")
SIZES = {"small": 0.11, "large": 0.21}  # circumradius, as a fraction of the image side
POSITIONS = {"left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73),
             "center": (0.5, 0.5)}  # (x, y), y down
JITTER = 0.035  # uniform +- on each coordinate of the position
SIZE_JITTER = 0.1  # relative +- on the radius


def _heldout() -> frozenset[tuple[str, str, str]]:
    """24 (colour, shape, background) triples: each background 3 times, each shape and colour
    several times, so that every pair inside a triple is still seen in training."""
    triples = set()
    for i, background in enumerate(COLOURS):
        for k in range(3):
            colour = COLOURS[(i + 3 * k + 1) % len(COLOURS)]
            shape = SHAPES[(i + 2 * k) % len(SHAPES)]
            triples.add((colour, shape, background))
    return frozenset(triples)


HELDOUT = _heldout()


# ----- scenes -----------------------------------------------------------------------------------
@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    position: str
    x: float  # centre, fraction of the width
    y: float  # centre, fraction of the height
    r: float  # circumradius, fraction of the side
    named: frozenset = frozenset({"shape", "colour", "size", "position"})  # what the caption says


@dataclass
class Scene:
    background: str
    objects: list[Obj]
    caption: str = ""
    bg_named: bool = True

    @property
    def heldout(self) -> bool:
        return any((o.colour, o.shape, self.background) in HELDOUT for o in self.objects)


def _place(rng: np.random.Generator, position: str, size: str) -> tuple[float, float, float]:
    x, y = POSITIONS[position]
    r = SIZES[size] * (1 + rng.uniform(-SIZE_JITTER, SIZE_JITTER))
    return x + rng.uniform(-JITTER, JITTER), y + rng.uniform(-JITTER, JITTER), r


def sample_scene(rng: np.random.Generator, split: str = "train", objects: int | None = None,
                 full: bool = False) -> Scene:
    """A random scene with a caption. split: "train" (no held-out triple anywhere), "heldout"
    (the first object's triple is held out; the rest as in train) or "any". objects: 1 or 2
    (default: 2 with probability 0.3). full: the caption names every attribute (for evaluation)."""
    n = objects or (2 if rng.random() < 0.3 else 1)
    for _ in range(1000):
        background = COLOURS[rng.integers(len(COLOURS))]
        objs: list[Obj] = []
        for k in range(n):
            for _ in range(100):
                colour = COLOURS[rng.integers(len(COLOURS))]
                shape = SHAPES[rng.integers(len(SHAPES))]
                if colour == background or any(o.colour == colour for o in objs):
                    continue
                held = (colour, shape, background) in HELDOUT
                if (split == "heldout" and k == 0) != held and split != "any":
                    continue
                size = "large" if rng.random() < 0.5 else "small"
                if n > 1:  # two large objects never fit side by side
                    size = "small" if (k == 1 and objs[0].size == "large") or rng.random() < 0.6 else size
                position = tuple(POSITIONS)[rng.integers(len(POSITIONS))]
                x, y, r = _place(rng, position, size)
                if any(o.position == position or math.hypot(o.x - x, o.y - y) < o.r + r + 0.04 for o in objs):
                    continue
                objs.append(Obj(shape, colour, size, position, x, y, r))
                break
        if len(objs) == n:
            scene = Scene(background, objs)
            scene.caption = caption(scene, rng, full=full)
            return scene
    raise RuntimeError("could not sample a scene")  # pragma: no cover


# ----- captions ---------------------------------------------------------------------------------
SIZE_WORDS = {"small": ("small", "small", "little", "tiny"), "large": ("large", "large", "big", "huge")}
POSITION_WORDS = {
    "left": ("on the left", "on the left", "at the left", "to the left", "on the left side", "left"),
    "right": ("on the right", "on the right", "at the right", "to the right", "on the right side", "right"),
    "top": ("at the top", "at the top", "on top", "at the top of the image", "in the upper part", "top"),
    "bottom": ("at the bottom", "at the bottom", "at the bottom of the image", "in the lower part",
               "near the bottom", "bottom"),
    "center": ("in the center", "in the center", "in the middle", "in the centre", "at the center", "centered"),
}
BACKGROUND_SUFFIX = ("on a {} background", "on a {} background", "against a {} background",
                     "with a {} background", ", {} background", "on {}", "over a {} background",
                     "on a plain {} background")
BACKGROUND_PREFIX = ("{} background, ", "on a {} background, ", "a {} background with ")
JOINERS = (" and ", " and ", ", ", " with ", " next to ")


def _article(word: str, rng) -> str:
    if rng.random() < 0.1:
        return "one " if rng.random() < 0.5 else ""
    return "an " if word[0] in "aeiou" else "a "


def _object_phrase(o: Obj, rng, full: bool) -> str:
    named = {"shape", "colour"}
    if full or rng.random() < 0.75:
        named.add("size")
    if full or rng.random() < 0.7:
        named.add("position")
    if not full and rng.random() < 0.04:
        named.discard("colour")
    o.named = frozenset(named)
    words = []
    if "size" in named:
        words.append(SIZE_WORDS[o.size][rng.integers(4)] if not full else o.size)
    if "colour" in named:
        words.append(o.colour)
    words.append(o.shape)
    text = _article(words[0], rng) if not full else ("an " if words[0][0] in "aeiou" else "a ")
    text += " ".join(words)
    if "position" in named:
        phrases = POSITION_WORDS[o.position]
        phrase = phrases[0] if full else phrases[rng.integers(len(phrases))]
        # the bare word in the terse style of prompts: "a red circle, left" or "a red circle left"
        text += (", " if phrase in POSITIONS and rng.random() < 0.5 else " ") + phrase
    return text


def caption(scene: Scene, rng: np.random.Generator, full: bool = False) -> str:
    """A caption naming the scene in one of many phrasings (full: every attribute, plain phrasing)."""
    parts = [_object_phrase(o, rng, full) for o in scene.objects]
    body = parts[0]
    for p in parts[1:]:
        body += " and " if full else JOINERS[rng.integers(len(JOINERS))]
        body += p
    scene.bg_named = full or rng.random() < 0.9
    if not scene.bg_named:
        return body
    bg = scene.background
    article = "an" if bg[0] in "aeiou" else "a"
    if full:
        return f"{body} on {article} {bg} background"
    if rng.random() < 0.2:
        text = BACKGROUND_PREFIX[rng.integers(len(BACKGROUND_PREFIX))].format(bg) + body
    else:
        suffix = BACKGROUND_SUFFIX[rng.integers(len(BACKGROUND_SUFFIX))].format(bg)
        text = body + ("" if suffix.startswith(",") else " ") + suffix
    text = text.replace(f" a {bg}", f" {article} {bg}")
    return f"{article} {text[2:]}" if text.startswith(f"a {bg}") else text


def scene_from(background: str, *objects: tuple, caption_text: str | None = None) -> Scene:
    """A scene from (shape, colour, size, position) tuples, centred on the anchors; full caption."""
    objs = [Obj(s, c, z, p, *POSITIONS[p], SIZES[z]) for s, c, z, p in objects]
    scene = Scene(background, objs)
    scene.caption = caption_text or caption(scene, np.random.default_rng(0), full=True)
    return scene


# ----- geometry and rendering -------------------------------------------------------------------
def _centred(vertices: np.ndarray) -> np.ndarray:
    lo, hi = vertices.min(0), vertices.max(0)
    return vertices - (lo + hi) / 2  # the shape's bounding box is centred on the object's centre


def _polygons() -> dict[str, np.ndarray]:
    """Vertices (unit circumradius, y down) of the polygon shapes, centred on their bounding box."""
    tri = np.array([[math.cos(a), math.sin(a)] for a in np.radians([-90, 30, 150])]) * 1.08
    star = np.array([[math.cos(a) * r, math.sin(a) * r]
                     for k in range(10) for a, r in [(math.radians(-90 + 36 * k), 1.08 if k % 2 == 0 else 0.45)]])
    square = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * 0.8
    return {"triangle": _centred(tri), "star": _centred(star), "square": square}


POLYGONS = _polygons()
RING_INNER = 0.55  # inner radius of a ring, relative to its outer radius


def half_extent(shape: str) -> tuple[float, float]:
    """Half width and half height of a shape of unit circumradius."""
    if shape in POLYGONS:
        v = POLYGONS[shape]
        return float(v[:, 0].max()), float(v[:, 1].max())
    return 1.0, 1.0


def _polygon_sdf(px: torch.Tensor, py: torch.Tensor, v: np.ndarray) -> torch.Tensor:
    """Signed distance (negative inside) to a polygon, for points in units of the circumradius."""
    d = (px - v[0, 0]) ** 2 + (py - v[0, 1]) ** 2
    sign = torch.ones_like(px)
    n = len(v)
    for i in range(n):
        j = (i - 1) % n
        ex, ey = v[j, 0] - v[i, 0], v[j, 1] - v[i, 1]
        wx, wy = px - v[i, 0], py - v[i, 1]
        t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0, 1)
        bx, by = wx - ex * t, wy - ey * t
        d = torch.minimum(d, bx * bx + by * by)
        c1, c2, c3 = py >= v[i, 1], py < v[j, 1], ex * wy > ey * wx
        flip = (c1 & c2 & c3) | (~c1 & ~c2 & ~c3)
        sign = torch.where(flip, -sign, sign)
    return sign * d.sqrt()


def shape_sdf(shape: str, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """Signed distance to a shape of unit circumradius centred at the origin (points in those units)."""
    if shape == "circle":
        return (px * px + py * py).sqrt() - 1
    if shape == "ring":
        mid, half = (1 + RING_INNER) / 2, (1 - RING_INNER) / 2
        return ((px * px + py * py).sqrt() - mid).abs() - half
    return _polygon_sdf(px, py, POLYGONS[shape])


def coverage(shape: str, x, y, r, size: int, device="cpu", window: int | None = None):
    """Anti-aliased coverage in [0, 1] of N shapes with centres x, y and radii r (sequences of
    fractions of the side): (N, size, size), or with window=W the (N, W, W) squares around the
    centres and their top-left pixel offsets (N, 2) as (x0, y0) (which may lie outside the picture)."""
    x, y, r = (np.asarray(a, dtype=np.float32).reshape(-1) for a in (x, y, r))
    if window is None:
        x0 = y0 = np.zeros(len(x), np.int64)
        n_pix = size
    else:
        x0 = np.floor(x * size).astype(np.int64) - window // 2
        y0 = np.floor(y * size).astype(np.int64) - window // 2
        n_pix = window
    ar = torch.arange(n_pix, device=device, dtype=torch.float32) + 0.5
    t = lambda a: torch.as_tensor(a, device=device, dtype=torch.float32).view(-1, 1)  # noqa: E731
    px = ((ar.view(1, -1) + t(x0)) / size - t(x)) / t(r)
    py = ((ar.view(1, -1) + t(y0)) / size - t(y)) / t(r)
    n = len(x)
    px, py = px.view(n, 1, n_pix).expand(n, n_pix, n_pix), py.view(n, n_pix, 1).expand(n, n_pix, n_pix)
    sdf_pixels = shape_sdf(shape, px, py) * t(r).view(-1, 1, 1) * size  # distance in pixels
    alpha = (0.5 - sdf_pixels).clamp(0, 1)
    return alpha if window is None else (alpha, np.stack([x0, y0], 1))


def _colour_tensor(names, device) -> torch.Tensor:
    return torch.tensor([PALETTE[c] for c in names], dtype=torch.float32, device=device) / 255


def render(scenes: list[Scene], size: int = 128, device="cpu") -> torch.Tensor:
    """Images (N, 3, size, size) in [0, 1], float32, on the device."""
    n = len(scenes)
    image = _colour_tensor([s.background for s in scenes], device).view(n, 3, 1, 1).expand(n, 3, size, size).clone()
    slots = max(len(s.objects) for s in scenes)
    for k in range(slots):
        for shape in SHAPES:
            idx = [i for i, s in enumerate(scenes) if len(s.objects) > k and s.objects[k].shape == shape]
            if not idx:
                continue
            objs = [scenes[i].objects[k] for i in idx]
            window = int(math.ceil(2 * max(o.r for o in objs) * size)) + 4
            alphas, corners = coverage(shape, [o.x for o in objs], [o.y for o in objs], [o.r for o in objs],
                                       size, device, window=window)
            full = torch.zeros(len(idx), size + 2 * window, size + 2 * window, device=device)
            for j, (x0, y0) in enumerate(corners.tolist()):  # paste each window (margins absorb overflow)
                full[j, y0 + window:y0 + 2 * window, x0 + window:x0 + 2 * window] = alphas[j]
            alpha = full[:, window:window + size, window:window + size].unsqueeze(1)
            colour = _colour_tensor([o.colour for o in objs], device).view(-1, 3, 1, 1)
            sel = torch.tensor(idx, device=device)
            image[sel] = image[sel] * (1 - alpha) + colour * alpha
    return image


def to_pil(images: torch.Tensor) -> list:
    from PIL import Image
    arr = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(a) for a in arr]


def render_pil(scenes: list[Scene], size: int = 128) -> list:
    return to_pil(render(scenes, size))


# ----- measurements -----------------------------------------------------------------------------
_PALETTE_ARRAY = np.array([PALETTE[c] for c in COLOURS], dtype=np.float32)
OBJECT_DISTANCE = 60.0  # RGB distance from the background colour above which a pixel is "object"


@dataclass
class Reading:
    background: str
    colour: str | None = None  # modal palette colour of the largest object
    colours: list = field(default_factory=list)  # modal colour of each object (largest first, up to 2)
    position: str | None = None
    size: str | None = None
    shape: str | None = None
    area: float = 0.0  # fraction of the picture covered by object pixels


def nearest_colours(rgb: np.ndarray) -> np.ndarray:
    """Index into COLOURS of the nearest palette colour of each pixel (..., 3) uint8/float."""
    d = ((rgb[..., None, :].astype(np.float32) - _PALETTE_ARRAY) ** 2).sum(-1)
    return d.argmin(-1)


def _as_array(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        return image
    return np.asarray(image.convert("RGB"))


def background_of(image) -> str:
    arr = _as_array(image)
    border = np.concatenate([arr[:2].reshape(-1, 3), arr[-2:].reshape(-1, 3),
                             arr[:, :2].reshape(-1, 3), arr[:, -2:].reshape(-1, 3)])
    return COLOURS[np.bincount(nearest_colours(border), minlength=len(COLOURS)).argmax()]


def object_mask(image, background: str | None = None) -> np.ndarray:
    arr = _as_array(image).astype(np.float32)
    background = background or background_of(arr.astype(np.uint8))
    far = np.sqrt(((arr - np.array(PALETTE[background], np.float32)) ** 2).sum(-1)) > OBJECT_DISTANCE
    return far & (nearest_colours(arr) != COLOURS.index(background))


def classify_shape(mask: np.ndarray) -> str | None:
    """The shape whose template, fitted to the mask's bounding box, overlaps it best (IoU)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 4:
        return None
    h, w = mask.shape
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    cx, cy = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h
    best, best_iou = None, -1.0
    m = torch.from_numpy(mask)
    for shape in SHAPES:
        hx, hy = half_extent(shape)
        r = ((x1 - x0) / 2 / w / hx + (y1 - y0) / 2 / h / hy) / 2
        t = coverage(shape, [cx], [cy], [r], w)[0] > 0.5 if w == h else None
        if t is None:
            raise ValueError("classify_shape needs a square picture")
        iou = float((t & m).sum()) / max(1.0, float((t | m).sum()))
        if iou > best_iou:
            best, best_iou = shape, iou
    return best


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """Connected components of the mask (8-connected), largest first, ignoring specks."""
    from scipy import ndimage
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(-sizes)
    return [labels == (i + 1) for i in order if sizes[i] >= max(4, 0.002 * mask.size)]


def _nearest_position(cx: float, cy: float) -> str:
    return min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)


def measure(image) -> Reading:
    """Read the background colour, and the largest object's colour, position, size and shape."""
    arr = _as_array(image)
    h, w = arr.shape[:2]
    background = background_of(arr)
    mask = object_mask(arr, background)
    reading = Reading(background, area=float(mask.mean()))
    parts = _components(mask)
    if not parts:
        return reading
    labels = nearest_colours(arr)
    for part in parts[:2]:
        # the component's colour: mode of its pixels, without its (blended) one-pixel rim
        from scipy import ndimage
        core = ndimage.binary_erosion(part) if part.sum() > 30 else part
        core = core if core.any() else part
        reading.colours.append(COLOURS[np.bincount(labels[core], minlength=len(COLOURS)).argmax()])
    main = parts[0]
    # fill the holes of a ring for its outline? no: the template of a ring has its hole too
    ys, xs = np.nonzero(main)
    reading.colour = reading.colours[0]
    reading.position = _nearest_position((xs.min() + xs.max() + 1) / 2 / w, (ys.min() + ys.max() + 1) / 2 / h)
    radius = max(xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()) / 2 / w
    shape = classify_shape(main)
    reading.shape = shape
    if shape is not None:
        radius /= max(half_extent(shape))
    reading.size = "large" if radius > (SIZES["small"] + SIZES["large"]) / 2 else "small"
    return reading


def score(scene: Scene, image) -> dict[str, bool]:
    """Which of the caption's claims the picture meets: background, colour, position, shape,
    size (each present only when the caption names it; single-object scenes are read fully,
    two-object scenes for the background and for both colours)."""
    r = measure(image)
    out: dict[str, bool] = {}
    if scene.bg_named:
        out["background"] = r.background == scene.background
    if len(scene.objects) == 1:
        o = scene.objects[0]
        if "colour" in o.named:
            out["colour"] = r.colour == o.colour
        if "position" in o.named:
            out["position"] = r.position == o.position
        if "shape" in o.named:
            out["shape"] = r.shape == o.shape
        if "size" in o.named:
            out["size"] = r.size == o.size
    else:
        named = [o.colour for o in scene.objects if "colour" in o.named]
        if named:
            out["colour"] = sorted(r.colours) == sorted(named) if len(named) == len(scene.objects) \
                else all(c in r.colours for c in named)
    return out
