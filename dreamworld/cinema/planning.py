"""Planning a run: every schedule at every frame, the seeds, motions and prompt blends, before anything is made."""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .. import loras, schema
from ..errors import RequestError
from . import schedules, transforms, video

log = logging.getLogger("dreamworld")

DEFAULT_FRAMES = 24
DEFAULT_FPS = 12.0


@dataclass
class FramePlan:
    index: int
    seed: int
    prompt: str
    strength: float
    guidance: float
    noise: float
    contrast: float
    motion: np.ndarray  # 3x3: from the previous frame to this one (identity for frame 0)
    camera: dict  # this frame's 3d camera move, for a depth warp
    diffuse: bool = True  # False: a cadence in-between, blended from the diffused frames around it
    blend: tuple[str, str, float] = ("", "", 0.0)  # dream: (prompt, next prompt, weight of the next)


@dataclass
class Plan:
    request: object  # the resolved CinemaRequest
    frames: list[FramePlan]
    anchors: list[tuple[int, int]] = field(default_factory=list)  # dream: (frame, seed)

    @property
    def diffused(self) -> list[int]:
        return [f.index for f in self.frames if f.diffuse]


def base_request(request) -> schema.Request:
    """The Request every frame shares (model, size, sampler, steps...), as txt2img or img2img.

    Schedules and input images are decided per frame; fields a run has not (mode, count...) are set here."""
    shared = {n: getattr(request, n) for n, s in schema.CINEMA_FIELDS.items()
              if n in schema.FIELDS and s.kind == schema.FIELDS[n].kind and s.kind != "image"}
    mode = "txt2img" if request.motion == "dream" else "img2img"
    return schema.Request(**shared, mode=mode, format="png")


def frame_seeds(behavior: str, seed: int, frames: int, schedule: list[float] | None = None) -> list[int]:
    """The seed of each frame: iter (+1), fixed, random (from the first seed), ladder (+2 -1),
    alternate (+1 -1) or schedule."""
    top = schema.MAX_SEED + 1
    if behavior == "schedule":
        return [int(round(v)) % top for v in schedule]
    if behavior == "random":
        return [seed] + [random.Random(seed * 1_000_003 + f).randrange(top) for f in range(1, frames)]
    step = {"iter": lambda f: f, "fixed": lambda f: 0, "ladder": lambda f: f // 2 + 2 * (f % 2),
            "alternate": lambda f: f % 2}[behavior]
    return [(seed + step(f)) % top for f in range(frames)]


def evaluate(request, frames: int) -> tuple[dict[str, list[float]], list[tuple[str, str, float]]]:
    """Every schedule's value at every frame, checked against its field's range, and the prompt blends."""
    values = {}
    for name in schema.SCHEDULE_FIELDS:
        text = getattr(request, name)
        if text == "":
            continue
        values[name] = schedules.parse(text, name).values(frames)
        for i, value in enumerate(values[name]):
            schema.check_range(name, value, schema.CINEMA_FIELDS, frame=i)
    blends = schedules.parse_prompts(request.prompts, "prompts", first=request.prompt).blends(frames)
    return values, blends


def plan(request) -> Plan:
    """Evaluate every schedule for every frame of a resolved request; raise RequestError on any problem."""
    frames, width, height = request.frames, request.width, request.height
    values, blends = evaluate(request, frames)
    seeds = frame_seeds(request.seed_behavior, request.seed, frames, values.get("seed_schedule"))
    cadence = request.cadence if request.motion in ("2d", "3d") else 1
    plans = []
    for f in range(frames):
        v = {name: series[f] for name, series in values.items()}
        camera = {k: v[k] for k in ("translate_x", "translate_y", "translate_z", "rotate_x", "rotate_y", "rotate_z")}
        motion = transforms.IDENTITY
        if f > 0 and request.motion == "2d":
            motion = transforms.matrix_2d(width, height, zoom=v["zoom"], angle=v["angle"],
                                          translate_x=v["translate_x"], translate_y=v["translate_y"],
                                          center_x=v["center_x"], center_y=v["center_y"])
        elif f > 0 and request.motion == "3d":
            motion = transforms.matrix_3d(width, height, fov=request.fov, **camera)
        plans.append(FramePlan(
            index=f, seed=seeds[f], prompt=blends[f][0], strength=v["strength"], guidance=v["guidance_scale"],
            noise=v["noise"], contrast=v["contrast"], motion=motion, camera=camera,
            diffuse=f % cadence == 0 or f == frames - 1, blend=blends[f]))
    if request.motion == "3d":
        _check_view(plans, request)
    anchors = []
    if request.motion == "dream":
        if request.seed_behavior == "schedule":
            schedule = schedules.parse(request.seed_schedule, "seed_schedule")
            for frame, key in schedule.frames(frames):
                anchors.append((frame, int(round(key.value("seed_schedule", request.seed_schedule, t=frame,
                                                              max_f=frames - 1))) % (schema.MAX_SEED + 1)))
        else:
            anchors = [(0, seeds[0])] + ([(frames - 1, seeds[1])] if frames > 1 else [])
        for p in plans:
            (fa, sa), (fb, sb), u = segment(anchors, p.index)
            p.seed = sa if u < 0.5 else sb
    return Plan(request, plans, anchors)


