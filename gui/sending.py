""""Send to ...": a picture (a result in Create, a creation in Creations) becomes the input of img2img,
inpaint or a Cinema run, as A1111's send-to buttons do."""
from __future__ import annotations

from typing import Callable

import gradio as gr

TARGETS = {"img2img": "img2img", "inpaint": "inpaint", "cinema": "Cinema"}


def buttons(prefix: str) -> dict[str, gr.Button]:
    """A row of Send buttons, `#<prefix>-<target>`."""
    with gr.Row():
        return {target: gr.Button(f"Send to {title}", elem_id=f"{prefix}-{target}", size="sm", min_width=60)
                for target, title in TARGETS.items()}


def wire(tabs: gr.Tabs, create, cinema, sends: dict[str, gr.Button], inputs: list,
         picture: Callable[..., str]) -> None:
    """Each button sends `picture(*inputs)` (a path) to its target and shows that tab."""
    outputs = [tabs, create.fields["mode"], create.init_image, create.inpaint, cinema.init]

    def to(target):
        def sent(*values):
            path = picture(*values)
            if target == "cinema":
                return gr.Tabs(selected="cinema"), gr.skip(), gr.skip(), gr.skip(), path
            editor = {"background": path, "layers": [], "composite": path} if target == "inpaint" else gr.skip()
            return (gr.Tabs(selected="create"), target, path if target == "img2img" else gr.skip(), editor,
                    gr.skip())
        return sent

    for target, button in sends.items():
        button.click(to(target), inputs, outputs)
