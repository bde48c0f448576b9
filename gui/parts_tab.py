"""The Parts tab: the pipeline one stage at a time (dreamworld/parts), each stage's state a float TIFF file in
`<creations>/parts/`: write a prompt's embeddings or a seed's noise, diffuse (all of it or up to a step, and
continue), decode to a creation, or encode an image. Layout and wiring only: the stages are the controller's."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from dreamworld import schema
from dreamworld.parts import tiff
from dreamworld.errors import USER_ERRORS

from . import controls
from .context import Context, refusal

FIELDS = schema.FIELDS
FOLDER = "parts"


def build(ctx: Context) -> None:
    folder = ctx.world.creations_dir / FOLDER
    gr.Markdown(f"Each stage writes its state as float TIFF files in `{folder}`; choose a state and a text "
                "file to continue from, edit a latent in between (any editor of float TIFFs), reuse one "
                "prompt's embeddings with many seeds.")
    tab = _layout(ctx)
    _wire(ctx, tab, folder)


def _layout(ctx: Context) -> SimpleNamespace:
    defaults = ctx.world.request()
    tab = SimpleNamespace()

    def made(names, prefix):
        return ctx.controls(names, FIELDS, defaults, prefix)

    tab.name = gr.Textbox(label="Name of the files written", value="part", elem_id="parts-name", max_lines=1)
    with gr.Row():
        with gr.Column():
            gr.Markdown("**1. Text** → `NAME_text.tiff`")
            tab.text_fields = made(["prompt", "negative_prompt"], "parts-text")
            tab.write_text = gr.Button("Write the embeddings", elem_id="parts-write-text")
        with gr.Column():
            gr.Markdown("**2. Noise** → `NAME_state1.tiff`")
            tab.noise_fields = made(["seed", "width", "height"], "parts-noise")
            tab.write_noise = gr.Button("Write the noise", elem_id="parts-write-noise")
            tab.image = gr.Image(label="…or encode an image", type="filepath", elem_id="parts-image", height=160)
            tab.write_encoded = gr.Button("Encode the image", elem_id="parts-encode")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**3. Diffuse** → `NAME_state2.tiff`")
            tab.state = gr.Dropdown(label="Starting state (state1) or a midway one (state2)", elem_id="parts-state")
            tab.text = gr.Dropdown(label="Text embeddings", elem_id="parts-text")
            tab.diffuse_fields = made(["steps", "guidance_scale", "scheduler"], "parts-diffuse")
            tab.to_step = gr.Number(label="Stop after step (0: run to the end)", value=0, precision=0,
                                    elem_id="parts-to-step")
            tab.diffuse = gr.Button("Diffuse", elem_id="parts-diffuse")
        with gr.Column():
            gr.Markdown("**4. Decode** → `NAME.png` (a creation naming its parts) and `NAME_decoded.tiff`")
            tab.latent = gr.Dropdown(label="Latent to decode", elem_id="parts-latent")
            tab.tiled = gr.Checkbox(label="Tiled (bounded memory)", value=False, elem_id="parts-tiled")
            tab.decode = gr.Button("Decode", elem_id="parts-decode", variant="primary")
            tab.picture = gr.Image(label="Decoded", type="filepath", interactive=False, elem_id="parts-picture",
                                   height=256)
    with gr.Row():
        tab.added = gr.File(label="Add a state or text file made elsewhere (NAME_text.tiff, NAME_state1.tiff, "
                                  "NAME_state2.tiff)", file_types=[".tiff", ".tif"], type="filepath",
                            elem_id="parts-add")
    tab.said = gr.Markdown("", elem_id="parts-said")
    return tab


def _wire(ctx: Context, tab: SimpleNamespace, folder: Path) -> None:
    picks = [tab.state, tab.text, tab.latent]

    def listed(*kinds):
        files = sorted(folder.glob("*.tiff")) if folder.is_dir() else []
        return [p.name for p in files if p.stem.rsplit("_", 1)[-1] in kinds]

    def lists(*chosen, written=()):
        """The three pickers' choices; each shows the file just written that it lists, else its choice."""
        choices = (listed("state1", "state2"), listed("text"), listed("state2", "state1"))
        return [gr.update(choices=c, value=next((w for w in written if w in c), v if v in c else None))
                for c, v in zip(choices, chosen)]

    def stage(run, group: dict):
        """A button's handler: run(Picked, **its fields) on the controller, then say what was written, show
        a decoded picture and refresh the lists; a user error is one sentence."""
        def handler(out_name, *values):
            picked, own = values[:3], values[3:]
            fields = {n: controls.field_value(FIELDS[n], v) if n in FIELDS else v for n, v in zip(group, own)}
            try:
                written = run(Picked(folder, out_name, *picked), **fields)
            except USER_ERRORS as e:
                raise refusal(e) from None
            written = written if isinstance(written, list) else [written]
            png = next((str(p) for p in written if p.suffix == ".png"), None)
            return [f"Wrote {', '.join(p.name for p in written)}.", png or gr.skip()] + \
                lists(*picked, written=[p.name for p in written])
        return handler

    def add(path, *picked):
        if not path:
            return gr.skip(), *[gr.skip()] * 3
        try:
            kept = tiff.keep(path, folder)
        except USER_ERRORS as e:
            raise refusal(e) from None
        return f"Added {kept.name}.", *lists(*picked, written=[kept.name])

    parts = ctx.world.parts
    stages = ((tab.write_text, tab.text_fields, partial(_write_text, parts)),
              (tab.write_noise, tab.noise_fields, partial(_write_noise, parts)),
              (tab.diffuse, {**tab.diffuse_fields, "to_step": tab.to_step}, partial(_diffuse, parts)),
              (tab.decode, {"tiled": tab.tiled}, partial(_decode, parts)),
              (tab.write_encoded, {"image": tab.image}, partial(_encode, parts)))
    tab.added.upload(add, [tab.added] + picks, [tab.said] + picks)
    for button, group, run in stages:
        button.click(stage(run, group), [tab.name] + picks + list(group.values()), [tab.said, tab.picture] + picks)
    for dropdown in picks:
        dropdown.focus(lists, picks, picks, show_progress="hidden")


class Picked:
    """What a stage's button reads besides its own fields: the name to write and the three pickers."""

    def __init__(self, folder: Path, out_name: str, state: str | None, text: str | None, latent: str | None):
        self.folder, self.out = folder, folder / Path(out_name or "part").name
        self.choices = {"state": state, "text file": text, "latent": latent}

    def path(self, what: str) -> Path:
        if not self.choices[what]:
            raise refusal(f"Choose a {what} first (write one in the stages above).")
        return self.folder / Path(self.choices[what]).name


def _write_text(parts, picked: Picked, **fields):
    return parts.text(picked.out, **fields)


def _write_noise(parts, picked: Picked, **fields):
    return parts.noise(picked.out, **fields)


def _diffuse(parts, picked: Picked, to_step=0, **fields):
    return parts.diffuse(picked.path("state"), picked.path("text file"), picked.out,
                         to_step=int(to_step or 0) or None, **fields)


def _decode(parts, picked: Picked, tiled=False):
    return parts.decode(picked.path("latent"), picked.out, tiled=bool(tiled))


def _encode(parts, picked: Picked, image=None):
    if not image:
        raise refusal("Choose a picture to encode first.")
    return parts.encode(image, picked.out)
