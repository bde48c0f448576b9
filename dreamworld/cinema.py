"""Cinema: animations and videos, frame by frame, through any backend's job interface.

A run is planned first: every schedule is evaluated for every frame and checked against its
field's range, so a malformed schedule is reported before anything is written. Then, per frame:

- 2d / 3d: frame 0 is txt2img (or img2img of init_image); each later frame takes the previous
  frame (or, with reuse_init, init_image) moved by the motion, matches its colours to frame 0,
  adjusts contrast, adds noise and runs img2img on it at that frame's strength. With cadence N
  only every Nth frame (and the last) is diffused; the frames between are the two diffused
  frames around them, each moved to that frame, cross-faded.
- dream: a latent walk. Every frame is txt2img; its initial noise is the spherical interpolation
  between the noise of the anchor seeds, and its text embedding the linear interpolation between
  the keyframe prompts. Anchor frames are plain generations at their seed and prompt.
- video: every Nth frame of the input video, colour-matched to frame 0, runs through img2img.

Frames are saved as `<run>/frame_NNNNN.png` (with metadata naming the run and frame), beside
`cinema.json`, the resolved request that re-runs the run; then the mp4 (and GIF) are written.
A frame already in the run folder is loaded instead of made, which is how an interrupted run
resumes: every frame is a function of the settings and the frames before it.
"""
from __future__ import annotations

import json
import math
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from . import __version__, creations, infotext, schedules, schema, transforms, video
from .backends.base import Backend, Interrupted, Job
from .schema import RequestError

DEFAULT_FRAMES = 24
DEFAULT_FPS = 12.0
RUN_SETTINGS = creations.RUN_SETTINGS


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


