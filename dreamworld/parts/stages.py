"""The stages of a generation, one at a time, on the controller: each validates its fields with the schema,
loads the backend through the controller (as generateArt does), runs the backend's stage and writes its state
(tiff.py). A backend's generate is the same stages in order, so the chain text -> noise -> diffuse -> decode
gives generate's pixels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .. import __version__, creations, infotext, models
from ..backends.base import Job
from ..errors import RequestError
from . import tiff
from .tiff import PartsError

# The request fields a diffused state remembers, so that decode records them and a midway state continues
# with them.
CARRIED = ("prompt", "negative_prompt", "clip_skip", "seed", "steps", "scheduler", "guidance_scale", "ngms", "strength",
           "mode", "model")


class Parts:
    """world.parts: the pipeline's stages on the controller's loaded backend."""

    def __init__(self, world):
        self.world = world

    def _backend(self, fields: dict):
        """(backend, resolved request) for the fields, loaded as generateArt loads it."""
        world = self.world
        request = world.request(**fields)
        backend = world.compile(request)
        if not backend.capabilities().parts:
            raise PartsError(f"backend {request.backend!r} cannot run the pipeline by parts")
        return backend, world._resolve(request, backend)

    # ----- text and noise ---------------------------------------------------------------------
    def text(self, out, **fields) -> Path:
        """Write NAME_text.tiff: the [negative, positive] embeddings of the prompts."""
        with self.world._lock:
            backend, r = self._backend(fields)
            embeddings = backend.encode_prompt(r)
            info = dict(kind="text", model=r.model, family=backend.family, backend=r.backend, prompt=r.prompt,
                        negative_prompt=r.negative_prompt, clip_skip=r.clip_skip)
            return tiff.write_text(tiff.path_for(out, "text"), embeddings, info)

    def noise(self, out, **fields) -> Path:
        """Write NAME_state1.tiff: the starting latent generate draws for the seed and size."""
        with self.world._lock:
            backend, r = self._backend(fields)
            latent = backend.initial_noise(r.seed, r.width, r.height)[0]
            info = dict(kind="noise", model=r.model, family=backend.family, seed=r.seed, width=r.width,
                        height=r.height)
            return tiff.write(tiff.path_for(out, "state1"), latent, info, planar=True)

    # ----- the denoising loop -----------------------------------------------------------------
    def diffuse(self, state, text, out, *, from_step: int | None = None, to_step: int | None = None,
                on_step: Callable[[int, int], None] | None = None, **fields) -> Path:
        """Write NAME_state2.tiff: the latent after the loop (or after to_step), from a starting state or a
        midway one (continued from its step), with the embeddings of a text file."""
        with self.world._lock:
            self.world._stop.clear()
            array, info = tiff.read(state, "state")
            embeddings, text_info = tiff.read_series(text, "text")
            midway = from_step if from_step is not None else info.get("step") or 0
            saved = info.get("step")
            if from_step and saved is not None and saved != from_step:
                raise PartsError(f"state: {Path(state).name!r} was saved after step {saved}, not {from_step}")
            fields = {**_carried(info, text_info, midway, fields), **fields}
            mode = info.get("request", {}).get("mode") if midway else \
                "img2img" if info.get("kind") in ("image", "diffused") else "txt2img"
            backend = self.world.compile(self.world.request(**fields))
            latent = _check_latent(backend, array, info, state)
            tiff.check_family(text_info, backend.family, Path(text).name, "text")
            embeddings = tiff.as_text(embeddings, backend.text_width, backend.family, Path(text).name)
            size = dict(width=latent.shape[2] * backend.scale, height=latent.shape[1] * backend.scale)
            image_mode = dict(init_image=str(state)) if mode == "img2img" else {}
            backend, r = self._backend({**fields, **size, **image_mode, "mode": mode or "txt2img"})
            seed = r.seed if "seed" in fields or "seed" in info else 0
            if r.controlnet:
                raise RequestError("controlnet", "the diffuse stage cannot use ControlNet units yet; use generate")
            job = Job(r.replace(seed=seed), seed, on_step=on_step or (lambda i, n: None),
                      should_stop=self.world._stop.is_set, noise=latent if r.mode == "txt2img" else None,
                      init_latents=latent if r.mode == "img2img" else None, from_step=midway, to_step=to_step)
            rng = tiff.unpack_bytes(info.get("rng")) if midway else None
            result, rng = backend.denoise(job, embeddings, latents=latent if midway else None, rng_state=rng)
            names = {**info.get("from", {}), info.get("kind", "state"): Path(state).name, "text": Path(text).name}
            carried = {name: getattr(job.request, name) for name in CARRIED}
            out_info = dict(kind="diffused", model=r.model, family=backend.family, step=to_step,
                            rng=tiff.pack_bytes(rng), request=carried, width=r.width, height=r.height,
                            **{"from": names})
            return tiff.write(tiff.path_for(out, "state2"), result[0], out_info, planar=True)

    # ----- the VAE ----------------------------------------------------------------------------
    def decode(self, state, out, *, tiled: bool = False, float32: bool = False, **fields) -> list[Path]:
        """Write NAME.png (a creation naming its parts) and NAME_decoded.tiff (the decoder's output in
        [0, 1] before rounding to 8 bits, float16, or float32)."""
        with self.world._lock:
            array, info = tiff.read(state, "state")
            carried = {k: v for k, v in info.get("request", {}).items() if k in CARRIED and k != "mode"}
            fields = {**carried, **fields, "mode": "txt2img"}
            backend = self.world.compile(self.world.request(**fields))
            latent = _check_latent(backend, array, info, state)
            size = dict(width=latent.shape[2] * backend.scale, height=latent.shape[1] * backend.scale)
            backend, r = self._backend({**fields, **size})
            decoded = backend.decode_latents(latent[None], tiled=tiled)
            image = backend.to_image(decoded)
            values = np.clip(decoded[0] / 2 + 0.5, 0, 1).transpose(1, 2, 0)
            values = values.astype(np.float32 if float32 else np.float16)
            names = {**info.get("from", {}), "state2": Path(state).name}
            png = Path(tiff.base_name(out) + ".png")
            decoded_path = tiff.write(tiff.path_for(out, "decoded"), values,
                                      dict(kind="decoded", model=r.model, vae=r.vae, tiled=tiled, parts=names))
            model = models.find_model(self.world.model_dirs, r.model)
            text = infotext.format_parameters(r, {"Model hash": model.hash, "Version": f"dreamworld {__version__}"})
            try:
                creations.save_image_at(image, r, parameters=text, path=png, creations_dir=self.world.creations_dir,
                                        extra={"parts": names})
            except BaseException:
                decoded_path.unlink(missing_ok=True)
                raise
            return [png, decoded_path]

    def encode(self, image, out, **fields) -> Path:
        """Write NAME_state1.tiff: an image's latent (the VAE posterior's mean, scaled; no noise)."""
        with self.world._lock:
            try:
                picture = creations.open_image(image).convert("RGB")
            except creations.CreationError as e:
                raise PartsError(f"image: {e}") from None
            backend = self.world.compile(self.world.request(**fields))
            multiple = max(backend.capabilities().size_multiple, 8)
            size = dict(width=fields.get("width") or max(multiple, picture.width // multiple * multiple),
                        height=fields.get("height") or max(multiple, picture.height // multiple * multiple))
            backend, r = self._backend({**fields, **size})
            if picture.size != (r.width, r.height):
                picture = picture.resize((r.width, r.height), Image.LANCZOS)
            latent = backend.encode_image(picture)[0]
            info = dict(kind="image", model=r.model, family=backend.family, vae=r.vae, width=r.width,
                        height=r.height, **{"from": {"image": Path(image).name}})
            return tiff.write(tiff.path_for(out, "state1"), latent, info, planar=True)


def _carried(info: dict, text_info: dict, midway: int, given: dict) -> dict:
    """Defaults for diffuse: the prompts and model of the text file, the seed of a noise file, and,
    continuing a midway state, the settings it was made with."""
    fields = {k: text_info[k] for k in ("prompt", "negative_prompt", "clip_skip") if k in text_info}
    made_by = text_info.get("model") or info.get("model")
    if made_by:  # the model the files were made with, unless another is named
        fields["model"] = made_by
    if "seed" in info:
        fields["seed"] = info["seed"]
    if midway:
        fields.update({k: v for k, v in info.get("request", {}).items() if k in CARRIED and k != "mode"})
    return fields


def _check_latent(backend, array, info: dict, path) -> np.ndarray:
    tiff.check_family(info, backend.family, Path(path).name, "state")
    return tiff.as_latent(array, backend.latent_channels, Path(path).name, "state")
