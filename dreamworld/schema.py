"""The one schema of a generation request.

Every field is declared once here, with its type, default, allowed range and
help text. The CLI flags, the GUI controls, the HTTP API, the metadata writer
and reader, and validation are all derived from `FIELDS`.

A cinema run (an animation) is a `CinemaRequest`: the Request's fields that make
sense for a whole run (a field added to Request appears there too, unless listed in
CINEMA_EXCLUDED), with strength and guidance_scale as per-frame schedules, plus the
cinema fields. `CINEMA_FIELDS` plays the part of `FIELDS` for it, and
`validate_cinema` that of `validate`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

MODES = ("txt2img", "img2img", "inpaint")
BACKENDS = ("torch", "tensorflow")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FORMATS = ("png", "jpg", "webp")
SCHEDULERS = (
    "Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DPM++ SDE Karras",
    "DDIM", "LMS", "Heun", "UniPC", "PNDM",
)
# Samplers that add fresh noise at every step, and the deterministic sampler of the same family that a
# dream walk uses instead: their per-step noise would jump with the seed mid-walk.
STOCHASTIC_SAMPLERS = {"Euler a": "Euler", "DPM++ SDE Karras": "DPM++ 2M Karras"}
MAX_SEED = 2**32 - 1
MOTIONS = ("2d", "3d", "dream", "video")
BORDERS = ("replicate", "wrap", "reflect")
SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
COLOR_COHERENCE = ("none", "lab", "hsv", "rgb")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0", "")


class RequestError(ValueError):
    """A request field is invalid. `str(error)` is one sentence for the user."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


def _spec(default, *, help: str, min=None, max=None, choices=None,
          multiple_of=None, key=False, kind=None):
    """A field. `kind`: None (plain), "image" or "video" (a file), "schedule" (a number per frame,
    see schedules.py; min/max bound every frame's value), "prompts" (prompt keyframes)."""
    return field(default=default, metadata=dict(
        help=help, min=min, max=max, choices=choices,
        multiple_of=multiple_of, key=key, kind=kind))


@dataclass
class Request:
    """A generation request. `None` for width/height means the model's native size."""

    mode: str = _spec("txt2img", choices=MODES, help="txt2img, img2img or inpaint")
    prompt: str = _spec("", help="what to draw")
    negative_prompt: str = _spec("", help="what to avoid")
    width: int | None = _spec(None, min=64, max=2048, multiple_of=8,
                              help="image width in pixels (default: the model's native size)")
    height: int | None = _spec(None, min=64, max=2048, multiple_of=8,
                               help="image height in pixels (default: the model's native size)")
    steps: int = _spec(20, min=1, max=150, help="number of denoising steps")
    guidance_scale: float = _spec(7.0, min=0.0, max=30.0, help="classifier-free guidance (CFG) scale")
    scheduler: str = _spec("Euler a", choices=SCHEDULERS, help="sampler / scheduler")
    seed: int = _spec(-1, min=-1, max=MAX_SEED, help="random seed, -1 for a random one")
    count: int = _spec(1, min=1, max=16, help="number of images; seeds run seed, seed+1, ...")
    strength: float = _spec(0.75, min=0.0, max=1.0,
                            help="denoising strength for img2img and inpaint")
    init_image: str | None = _spec(None, kind="image", help="input image file for img2img and inpaint")
    mask: str | None = _spec(None, kind="image", help="inpaint mask file (white = repaint)")
    mask_blur: int = _spec(4, min=0, max=64, help="blur radius of the inpaint mask edge in pixels")
    clip_skip: int = _spec(1, min=1, max=12, help="skip the last CLIP layers (1 = none)")
    model: str = _spec("", key=True, help="model name in models/ (default: from settings)")
    vae: str = _spec("", key=True, help="VAE name in models/VAE (default: the model's own)")
    backend: str = _spec("torch", choices=BACKENDS, key=True, help="generation engine")
    device: str = _spec("auto", choices=DEVICES, key=True, help="compute device")
    precision: str = _spec("auto", choices=PRECISIONS, key=True, help="numeric precision")
    jit: bool = _spec(False, key=True, help="XLA-compile the networks for the image size (backends that can)")
    format: str = _spec("png", choices=FORMATS, help="image file format")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "Request":
        return dataclasses.replace(self, **changes)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(Request)}
KEY_FIELDS = tuple(name for name, f in FIELDS.items() if f.metadata["key"])


def field_type(name: str, fields: dict | None = None) -> type:
    """The base Python type of a field: bool, int, float or str."""
    annotation = str((fields or FIELDS)[name].type)
    for t in (bool, int, float, str):
        if annotation.startswith(t.__name__):
            return t
    raise TypeError(f"unsupported annotation {annotation} for {name}")


