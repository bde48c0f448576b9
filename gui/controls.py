"""Gradio controls derived from the request schema and a backend's declared capabilities."""
from __future__ import annotations

import dataclasses
import json

import gradio as gr

from dreamworld import backends, schema
from dreamworld.backends.base import Capabilities
from dreamworld.spec import LIST_KINDS, Spec


def snapped(value, multiple: int):
    """A size rounded to the backend's multiple (0 / None: the model's native size, kept)."""
    return max(multiple, round(value / multiple) * multiple) if value else value


def limit(name: str, limits: dict, caps: Capabilities | None = None, fields: dict | None = None):
    top = (fields or schema.FIELDS)[name].max
    if caps is not None and backends.field_max(name, caps) is not None:
        top = min(top, backends.field_max(name, caps))
    return min(top, limits.get(name, {}).get("max", top))


def shown_value(s: Spec, value):
    """A field's value as its control shows it (a list as text, an unset number as 0)."""
    if s.kind == "list":
        return ", ".join(str(v) for v in value)
    if s.kind == "pairs":
        return ", ".join(f"{n}:{w:g}" for n, w in value)
    if s.kind == "units":
        return json.dumps([dataclasses.asdict(u) for u in value]) if value else ""
    if s.optional and s.type in (int, float) and s.kind is None:
        return value or 0
    return value


def field_value(s: Spec, value):
    """A control's value as the schema takes it (0 in a number that may be unset: unset)."""
    if s.optional and s.type in (int, float) and s.kind is None:
        return value or None
    return value


def control(name: str, value, caps: Capabilities, limits: dict, choices=None, fields: dict | None = None,
            **extra) -> gr.Component:
    """One Gradio component for a field of `fields` (default: the request schema's)."""
    s = (fields or schema.FIELDS)[name]
    common = {"label": s.title, "info": s.help, "elem_id": f"field-{name}", "visible": backends.serves(name, caps),
              **extra}
    value = shown_value(s, value)
    choices = choices or backends.field_choices(name, caps) or s.choices
    if choices:
        if s.group in ("mode", "motion") and name in ("mode", "motion"):
            return gr.Radio(choices=list(choices), value=value, **common)
        return gr.Dropdown(choices=list(choices), value=value, **common)
    if s.type is bool:
        return gr.Checkbox(value=bool(value), **common)
    if s.kind == "schedule":
        common["info"] = f"{s.help}; a number or keyframes such as 0:(1.0), 24:(1.05)"
        return gr.Textbox(value=value, lines=1, **common)
    if s.kind in LIST_KINDS:
        return gr.Textbox(value=value, lines=1, **{**common, "info": f"{s.help}; {schema.allowed(name, fields)}"})
    if s.type is str:
        return gr.Textbox(value=value, lines=3 if s.group == "prompt" else 1, **common)
    if name in ("width", "height"):
        common["info"] = f"pixels, a multiple of {caps.size_multiple}; 0 = the model's native size"
        return gr.Number(value=value, precision=0, step=caps.size_multiple, **common)
    # Numbers carry no minimum or maximum of Gradio's: the schema's check names the field and its range.
    if s.max is not None and s.max - s.min > 10000:  # a seed: too wide for a slider
        return gr.Number(value=value, precision=0, **common)
    if s.optional:  # 0 stands for "the default"
        return gr.Number(value=value, precision=0 if s.type is int else None,
                         **{**common, "info": f"{s.help}; 0 = the default"})
    return gr.Slider(minimum=s.min, maximum=limit(name, limits, caps, fields), value=value,
                     step=s.step or (1 if s.type is int else 0.01), **common)


def reshape(name: str, value, caps: Capabilities, limits: dict):
    """An update that fits an existing control to another backend's capabilities."""
    choices = backends.field_choices(name, caps)
    if choices is not None:
        return gr.update(choices=list(choices), value=value if value in choices else choices[0])
    if name in backends.SWITCH_FIELDS:
        served = backends.serves(name, caps)  # else the field's default: off
        return gr.update(visible=served, value=value if served else schema.FIELDS[name].default)
    if name in ("width", "height"):
        return gr.update(step=caps.size_multiple, value=snapped(value, caps.size_multiple),
                         info=f"pixels, a multiple of {caps.size_multiple}; 0 = the model's native size")
    if backends.field_max(name, caps) is not None:
        return gr.update(maximum=limit(name, limits, caps), value=min(value or 1, limit(name, limits, caps)))
    return gr.update()
