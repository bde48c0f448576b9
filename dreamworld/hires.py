"""Hires fix, as A1111 does it: make the image at the request's size, enlarge it by hires_scale (its latents
with "Latent", else the decoded image with an upscaler), then denoise that again as img2img at the larger
size with hires_steps and hires_denoising. Backend-neutral: it drives any backend through the controller's
compile() and the Backend interface (generate; for Latent, the stages encode_prompt and denoise)."""
from __future__ import annotations

from PIL import Image

from . import upscalers
from .backends.base import Job
from .errors import RequestError
from .schema import FIELDS, Request


def wanted(request: Request) -> bool:
    return request.mode == "txt2img" and request.hires_scale > 1


def target_size(request: Request) -> tuple[int, int]:
    """The hires pass's size: the first pass's times hires_scale, down to a multiple of 8."""
    return tuple(int(side * request.hires_scale) // 8 * 8 for side in (request.width, request.height))


def check(request: Request, model_dirs, backend) -> Request:
    """The resolved request with its hires upscaler's name as listed; RequestError naming the field if
    the upscaler is unknown, the larger size too large, or Latent asked of a backend without stages."""
    name = upscalers.check(request.hires_upscaler, model_dirs, "hires_upscaler", latent=True)
    width, height = target_size(request)
    limit = int(FIELDS["width"].max)
    if max(width, height) > limit:
        raise RequestError("hires_scale", f"hires_scale {request.hires_scale:g} makes {width}x{height} pixels from "
                                          f"{request.width}x{request.height}; each side must be at most {limit}")
    if name == upscalers.LATENT and not backend.capabilities().parts:
        raise RequestError("hires_upscaler", f"hires_upscaler Latent needs the pipeline's stages, which this model "
                                             f"on {request.backend} does not run; use Lanczos or a models/ESRGAN model")
    return request.replace(hires_upscaler=name)


def second_pass(request: Request) -> Request:
    width, height = target_size(request)
    return request.replace(mode="img2img", width=width, height=height, steps=request.hires_steps or request.steps,
                           strength=request.hires_denoising, hires_scale=1.0)


def generate(job: Job, model_dirs, compile, control=()) -> Image.Image:
    """The hires-fixed image of a txt2img job; `compile(request)` gives the backend for a request (the
    controller's, which remakes a graph fixed to one size when the size changes). `control`: the job's
    ControlNet units made at the second pass's size, which guide it as they guided the first (A1111's)."""
    import torch

    request, second = job.request, second_pass(job.request)
    backend = compile(request)
    if request.hires_upscaler == upscalers.LATENT:
        with torch.no_grad():
            latents, _ = backend.denoise(job, backend.encode_prompt(request, job.prompt_blend))
            size = (second.height // backend.scale, second.width // backend.scale)
            larger = torch.nn.functional.interpolate(torch.as_tensor(latents), size=size, mode="bilinear")
        inputs = dict(init_latents=larger.numpy())
    else:
        first = backend.generate(job)
        inputs = dict(init_image=upscalers.upscale_to(first, (second.width, second.height), request.hires_upscaler,
                                                      model_dirs, request.device))
    backend = compile(second)
    return backend.generate(Job(second, job.seed, on_step=job.on_step, should_stop=job.should_stop, control=control,
                                **inputs))
