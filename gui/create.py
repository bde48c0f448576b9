"""The Create tab: text, image and inpaint modes, with a mask painted in the browser."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from PIL import Image

from dreamworld import creations, loras, schema
from dreamworld.errors import USER_ERRORS

from . import controlnet_panel, controls, sending
from .context import Context, follow_capability, follow_mode, owner_of, refusal, viewer_of, visible_in

FIELDS = schema.FIELDS
SHOWN = [n for n, s in FIELDS.items() if s.kind != "image"]  # the image fields have their own editors


@dataclass
class CreateTab:
    fields: dict[str, gr.Component]
    init_image: gr.Image
    inpaint: gr.ImageMask
    sketch: gr.ImageEditor | None = None
    sketching: gr.Checkbox | None = None
    controlnet: controlnet_panel.ControlNetPanel | None = None
    status: gr.Markdown | None = None
    generate: gr.Button | None = None
    looked_at: tuple = ()  # the states naming the result the user looks at (see picture())
    sends: dict | None = None  # "Send to ..." buttons by target (gui/sending.py)

    @staticmethod
    def picture(results, index) -> str:
        """The path of the result the user looks at."""
        return _looked_at(results, index)[0]

    @property
    def inputs(self) -> list[gr.Component]:
        return [self.init_image, self.inpaint, self.sketching, self.sketch] + list(self.fields.values()) + \
            self.controlnet.inputs

    def showing(self, stored: dict) -> list:
        """Updates of `inputs` showing a request's fields (as request_from_file gives them), init image and
        mask included."""
        init, mask, mode = stored.get("init_image"), stored.get("mask"), stored.get("mode")
        editor = editor_from_mask(init, mask) if mode == "inpaint" and init and mask else None
        return [gr.update(value=init) if mode == "img2img" and init else gr.update(),
                gr.update(value=editor) if editor else gr.update(), gr.update(), gr.update()] + \
            [gr.update(value=controls.shown_value(FIELDS[n], stored[n])) if n in stored else gr.update()
             for n in self.fields] + controlnet_panel.unit_updates(stored.get("controlnet") or [])


def mask_from_editor(editor: dict | None) -> tuple[Image.Image | None, Image.Image | None]:
    """The background and a white-on-black mask of everything painted on the layers."""
    if not editor or editor.get("background") is None:
        return None, None
    background = editor["background"].convert("RGB")
    mask = Image.new("L", background.size, 0)
    for layer in editor.get("layers") or []:
        alpha = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a else 0)
        mask.paste(255, mask=alpha)
    return background, mask


def editor_from_mask(init_path: str, mask_path: str) -> dict:
    """The ImageMask value showing a stored init image with its mask painted on a layer."""
    background = creations.open_image(init_path).convert("RGBA")
    mask = creations.open_image(mask_path).convert("L").resize(background.size, Image.NEAREST)
    layer = Image.new("RGBA", background.size, (255, 255, 255, 0))
    layer.putalpha(mask)
    return {"background": background, "layers": [layer], "composite": Image.alpha_composite(background, layer)}


def painted_from_editor(editor: dict | None) -> tuple[Image.Image | None, Image.Image | None]:
    """Sketch mode: the background (the input) and the composite (the input painted over)."""
    if not editor or editor.get("background") is None:
        return None, None
    background = editor["background"].convert("RGB")
    composite = (editor.get("composite") or editor["background"]).convert("RGB")
    return background, composite


def request_values(names, init_path, editor, values, sketching=False, sketch=None, units=None) -> dict:
    """The request fields of the Create tab's controls, image editors and ControlNet panel."""
    fields = {n: controls.field_value(FIELDS[n], v) for n, v in zip(names, values)}
    if units is not None:
        fields["controlnet"] = units
    if fields["mode"] == "img2img":
        fields["init_image"] = init_path or None
    elif fields["mode"] == "inpaint" and sketching:
        fields["init_image"], fields["painted"] = painted_from_editor(sketch)
    elif fields["mode"] == "inpaint":
        fields["init_image"], fields["mask"] = mask_from_editor(editor)
        if fields["mask"] is not None and not fields["mask"].getbbox():
            raise refusal("Paint over the part of the image to repaint first.")
    return fields


