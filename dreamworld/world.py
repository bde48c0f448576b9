"""DreamWorld: the controller. It owns the loaded backend and turns requests into creations."""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from . import __version__, creations, models, schema, settings as settings_module
from .backends.base import Backend, BackendError, Interrupted, Job
from .schema import Request, RequestError

log = logging.getLogger("dreamworld")


@dataclass
class Progress:
    image: int = 0  # 1-based index of the image being made
    images: int = 0
    step: int = 0
    steps: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float:
        if not self.images:
            return 0.0
        within = self.step / self.steps if self.steps else 0.0
        return min(1.0, (self.image - 1 + within) / self.images)

    def describe(self) -> str:
        return f"image {self.image} of {self.images}, step {self.step} of {self.steps}"


@dataclass
class Result:
    request: Request  # resolved: concrete seed, size and model
    paths: list[Path] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    parameters: list[str] = field(default_factory=list)
    interrupted: bool = False


def backend_class(name: str) -> type[Backend]:
    if name == "torch":
        from .backends.torch_backend import TorchBackend
        return TorchBackend
    if name == "tensorflow":
        raise RequestError("backend", "backend 'tensorflow' is not available yet; use 'torch'")
    raise RequestError("backend", f"backend must be one of {', '.join(schema.BACKENDS)}, got {name!r}")


