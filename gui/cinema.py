"""The Cinema tab: animations (2d/3d motion, dream walks, video input) with a motion preview and Resume."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from dreamworld import schema
from dreamworld.errors import USER_ERRORS

from . import controlnet_panel, controls
from .context import Context, follow_capability, follow_mode, owner_of, refusal, viewer_of, visible_in

FIELDS = schema.CINEMA_FIELDS
FILES = ("image", "video")
# Accordions of the left column, by the schema's groups, in order.
SECTIONS = (("Motion", ("motion",), True), ("Schedules and coherence", ("coherence",), False),
            ("Seeds and prompts by frame", ("seeds",), False), ("Model and sampling", ("main", "advanced"), False))
VIDEO_TYPES = [".mp4", ".gif", ".mov", ".webm", ".mkv"]


def names(*groups: str) -> list[str]:
    """The fields of these groups that are plain controls (files and ControlNet units have their own)."""
    return [n for n, s in FIELDS.items() if s.group in groups and s.kind not in FILES + ("units",)]


@dataclass
class CinemaTab:
    fields: dict[str, gr.Component]
    init: gr.Image
    clip: gr.File
    controlnet: controlnet_panel.ControlNetPanel

    def showing(self, stored: dict) -> list:
        """Updates of the init image, the input video, the fields and the ControlNet units showing a run's
        settings."""
        return [gr.update(value=stored.get("init_image")), gr.update(value=stored.get("video"))] + \
            [gr.update(value=controls.shown_value(FIELDS[n], stored[n])) if n in stored else gr.update()
             for n in self.fields] + controlnet_panel.unit_updates(stored.get("controlnet") or [])

    @property
    def inputs(self) -> list[gr.Component]:
        return [self.init, self.clip] + list(self.fields.values()) + self.controlnet.inputs


def build(ctx: Context) -> CinemaTab:
    defaults = ctx.world.cinema_request()

    def made(*groups):
        return ctx.controls([n for n in names(*groups) if n not in ("frames", "fps")], FIELDS, defaults, "cinema")

    with gr.Row():
        with gr.Column(scale=3):
            movie = made("prompt")
        with gr.Column(scale=1, min_width=200):
            buttons = [gr.Button("Make animation", variant="primary", elem_id="cinema-generate"),
                       gr.Button("Interrupt", variant="stop", elem_id="cinema-interrupt"),
                       gr.Button("Resume", elem_id="cinema-resume"),
                       gr.Button("Queue", elem_id="cinema-enqueue")]
            run_folder = gr.Textbox(label="Run folder", elem_id="cinema-run", max_lines=1,
                                    info="the run that Resume continues (filled in by the last run)")
            status = gr.Markdown("", elem_id="cinema-status")
    with gr.Row():
        with gr.Column():
            with gr.Row():
                movie |= ctx.controls(["frames", "fps"], FIELDS, defaults, "cinema")
            init = gr.Image(label="Init image (first frame's input; optional)", type="filepath",
                            elem_id="cinema-init-image", visible=visible_in(FIELDS["init_image"], "motions",
                                                                              defaults.motion))
            clip = gr.File(label="Input video (mp4 or gif)", file_types=VIDEO_TYPES, type="filepath",
                           elem_id="cinema-video-input", visible=defaults.motion == "video")
            movie |= made("input")
            for title, groups, open_ in SECTIONS:
                with gr.Accordion(title, open=open_):
                    movie |= made(*groups)
            movie |= made(*{s.group for s in FIELDS.values()} - {g for _, gs, _ in SECTIONS for g in gs}
                          - {"prompt", "input"})
            panel = controlnet_panel.build(ctx, prefix="cinema-", without_image="each frame's input")
        with gr.Column():
            preview_button = gr.Button("Preview motion (no diffusion)", elem_id="cinema-preview",
                                       visible=defaults.motion != "dream")
            with gr.Row():
                preview = gr.Image(label="Motion preview", type="filepath", format="gif", interactive=False,
                                   elem_id="cinema-preview-image", height=256)
                latest = gr.Image(label="Latest frame", type="filepath", elem_id="cinema-latest", interactive=False,
                                  height=256)
            player = gr.Video(label="Animation", elem_id="cinema-player", interactive=False)
            info = gr.Textbox(label="Run", lines=3, interactive=False, elem_id="cinema-info")
    for name, control in movie.items():
        control.visible = control.visible and visible_in(FIELDS[name], "motions", defaults.motion)
    inputs = [init, clip] + list(movie.values()) + panel.inputs
    _wire(ctx, list(movie), inputs, buttons, run_folder, [status, latest, player, run_folder, info])

    def show_preview(*shown):
        try:
            return str(ctx.world.preview_motion(**values(list(movie), *shown)))
        except USER_ERRORS as e:
            raise refusal(e) from None

    preview_button.click(show_preview, inputs, preview, concurrency_id="preview", concurrency_limit=2)
    follow_mode(movie["motion"], movie, FIELDS, "motions",
                {init: schema.MOVING, clip: ("video",), preview_button: ("2d", "3d", "video")})
    follow_capability(ctx, movie["backend"], "controlnet", [panel.panel])
    return CinemaTab(movie, init, clip, panel)


def values(names_, init_path, video_path, *shown) -> dict:
    """The cinema fields of the tab's controls, then its ControlNet units; the files only where the motion
    uses them."""
    fields = {n: controls.field_value(FIELDS[n], v) for n, v in zip(names_, shown)}
    fields["controlnet"] = controlnet_panel.units_from_values(shown[len(names_):])
    fields["init_image"] = (init_path or None) if fields["motion"] in schema.MOVING else None
    if fields["motion"] not in schema.MOVING:
        fields["reuse_init"] = False  # hidden with the init image
    fields["video"] = video_path if fields["motion"] == "video" else None
    return fields


def finish(result) -> tuple:
    r = result.request
    if result.interrupted:
        note = f"Interrupted: {len(result.frames)} of {r.frames} frames saved. Resume continues from the last saved frame."
    else:
        note = f"Saved {len(result.frames)} frames at {r.width}x{r.height} and the video ({r.fps:g} fps)."
    info = f"{result.run_dir}\nseed {r.seed}, {r.frames} frames, {r.fps:g} fps, motion {r.motion}"
    latest = str(result.frames[-1]) if result.frames else None
    return note, latest, str(result.video) if result.video else None, str(result.run_dir), info


def _wire(ctx: Context, names_, inputs, buttons, run_folder, outputs) -> None:
    make, interrupt, resume, enqueue = buttons

    def follow(task):
        try:
            for p in task.watch():
                doing = p.describe() if p.frames else "loading the model" if task.started else \
                    "waiting for the job running now to finish"
                yield (f"Working: {doing}", p.latest,
                       gr.update(), gr.update(), gr.update())
            result = task.wait()
        except USER_ERRORS as e:
            raise refusal(e) from None
        yield finish(result)

    def submit(request: gr.Request, shown):
        try:
            return ctx.service.cinema(user=owner_of(request), **values(names_, *shown))
        except USER_ERRORS as e:
            raise refusal(e) from None

    def start(request: gr.Request, *shown):
        yield from follow(submit(request, shown))

    def add(request: gr.Request, *shown):
        return f"Queued as job {submit(request, shown).id}: see the Queue tab."

    def again(request: gr.Request, folder):
        if not (folder or "").strip():
            raise refusal("Nothing to resume: make (and interrupt) a run first, or paste a run folder.")
        yield from follow(ctx.service.resume_cinema(folder.strip(), user=owner_of(request)))

    def stop(request: gr.Request):
        ctx.service.interrupt(user=viewer_of(request))

    make.click(start, inputs, outputs)
    enqueue.click(add, inputs, outputs[0], concurrency_limit=None)  # never waits behind a generation
    resume.click(again, run_folder, outputs)
    interrupt.click(stop, None, None, queue=False)