def build(ctx: Context, note: str | None = None) -> CreateTab:
    defaults = ctx.world.request()
    with gr.Row():
        with gr.Column(scale=3):
            fields = ctx.controls([n for n in SHOWN if FIELDS[n].group == "prompt"], FIELDS, defaults)
            lora_controls = _lora_picker(ctx, fields["prompt"])
        with gr.Column(scale=1, min_width=200):
            generate = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Row():
                enqueue = gr.Button("Queue", elem_id="enqueue", min_width=80)
                interrupt = gr.Button("Interrupt", variant="stop", elem_id="interrupt", min_width=80)
            status = gr.Markdown(note or "", elem_id="status")
    with gr.Row():
        with gr.Column():
            fields |= ctx.controls(["mode"], FIELDS, defaults)
            init_image = gr.Image(label="Init image", type="filepath", elem_id="init-image",
                                  visible=defaults.mode == "img2img")
            offered = gr.Button("Use the parameters this image holds", elem_id="init-parameters", visible=False,
                                size="sm")
            inpaint = gr.ImageMask(label="Image and mask (paint what to repaint)", type="pil", image_mode="RGBA",
                                   format="png", elem_id="inpaint-editor",
                                   brush=gr.Brush(colors=[("#ffffff", 0.6)], color_mode="fixed", default_size=16),
                                   visible=defaults.mode == "inpaint")
            sketching = gr.Checkbox(label="Sketch: paint colours over the image (the mask is where they differ)",
                                    value=False, elem_id="sketching", visible=defaults.mode == "inpaint")
            sketch = gr.ImageEditor(label="Image to paint over (sketch inpainting)", type="pil", image_mode="RGB",
                                    format="png", elem_id="sketch-editor", brush=gr.Brush(color_mode="defaults"),
                                    visible=False)
            fields |= ctx.controls([n for n in SHOWN if FIELDS[n].group == "main"], FIELDS, defaults)
            panel = controlnet_panel.build(ctx)
            with gr.Accordion("Advanced", open=False):
                fields |= ctx.controls([n for n in SHOWN if FIELDS[n].group == "advanced"], FIELDS, defaults)
        with gr.Column():
            live = gr.Image(label="Preview (the latents so far)", elem_id="live-preview", interactive=False,
                            visible=False, height=256)
            gallery = gr.Gallery(label="Results", format="png", columns=2, elem_id="results", height="auto")
            with gr.Row():
                reuse = gr.Button("♻ Reuse seed", elem_id="reuse-seed", size="sm", min_width=60)
                shuffle = gr.Button("🎲 Random seed", elem_id="random-seed", size="sm", min_width=60)
            sends = sending.buttons("send")
            info = gr.Textbox(label="Parameters", lines=4, interactive=False, elem_id="info", buttons=["copy"])
    for name, control in fields.items():
        control.visible = control.visible and visible_in(FIELDS[name], "modes", defaults.mode)
    made = gr.State([])  # (path, seed, parameters) of each result shown, in the gallery's order
    shown = gr.State(0)  # the index of the result the user looks at
    tab = CreateTab(fields, init_image, inpaint, sketch, sketching, panel, status, generate, (made, shown), sends)
    _wire(ctx, tab, (generate, enqueue, interrupt), [gallery, info, status, made, shown, live])
    _wire_results(tab, gallery, info, made, shown, (reuse, shuffle))
    _offer_parameters(ctx, tab, offered)
    follow_mode(fields["mode"], fields, FIELDS, "modes",
                {init_image: ("img2img",), inpaint: ("inpaint",), sketching: ("inpaint",)})

    def sketch_or_mask(mode, on):
        return gr.update(visible=mode == "inpaint" and on), gr.update(visible=mode == "inpaint" and not on)

    for trigger in (sketching, fields["mode"]):
        trigger.change(sketch_or_mask, [fields["mode"], sketching], [sketch, inpaint])
    follow_capability(ctx, fields["backend"], "controlnet", [panel.panel])
    follow_capability(ctx, fields["backend"], "lora", lora_controls)
    return tab


def _lora_picker(ctx: Context, prompt: gr.Component) -> list[gr.Component]:
    """A LoRA from models/Lora and a weight, put into the prompt as <lora:name:weight> (A1111's way); an
    embedding from models/embeddings, put in as its word. Returns the LoRA's controls (shown where the
    backend can use LoRAs)."""
    with gr.Row():
        lora = gr.Dropdown(choices=[m.name for m in ctx.world.list_models("lora")], value=None, label="LoRA",
                           elem_id="lora-pick", scale=2, visible=ctx.caps.lora)
        weight = gr.Slider(minimum=-2, maximum=2, value=1, step=0.05, label="LoRA weight", elem_id="lora-weight",
                           scale=2, visible=ctx.caps.lora)
        add_lora = gr.Button("Add LoRA to prompt", elem_id="lora-add", scale=1, visible=ctx.caps.lora)
        embedding = gr.Dropdown(choices=[m.name for m in ctx.world.list_models("embedding")], value=None,
                                label="Embedding", elem_id="embedding-pick", scale=2)
        add_embedding = gr.Button("Add embedding", elem_id="embedding-add", scale=1)
    add_lora.click(lambda text, name, w: loras.with_tag(text, name, w) if name else text,
                   [prompt, lora, weight], prompt, queue=False)
    add_embedding.click(lambda text, name: f"{text.rstrip()} {name}".strip() if name else text,
                        [prompt, embedding], prompt, queue=False)
    return [lora, weight, add_lora]


