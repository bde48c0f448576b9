"""The interface every generation backend offers, and the capabilities it declares."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable

from PIL import Image

from ..models import ModelInfo
from ..schema import Request


class BackendError(RuntimeError):
    """A failure to report to the user as one sentence (str(error))."""


class Interrupted(Exception):
    """Generation was stopped by the user."""


@dataclass(frozen=True)
class Capabilities:
    modes: tuple[str, ...]
    schedulers: tuple[str, ...]
    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    size_multiple: int = 8
    max_clip_skip: int = 12
    lora: bool = False
    controlnet: bool = False
    notes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Job:
    """One image to make: a resolved request, its seed and its prepared inputs."""
    request: Request
    seed: int
    init_image: Image.Image | None = None
    mask: Image.Image | None = None
    on_step: Callable[[int, int], None] = lambda step, total: None
    should_stop: Callable[[], bool] = lambda: False


class Backend(ABC):
    name: str

    @classmethod
    @abstractmethod
    def capabilities(cls) -> Capabilities:
        """What this backend can do on this machine (without loading a model)."""

    @abstractmethod
    def __init__(self, model: ModelInfo, vae: ModelInfo | None, device: str, precision: str):
        """Load the model; raise BackendError with a clear sentence on failure."""

    @property
    @abstractmethod
    def native_size(self) -> tuple[int, int]:
        """The (width, height) the model was trained at."""

    @property
    @abstractmethod
    def clip_layers(self) -> int:
        """How many layers the model's text encoder has (the clip skip limit)."""

    @abstractmethod
    def generate(self, job: Job) -> Image.Image:
        """Make one image; raise Interrupted if job.should_stop() turned true."""

    def close(self) -> None:
        """Release memory held by the model."""
