"""Pydantic request models for the A1111 API, derived from schema.FIELDS so a new field appears here too.

Each field takes its Spec's `api` name (else its own), its type, default, range and help; settings.json
limits and cross-field rules are still checked by schema.validate, whose RequestError names the field (the
routes answer 422). Unknown fields are ignored, as A1111 does. A1111-only fields are accepted and mapped
(batch_size x n_iter -> count, sampler_index, override_settings) or ignored (send/save images, scripts).
Only the fields a client sent are passed on, so the rest take the defaults from settings.json.
"""
from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, create_model

from .. import schema

A1111_ONLY = {"batch_size": (int, Field(1, ge=1, le=16)), "sampler_index": (str | None, None),
              "override_settings": (dict, {}), "override_settings_restore_afterwards": (bool, True),
              "send_images": (bool, True), "save_images": (bool, False), "alwayson_scripts": (dict, {}),
              "script_name": (str | None, None), "script_args": (list, []), "styles": (list, []),
              "subseed": (int, -1), "subseed_strength": (float, 0.0), "restore_faces": (bool | None, None),
              "tiling": (bool | None, None), "enable_hr": (bool, False), "force_task_id": (str | None, None),
              "webhook": (str | None, Field(None, description="DreamWorld: an http(s) URL that receives a POST "
                                                               "per saved image and at the end of the job"))}
IMAGE_ONLY = {"init_images": (list[str], Field(default_factory=list)), "inpainting_fill": (int, 0),
              "inpaint_full_res": (bool, True), "inpaint_full_res_padding": (int, 0),
              "inpainting_mask_invert": (int, 0), "resize_mode": (int, 0), "image_cfg_scale": (float | None, None),
              "include_init_images": (bool, False)}
SKIPPED = {"mode", "seeds", "init_image"}  # set by the route (mode) or given as a list (init_images)
# override_settings keys A1111 clients send, and the schema fields they set.
OVERRIDES = {"sd_model_checkpoint": "model", "sd_vae": "vae", "CLIP_stop_at_last_layers": "clip_skip"}


def api_name(spec) -> str:
    return spec.api or spec.name


def _field(spec) -> tuple[Any, Any]:
    kind = {"list": list[spec.type], "units": list[dict | str],  # name:weight pairs: "outline:0.8" or [name, weight]
            "pairs": list[str | tuple[str, float]]}.get(spec.kind, spec.type)
    if spec.kind == "image":
        kind = str  # base64 in the API
    ranged = {} if spec.kind else {"ge": spec.min, "le": spec.max}
    default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
    return (kind | None, Field(default, description=spec.help, **{k: v for k, v in ranged.items() if v is not None}))


def build(name: str, image_mode: bool) -> type:
    """A pydantic model named `name` with every schema field under its A1111 name."""
    fields = {api_name(s): _field(s) for s in schema.FIELDS.values() if s.name not in SKIPPED}
    fields.update(A1111_ONLY)
    if image_mode:
        fields.update(IMAGE_ONLY)
    return create_model(name, __config__=ConfigDict(extra="ignore"), **fields)


Txt2Img = build("StableDiffusionTxt2ImgProcessingAPI", image_mode=False)
Img2Img = build("StableDiffusionImg2ImgProcessingAPI", image_mode=True)
FIELD_OF_API = {api_name(s): s.name for s in schema.FIELDS.values()}
API_OF_FIELD = {s.name: api_name(s) for s in schema.FIELDS.values()}


def to_values(body, mode: str) -> dict[str, Any]:
    """The schema values (field names) a parsed body sets; images are left to the route."""
    sent = body.model_fields_set
    values = {FIELD_OF_API[k]: getattr(body, k) for k in sent
              if k in FIELD_OF_API and FIELD_OF_API[k] not in SKIPPED and getattr(body, k) is not None}
    for key, name in OVERRIDES.items():
        if body.override_settings.get(key) not in (None, "") and name not in values:
            values[name] = body.override_settings[key]
    if "batch_size" in sent or "count" in values:
        values["count"] = body.batch_size * int(values.get("count", 1))
    if body.sampler_index and "scheduler" not in values:
        values["scheduler"] = body.sampler_index
    hires = [name for name in values if name.startswith("hires_")]
    if mode == "txt2img" and not body.enable_hr:  # A1111 clients send hr_scale with enable_hr false
        for name in hires:
            del values[name]
    elif mode == "txt2img" and "strength" in values:  # A1111's txt2img denoising_strength is the hires pass's
        values["hires_denoising"] = values.pop("strength")
    values["mode"] = mode
    return values
