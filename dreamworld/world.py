"""DreamWorld: the controller. It owns the loaded backend and turns requests into creations."""
from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from PIL import Image

from . import __version__, backends, creations, embeddings, files, hires, infotext, inputs, loras, models, previews
from . import schema, taesd
from . import settings as settings_module
from .cinema import planning, preview, render, runs, video
from .backends.base import Backend, BackendError, Interrupted, Job
from .errors import RequestError
from .progress import Progress, Result, step_reporter
from .schema import Request

log = logging.getLogger("dreamworld")
PREVIEW_INTERVAL = 0.5  # seconds between two live previews (the GUI looks twice a second)


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
        self._graph: dict = {}
        self._loras: tuple = ()  # the LoRAs applied to the loaded backend (loras.LoraFile)
        self._embeddings: tuple = ()  # the embeddings the last request used (embeddings.Embedding)
        self._lock = threading.RLock()  # one generation at a time
        self._stop = threading.Event()
        self.progress = Progress()
        self.depth_model = None  # a transforms.DepthModel makes 3d motion depth-aware
        self._preview_map = None  # (backend, its latents-to-colours map) once a preview was asked for

    # ----- requests -----------------------------------------------------------------
    def request(self, **fields) -> Request:
        """Validate fields over the settings' defaults into a Request (ControlNet units: checked that
        their models, images and preprocessors can be used, without loading anything)."""
        request = schema.validate(fields, base=self.settings.default_request(), limits=self.settings.limits)
        if request.controlnet:
            self.check_controlnet(request)
        return request

    def check_controlnet(self, request: Request) -> None:
        """Refuse, in one sentence, ControlNet units that cannot run (inputs.check_controlnet)."""
        inputs.check_controlnet(request, self.model_dirs, self.creations_dir)

    def capabilities(self, backend: str | None = None):
        return backends.capabilities(backend or self.request().backend)

    def list_models(self, kind: str = "checkpoint") -> list[models.ModelInfo]:
        return models.list_models(self.model_dirs, kind)

    def use_known_model(self) -> str | None:
        """If the default model is not found, make the embedded one the default; return a sentence saying so."""
        name = self.settings.defaults.get("model") or settings_module.DEFAULT_MODEL
        try:
            models.find_model(self.model_dirs, name)
        except models.ModelError as e:
            self.settings.defaults["model"] = settings_module.DEFAULT_MODEL
            return f"{e}; using {settings_module.DEFAULT_MODEL} instead"
        return None

    def save_settings(self, models_dir: str, creations_dir: str, defaults: dict, limits: dict) -> Path:
        """Check and write new settings over the current ones; folder changes apply at the next start."""
        new = settings_module.Settings(
            models_dir=models_dir, creations_dir=creations_dir, defaults={**self.settings.defaults, **defaults},
            limits={**self.settings.limits, **limits}, path=self.settings.path)
        try:
            path = settings_module.save(new)
        except OSError as e:
            raise settings_module.SettingsError(f"settings could not be written to {new.path}: "
                                                f"{e.strerror or e}") from None
        self.settings = new
        return path

    # ----- compiling ----------------------------------------------------------------
    def compile(self, request: Request) -> Backend:
        """Load the backend for the request's key variables, reusing the loaded one if they match.

        Beyond the schema's key fields, a backend may name fields its compiled graph fixes (graph_key):
        a change of those makes the graphs again over the loaded weights. Then the request's LoRAs (its
        lora field and <lora:...> tags) are applied to the loaded model (set_loras)."""
        backend = self._compile(request)
        self._set_loras(request, backend)
        self._set_embeddings(request, backend)
        self._set_fast_decoder(request, backend)
        return backend

    def _set_fast_decoder(self, request: Request, backend: Backend) -> None:
        """The TAESD a fast_decode request decodes with (taesd.py): refused in one sentence when none fits."""
        found = taesd.find(self.model_dirs, backend.model_name, backend.family) if request.fast_decode else None
        if request.fast_decode and found is None:
            names = (backend.model_name, *taesd.FAMILY_NAMES.get(backend.family, ()))
            raise RequestError("fast_decode", "fast_decode needs a TAESD decoder in models/VAE-approx named "
                                              + " or ".join(repr(n) for n in names) + "; there is none")
        backend.set_fast_decoder(found)

    def _set_embeddings(self, request: Request, backend: Backend) -> None:
        """The textual-inversion embeddings the prompts use, checked against the model and handed to it."""
        used = embeddings.used(self.model_dirs, [("prompt", request.prompt),
                                                 ("negative_prompt", request.negative_prompt)])
        try:
            embeddings.check(used, backend.model_name, backend.family, backend.text_width)
        except models.ModelError as e:
            raise RequestError("prompt", str(e)) from None
        backend.set_embeddings(used)
        self._embeddings = used

    def _set_loras(self, request: Request, backend: Backend) -> None:
        """Apply the request's LoRAs if they differ from the loaded ones: refused by name (unknown, damaged,
        another model family) before anything is generated. A backend that rebuilds weights for them
        (TensorFlow merges them) logs a `compile:` line; torch swaps PEFT adapters and logs none."""
        wanted = loras.resolve(self.model_dirs, loras.wanted(request))
        if wanted == self._loras:
            return
        if wanted and not backend.capabilities().lora:
            raise RequestError("lora", f"backend {request.backend!r} cannot use LoRAs")
        try:
            loras.check(wanted, backend.model_name, backend.family, backend.text_width)
        except models.ModelError as e:
            raise RequestError("lora", str(e)) from None
        started = time.monotonic()
        try:
            rebuilt = backend.set_loras(wanted)
        except models.ModelError as e:
            raise RequestError("lora", str(e)) from None
        self._loras = wanted
        if rebuilt:
            log.info("compile: backend=%s model=%s changed=lora (%.1f s)", request.backend, self._key["model"],
                     time.monotonic() - started)

    def _compile(self, request: Request) -> Backend:
        model_name = request.model or settings_module.DEFAULT_MODEL
        key = {name: getattr(request, name) for name in schema.KEY_FIELDS} | {"model": model_name}
        cls = backends.backend_class(request.backend, request.device)
        backends.check(request, cls.capabilities())
        if self.backend is not None and key == self._key:
            graph = _graph_key(cls, request, self.backend)
            if graph != self._graph:
                changed = ",".join(k for k in graph if self._graph.get(k) != graph[k])
                started = time.monotonic()
                self.backend.recompile(graph)
                self._graph = graph
                log.info("compile: backend=%s model=%s changed=%s (%.1f s)", request.backend, model_name,
                         changed, time.monotonic() - started)
            return self.backend
        try:
            model = models.find_model(self.model_dirs, model_name)
            vae = models.find_model(self.model_dirs, request.vae, "vae") if request.vae else None
        except models.ModelError as e:
            raise RequestError("vae" if str(e).startswith("vae") else "model", str(e)) from None
        changed = "first load" if self._key is None else ",".join(k for k in key if self._key[k] != key[k])
        self.release()
        started = time.monotonic()
        self._loras = ()
        self.backend = cls(backends.LoadSpec(model, vae, request.device, request.precision, request.jit))
        graph = _graph_key(cls, request, self.backend)
        if graph:
            self.backend.recompile(graph)
        self._key, self._graph = key, graph
        log.info("compile: backend=%s model=%s changed=%s (%.1f s)", request.backend, model.name,
                 changed, time.monotonic() - started)
        return self.backend

    def release(self) -> None:
        """Free the loaded backend's memory."""
        if self.backend is not None:
            self.backend.close()
            self.backend, self._key, self._graph, self._loras = None, None, {}, ()

    # ----- generating ---------------------------------------------------------------
    def create(self, on_progress: Callable[[Progress], None] | None = None, **fields) -> Result:
        """Validate the fields and run generateArt. The Python entry point."""
        return self.generateArt(self.request(**fields), on_progress=on_progress)

    def interrupt(self) -> None:
        self._stop.set()

    def generateArt(self, request: Request, on_progress: Callable[[Progress], None] | None = None,
                    on_image: Callable[[int, Path, int, str], None] | None = None, *,
                    folder=None, label: Callable[[int], str] | None = None) -> Result:
        """Make request.count images (txt2img, img2img or inpaint) and save them as creations.

        `on_image(index, path, seed, parameters)` is called as each image is saved; `folder` saves them (and
        their inputs) in another creations folder, e.g. a session's project; `label(index)` adds to a file
        name."""
        _check_callback(on_progress)
        folder = Path(folder) if folder else self.creations_dir
        with self._lock:
            self._stop.clear()
            creations.check_folder(folder)  # before generating, not when saving
            creations.check_fits(request)
            backend = self.compile(request)
            request = self._resolve(request, backend)
            if hires.wanted(request):
                request = hires.check(request, self.model_dirs, backend)
            init_image, mask, original = inputs.open_inputs(request, self.creations_dir)
            control = inputs.control_inputs(request, backend, original or init_image, mask, self.model_dirs,
                                            self.creations_dir)  # before anything is written
            hires_control = inputs.control_inputs(hires.second_pass(request), backend, original or init_image, mask,
                                                  self.model_dirs, self.creations_dir) \
                if hires.wanted(request) else ()  # the units' images made again at the hires size
            model = models.find_model(self.model_dirs, request.model)
            stored = inputs.store(request, init_image, mask, original, folder, self.creations_dir)
            hashes = inputs.controlnet_hashes(request, self.model_dirs)
            result = Result(request=request)
            self.progress = progress = Progress(images=len(request.image_seeds()), steps=request.steps)

            on_step = step_reporter(progress, on_progress)
            on_latents = self._previewer(backend, request, progress) if on_progress else None

            for i, seed in enumerate(request.image_seeds()):
                if self._stop.is_set():  # interrupted while the previous image was saved
                    result.interrupted = True
                    break
                progress.image, progress.step, progress.preview = i + 1, 0, None
                job = Job(stored.replace(seed=seed), seed, init_image, mask, on_step, self._stop.is_set,
                          on_latents=on_latents, control=control, original=original)
                try:
                    image = hires.generate(job, self.model_dirs, self.compile, hires_control) if hires.wanted(request) \
                        else backend.generate(job)
                except Interrupted:
                    result.interrupted = True
                    break
                text = infotext.format_parameters(job.request, {"Model hash": model.hash,
                                                                **self.hashes(), "ControlNet hashes": hashes,
                                                                "Version": f"dreamworld {__version__}"})
                path = creations.save_creation(image, job.request, parameters=text, creations_dir=folder,
                                               index_hint=label(i) if label else "")
                if on_image:
                    on_image(i, path, seed, text)
                result.paths.append(path)
                result.images.append(image)
                result.seeds.append(seed)
                result.parameters.append(text)
                progress.latest = str(path)
                if on_progress:
                    on_progress(progress)
            return result

    def _previewer(self, backend: Backend, request: Request, progress: Progress):
        """A Job.on_latents that shows the latents in progress.preview, at most every PREVIEW_INTERVAL
        seconds (previews.painter: the model's TAESD, else a linear map); None where there is neither."""
        if self._preview_map is None or self._preview_map[0] is not backend:
            self._preview_map = (backend, previews.painter(backend, taesd.find(self.model_dirs, backend.model_name,
                                                                                backend.family)))
        paint = self._preview_map[1]
        if paint is None:
            return None
        shown = 0.0

        def on_latents(step, latents):
            nonlocal shown
            if time.monotonic() - shown >= PREVIEW_INTERVAL:
                shown = time.monotonic()
                progress.preview = paint(latents, (request.width, request.height))

        return on_latents

    def hashes(self) -> dict:
        """A1111's `Lora hashes` and `TI hashes` of the LoRAs and embeddings in use, for the parameters text."""
        return {"Lora hashes": loras.hashes_text(self._loras), "TI hashes": embeddings.hashes_text(self._embeddings)}

    def upscale(self, path, scale: float = 2, upscaler: str = "Lanczos", device: str | None = None) -> Path:
        """A new creation: the image file `path` upscaled `scale` times (dreamworld/upscalers.py)."""
        from . import upscalers
        with self._lock:
            return upscalers.upscale_file(path, scale, upscaler, self.model_dirs, self.creations_dir,
                                          self.request(**({"device": device} if device else {})).device)

    def upscalers(self, latent: bool = False) -> list[str]:
        from . import upscalers
        return upscalers.names(self.model_dirs, latent)

    @property
    def parts(self):
        """The pipeline's stages one at a time, their state in TIFF files (dreamworld/parts)."""
        from .parts.stages import Parts
        return Parts(self)

    # ----- cinema -------------------------------------------------------------------
    def cinema_request(self, **fields):
        """Validate cinema fields over the settings' defaults into a CinemaRequest."""
        base = schema.cinema_defaults(self.settings.default_request())
        return schema.validate_cinema(fields, base=base, limits=self.settings.limits)

    def animate(self, on_progress: Callable[[Progress], None] | None = None, **fields) -> render.CinemaResult:
        """Validate the cinema fields and run generateCinema. The Python entry point for animations."""
        return self.generateCinema(self.cinema_request(**fields), on_progress=on_progress)

    def preview_motion(self, **fields) -> Path:
        """A GIF of how a cinema run's motion moves its input over its frames, made without diffusion."""
        request = self.cinema_request(**fields)
        frames = preview.preview(request)
        target = Path(tempfile.mkdtemp(prefix="dreamworld-preview-")) / "preview.gif"
        return video.write_gif(frames, target, min(request.fps or planning.DEFAULT_FPS, 50))

    def resume_cinema(self, run, on_progress: Callable[[Progress], None] | None = None) -> render.CinemaResult:
        """Continue an interrupted cinema run (its folder, settings file or a frame) from its saved frames."""
        return self.generateCinema(None, on_progress=on_progress, resume=run)

    def generateCinema(self, request, on_progress: Callable[[Progress], None] | None = None,
                       resume=None) -> render.CinemaResult:
        """Make an animation (see dreamworld/cinema/): plan it, make its frames, write its video.

        With `resume` (a run folder), the run's saved settings are used and its saved frames kept."""
        _check_callback(on_progress)
        with self._lock:
            self._stop.clear()
            creations.check_folder(self.creations_dir)  # before generating, not when saving
            run_dir = None
            if resume is not None:
                run_dir = runs.settings_file(resume).parent
                if not run_dir.resolve().is_relative_to(self.creations_dir.resolve()):
                    raise creations.CreationError(f"{run_dir.name!r} is not a run in the creations folder "
                                                  f"{self.creations_dir}")
                files.remove_stale_temp_files(run_dir)  # a killed run's half-written video or frame
                request = schema.validate_cinema(runs.load_settings(run_dir, self.creations_dir))
            if request.motion != "video":  # schedule errors at once, before loading a model
                planning.evaluate(request, request.frames or planning.DEFAULT_FRAMES)
            base = planning.base_request(request)
            backend = self.compile(base)
            backends.check(request, backend.capabilities())
            if request.controlnet:  # a unit without its own image takes each frame's input
                inputs.check_controlnet(base, self.model_dirs, self.creations_dir)
            base = self._resolve(base, backend)
            request, video_frames = planning.resolve(request, base, backend.native_size,
                                                     backend.capabilities().size_multiple)
            plan = planning.plan(request)  # every schedule at every frame: errors before anything is written
            planning.check_loras(plan, base)
            init = None
            if request.init_image:
                init = inputs.open_inputs(base.replace(init_image=request.init_image), self.creations_dir)[0]
            model = models.find_model(self.model_dirs, request.model)
            settings = runs.record(request, self.creations_dir)  # stores the inputs in creations/inputs
            if run_dir is None:
                run_dir = creations.new_run_folder(self.creations_dir, request.prompt)
                files.write_json(run_dir / runs.RUN_SETTINGS, settings)
            self.progress = progress = Progress(frames=request.frames, steps=request.steps)
            renderer = render.Renderer(
                plan, backend=backend, run_dir=run_dir, creations_dir=self.creations_dir, model=model,
                progress=progress, report=(lambda: on_progress(progress)) if on_progress else (lambda: None),
                should_stop=self._stop.is_set, init_image=init, init_stored=settings["cinema"]["init_image"],
                video_frames=video_frames, depth_model=self.depth_model or inputs.depth_hook(self.model_dirs, request),
                text_extra={**self.hashes(), "ControlNet hashes": inputs.controlnet_hashes(request, self.model_dirs)},
                control=lambda frame, image: inputs.control_inputs(frame, backend, image, None, self.model_dirs,
                                                                   self.creations_dir))
            return renderer.run()

    def _resolve(self, request: Request, backend: Backend) -> Request:
        """Fill in what the request left to the model and to chance: model, size, seed."""
        caps = backend.capabilities()
        if request.clip_skip > backend.clip_layers:
            raise RequestError("clip_skip", f"clip_skip must be from 1 to {backend.clip_layers} for this "
                                            f"model, got {request.clip_skip}")
        width, height = backend.native_size
        request = request.replace(
            model=self._key["model"], width=request.width or width, height=request.height or height,
            seed=request.seed if request.seed >= 0 else random.randint(0, schema.MAX_SEED))
        backends.check(request, caps)
        return request


    def preview_control(self, preprocessor: str, image, **options) -> Image.Image:
        """A preprocessor's control image of `image` as a picture (the GUI's preview; inputs.preview_control)."""
        return inputs.preview_control(self.model_dirs, self.creations_dir, preprocessor, image, **options)


def _check_callback(on_progress) -> None:
    if on_progress is not None and not callable(on_progress):
        raise RequestError("on_progress", f"on_progress must be callable (a function given the progress), "
                                          f"got {on_progress!r}"[:200])


def _graph_key(cls, request: Request, backend: Backend) -> dict:
    """The backend's graph key for the request, with an unset width or height as the model's native size
    (the size the request will be made at)."""
    native = dict(zip(("width", "height"), backend.native_size))
    return {k: native.get(k) if v is None else v for k, v in cls.graph_key(request).items()}


__all__ = ["DreamWorld", "Progress", "Result", "BackendError", "RequestError"]
