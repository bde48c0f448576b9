"""Gradio controls derived from the request schema and a backend's declared capabilities."""
from __future__ import annotations

import gradio as gr

from dreamworld import schema
from dreamworld.backends.base import Capabilities

LABELS = {"guidance_scale": "CFG scale", "clip_skip": "Clip skip", "count": "Batch count",
          "strength": "Denoising strength", "negative_prompt": "Negative prompt", "mask_blur": "Mask blur",
          "vae": "VAE", "scheduler": "Sampler"}
STEP = {"guidance_scale": 0.5, "strength": 0.01, "width": 8, "height": 8}


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def capability_choices(name: str, caps: Capabilities) -> tuple | None:
    """The choices a backend allows for a field, or None if the field is not limited by it."""
    if name == "motion":
        return tuple(m for m in schema.MOTIONS if m != "dream" or caps.latent_walk)
    return {"mode": caps.modes, "scheduler": caps.schedulers, "device": caps.devices,
            "precision": caps.precisions}.get(name)


# Fields shown only where the backend declares the capability of the same name.
CAPABILITY_FIELDS = ("jit",)


def shown(name: str, caps: Capabilities) -> bool:
    return bool(getattr(caps, name)) if name in CAPABILITY_FIELDS else True


def snapped(value, multiple: int):
    """A size rounded to the backend's multiple (0 / None: the model's native size, kept)."""
    return max(multiple, round(value / multiple) * multiple) if value else value


def limit(name: str, limits: dict, caps: Capabilities | None = None, fields: dict | None = None):
    top = (fields or schema.FIELDS)[name].metadata["max"]
    if caps is not None and name == "clip_skip":
        top = min(top, caps.max_clip_skip)
    return min(top, limits.get(name, {}).get("max", top))


def control(name: str, value, caps: Capabilities, limits: dict, choices=None, fields: dict | None = None,
            **extra) -> gr.Component:
    """One Gradio component for a field of `fields` (default: the request schema's)."""
    fields = fields or schema.FIELDS
    meta = fields[name].metadata
    kind = schema.field_type(name, fields)
    common = {"label": label(name), "info": meta["help"], "elem_id": f"field-{name}",
              "visible": shown(name, caps), **extra}
    choices = choices or capability_choices(name, caps) or meta["choices"]
    if choices:
        if name in ("mode", "motion"):
            return gr.Radio(choices=list(choices), value=value, **common)
        return gr.Dropdown(choices=list(choices), value=value, **common)
    if kind is bool:
        return gr.Checkbox(value=bool(value), **common)
    if meta["kind"] == "schedule":
        common["info"] = f"{meta['help']}; a number or keyframes such as 0:(1.0), 24:(1.05)"
        return gr.Textbox(value=value, lines=1, **common)
    if kind is str:
        return gr.Textbox(value=value, lines=3 if "prompt" in name else 1, **common)
    if name in ("width", "height"):
        common["info"] = f"pixels, a multiple of {caps.size_multiple}; 0 = the model's native size"
        return gr.Number(value=value or 0, precision=0, minimum=0, maximum=limit(name, limits, fields=fields),
                         step=caps.size_multiple, **common)
    if name == "seed":
        return gr.Number(value=value, precision=0, minimum=meta["min"], maximum=meta["max"], **common)
    if fields[name].default is None:  # 0 stands for "the default"
        return gr.Number(value=value or 0, precision=0 if kind is int else None, minimum=0, maximum=meta["max"],
                         **{**common, "info": f"{meta['help']}; 0 = the default"})
    return gr.Slider(minimum=meta["min"], maximum=limit(name, limits, caps, fields), value=value,
                     step=STEP.get(name, 1), **common)


def reshape(name: str, value, caps: Capabilities, limits: dict):
    """An update that fits an existing control to another backend's capabilities."""
    choices = capability_choices(name, caps)
    if choices is not None:
        return gr.update(choices=list(choices), value=value if value in choices else choices[0])
    if name in CAPABILITY_FIELDS:
        return gr.update(visible=shown(name, caps), value=value if shown(name, caps) else False)
    if name in ("width", "height"):
        return gr.update(step=caps.size_multiple, value=snapped(value, caps.size_multiple),
                         info=f"pixels, a multiple of {caps.size_multiple}; 0 = the model's native size")
    if name == "clip_skip":
        return gr.update(maximum=limit(name, limits, caps), value=min(value or 1, limit(name, limits, caps)))
    return gr.update()