class DreamWorld:
    def __init__(self, settings_path=None, *, settings: settings_module.Settings | None = None,
                 models_dir=None, creations_dir=None):
        self.settings = settings or settings_module.load(settings_path)
        self.models_dir = Path(models_dir) if models_dir else self.settings.models_path
        # The embedded default ships with the project and is found whatever the models folder.
        self.model_dirs = list(dict.fromkeys([self.models_dir.resolve(), settings_module.BUILTIN_MODELS]))
        self.creations_dir = Path(creations_dir) if creations_dir else self.settings.creations_path
        self.backend: Backend | None = None
        self._key: dict | None = None
        self._lock = threading.RLock()  # one generation at a time
        self._stop = threading.Event()
        self.progress = Progress()

    # ----- requests -----------------------------------------------------------------
    def request(self, **fields) -> Request:
        """Validate fields over the settings' defaults into a Request."""
        return schema.validate(fields, base=self.settings.default_request(), limits=self.settings.limits)

    def capabilities(self, backend: str | None = None):
        return backend_class(backend or self.request().backend).capabilities()

    def list_models(self, kind: str = "checkpoint") -> list[models.ModelInfo]:
        return models.list_models(self.model_dirs, kind)

    # ----- compiling ----------------------------------------------------------------
    def compile(self, request: Request) -> Backend:
        """Load the backend for the request's key variables, reusing the loaded one if they match."""
        model_name = request.model or settings_module.DEFAULT_MODEL
        key = {name: getattr(request, name) for name in schema.KEY_FIELDS} | {"model": model_name}
        if self.backend is not None and key == self._key:
            return self.backend
        cls = backend_class(request.backend)
        caps = cls.capabilities()
        for name, allowed in (("device", caps.devices), ("precision", caps.precisions)):
            if key[name] not in allowed:
                raise RequestError(name, f"{name} must be one of {', '.join(allowed)} on backend "
                                         f"{request.backend!r} here, got {key[name]!r}")
        try:
            model = models.find_model(self.model_dirs, model_name)
            vae = models.find_model(self.model_dirs, request.vae, "vae") if request.vae else None
        except models.ModelError as e:
            raise RequestError("vae" if str(e).startswith("vae") else "model", str(e)) from None
        changed = "first load" if self._key is None else ",".join(k for k in key if self._key[k] != key[k])
        self.release()
        started = time.monotonic()
        self.backend = cls(model, vae, request.device, request.precision)
        self._key = key
        log.info("compile: backend=%s model=%s changed=%s (%.1f s)", request.backend, model.name,
                 changed, time.monotonic() - started)
        return self.backend

    def release(self) -> None:
        """Free the loaded backend's memory."""
        if self.backend is not None:
            self.backend.close()
            self.backend, self._key = None, None

    # ----- generating ---------------------------------------------------------------
    def create(self, on_progress: Callable[[Progress], None] | None = None, **fields) -> Result:
        """Validate the fields and run generateArt. The Python entry point."""
        return self.generateArt(self.request(**fields), on_progress=on_progress)

    def interrupt(self) -> None:
        self._stop.set()

    def generateArt(self, request: Request, on_progress: Callable[[Progress], None] | None = None) -> Result:
        """Make request.count images (txt2img, img2img or inpaint) and save them as creations."""
        with self._lock:
            self._stop.clear()
            backend = self.compile(request)
            request = self._resolve(request, backend)
            init_image, mask = self._inputs(request)
            model = models.find_model(self.model_dirs, request.model)
            stored = request.replace(
                init_image=creations.store_input(init_image, self.creations_dir) if init_image else None,
                mask=creations.store_input(mask, self.creations_dir) if mask else None)
            result = Result(request=request)
            self.progress = progress = Progress(images=request.count, steps=request.steps)

            def on_step(step, steps):
                progress.step, progress.steps = step, steps
                if on_progress:
                    on_progress(progress)

            for i in range(request.count):
                seed = (request.seed + i) % (schema.MAX_SEED + 1)
                progress.image, progress.step = i + 1, 0
                job = Job(stored.replace(seed=seed), seed, init_image, mask, on_step, self._stop.is_set)
                try:
                    image = backend.generate(job)
                except Interrupted:
                    result.interrupted = True
                    break
                text = creations.format_parameters(
                    job.request, seed=seed, model_name=model.name, model_hash=model.hash,
                    width=request.width, height=request.height, version=f"dreamworld {__version__}")
                path = creations.save_creation(image, job.request, parameters=text,
                                               creations_dir=self.creations_dir)
                result.paths.append(path)
                result.images.append(image)
                result.seeds.append(seed)
                result.parameters.append(text)
            return result

    def _resolve(self, request: Request, backend: Backend) -> Request:
        """Fill in what the request left to the model and to chance: model, size, seed."""
        caps = backend.capabilities()
        if request.mode not in caps.modes:
            raise RequestError("mode", f"backend {request.backend!r} cannot do {request.mode}; it can do "
                                       + ", ".join(caps.modes))
        if request.scheduler not in caps.schedulers:
            raise RequestError("scheduler", f"scheduler must be one of {', '.join(caps.schedulers)} on "
                                            f"backend {request.backend!r}, got {request.scheduler!r}")
        if request.clip_skip > backend.clip_layers:
            raise RequestError("clip_skip", f"clip_skip must be from 1 to {backend.clip_layers} for this "
                                            f"model, got {request.clip_skip}")
        width, height = backend.native_size
        request = request.replace(
            model=self._key["model"], width=request.width or width, height=request.height or height,
            seed=request.seed if request.seed >= 0 else random.randint(0, schema.MAX_SEED))
        for name in ("width", "height"):
            if getattr(request, name) % caps.size_multiple:
                raise RequestError(name, f"{name} must be a multiple of {caps.size_multiple} on backend "
                                         f"{request.backend!r}, got {getattr(request, name)}")
        return request

    def _inputs(self, request: Request) -> tuple[Image.Image | None, Image.Image | None]:
        """Open, check and size the init image and mask of img2img and inpaint requests."""
        if request.mode == "txt2img":
            return None, None
        size = (request.width, request.height)
        init = _open(request.init_image, "init_image", self.creations_dir).convert("RGB")
        init = init.resize(size, Image.LANCZOS) if init.size != size else init
        if request.mode != "inpaint":
            return init, None
        mask = _open(request.mask, "mask", self.creations_dir)
        if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema() != (255, 255):
            mask = mask.getchannel("A")  # a painted layer: the strokes are what to repaint
        mask = mask.convert("L").resize(size, Image.NEAREST)
        return init, mask


def _open(value, field_name: str, creations_dir: Path) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    path = Path(value)
    if not path.is_absolute() and not path.exists() and (creations_dir / path).exists():
        path = creations_dir / path  # stored inputs are recorded relative to creations/
    try:
        return creations.open_image(path)
    except creations.CreationError as e:
        raise RequestError(field_name, f"{field_name}: {e}") from None


__all__ = ["DreamWorld", "Progress", "Result", "BackendError", "RequestError"]
