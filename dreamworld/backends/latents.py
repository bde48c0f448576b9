"""The pipeline as stages, shared by the backends whose nets run step by step (latents as NCHW float32 torch
tensors, on the CPU between stages and on the backend's `loop_device` inside the denoising loop, so that a GPU
runs the steps without waiting for the CPU): text -> embeddings, seed -> noise, the denoising loop (from any step to any step),
latents -> decoded image, image -> latents. `generate` is these stages run in order, so a run by parts
(dreamworld/parts) and a plain generation cannot drift apart.

A backend implements the hooks: `predict_noise(latents, t, context)`, `encode(image, generator)` (a sample of
the VAE posterior, scaled), `encode_mean(image)`, `decode(latents) -> NCHW in [-1, 1]`,
`prompt_encoder(skip)` (a prompts.TextEncoder),
and has `scheduler_config`, `vae_config`, `unet_config`, `scale` and `images` (a diffusers VaeImageProcessor).
The loop follows diffusers' SD pipelines step for step, drawing the same seeded CPU noise.
"""
from __future__ import annotations

import inspect

import numpy as np
import torch
from PIL import Image

from .. import prompts, taesd
from . import samplers
from .base import Backend, BackendError, Interrupted, Job

# Samplers whose state between two steps is the latents, the step index and the noise generator only
# (first-order, one model call a step):
# a run stopped after a step and continued from the saved state gives the uninterrupted run's latents.
RESUMABLE = ("Euler", "Euler a", "DDIM")
TILE, OVERLAP = 32, 16  # latent pixels of a decoding tile and of the overlap between two tiles


