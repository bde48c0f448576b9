""""Send to ...": a picture (a result in Create, a creation in Creations) becomes the input of img2img,
inpaint, a Cinema run or the Creations tab's Upscale, as A1111's send-to buttons do."""
from __future__ import annotations

from typing import Callable

import gradio as gr

from dreamworld import creations

TARGETS = {"img2img": "img2img", "inpaint": "inpaint", "cinema": "Cinema", "upscale": "upscale"}


def buttons(prefix: str) -> dict[str, gr.Button]:
    """A row of Send buttons, `#<prefix>-<target>`."""
    with gr.Row():
        return {target: gr.Button(f"Send to {title}", elem_id=f"{prefix}-{target}", size="sm", min_width=60)
                for target, title in TARGETS.items()}


def wire(tabs: gr.Tabs, create, cinema, chosen: tuple, sends: dict[str, gr.Button], inputs: list,
         picture: Callable[..., str]) -> None:
    """Each button sends `picture(*inputs)` (a path) to its target and shows that tab; `chosen` is the
    Creations tab's (chosen path state, its parameters box)."""
    outputs = [tabs, create.fields["mode"], create.init_image, create.inpaint, cinema.init, *chosen]

    def to(target):
        def sent(*values):
            path, skip = picture(*values), gr.skip()
            if target == "cinema":
                return gr.Tabs(selected="cinema"), skip, skip, skip, path, skip, skip
            if target == "upscale":
                return (gr.Tabs(selected="creations"), skip, skip, skip, skip, path,
                        creations.read_creation(path)["parameters"] or "")
            editor = {"background": path, "layers": [], "composite": path} if target == "inpaint" else skip
            return (gr.Tabs(selected="create"), target, path if target == "img2img" else skip, editor, skip,
                    skip, skip)
        return sent

    for target, button in sends.items():
        button.click(to(target), inputs, outputs)