def allowed(name: str, fields: dict | None = None) -> str:
    """Describe the allowed values of a field, for error and help messages."""
    m = (fields or FIELDS)[name].metadata
    if m["choices"]:
        return "one of " + ", ".join(repr(c) for c in m["choices"])
    if field_type(name, fields) is bool:
        return "true or false"
    parts = []
    if m["kind"] == "schedule":
        parts.append("a number or a schedule such as '0:(1.0), 30:(1.05)'")
        if m["min"] is not None:
            parts.append(f"with values from {m['min']} to {m['max']}")
        return " ".join(parts)
    if m["kind"] == "prompts":
        return 'prompts by frame such as {"0": "a forest", "24": "a city"}'
    if m["min"] is not None:
        parts.append(f"from {m['min']} to {m['max']}")
    if m["multiple_of"]:
        parts.append(f"a multiple of {m['multiple_of']}")
    return " and ".join(parts) or "text"


def _convert(name: str, value: Any, fields: dict | None = None) -> Any:
    fields = fields or FIELDS
    f = fields[name]
    kind = field_type(name, fields)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise RequestError(name, f"{name} must be true or false, got {value!r}")
    if value is None or (isinstance(value, str) and value == "" and f.default is None):
        if f.default is None:
            return None
        raise RequestError(name, f"{name} is required ({allowed(name, fields)})")
    if f.metadata["kind"] in ("image", "video"):
        return _file(name, value, f.metadata["kind"])
    if f.metadata["kind"] == "schedule":
        if value == "" and f.default == "":
            return ""  # an optional schedule left out
        from . import schedules
        return schedules.check(value, name)
    if f.metadata["kind"] == "prompts":
        from . import schedules
        if isinstance(value, dict):
            value = json.dumps(value, ensure_ascii=False)
        schedules.parse_prompts(value, name, first="")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise RequestError(name, f"{name} must be text, got {value!r}")
        return value
    if isinstance(value, bool):
        raise RequestError(name, f"{name} must be a number {allowed(name, fields)}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(name, f"{name} must be a number {allowed(name, fields)}, got {value!r}") from None
    if not math.isfinite(number):
        raise RequestError(name, f"{name} must be a finite number {allowed(name, fields)}, got {value!r}")
    if kind is int:
        if number != int(number):
            raise RequestError(name, f"{name} must be a whole number {allowed(name, fields)}, got {value!r}")
        return int(number)
    return number


def _file(name: str, value: Any, kind: str):
    """A file field's value: a path (text or path-like) or, for images, a PIL image."""
    if isinstance(value, str):
        return value
    if hasattr(value, "__fspath__"):
        return str(value.__fspath__())
    if kind == "image":
        from PIL import Image
        if isinstance(value, Image.Image):
            return value
    shown = repr(value) if len(repr(value)) <= 40 else type(value).__name__
    what = "a file path or a PIL image" if kind == "image" else "a file path"
    raise RequestError(name, f"{name} must be {what}, got {shown}")


def check_range(name: str, value, fields: dict | None = None, frame: int | None = None) -> None:
    """Raise RequestError if a number is outside a field's range (`frame`: a schedule's value there)."""
    m = (fields or FIELDS)[name].metadata
    if m["min"] is not None and not (m["min"] <= value <= m["max"]):
        if frame is None:
            raise RequestError(name, f"{name} must be {allowed(name, fields)}, got {value!r}")
        raise RequestError(name, f"{name} must be from {m['min']} to {m['max']} at every frame; "
                                 f"its schedule gives {value:g} at frame {frame}")


def _check(name: str, value: Any, fields: dict | None = None) -> None:
    fields = fields or FIELDS
    m = fields[name].metadata
    if value is None or m["kind"] in ("image", "video", "prompts") or isinstance(value, bool):
        return
    if m["kind"] == "schedule":
        from . import schedules
        if value != "" and m["min"] is not None:
            schedule = schedules.parse(value, name)
            if schedule.is_constant:
                check_range(name, schedule.values(1)[0], fields, frame=0)
        return
    if m["choices"] and value not in m["choices"]:
        raise RequestError(name, f"{name} must be {allowed(name, fields)}, got {value!r}")
    check_range(name, value, fields)
    if m["multiple_of"] and value % m["multiple_of"]:
        raise RequestError(name, f"{name} must be {allowed(name, fields)}, got {value!r}")


def _validate(cls, fields: dict, values: dict | None, base, limits: dict | None):
    values = dict(values or {})
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RequestError(unknown[0], f"unknown field {unknown[0]!r}; known fields: {', '.join(fields)}")
    merged = (base or cls()).to_dict()
    merged.update(values)
    out = {}
    for name, value in merged.items():
        value = _convert(name, value, fields)
        _check(name, value, fields)
        limit = (limits or {}).get(name, {}).get("max")
        numeric = fields[name].metadata["kind"] is None and field_type(name, fields) in (int, float)
        if limit is not None and numeric and value is not None and value > limit:
            raise RequestError(name, f"{name} must be at most {limit} (settings limit), got {value!r}")
        out[name] = value
    return cls(**out)


def validate(values: dict[str, Any] | None = None, base: Request | None = None,
             limits: dict[str, dict] | None = None) -> Request:
    """Build a Request from `values` over `base`, or raise RequestError naming the field.

    `limits` may lower a field's maximum, e.g. {"steps": {"max": 80}} from settings.json.
    """
    request = _validate(Request, FIELDS, values, base, limits)
    _check_consistency(request)
    return request


def _check_consistency(r: Request) -> None:
    if r.mode in ("img2img", "inpaint") and not r.init_image:
        raise RequestError("init_image", f"init_image is required in {r.mode} mode")
    if r.mode == "inpaint" and r.mask is None:
        raise RequestError("mask", "mask is required in inpaint mode (white = repaint)")
    if r.mode in ("img2img", "inpaint") and int(r.steps * r.strength) < 1:  # as the pipelines count steps
        raise RequestError("strength", f"strength {r.strength:g} with {r.steps} steps leaves no denoising step; "
                                       f"strength must be at least {1 / r.steps:.3g} for {r.steps} steps")


# ----- cinema -----------------------------------------------------------------------------
# Request fields that mean nothing for a whole animation: each frame's mode is chosen by the
# run, frames are always PNG (lossless: each is the next one's input), and there is no mask.
CINEMA_EXCLUDED = ("mode", "count", "mask", "mask_blur", "format")


def _schedule(default: str, *, help: str, min=None, max=None):
    return _spec(default, kind="schedule", min=min, max=max, help=help)


# Request fields that become schedules in a cinema run.
_CINEMA_OVERRIDES = {
    "strength": _schedule("0.45", min=0.0, max=1.0,
                          help="denoising strength per frame: how much each frame may change its input "
                               "(Deforum's strength is 1 minus this)"),
    "guidance_scale": _schedule("7", min=0.0, max=30.0, help="classifier-free guidance (CFG) scale per frame"),
}

# Shared fields whose meaning in a run needs other words.
_CINEMA_HELP = {
    "init_image": "2d/3d: the first frame's input image (img2img at the first frame's strength)",
    "seed": "the first frame's seed, -1 for a random one; seed_behavior gives the others",
    "prompt": "what to draw (at every frame, unless prompts changes it)",
}

_CINEMA_OWN = [
    ("frames", "int | None", _spec(None, min=1, max=10000,
                                   help="number of frames (default 24; video motion: every frame taken from the video)")),
    ("fps", "float | None", _spec(None, min=1.0, max=120.0,
                                  help="frames per second of the video (default 12; video motion: the input's "
                                       "rate divided by every_nth)")),
    ("motion", "str", _spec("2d", choices=MOTIONS,
                            help="2d (zoom, angle, translate x/y), 3d (camera translate x/y/z and rotate x/y/z), "
                                 "dream (a latent walk between seeds and prompts) or video (style an input video)")),
    ("prompts", "str", _spec("", kind="prompts", help="prompts by frame as JSON; frame 0's defaults to prompt")),
    ("zoom", "str", _schedule("1.02", min=0.01, max=100.0, help="2d: scale per frame (1 = none, 1.02 = 2% closer)")),
    ("angle", "str", _schedule("0", help="2d: rotation per frame in degrees, counter-clockwise")),
    ("translate_x", "str", _schedule("0", help="2d: pixels per frame to the right; 3d: camera slide to the "
                                               "right in 1/200 of the distance to the picture (the picture moves right)")),
    ("translate_y", "str", _schedule("0", help="2d: pixels per frame down; 3d: camera slide (the picture moves down)")),
    ("translate_z", "str", _schedule("0", max=199.0, min=-10000.0,
                                     help="3d: camera move forward per frame, in 1/200 of the distance to the picture")),
    ("rotate_x", "str", _schedule("0", help="3d: camera tilt per frame in degrees (positive: the picture moves down)")),
    ("rotate_y", "str", _schedule("0", help="3d: camera pan per frame in degrees (positive: the picture moves left)")),
    ("rotate_z", "str", _schedule("0", help="3d: camera roll per frame in degrees, counter-clockwise")),
    ("fov", "float", _spec(40.0, min=1.0, max=170.0, help="3d: horizontal field of view of the camera in degrees")),
    ("center_x", "str", _schedule("0.5", help="2d: horizontal centre of zoom and rotation (0 = left, 1 = right)")),
    ("center_y", "str", _schedule("0.5", help="2d: vertical centre of zoom and rotation (0 = top, 1 = bottom)")),
    ("border", "str", _spec("replicate", choices=BORDERS, help="how 2d/3d motion fills uncovered edges")),
    ("noise", "str", _schedule("0.02", min=0.0, max=1.0, help="noise added to each frame's input (0 = none)")),
    ("contrast", "str", _schedule("1", min=0.0, max=10.0, help="contrast of each frame's input (1 = unchanged)")),
    ("seed_behavior", "str", _spec("iter", choices=SEED_BEHAVIORS,
                                   help="seed per frame: iter (+1), fixed, random, ladder (+2 -1), "
                                        "alternate (+1 -1) or schedule (seed_schedule)")),
    ("seed_schedule", "str", _schedule("", min=0, max=MAX_SEED,
                                       help="seeds by frame for seed_behavior schedule, e.g. '0:(5), 24:(9)'; "
                                            "dream motion walks between its keyframes")),
    ("reuse_init", "bool", _spec(False, help="use init_image, moved by the motion so far, as every frame's "
                                             "input instead of the previous frame")),
    ("video", "str | None", _spec(None, kind="video", help="video motion: the mp4/gif file to style")),
    ("every_nth", "int", _spec(1, min=1, max=100, help="video motion: use every Nth frame of the input")),
    ("cadence", "int", _spec(1, min=1, max=50, help="2d/3d: diffuse every Nth frame and blend the moved "
                                                    "frames in between (1 = diffuse every frame)")),
    ("color_coherence", "str", _spec("lab", choices=COLOR_COHERENCE,
                                     help="match each frame's colours to the first frame's in this colour space")),
    ("gif", "bool", _spec(False, help="also write an animated GIF")),
]


def _cinema_dataclass():
    specs = []
    for f in dataclasses.fields(Request):
        if f.name in CINEMA_EXCLUDED:
            continue
        if f.name in _CINEMA_OVERRIDES:
            specs.append((f.name, "str", _CINEMA_OVERRIDES[f.name]))
        else:
            metadata = {**f.metadata, "help": _CINEMA_HELP.get(f.name, f.metadata["help"])}
            specs.append((f.name, f.type, field(default=f.default, metadata=metadata)))
    specs += _CINEMA_OWN
    namespace = {
        "__doc__": "A cinema run: the shared Request fields, per-frame schedules and the cinema fields.",
        "__module__": __name__,
        "to_dict": lambda self: dataclasses.asdict(self),
        "replace": lambda self, **changes: dataclasses.replace(self, **changes),
    }
    return dataclasses.make_dataclass("CinemaRequest", specs, namespace=namespace)


CinemaRequest = _cinema_dataclass()
CINEMA_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(CinemaRequest)}
SCHEDULE_FIELDS = tuple(n for n, f in CINEMA_FIELDS.items() if f.metadata["kind"] == "schedule")