@dataclass
class CinemaResult:
    request: object  # the resolved CinemaRequest
    run_dir: Path
    frames: list[Path] = field(default_factory=list)  # every saved frame of the run, in order
    made: list[int] = field(default_factory=list)  # the frames made by this call (others were loaded)
    video: Path | None = None
    gif: Path | None = None
    interrupted: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # seconds by phase
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds by phase (with ffmpeg's)

    @property
    def settings(self) -> Path:
        return self.run_dir / RUN_SETTINGS

    @property
    def paths(self) -> list[Path]:
        """The videos written (GIF first, mp4 last)."""
        return [p for p in (self.gif, self.video) if p is not None]


def cpu_seconds() -> float:
    """CPU time of this process (all threads) and of its finished child processes (ffmpeg)."""
    try:
        import resource
    except ImportError:  # Windows: this process only
        return time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# ----- requests -------------------------------------------------------------------------------
def base_request(request) -> schema.Request:
    """The Request every frame shares (model, size, sampler, steps...), as txt2img or img2img.

    Schedules and input images are decided per frame; fields a run has not (mode, count...) are set here."""
    shared = {n: getattr(request, n) for n, s in schema.CINEMA_FIELDS.items()
              if n in schema.FIELDS and s.kind == schema.FIELDS[n].kind and s.kind != "image"}
    mode = "txt2img" if request.motion == "dream" else "img2img"
    return schema.Request(**shared, mode=mode, format="png")


def record(request, creations_dir) -> dict:
    """The run settings file's content; inputs are stored in creations/inputs and named relative to it."""
    fields = request.to_dict()
    if fields["init_image"] is not None:
        fields["init_image"] = creations.store_input(fields["init_image"], creations_dir)
    if fields["video"] is not None:
        fields["video"] = creations.store_file(fields["video"], creations_dir)
    return {"dreamworld_version": __version__, "cinema": fields}


def settings_file(path) -> Path:
    """The run settings file for a run folder, its settings file or any frame of it."""
    path = Path(path)
    if path.is_dir():
        path = path / RUN_SETTINGS
    elif path.suffix.lower() != ".json":
        data = creations.read_creation(path)["request"] or {}
        if "cinema" not in data:
            raise creations.CreationError(f"{path.name!r} is not a frame of a cinema run")
        path = path.parent / RUN_SETTINGS
    if not path.is_file():
        raise creations.CreationError(f"{path.parent.name!r} holds no {RUN_SETTINGS}: it is not a cinema run folder")
    return path


def load_settings(path, creations_dir=None) -> dict:
    """The CinemaRequest fields saved for a run (its folder, settings file or a frame), inputs as full paths
    (read back only from creations_dir's inputs/, see creations.stored_inputs)."""
    path = settings_file(path)
    try:
        fields = json.loads(path.read_text(encoding="utf-8"))["cinema"]
        assert isinstance(fields, dict)
    except (OSError, ValueError, KeyError, TypeError, AssertionError, RecursionError):
        raise creations.CreationError(f"{path.name!r} in {path.parent.name!r} is not a readable cinema "
                                      "settings file") from None
    fields = {k: v for k, v in fields.items() if k in schema.CINEMA_FIELDS}
    inputs = [n for n, s in schema.CINEMA_FIELDS.items() if s.kind in ("image", "video")]
    return creations.stored_inputs(fields, inputs, creations_dir, path.name)


# ----- planning -------------------------------------------------------------------------------
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
            (fa, sa), (fb, sb), u = _segment(anchors, p.index)
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


def _segment(anchors: list[tuple[int, int]], f: int):
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


# ----- running --------------------------------------------------------------------------------
class Renderer:
    """Makes the frames of one planned run in its folder (loading those already there), then the videos."""

    def __init__(self, plan: Plan, *, backend: Backend, run_dir: Path, creations_dir: Path, model,
                 progress, report: Callable[[], None], should_stop: Callable[[], bool],
                 init_image: Image.Image | None = None, init_stored: str | None = None,
                 video_frames: list[np.ndarray] | None = None, depth_model: transforms.DepthModel | None = None):
        self.plan, self.request = plan, plan.request
        self.backend, self.run_dir, self.creations_dir, self.model = backend, run_dir, creations_dir, model
        self.progress, self.report, self.should_stop = progress, report, should_stop
        self.init = np.asarray(init_image.convert("RGB")) if init_image is not None else None
        self.init_stored = init_stored  # the init image as recorded (in creations/inputs)
        self.video_frames, self.depth_model = video_frames, depth_model
        self.base = base_request(self.request)
        self.saved = creations.saved_frames(run_dir)
        self.cache: dict[int, np.ndarray] = {}
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}
        self.result = CinemaResult(self.request, run_dir, timings=self.timings, cpu_timings=self.cpu_timings)

    @contextmanager
    def timed(self, phase: str):
        started, cpu = time.perf_counter(), cpu_seconds()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started
            self.cpu_timings[phase] = self.cpu_timings.get(phase, 0.0) + cpu_seconds() - cpu

    # frames on disk and in memory
    def image(self, index: int) -> np.ndarray:
        if index not in self.cache:
            with self.timed("load"):
                self.cache[index] = np.asarray(Image.open(self.saved[index]).convert("RGB"))
        return self.cache[index]

    def keep(self, index: int, image: np.ndarray, path: Path) -> None:
        self.saved[index] = path
        self.cache[index] = image
        for old in [i for i in self.cache if i not in (0, index) and i < index - 2 * self.request.cadence]:
            del self.cache[old]

    def run(self) -> CinemaResult:
        frames = self.plan.frames
        self.progress.frames, self.progress.steps = len(frames), self.request.steps
        diffused = self.plan.diffused
        try:
            for j, d in enumerate(diffused):
                if d not in self.saved:
                    self.make(frames[d])
                if j > 0:
                    for f in range(diffused[j - 1] + 1, d):
                        if f not in self.saved:
                            self.tween(frames[f], diffused[j - 1], d)
        except Interrupted:
            self.result.interrupted = True
        self.result.frames = [self.saved[i] for i in sorted(self.saved)]
        if not self.result.interrupted:
            self.encode()
        return self.result

    def _start(self, index: int) -> None:
        if self.should_stop():
            raise Interrupted()
        self.progress.frame, self.progress.step = index + 1, 0
        self.report()

    def make(self, p: FramePlan) -> None:
        """Make and save one diffused frame."""
        self._start(p.index)
        r = self.request
        request = self.base.replace(prompt=p.prompt, strength=p.strength, guidance_scale=p.guidance, seed=p.seed)
        extra: dict = {}
        if r.motion == "dream":
            image, extra = self.dream(p, request)
        else:
            source = self.source(p)
            if p.index == 0 and source is None:
                request = request.replace(mode="txt2img")
                image = self.diffuse(request, p.seed)
            else:
                if p.index == 0 and r.motion != "video":
                    request = request.replace(init_image=self.init_stored)
                image = self.diffuse(request, p.seed, source) if p.strength * r.steps >= 1 else source
        self.save(p.index, image, request, extra)

    def source(self, p: FramePlan) -> np.ndarray | None:
        """The input of a 2d, 3d or video frame: moved, colour-matched, contrasted and noised."""
        r = self.request
        if r.motion == "video":
            source = self.video_frames[p.index]
        elif p.index == 0:
            return self.init
        elif r.reuse_init:
            with self.timed("transform"):
                source = transforms.warp(self.init, self.chain(0, p.index), r.border)
        else:
            previous = self.plan.diffused[self.plan.diffused.index(p.index) - 1]
            before = self.image(previous)
            with self.timed("transform"):
                if self.depth_model is not None and r.motion == "3d":
                    source = before
                    for f in range(previous + 1, p.index + 1):
                        source = transforms.warp_3d_depth(source, self.depth_model(source), fov=r.fov,
                                                          border=r.border, **self.plan.frames[f].camera)
                else:
                    source = transforms.warp(before, self.chain(previous, p.index), r.border)
        if p.index > 0 and r.color_coherence != "none":
            with self.timed("color"):
                source = transforms.match_colors(source, self.image(0), r.color_coherence)
        with self.timed("transform"):
            source = transforms.adjust_contrast(source, p.contrast)
            source = transforms.add_noise(source, p.noise, p.seed)
        return source

    def chain(self, start: int, end: int) -> np.ndarray:
        """The motion from frame `start` to frame `end` as one matrix."""
        m = np.eye(3)
        for f in range(start + 1, end + 1):
            m = self.plan.frames[f].motion @ m
        return m

    def diffuse(self, request: schema.Request, seed: int, source: np.ndarray | None = None,
                **hooks) -> np.ndarray:
        def on_step(step, steps):
            self.progress.step, self.progress.steps = step, steps
            self.report()

        init = Image.fromarray(source) if source is not None else None
        job = Job(request, seed, init, None, on_step, self.should_stop, **hooks)
        with self.timed("diffusion"):
            return np.asarray(self.backend.generate(job).convert("RGB"))

    def dream(self, p: FramePlan, request: schema.Request):
        (fa, sa), (fb, sb), u = _segment(self.plan.anchors, p.index)
        a, b, w = p.blend
        hooks = {}
        if w > 0:
            hooks["prompt_blend"] = ((a, 1.0 - w), (b, w))
        if u > 0 and sa != sb:
            r = self.request
            with self.timed("transform"):
                hooks["noise"] = slerp(self.backend.initial_noise(sa, r.width, r.height),
                                       self.backend.initial_noise(sb, r.width, r.height), u)
        image = self.diffuse(request, p.seed, **hooks)
        extra = {"seeds": [sa, sb], "walk": round(u, 6)}
        if w > 0:
            extra["prompt_blend"] = [[a, 1.0 - w], [b, w]]
        return image, extra

    def tween(self, p: FramePlan, before: int, after: int) -> None:
        """A cadence in-between: the diffused frames around it, moved to it, cross-faded."""
        self._start(p.index)
        weight = (p.index - before) / (after - before)
        with self.timed("transform"):
            a = transforms.warp(self.image(before), self.chain(before, p.index), self.request.border)
            b = transforms.warp(self.image(after), np.linalg.inv(self.chain(p.index, after)), self.request.border)
            image = transforms.blend(a, b, weight)
        request = self.base.replace(prompt=p.prompt, strength=p.strength, guidance_scale=p.guidance, seed=p.seed)
        self.save(p.index, image, request, {"tween": [before, after, round(weight, 6)]})

    def save(self, index: int, image: np.ndarray, request: schema.Request, extra: dict) -> None:
        r = self.request
        text = infotext.format_parameters(request, {"Model hash": self.model.hash,
                                                    "Version": f"dreamworld {__version__}"})
        info = {"frames": r.frames, "motion": r.motion, "settings": RUN_SETTINGS, **extra}
        with self.timed("save"):
            path = creations.save_frame(Image.fromarray(image), request, parameters=text, run_dir=self.run_dir,
                                        index=index, creations_dir=self.creations_dir, cinema=info)
        self.keep(index, image, path)
        self.result.made.append(index)
        self.progress.latest = str(path)
        self.report()

    def encode(self) -> None:
        r = self.request
        with self.timed("encode"):
            frames = [np.asarray(Image.open(p).convert("RGB")) for p in self.result.frames]
            self.result.video = video.write_mp4(frames, self.run_dir / f"{self.run_dir.name}.mp4", r.fps)
            if r.gif:
                self.result.gif = video.write_gif(frames, self.run_dir / f"{self.run_dir.name}.gif", r.fps)


