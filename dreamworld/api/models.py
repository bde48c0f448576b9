"""Pydantic request models for the A1111 API, derived from schema.FIELDS so a new field appears here too.

Each field takes its Spec's `api` name (else its own), its type and its default; ranges and choices are
checked by schema.validate, whose RequestError names the field (the routes answer 422). Unknown fields
are ignored, as A1111 does. A1111-only fields are accepted and mapped (batch_size x n_iter -> count).
"""
from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, create_model

from .. import schema

A1111_ONLY = {"batch_size": (int, 1), "sampler_index": (str | None, None), "override_settings": (dict, {}),
              "send_images": (bool, True), "save_images": (bool, False), "alwayson_scripts": (dict, {}),
              "inpainting_fill": (int, 0)}
SKIPPED = {"mode", "seeds", "init_image"}  # set by the route (mode) or given as a list (init_images)


def api_name(spec) -> str:
    return spec.api or spec.name


def _field(spec) -> tuple[Any, Any]:
    kind = spec.type if spec.kind != "list" else list[spec.type]
    return (kind | None, spec.default)


def build(name: str, image_mode: bool) -> type:
    """A pydantic model named `name` with every schema field under its A1111 name."""
    fields = {api_name(s): _field(s) for s in schema.FIELDS.values() if s.name not in SKIPPED}
    fields.update(A1111_ONLY)
    if image_mode:
        fields["init_images"] = (list[str], [])
    return create_model(name, __config__=ConfigDict(extra="ignore"), **fields)


Txt2Img = build("StableDiffusionTxt2ImgProcessingAPI", image_mode=False)
Img2Img = build("StableDiffusionImg2ImgProcessingAPI", image_mode=True)


def to_values(body, mode: str) -> dict[str, Any]:
    """The schema values (field names) of a parsed body; images are left to the route."""
    data = body.model_dump()
    values = {s.name: data[api_name(s)] for s in schema.FIELDS.values()
              if s.name not in SKIPPED and data.get(api_name(s)) is not None}
    values["count"] = max(1, int(data.get("batch_size") or 1)) * int(values.get("count", 1))
    if data.get("sampler_index") and "sampler_name" not in body.model_fields_set:
        values["scheduler"] = data["sampler_index"]
    values["mode"] = mode
    return values
