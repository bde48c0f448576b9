"""What a generation reports while it runs (Progress) and what it returns (Result)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from .schema import Request


@dataclass
class Progress:
    image: int = 0  # 1-based index of the image being made
    images: int = 0
    step: int = 0
    steps: int = 0
    frame: int = 0  # cinema: 1-based index of the frame being made
    frames: int = 0
    latest: str | None = None  # the last image (cinema: frame) saved
    preview: Image.Image | None = None  # the image being made, as its latents look now (previews.py)
    eta: float | None = None  # seconds left for the image being made, from its pace so far

    @property
    def fraction(self) -> float:
        count, index = (self.frames, self.frame) if self.frames else (self.images, self.image)
        if not count:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (index - 1 + within) / count)

    def describe(self) -> str:
        left = f", about {self.eta:.0f} s left" if self.eta is not None else ""
        if self.frames:
            return f"frame {self.frame} of {self.frames}, step {self.step} of {self.steps}"
        return f"image {self.image} of {self.images}, step {self.step} of {self.steps}{left}"


@dataclass
class Result:
    request: Request  # resolved: concrete seed, size and model
    paths: list[Path] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    interrupted: bool = False


def step_reporter(progress: Progress, on_progress: Callable[[Progress], None] | None):
    """A Job.on_step that keeps progress's step and time left (from the steps so far; the first is a warm-up)."""
    began = time.monotonic()

    def on_step(step: int, steps: int) -> None:
        nonlocal began
        now = time.monotonic()
        if step <= 1:
            began, progress.eta = now, None
        else:
            progress.eta = (now - began) / (step - 1) * (steps - step)
        progress.step, progress.steps = step, steps
        if on_progress:
            on_progress(progress)
    return on_step