# ----- preview --------------------------------------------------------------------------------
PREVIEW_SIZE = 128


def _pattern(width: int, height: int) -> np.ndarray:
    """A grid with a disc, to show motion when there is no input image."""
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 200 // max(1, width - 1) + 30, y * 200 // max(1, height - 1) + 30,
                      np.full_like(x, 120)], axis=-1).astype(np.uint8)
    step = max(8, min(width, height) // 8)
    image[(x % step < 2) | (y % step < 2)] = 255
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 6) ** 2
    image[disc] = (220, 40, 40)
    return image


def preview(request, image: Image.Image | None = None, limit: int = 96) -> list[np.ndarray]:
    """How the motion moves the input over the run's frames, without any diffusion: the init image
    (or a test pattern) moved by the accumulated motion, or the input video's frames."""
    frames = min(request.frames or DEFAULT_FRAMES, limit)
    if request.motion == "dream":
        raise RequestError("motion", "dream motion walks through noise and prompts: it has no motion to preview")
    if image is None and request.init_image:
        image = creations.open_image(request.init_image)
    if request.motion == "video":
        try:
            return [f for _, f in video.read_frames(request.video, request.every_nth, frames)]
        except video.VideoError as e:
            raise RequestError("video", f"video: {e}") from None
    width = request.width or (image.width // 8 * 8 if image is not None else PREVIEW_SIZE)
    height = request.height or (image.height // 8 * 8 if image is not None else PREVIEW_SIZE)
    source = _pattern(width, height) if image is None else \
        np.asarray(image.convert("RGB").resize((width, height), Image.LANCZOS))
    moves = plan(request.replace(width=width, height=height, frames=frames, seed=max(request.seed, 0)))
    out, m = [source], np.eye(3)
    for p in moves.frames[1:]:
        m = p.motion @ m
        if not transforms.sees_picture(m, width, height):  # the moves add up past the view: show them so far
            break
        out.append(transforms.warp(source, m, request.border))
    return out
