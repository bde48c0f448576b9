"""Making a planned run's frames in its folder (loading those already there), then its videos."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .. import __version__, infotext, schema
from ..backends.base import Backend, Interrupted, Job
from . import runs, transforms, video
from .planning import FramePlan, Plan, base_request, segment, slerp
from .runs import RUN_SETTINGS


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


class Renderer:
    """Makes the frames of one planned run in its folder (loading those already there), then the videos."""

    def __init__(self, plan: Plan, *, backend: Backend, run_dir: Path, creations_dir: Path, model,
                 progress, report: Callable[[], None], should_stop: Callable[[], bool],
                 init_image: Image.Image | None = None, init_stored: str | None = None,
                 video_frames: list[np.ndarray] | None = None, depth_model: transforms.DepthModel | None = None,
                 control: Callable | None = None, text_extra: dict | None = None):
        self.plan, self.request = plan, plan.request
        self.backend, self.run_dir, self.creations_dir, self.model = backend, run_dir, creations_dir, model
        self.progress, self.report, self.should_stop = progress, report, should_stop
        self.init = np.asarray(init_image.convert("RGB")) if init_image is not None else None
        self.init_stored = init_stored  # the init image as recorded (in creations/inputs)
        self.video_frames, self.depth_model = video_frames, depth_model
        self.control = control  # control(frame request, input image): its ControlNet units made ready
        self.text_extra = text_extra or {}  # LoRA and ControlNet hashes for each frame's parameters text
        self.base = base_request(self.request)
        self.saved = runs.saved_frames(run_dir)
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
        if request.controlnet and self.control:
            # A unit without its own image follows the frame's input (the video frame, or the moved previous
            # frame); on a frame without one (the first, made from text) only units with their own image guide.
            units = tuple(u for u in request.controlnet if u.image is not None or init is not None)
            hooks["control"] = self.control(request.replace(controlnet=units), init) if units else ()
        job = Job(request, seed, init, None, on_step, self.should_stop, **hooks)
        with self.timed("diffusion"):
            return np.asarray(self.backend.generate(job).convert("RGB"))

    def dream(self, p: FramePlan, request: schema.Request):
        (fa, sa), (fb, sb), u = segment(self.plan.anchors, p.index)
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
        text = infotext.format_parameters(request, {"Model hash": self.model.hash, **self.text_extra,
                                                    "Version": f"dreamworld {__version__}"})
        info = {"frames": r.frames, "motion": r.motion, "settings": RUN_SETTINGS, **extra}
        with self.timed("save"):
            path = runs.save_frame(Image.fromarray(image), request, parameters=text, run_dir=self.run_dir,
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
