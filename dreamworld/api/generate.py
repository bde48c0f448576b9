"""txt2img and img2img: a parsed A1111 body -> one Service task -> A1111's response (images, parameters, info)."""
from __future__ import annotations

import json
import time
from typing import Any

from PIL import ImageOps

from .. import __version__, infotext
from ..errors import RequestError
from ..service import Service
from ..world import Result
from . import fields, images, models


def _inputs(body) -> dict[str, Any]:
    """img2img's init image and, for inpaint, its mask, decoded (errors name the A1111 field)."""
    if not body.init_images:
        raise RequestError("init_images", "init_images must hold one base64-encoded image for img2img")
    fields = {"init_image": images.decode(body.init_images[0], "init_images")}
    if body.mask:
        mask = images.decode(body.mask, "mask")
        if body.inpainting_mask_invert:
            mask = ImageOps.invert(mask.convert("L"))
        fields["mask"] = mask
    return fields


def run(service: Service, body, mode: str, user: str) -> dict[str, Any]:
    """Queue the request behind any others as `user`'s job, wait for it, and answer in A1111's shape."""
    values = models.to_values(body, mode)
    units = fields.units(body)
    if units is not None:
        values["controlnet"] = units
    if mode != "txt2img":
        values.update(_inputs(body))
        values["mode"] = "inpaint" if "mask" in values else "img2img"
    started = time.strftime("%Y%m%d%H%M%S")
    result = service.create(user=user, webhook=body.webhook, **values).wait()
    encoded = [images.encode_file(p, t) for p, t in zip(result.paths, result.parameters)]
    echoed = body.model_dump()
    if mode != "txt2img":
        echoed["init_images"] = echoed["mask"] = None  # as A1111 does: not sent back
    return {"images": encoded if body.send_images else [], "parameters": echoed,
            "info": json.dumps(info(result, started))}


def info(result: Result, job_timestamp: str) -> dict[str, Any]:
    """A1111's Processed.js(): what was made, with one infotext per image."""
    r, n = result.request, len(result.seeds)
    seeds = result.seeds or [r.seed]
    made = infotext.parse_parameters(result.parameters[0]) if result.parameters else {}
    return {
        "prompt": r.prompt, "all_prompts": [r.prompt] * n, "negative_prompt": r.negative_prompt,
        "all_negative_prompts": [r.negative_prompt] * n, "seed": seeds[0], "all_seeds": seeds,
        "subseed": -1, "all_subseeds": [-1] * n, "subseed_strength": 0, "width": r.width, "height": r.height,
        "sampler_name": r.scheduler, "cfg_scale": r.guidance_scale, "steps": r.steps, "batch_size": 1,
        "restore_faces": False, "face_restoration_model": None, "sd_model_name": r.model,
        "sd_model_hash": made.get("Model hash"), "sd_vae_name": r.vae or None, "sd_vae_hash": None,
        "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": r.strength if r.mode != "txt2img" else None, "extra_generation_params": {},
        "index_of_first_image": 0, "infotexts": list(result.parameters), "styles": [],
        "job_timestamp": job_timestamp, "clip_skip": r.clip_skip, "is_using_inpainting_conditioning": False,
        "version": f"dreamworld {__version__}", "interrupted": result.interrupted,
    }