class LatentStages(Backend):
    """Backend stages over the hooks above; subclasses call `_check_mode` and keep their own errors."""

    loop_device = "cpu"  # where the latents live during the loop; predict_noise returns its noise there

    @property
    def unet_channels(self) -> int:
        return self.unet_config["in_channels"]

    @property
    def latent_channels(self) -> int:
        return self.vae_config["latent_channels"]

    @property
    def text_width(self) -> int:
        return self.unet_config["cross_attention_dim"]

    # ----- stages ---------------------------------------------------------------------------
    def encode_prompt(self, request, blend=None) -> np.ndarray:
        """[negative, positive] embeddings, float32 (2, tokens, width); a blend mixes prompts by weight.
        Prompts use A1111's syntax and may be longer than one chunk (dreamworld/prompts.py)."""
        encoder = self.prompt_encoder(request.clip_skip)
        texts = [prompt for prompt, _ in blend] if blend else [request.prompt]
        negative, *positives = prompts.embed_all([request.negative_prompt, *texts], encoder)
        if blend:
            positive = sum(weight * p for (_, weight), p in zip(blend, positives))
        else:
            positive = positives[0]
        return np.concatenate([negative, positive]).astype(np.float32)

    def embed(self, text: str, clip_skip: int = 1) -> np.ndarray:
        """The text's embedding (1, 77 * chunks, width), float32."""
        return prompts.embed(text, self.prompt_encoder(clip_skip))

    def generate(self, job: Job) -> Image.Image:
        latents, _ = self.denoise(job, self.encode_prompt(job.request, job.prompt_blend))
        if job.request.fast_decode and self.fast_decoder is not None:
            image = self.to_image(taesd.decode(self.fast_decoder, _tensor(latents), self.device).numpy())
        else:
            image = self.to_image(self.decode_latents(latents))
        if job.request.mode == "inpaint":
            image = Image.composite(image, job.compose_image, job.compose_mask)
        return image

    def denoise(self, job: Job, context: np.ndarray, latents=None, rng_state: bytes | None = None):
        """(latents after the loop, the noise generator's state then) as (NCHW float32 numpy, bytes).

        Without `latents` the loop starts as generate does (txt2img: the seed's noise or job.noise;
        img2img: job.init_latents, or job.init_image encoded). With `latents` and job.from_step, it
        continues a saved midway state whose generator state is `rng_state`; job.to_step stops early."""
        r = job.request
        generator = torch.Generator("cpu").manual_seed(job.seed)
        scheduler = samplers.make(r.scheduler, self.scheduler_config, job.seed)
        scheduler.set_timesteps(r.steps, device="cpu")
        timesteps, order = scheduler.timesteps, scheduler.order
        shape = (1, self.vae_config["latent_channels"], r.height // self.scale, r.width // self.scale)
        blend = extra = None
        begin = 0
        if r.mode == "txt2img":
            start = torch.randn(shape, generator=generator, dtype=torch.float32)
            if job.noise is not None:  # a latent walk's (or a saved) noise replaces the seed's draw
                start = _tensor(job.noise)
            start = start * scheduler.init_noise_sigma
        else:
            begin = r.steps - min(int(r.steps * r.strength), r.steps)
            if begin >= r.steps:
                raise BackendError(f"strength {r.strength:g} leaves no denoising step out of {r.steps}; "
                                   "raise strength or steps")
            first = timesteps[begin * order:][:1]
            if r.mode == "img2img":
                clean = _tensor(job.init_latents) if job.init_latents is not None else \
                    self.encode(self.images.preprocess(job.init_image).float(), generator)
                start = scheduler.add_noise(clean, torch.randn(clean.shape, generator=generator), first)
            else:
                image = self.images.preprocess(job.init_image).float()
                start, blend, extra = self._inpaint_start(job, image, scheduler, generator, shape, first)
        run = timesteps[begin * order:]  # what generate loops over
        end = len(run) if job.to_step is None else job.to_step
        if job.from_step or end < len(run):
            _check_resumable(r, job.from_step, end, len(run))
        if latents is not None:
            start = _tensor(latents)
            if rng_state is not None:
                generator.set_state(torch.frombuffer(bytearray(rng_state), dtype=torch.uint8))
        if (r.mode != "txt2img" or job.from_step) and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin * order + job.from_step)
        latents = self._loop(job, scheduler, generator, start.to(self.loop_device), context, run, end, (blend, extra))
        return latents.cpu().numpy(), bytes(generator.get_state().numpy())

    def _loop(self, job, scheduler, generator, latents, context, run, end, inpaint):
        r, (blend, extra) = job.request, inpaint
        guided = r.guidance_scale > 1
        context = context if guided else context[1:]  # an array, or SDXL's Conditioning
        step_kwargs = _step_kwargs(scheduler, generator)
        control = self.prepare_control(job) if job.control else []
        for i in range(job.from_step, end):
            t = run[i]
            # A1111's NGMS: below that sigma, every other step leaves out the negative prompt's pass
            both = guided and not (r.ngms and i % 2 and _sigma(scheduler, t) < r.ngms)
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2) if both else latents, t)
            # ControlNet units acting at this step (a unit of weight 0 never acts: the plain UNet's pixels)
            active = [(net, cond, unit.weight) for unit, (net, cond) in zip(job.control, control)
                      if unit.weight > 0 and unit.active(i, len(run))]
            control_input = model_input
            if extra is not None:  # a 9-channel inpainting UNet also sees the mask and the masked image
                model_input = torch.cat([model_input] + [torch.cat([e] * len(model_input)) for e in extra], dim=1)
            step_context = context if both or not guided else context[1:]
            if active:
                noise = self.predict_noise(model_input, t, step_context, control=active, control_input=control_input)
            else:
                noise = self.predict_noise(model_input, t, step_context)
            if both:
                uncond, cond = noise.chunk(2)
                noise = uncond + r.guidance_scale * (cond - uncond)
            latents = scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
            if blend is not None:
                latents = blend(latents, i, run)
            if job.on_latents is not None:
                job.on_latents(i + 1, latents)
            job.on_step(i + 1, len(run))
            if job.should_stop():
                raise Interrupted()
        return latents

    def prepare_control(self, job) -> list:
        """(loaded ControlNet, control image ready for it) per unit of job.control (backends that can)."""
        raise BackendError(f"backend {self.name!r} cannot do ControlNet")

    def _inpaint_start(self, job, image, scheduler, generator, shape, first):
        """Initial latents for inpaint, and either the blend that keeps the unmasked latents of the input
        (4-channel UNets) or the extra UNet inputs (9-channel ones), drawing noise as diffusers does."""
        r = job.request
        full = r.strength == 1.0
        inpainting_unet = self.unet_channels == 9
        image_latents = self.encode(image, generator) if not inpainting_unet or not full else None
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        latents = noise * scheduler.init_noise_sigma if full else scheduler.add_noise(image_latents, noise, first)
        condition = self.masks.preprocess(job.soft_mask, height=r.height, width=r.width).float()
        mask = torch.nn.functional.interpolate(condition, size=shape[2:]).to(self.loop_device)
        masked_latents = self.encode(image * (condition < 0.5), generator).to(self.loop_device)
        if inpainting_unet:
            return latents, None, (mask, masked_latents)
        image_latents, noise = image_latents.to(self.loop_device), noise.to(self.loop_device)

        def blend(latents, i, timesteps):
            known = image_latents
            if i < len(timesteps) - 1:
                known = scheduler.add_noise(image_latents, noise, torch.tensor([timesteps[i + 1]]))
            return (1 - mask) * known + mask * latents

        return latents, blend, None

    def decode_latents(self, latents, tiled: bool = False) -> np.ndarray:
        """The decoder's raw output, NCHW float32 in about [-1, 1]; tiled: in overlapping tiles."""
        latents = _tensor(latents)
        if not tiled or max(latents.shape[2:]) <= TILE:
            return self.decode(latents).numpy()
        return self.decode_tiled(latents).numpy()

    def decode_tiled(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode in overlapping tiles blended at their borders (a backend may do better: torch_tiles.py)."""
        return decode_tiled(self.decode, latents, self.scale)

    def encode_image(self, image: Image.Image) -> np.ndarray:
        """An image's latents: the mean of the VAE posterior, scaled as the model expects (no noise)."""
        return self.encode_mean(self.images.preprocess(image.convert("RGB")).float()).numpy()

    def to_image(self, decoded: np.ndarray) -> Image.Image:
        return self.images.postprocess(torch.from_numpy(decoded), output_type="pil")[0]


def decode_tiled(decode, latents: torch.Tensor, scale: int) -> torch.Tensor:
    """Decode tile by tile; overlapping borders are blended with linear ramps, so no seam shows."""
    _, _, h, w = latents.shape
    out = torch.zeros(1, 3, h * scale, w * scale)
    weight = torch.zeros(1, 1, h * scale, w * scale)
    stride = TILE - OVERLAP
    for y in _starts(h, stride):
        for x in _starts(w, stride):
            tile = decode(latents[:, :, y:y + TILE, x:x + TILE])
            ramp = _ramp(tile.shape[2], y > 0, y + TILE < h, OVERLAP * scale)[:, None] * \
                _ramp(tile.shape[3], x > 0, x + TILE < w, OVERLAP * scale)[None, :]
            ys, xs = slice(y * scale, y * scale + tile.shape[2]), slice(x * scale, x * scale + tile.shape[3])
            out[:, :, ys, xs] += tile * ramp
            weight[:, :, ys, xs] += ramp
    return out / weight


def _starts(size: int, stride: int) -> list[int]:
    starts = list(range(0, max(size - TILE, 0) + 1, stride))
    if starts[-1] + TILE < size:
        starts.append(size - TILE)
    return starts


def _ramp(n: int, before: bool, after: bool, overlap: int) -> torch.Tensor:
    ramp = torch.ones(n)
    edge = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
    if before:
        ramp[:overlap] = torch.minimum(ramp[:overlap], edge)
    if after:
        ramp[-overlap:] = torch.minimum(ramp[-overlap:], edge.flip(0))
    return ramp


def _check_resumable(r, from_step: int, to_step: int, total: int) -> None:
    from ..errors import RequestError
    if not 0 <= from_step < to_step <= total:
        raise RequestError("steps", f"from step {from_step} to step {to_step} is not a range within the "
                                    f"{total} denoising steps of this run")
    if getattr(r, "deepcache", 0):
        raise RequestError("deepcache", "DeepCache keeps features between steps that a saved state does not hold, "
                                        "so a run with it cannot stop or continue midway; set deepcache to 0")
    if r.scheduler not in RESUMABLE:
        raise RequestError("scheduler", f"sampler {r.scheduler!r} keeps past steps that a saved state does not "
                                        f"hold, so it cannot stop or continue midway; use one of "
                                        + ", ".join(RESUMABLE))


def _sigma(scheduler, t) -> float:
    """The noise level (k-diffusion's sigma) of a timestep: sqrt((1 - alpha_bar) / alpha_bar)."""
    alpha_bar = float(scheduler.alphas_cumprod[int(t)])
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


def _tensor(array) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(1, *np.shape(array)[-3:])


def _step_kwargs(scheduler, generator) -> dict:
    accepted = inspect.signature(scheduler.step).parameters
    return {k: v for k, v in (("eta", 0.0), ("generator", generator)) if k in accepted}
