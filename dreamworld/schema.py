"""The one schema of a generation request: every field declared once (see spec.py for what a
declaration holds and how it is checked).

The CLI flags, the GUI controls, validation, the A1111 parameters text (writer and reader) and the JSON
record of a creation are all derived from `FIELDS`; a field added to Request appears in each of them.

A cinema run (an animation) is a `CinemaRequest`: the Request's fields that make sense for a whole run
(a field added to Request appears there too, unless listed in CINEMA_EXCLUDED), with strength and
guidance_scale as per-frame schedules, plus the cinema fields. `CINEMA_FIELDS` plays the part of
`FIELDS` for it, and `validate_cinema` that of `validate`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .backends import NAMES as BACKENDS
from .backends.samplers import NAMES as SCHEDULERS, STOCHASTIC as STOCHASTIC_SAMPLERS  # noqa: F401
from .controlnet import ControlUnit, check_unit
from .errors import RequestError
from .spec import Spec, allowed as _allowed, check_range as _check_range, plain, spec, specs, validate_fields

MODES = ("txt2img", "img2img", "inpaint")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
FORMATS = ("png", "jpg", "webp")
MAX_SEED = 2**32 - 1
MOTIONS = ("2d", "3d", "dream", "video")
BORDERS = ("replicate", "wrap", "reflect")
SEED_BEHAVIORS = ("iter", "fixed", "random", "ladder", "alternate", "schedule")
COLOR_COHERENCE = ("none", "lab", "hsv", "rgb")
IMAGE_MODES = ("img2img", "inpaint")
# The order of A1111's parameters text; a field's `infotext` key not named here follows these.
INFOTEXT_ORDER = ("Steps", "Sampler", "CFG scale", "Seed", "Size", "Model hash", "Model", "VAE",
                  "Denoising strength", "Clip skip", "Mask blur", "Hires upscale", "Hires steps", "Hires upscaler")


@dataclass
class Request:
    """A generation request. `None` for width/height means the model's native size."""

    mode: str = spec(str, "txt2img", choices=MODES, group="mode", help="txt2img, img2img or inpaint")
    prompt: str = spec(str, "", group="prompt", help="what to draw")
    negative_prompt: str = spec(str, "", group="prompt", help="what to avoid")
    width: int | None = spec(int, None, min=64, max=2048, multiple_of=8, infotext="Size", step=8,
                             help="image width in pixels (default: the model's native size)")
    height: int | None = spec(int, None, min=64, max=2048, multiple_of=8, infotext="Size", step=8,
                              help="image height in pixels (default: the model's native size)")
    steps: int = spec(int, 20, min=1, max=150, infotext="Steps", help="number of denoising steps")
    guidance_scale: float = spec(float, 7.0, min=0.0, max=30.0, label="CFG scale", infotext="CFG scale",
                                 api="cfg_scale", step=0.5, help="classifier-free guidance (CFG) scale")
    scheduler: str = spec(str, "Euler a", choices=SCHEDULERS, label="Sampler", infotext="Sampler",
                          api="sampler_name", aliases=("sampler",), help="sampler / scheduler")
    seed: int = spec(int, -1, min=-1, max=MAX_SEED, infotext="Seed", help="random seed, -1 for a random one")
    seeds: tuple = spec(int, (), kind="list", min=0, max=MAX_SEED,
                        help="explicit seeds, one image each, in place of seed and count")
    count: int = spec(int, 1, min=1, max=16, label="Batch count", api="n_iter",
                      help="number of images; seeds run seed, seed+1, ...")
    strength: float = spec(float, 0.75, min=0.0, max=1.0, label="Denoising strength", modes=IMAGE_MODES,
                           infotext="Denoising strength", api="denoising_strength", step=0.01,
                           help="denoising strength for img2img and inpaint")
    hires_scale: float = spec(float, 1.0, min=1.0, max=4.0, modes=("txt2img",), infotext="Hires upscale",
                              infotext_skip=1.0, label="Hires fix: upscale by", api="hr_scale", step=0.05,
                              group="advanced", help="hires fix: a second, img2img pass this many times larger (1: off)")
    hires_steps: int = spec(int, 0, min=0, max=150, modes=("txt2img",), infotext="Hires steps", infotext_skip=0,
                            infotext_when="hires_scale", api="hr_second_pass_steps", group="advanced", help="steps of the hires pass (0: steps)")
    hires_upscaler: str = spec(str, "Latent", modes=("txt2img",), infotext="Hires upscaler", models="esrgan",
                               infotext_when="hires_scale", api="hr_upscaler", group="advanced",
                               help="how the hires pass's input is enlarged: Latent, Lanczos or a models/ESRGAN model")
    hires_denoising: float = spec(float, 0.7, min=0.0, max=1.0, modes=("txt2img",), infotext="Denoising strength",
                                  infotext_when="hires_scale", step=0.01, group="advanced",
                                  help="denoising strength of the hires pass")
    init_image: str | None = spec(str, None, kind="image", modes=IMAGE_MODES, group="input", api="init_images",
                                  help="input image file for img2img and inpaint")
    mask: str | None = spec(str, None, kind="image", modes=("inpaint",), group="input",
                            help="inpaint mask file (white = repaint)")
    mask_blur: int = spec(int, 4, min=0, max=64, modes=("inpaint",), infotext="Mask blur", group="advanced",
                          help="blur radius of the inpaint mask edge in pixels")
    painted: str | None = spec(str, None, kind="image", modes=("inpaint",), group="input",
                               help="sketch inpainting: the input image painted over; the mask is where it differs")
    compose_blur: int | None = spec(int, None, min=0, max=64, modes=("inpaint",), group="advanced",
                                    help="blur radius of the mask the result is pasted on the input with (default: mask_blur)")
    controlnet: tuple = spec(dict, (), kind="units", unit=ControlUnit, group="controlnet", infotext="ControlNet",
                             label="ControlNet units", help="ControlNet units, e.g. canny:control_dreamworld_edges:0.8")
    clip_skip: int = spec(int, 1, min=1, max=12, infotext="Clip skip", infotext_skip=1, group="advanced",
                          help="skip the last CLIP layers (1 = none)")
    ngms: float = spec(float, 0.0, min=0.0, max=15.0, infotext="NGMS", infotext_skip=0.0, group="advanced",
                       api="s_min_uncond", label="Negative guidance minimum sigma", step=0.1,
                       help="skip the negative prompt on every other step once the noise (sigma) is below this "
                            "(A1111's NGMS; 0 = never): faster, a little less guided")
    fast_decode: bool = spec(bool, False, group="advanced", label="Fast decode (TAESD)",
                             help="decode the picture with the TAESD in models/VAE-approx instead of the VAE: far "
                                  "faster, a little softer")
    deepcache: int = spec(int, 0, min=0, max=9, infotext="DeepCache", infotext_skip=0, group="advanced",
                          label="DeepCache (steps reusing deep features)", step=1,
                          help="after each full UNet step, this many steps reuse its deep features and run only the "
                               "outer blocks (DeepCache; 0 = off): faster, a little less detailed")
    model: str = spec(str, "", key=True, models="checkpoint", infotext="Model",
                      help="model name in models/ (default: from settings)")
    lora: tuple = spec(float, (), kind="pairs", min=-10.0, max=10.0, label="LoRAs", group="advanced",
                       help="LoRAs from models/Lora with their weights (as <lora:name:weight> in the prompt does)")
    vae: str = spec(str, "", key=True, models="vae", label="VAE", infotext="VAE", group="advanced",
                    help="VAE name in models/VAE (default: the model's own)")
    backend: str = spec(str, "auto", choices=BACKENDS, key=True, group="advanced",
                        help="generation engine (auto: OpenVINO on the CPU, torch on a GPU)")
    device: str = spec(str, "auto", choices=DEVICES, key=True, group="advanced", help="compute device")
    precision: str = spec(str, "auto", choices=PRECISIONS, key=True, group="advanced", help="numeric precision")
    jit: bool = spec(bool, False, key=True, label="XLA compile", group="advanced",
                     help="XLA-compile the networks for the image size (backends that can)")
    format: str = spec(str, "png", choices=FORMATS, group="advanced", help="image file format")

    def to_dict(self) -> dict[str, Any]:
        return plain(self)

    def replace(self, **changes) -> "Request":
        return dataclasses.replace(self, **changes)

    def image_seeds(self) -> list[int]:
        """The seed of each image: `seeds` if given, else count seeds from `seed` on."""
        return list(self.seeds) or [(self.seed + i) % (MAX_SEED + 1) for i in range(self.count)]


