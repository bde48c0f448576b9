"""The ControlNet panel of the Create and Cinema tabs: a fixed number of unit accordions, each enabled by a checkbox
(as A1111's ControlNet extension does), with model and preprocessor pickers, the unit's weight and active
span, and a preview of its control image. Layout and wiring only: previews are the controller's
(DreamWorld.preview_control), generation the service's."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from dreamworld import preprocessors
from dreamworld.controlnet import ControlUnit
from dreamworld.errors import USER_ERRORS
from dreamworld.spec import specs

from .context import Context

UNITS = 3
UNIT_FIELDS = specs(ControlUnit)
PARTS = ("enabled", "image", "preprocessor", "model", "weight", "start", "end", "threshold_a", "threshold_b")


@dataclass
class ControlNetPanel:
    panel: gr.Accordion
    units: list[dict[str, gr.Component]]

    @property
    def inputs(self) -> list[gr.Component]:
        return [unit[p] for unit in self.units for p in PARTS]


def units_from_values(values) -> list[dict]:
    """The request's `controlnet` field from the panel's values (PARTS per unit): the enabled units."""
    out = []
    for k in range(0, len(values), len(PARTS)):
        unit = dict(zip(PARTS, values[k:k + len(PARTS)]))
        if not unit.pop("enabled"):
            continue
        for name in ("threshold_a", "threshold_b"):
            if unit[name] in (None, 0, ""):
                unit[name] = None
        if not unit["image"]:
            unit["image"] = None  # the unit takes the input image
        out.append(unit)
    return out


def unit_updates(units: list) -> list:
    """Updates that show a creation's units (dicts) in the panel, the rest disabled."""
    out = []
    for i in range(UNITS):
        unit = units[i] if i < len(units) else None
        if unit is None:
            out += [gr.update(value=False)] + [gr.update() for _ in PARTS[1:]]
            continue
        values = {"enabled": True, **{k: unit.get(k) for k in PARTS[1:]}}
        values["threshold_a"] = values["threshold_a"] or 0
        values["threshold_b"] = values["threshold_b"] or 0
        out += [gr.update(value=values[p]) for p in PARTS]
    return out


def build(ctx: Context, prefix: str = "", without_image: str = "the input image") -> ControlNetPanel:
    """The panel; `prefix` keeps its element ids apart from another tab's, `without_image` says what a unit
    without its own image follows."""
    s = UNIT_FIELDS
    models = [m.name for m in ctx.world.list_models("controlnet")]
    units = []
    with gr.Accordion("ControlNet", open=False, visible=ctx.caps.controlnet, elem_id=f"{prefix}controlnet-panel") as panel:
        for i in range(UNITS):
            with gr.Accordion(f"ControlNet unit {i}", open=i == 0, elem_id=f"{prefix}controlnet-unit-{i}"):
                unit = {"enabled": gr.Checkbox(label="Enable", value=False, elem_id=f"{prefix}cn{i}-enabled")}
                with gr.Row():
                    unit["image"] = gr.Image(label=f"Control image (empty: {without_image})", type="filepath",
                                             elem_id=f"{prefix}cn{i}-image")
                    preview = gr.Image(label="Preprocessed", type="pil", interactive=False, elem_id=f"{prefix}cn{i}-preview")
                with gr.Row():
                    unit["preprocessor"] = gr.Dropdown(list(preprocessors.NAMES), value="canny",
                                                       label=s["preprocessor"].title, info=s["preprocessor"].help,
                                                       elem_id=f"{prefix}cn{i}-preprocessor")
                    unit["model"] = gr.Dropdown(models, value=models[0] if models else None, label=s["model"].title,
                                                info=s["model"].help, elem_id=f"{prefix}cn{i}-model")
                with gr.Row():
                    for name in ("weight", "start", "end"):
                        unit[name] = gr.Slider(s[name].min, s[name].max, value=s[name].default, step=s[name].step,
                                               label=s[name].title, elem_id=f"{prefix}cn{i}-{name}")
                with gr.Row():
                    for name in ("threshold_a", "threshold_b"):
                        unit[name] = gr.Number(value=0, label=s[name].title, info=f"{s[name].help}; 0 = the default",
                                               elem_id=f"{prefix}cn{i}-{name}")
                    show = gr.Button("Preview", elem_id=f"{prefix}cn{i}-preview-button")
                show.click(_previewer(ctx), [unit["preprocessor"], unit["image"], unit["threshold_a"],
                                             unit["threshold_b"]], preview)
                units.append(unit)
    return ControlNetPanel(panel, units)


def _previewer(ctx: Context):
    def preview(preprocessor, image, threshold_a, threshold_b):
        if not image:
            raise gr.Error("Choose a control image to preview first.")
        try:
            return ctx.world.preview_control(preprocessor, image, threshold_a=threshold_a or None,
                                             threshold_b=threshold_b or None)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None
    return preview