def cinema_defaults(request: Request | None = None):
    """The CinemaRequest whose shared fields come from `request` (e.g. the settings' defaults)."""
    request = request or Request()
    shared = {n: getattr(request, n) for n in CINEMA_FIELDS
              if n in FIELDS and n not in _CINEMA_OVERRIDES}
    return CinemaRequest(**shared)


def validate_cinema(values: dict[str, Any] | None = None, base=None, limits: dict[str, dict] | None = None):
    """Build a CinemaRequest from `values` over `base`, or raise RequestError naming the field.

    Schedules are checked for syntax (and constant ones for range) here; every frame's value
    is checked when the run is planned, before any frame is made.
    """
    request = _validate(CinemaRequest, CINEMA_FIELDS, values, base, limits)
    _check_cinema(request)
    return request


def _check_cinema(r) -> None:
    if r.motion == "video" and not r.video:
        raise RequestError("video", "video is required in video motion (an mp4 or gif file to style)")
    if r.video and r.motion != "video":
        raise RequestError("video", f"video is only used in video motion; motion is {r.motion!r}")
    if r.init_image and r.motion in ("dream", "video"):
        raise RequestError("init_image", f"init_image is not used in {r.motion} motion")
    if r.reuse_init and not r.init_image:
        raise RequestError("reuse_init", "reuse_init needs an init_image")
    if r.seed_behavior == "schedule" and not r.seed_schedule:
        raise RequestError("seed_schedule", "seed_schedule is required when seed_behavior is 'schedule'")