FIELDS: dict[str, Spec] = specs(Request)
KEY_FIELDS = tuple(name for name, s in FIELDS.items() if s.key)


def allowed(name: str, fields: dict | None = None) -> str:
    """Describe the allowed values of a field, for error and help messages."""
    return _allowed((fields or FIELDS)[name])


def check_range(name: str, value, fields: dict | None = None, frame: int | None = None) -> None:
    """Raise RequestError if a number is outside a field's range (`frame`: a schedule's value there)."""
    _check_range((fields or FIELDS)[name], value, frame)


def validate(values: dict[str, Any] | None = None, base: Request | None = None,
             limits: dict[str, dict] | None = None) -> Request:
    """Build a Request from `values` over `base`, or raise RequestError naming the field.

    `limits` may lower a field's maximum, e.g. {"steps": {"max": 80}} from settings.json.
    """
    request = validate_fields(Request, FIELDS, values, base, limits)
    _check_consistency(request)
    return request


def _check_consistency(r: Request) -> None:
    if r.mode in IMAGE_MODES and r.init_image is None:
        raise RequestError("init_image", f"init_image is required in {r.mode} mode")
    if r.mode == "inpaint" and r.mask is None and r.painted is None:
        raise RequestError("mask", "mask (white = repaint) or painted (the input painted over) is required in "
                                   "inpaint mode")
    for i, unit in enumerate(r.controlnet):
        check_unit(unit, i)
    hires_steps = r.hires_steps or r.steps
    if r.mode == "txt2img" and r.hires_scale > 1 and int(hires_steps * r.hires_denoising) < 1:
        raise RequestError("hires_denoising", f"hires_denoising {r.hires_denoising:g} with {hires_steps} hires steps "
                                              f"leaves no denoising step; it must be at least {1 / hires_steps:.3g}")
    if r.mode in IMAGE_MODES and int(r.steps * r.strength) < 1:  # as the pipelines count steps
        raise RequestError("strength", f"strength {r.strength:g} with {r.steps} steps leaves no denoising step; "
                                       f"strength must be at least {1 / r.steps:.3g} for {r.steps} steps")


