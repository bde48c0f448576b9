"""The PNG Info tab: the parameters inside any image (DreamWorld's, A1111's, ComfyUI's A1111 text), sent to
Create."""
from __future__ import annotations

import gradio as gr

from dreamworld import creations

from .context import Context, refusal
from .create import CreateTab


def build(ctx: Context, tabs: gr.Tabs, create: CreateTab) -> None:
    with gr.Row():
        dropped = gr.Image(label="Drop an image", type="filepath", elem_id="png-info-image", height=320)
        with gr.Column():
            found = gr.Textbox(label="Parameters", lines=8, interactive=False, elem_id="png-info-text",
                               buttons=["copy"])
            send = gr.Button("Send to Create", elem_id="png-info-send")

    def read(path):
        if not path:
            return ""
        try:
            return creations.read_creation(path)["parameters"] or "This image holds no generation parameters."
        except creations.CreationError as e:
            raise refusal(e) from None

    def send_to_create(path):
        if not path:
            raise refusal("Drop an image first.")
        try:
            stored = creations.request_from_file(path, ctx.world.creations_dir)
        except creations.CreationError as e:
            raise refusal(e) from None
        return [gr.Tabs(selected="create")] + create.showing(stored)

    dropped.change(read, dropped, found)
    send.click(send_to_create, dropped, [tabs] + create.inputs)