def _wire(ctx: Context, tab: CreateTab, buttons: tuple[gr.Button, ...], outputs) -> None:
    generate, enqueue, interrupt = buttons
    names = list(tab.fields)

    def fields_of(init_path, editor, sketching, sketch, values) -> dict:
        values, units = values[:len(names)], controlnet_panel.units_from_values(values[len(names):])
        return request_values(names, init_path, editor, values, sketching, sketch, units)

    def run(request: gr.Request, init_path, editor, sketching, sketch, *values, progress=gr.Progress()):
        skip = gr.skip()
        try:
            task = ctx.service.create(user=owner_of(request), **fields_of(init_path, editor, sketching, sketch, values))
            # Each report makes Gradio's image editor (an input here) upload its layers again: changes only.
            for p in task.watch():
                progress(p.fraction, desc=p.describe() if p.images else
                         "loading the model" if task.started else "waiting for the job running now to finish")
                if p.preview is not None:
                    yield skip, skip, skip, skip, skip, gr.update(value=p.preview, visible=True)
            result = task.wait()
        except USER_ERRORS as e:
            # Said in a toast and the status; the results of the last run stay where they are.
            gr.Warning(str(e), title="Error")
            refusal(e)
            yield skip, skip, f"**Error:** {e}", skip, skip, gr.update(visible=False)
            return
        results = [(str(path), seed, text) for path, seed, text in zip(result.paths, result.seeds, result.parameters)]
        note = f"Saved {len(result.paths)} image(s) in {result.request.width}x{result.request.height}."
        if result.interrupted:
            note = f"Interrupted: saved {len(result.paths)} of {len(result.request.image_seeds())} image(s)."
        pictures = [(path, f"seed {seed}") for path, seed, _ in results]
        yield pictures, (results[0][2] if results else ""), note, results, 0, gr.update(visible=False)

    def add(request: gr.Request, init_path, editor, sketching, sketch, *values):
        try:
            task = ctx.service.create(user=owner_of(request), **fields_of(init_path, editor, sketching, sketch, values))
        except USER_ERRORS as e:
            raise refusal(e) from None
        return f"Queued as job {task.id}: see the Queue tab."

    def stop(request: gr.Request):
        ctx.service.interrupt(user=viewer_of(request))

    generate.click(run, tab.inputs, outputs, show_progress_on=outputs[0])
    enqueue.click(add, tab.inputs, outputs[2], concurrency_limit=None)  # never waits behind a generation
    interrupt.click(stop, None, None, queue=False)


def _looked_at(results, index):
    if not results:
        raise refusal("Generate an image first: its seed and picture are what these buttons use.")
    return results[min(index, len(results) - 1)]


def _wire_results(tab: CreateTab, gallery, info, made, shown, buttons) -> None:
    """The result the user looks at: its parameters and its seed."""
    reuse, shuffle = buttons
    fields = tab.fields

    def look(results, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else 0
        return (results[index][2], index) if index < len(results) else (gr.skip(), gr.skip())

    def reuse_seed(results, index):
        return _looked_at(results, index)[1], ""  # that seed alone: a seed list would override it

    gallery.select(look, made, [info, shown])
    reuse.click(reuse_seed, [made, shown], [fields["seed"], fields["seeds"]])
    shuffle.click(lambda: -1, None, fields["seed"])


def _offer_parameters(ctx: Context, tab: CreateTab, offered: gr.Button) -> None:
    """An init image that holds generation parameters (a creation, an A1111 image) offers them."""
    def check(path):
        try:
            return gr.update(visible=bool(path and creations.read_creation(path)["parameters"]))
        except creations.CreationError:
            return gr.update(visible=False)

    def use(path):
        try:
            stored = creations.request_from_file(path, ctx.world.creations_dir)
        except creations.CreationError as e:
            raise refusal(e) from None
        stored.pop("init_image", None), stored.pop("mask", None)
        stored["mode"] = "img2img"  # this image stays the init image
        return tab.showing(stored)

    tab.init_image.change(check, tab.init_image, offered, show_progress="hidden")
    offered.click(use, tab.init_image, tab.inputs)