# ----- cinema -----------------------------------------------------------------------------
# Request fields that mean nothing for a whole animation: each frame's mode and seed are chosen by the
# run, frames are always PNG (lossless: each is the next one's input), and there is no mask.
CINEMA_EXCLUDED = ("mode", "seeds", "count", "mask", "mask_blur", "painted", "compose_blur", "format", "hires_scale", "hires_steps",
                   "hires_upscaler", "hires_denoising")
MOVING = ("2d", "3d")


def _schedule(default: str, *, help: str, **options):
    return spec(str, default, kind="schedule", help=help, **options)


# Request fields that become schedules in a cinema run.
_CINEMA_OVERRIDES = {
    "strength": Spec("strength", str, "0.45", kind="schedule", min=0.0, max=1.0, group="coherence",
                     label="Denoising strength",
                     help="denoising strength per frame: how much each frame may change its input "
                          "(Deforum's strength is 1 minus this)"),
    "guidance_scale": Spec("guidance_scale", str, "7", kind="schedule", min=0.0, max=30.0, group="coherence",
                           label="CFG scale", help="classifier-free guidance (CFG) scale per frame"),
}

# Shared fields whose meaning in a run needs other words, or another place.
_CINEMA_CHANGES = {
    "init_image": dict(motions=MOVING, modes=None,
                       help="2d/3d: the first frame's input image (img2img at the first frame's strength)"),
    "seed": dict(group="seeds", help="the first frame's seed, -1 for a random one; seed_behavior gives the others"),
    "prompt": dict(help="what to draw (at every frame, unless prompts changes it)"),
}