def _check_view(plans: list[FramePlan], request) -> None:
    """Refuse a 3D camera that turns away from the picture: within one frame, across a cadence span, or
    (reusing the init image) in total since frame 0."""
    moved = np.eye(3)
    for p in plans[1:]:
        moved = p.motion @ (moved if request.reuse_init or not plans[p.index - 1].diffuse else np.eye(3))
        if not transforms.sees_picture(moved, request.width, request.height):
            turned = [n for n in ("rotate_x", "rotate_y") if getattr(request, n) not in ("0", "")] or ["rotate_x"]
            raise RequestError(turned[0], f"{' and '.join(turned)} turn the camera away from the picture by frame "
                                          f"{p.index} (90 degrees or more, less half the fov, in all); use smaller "
                                          "rotations" + (" or no reuse_init" if request.reuse_init else ""))


def segment(anchors: list[tuple[int, int]], f: int):
    """The anchors around frame f and how far f is from the first towards the second (0 to 1)."""
    if f <= anchors[0][0] or len(anchors) == 1:
        return anchors[0], anchors[0], 0.0
    for a, b in zip(anchors, anchors[1:]):
        if a[0] <= f < b[0]:
            return a, b, (f - a[0]) / (b[0] - a[0])
    return anchors[-1], anchors[-1], 0.0


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between two noise arrays (exactly a at 0 and b at 1)."""
    if t <= 0:
        return a
    if t >= 1:
        return b
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dot = float(np.sum(a64 * b64) / (np.linalg.norm(a64) * np.linalg.norm(b64)))
    if abs(dot) > 0.9995:
        out = (1 - t) * a64 + t * b64
    else:
        theta = math.acos(max(-1.0, min(1.0, dot)))
        out = (math.sin((1 - t) * theta) * a64 + math.sin(t * theta) * b64) / math.sin(theta)
    return out.astype(a.dtype)


def resolve(request, base: schema.Request, native_size: tuple[int, int], size_multiple: int):
    """The run with its model, size, seed, frames and fps filled in (from `base`, the resolved shared
    request), and the input video's frames, resized as they are read: the source clip is never held whole."""
    unsized = request.width is None and request.height is None
    request = request.replace(model=base.model, seed=base.seed, width=base.width, height=base.height)
    if request.motion == "dream" and request.scheduler in schema.STOCHASTIC_SAMPLERS:
        smooth = schema.STOCHASTIC_SAMPLERS[request.scheduler]
        log.info("dream: sampler %s adds noise at every step, so the walk uses %s", request.scheduler, smooth)
        request = request.replace(scheduler=smooth)
    frames = None
    if request.motion == "video":
        frames, source_fps = [], None
        try:
            for source_fps, frame in video.read_frames(request.video, request.every_nth, request.frames):
                if not frames and unsized:  # the video's shape at the model's size
                    scale = max(native_size) / max(frame.shape[:2])
                    width, height = (max(64, round(n * scale / size_multiple) * size_multiple)
                                     for n in frame.shape[1::-1])
                    request = request.replace(width=width, height=height)
                size = (request.width, request.height)
                frames.append(frame if frame.shape[1::-1] == size else
                              np.asarray(Image.fromarray(frame).resize(size, Image.LANCZOS)))
        except video.VideoError as e:
            raise RequestError("video", f"video: {e}") from None
        if not frames:
            raise RequestError("video", f"video: {Path(request.video).name!r} holds no frames")
        request = request.replace(frames=len(frames), fps=request.fps or round(source_fps / request.every_nth, 3))
    return request.replace(frames=request.frames or DEFAULT_FRAMES, fps=request.fps or DEFAULT_FPS), frames


def check_loras(plan: Plan, base: schema.Request) -> None:
    """A run is made with one set of LoRAs (loaded once): a frame prompt naming others is refused, not ignored."""
    run = loras.wanted(base)
    for frame in plan.frames:
        if loras.wanted(base.replace(prompt=frame.prompt)) != run:
            raise RequestError("prompts", f"prompts: frame {frame.index}'s <lora:...> tags differ from the run's "
                                          f"({', '.join(f'{n}:{w:g}' for n, w in run) or 'none'}); a run uses one "
                                          f"set of LoRAs: name them in prompt or in the lora field")
