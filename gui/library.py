"""The Creations tab: browse what was made, read its parameters, load them back into Create, upscale."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from dreamworld import creations, schema
from dreamworld.errors import USER_ERRORS

from . import controlnet_panel, controls
from .context import Context
from .create import CreateTab, editor_from_mask


def build(ctx: Context, page: gr.Blocks, tabs: gr.Tabs, tab: gr.Tab, create: CreateTab) -> None:
    refresh = gr.Button("Refresh", elem_id="refresh-creations")
    browse = gr.Gallery(label="Creations", format="png", columns=6, elem_id="creations", allow_preview=True)
    listed = gr.State([])  # the paths shown in `browse`, in its order
    chosen = gr.State(None)
    chosen_info = gr.Textbox(label="Parameters", lines=4, interactive=False, elem_id="creation-info")
    load = gr.Button("Load these settings into Create", elem_id="load-settings")
    with gr.Row():
        upscaler = gr.Dropdown(ctx.world.upscalers(), value="Lanczos", label="Upscaler", elem_id="upscaler")
        scale = gr.Slider(1, 8, value=2, step=0.5, label="Upscale by", elem_id="upscale-by")
        upscale = gr.Button("Upscale", elem_id="upscale")

    def list_creations():
        paths = [str(p) for p in creations.list_creations(ctx.world.creations_dir)[:200]]
        return [(p, Path(p).name) for p in paths], paths

    def choose(paths, evt: gr.SelectData):
        if not paths or evt.index >= len(paths):
            raise gr.Error("That creation is no longer listed; click Refresh.")
        try:
            data = creations.read_creation(paths[evt.index])
        except creations.CreationError as e:
            raise gr.Error(str(e)) from None
        return paths[evt.index], data["parameters"] or ""

    def load_settings(path):
        if not path:
            raise gr.Error("Choose a creation first.")
        try:
            stored = creations.request_from_file(path, ctx.world.creations_dir)
            init, mask, mode = stored.get("init_image"), stored.get("mask"), stored.get("mode")
            editor = editor_from_mask(init, mask) if mode == "inpaint" and init and mask else None
        except creations.CreationError as e:
            raise gr.Error(str(e)) from None
        updates = [gr.update(value=controls.shown_value(schema.FIELDS[n], stored[n])) if n in stored else gr.update()
                   for n in create.fields]
        return [gr.Tabs(selected="create"), gr.update(value=init) if mode == "img2img" and init else gr.update(),
                gr.update(value=editor) if editor else gr.update(), gr.update(), gr.update()] + updates + \
            controlnet_panel.unit_updates(stored.get("controlnet") or [])

    def upscale_chosen(path, name, by):
        if not path:
            raise gr.Error("Choose a creation first.")
        try:
            made = ctx.world.upscale(path, by, name)
        except USER_ERRORS as e:
            raise gr.Error(str(e)) from None
        gallery, paths = list_creations()
        return gallery, paths, str(made), creations.read_creation(made)["parameters"] or ""

    for event in (refresh.click, tab.select, page.load):
        event(list_creations, None, [browse, listed])
    browse.select(choose, listed, [chosen, chosen_info])
    load.click(load_settings, chosen, [tabs] + create.inputs)
    upscale.click(upscale_chosen, [chosen, upscaler, scale], [browse, listed, chosen, chosen_info])