@dataclass
class _CinemaOwn:
    frames: int | None = spec(int, None, min=1, max=10000,
                              help="number of frames (default 24; video motion: every frame taken from the video)")
    fps: float | None = spec(float, None, min=1.0, max=120.0,
                             help="frames per second of the video (default 12; video motion: the input's "
                                  "rate divided by every_nth)")
    motion: str = spec(str, "2d", choices=MOTIONS, group="motion",
                       help="2d (zoom, angle, translate x/y), 3d (camera translate x/y/z and rotate x/y/z), "
                            "dream (a latent walk between seeds and prompts) or video (style an input video)")
    prompts: str = spec(str, "", kind="prompts", group="seeds",
                        help="prompts by frame as JSON; frame 0's defaults to prompt")
    zoom: str = _schedule("1.02", min=0.01, max=100.0, group="motion", motions=("2d",),
                          help="2d: scale per frame (1 = none, 1.02 = 2% closer)")
    angle: str = _schedule("0", group="motion", motions=("2d",), help="2d: rotation per frame in degrees, "
                                                                     "counter-clockwise")
    center_x: str = _schedule("0.5", group="motion", motions=("2d",),
                              help="2d: horizontal centre of zoom and rotation (0 = left, 1 = right)")
    center_y: str = _schedule("0.5", group="motion", motions=("2d",),
                              help="2d: vertical centre of zoom and rotation (0 = top, 1 = bottom)")
    translate_x: str = _schedule("0", group="motion", motions=MOVING,
                                 help="2d: pixels per frame to the right; 3d: camera slide to the right in 1/200 "
                                      "of the distance to the picture (the picture moves right)")
    translate_y: str = _schedule("0", group="motion", motions=MOVING,
                                 help="2d: pixels per frame down; 3d: camera slide (the picture moves down)")
    translate_z: str = _schedule("0", max=199.0, min=-10000.0, group="motion", motions=("3d",),
                                 help="3d: camera move forward per frame, in 1/200 of the distance to the picture")
    rotate_x: str = _schedule("0", group="motion", motions=("3d",),
                              help="3d: camera tilt per frame in degrees (positive: the picture moves down)")
    rotate_y: str = _schedule("0", group="motion", motions=("3d",),
                              help="3d: camera pan per frame in degrees (positive: the picture moves left)")
    rotate_z: str = _schedule("0", group="motion", motions=("3d",),
                              help="3d: camera roll per frame in degrees, counter-clockwise")
    fov: float = spec(float, 40.0, min=1.0, max=170.0, group="motion", motions=("3d",),
                      help="3d: horizontal field of view of the camera in degrees")
    border: str = spec(str, "replicate", choices=BORDERS, group="motion", motions=MOVING,
                       help="how 2d/3d motion fills uncovered edges")
    noise: str = _schedule("0.02", min=0.0, max=1.0, group="coherence",
                           help="noise added to each frame's input (0 = none)")
    contrast: str = _schedule("1", min=0.0, max=10.0, group="coherence",
                              help="contrast of each frame's input (1 = unchanged)")
    seed_behavior: str = spec(str, "iter", choices=SEED_BEHAVIORS, group="seeds",
                              help="seed per frame: iter (+1), fixed, random, ladder (+2 -1), alternate (+1 -1) "
                                   "or schedule (seed_schedule)")
    seed_schedule: str = _schedule("", min=0, max=MAX_SEED, group="seeds",
                                   help="seeds by frame for seed_behavior schedule, e.g. '0:(5), 24:(9)'; "
                                        "dream motion walks between its keyframes")
    reuse_init: bool = spec(bool, False, group="input", motions=MOVING,
                            help="use init_image, moved by the motion so far, as every frame's input instead of "
                                 "the previous frame")
    video: str | None = spec(str, None, kind="video", group="input", motions=("video",),
                             help="video motion: the mp4/gif file to style")
    every_nth: int = spec(int, 1, min=1, max=100, group="input", motions=("video",),
                          help="video motion: use every Nth frame of the input")
    cadence: int = spec(int, 1, min=1, max=50, group="coherence", motions=MOVING,
                        help="2d/3d: diffuse every Nth frame and blend the moved frames in between "
                             "(1 = diffuse every frame)")
    color_coherence: str = spec(str, "lab", choices=COLOR_COHERENCE, group="coherence",
                                help="match each frame's colours to the first frame's in this colour space")
    gif: bool = spec(bool, False, group="output", help="also write an animated GIF")


def _cinema_dataclass():
    declared = []
    for f in dataclasses.fields(Request):
        if f.name in CINEMA_EXCLUDED:
            continue
        s = _CINEMA_OVERRIDES.get(f.name) or dataclasses.replace(f.metadata["spec"], **_CINEMA_CHANGES.get(f.name, {}))
        declared.append((f.name, Any, dataclasses.field(
            default=s.default, metadata={"spec": dataclasses.replace(s, name="")})))
    declared += [(f.name, f.type, f) for f in dataclasses.fields(_CinemaOwn)]
    namespace = {
        "__doc__": "A cinema run: the shared Request fields, per-frame schedules and the cinema fields.",
        "__module__": __name__,
        "to_dict": plain,
        "replace": lambda self, **changes: dataclasses.replace(self, **changes),
    }
    return dataclasses.make_dataclass("CinemaRequest", declared, namespace=namespace)


CinemaRequest = _cinema_dataclass()
CINEMA_FIELDS: dict[str, Spec] = specs(CinemaRequest)
SCHEDULE_FIELDS = tuple(n for n, s in CINEMA_FIELDS.items() if s.kind == "schedule")


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
    request = validate_fields(CinemaRequest, CINEMA_FIELDS, values, base, limits)
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
