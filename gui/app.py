"""The DreamWorld web page: layout and event wiring only; generation is the controller's."""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import gradio as gr
from PIL import Image

from dreamworld import creations, schema, settings as settings_module
from dreamworld.service import Service
from dreamworld.world import USER_ERRORS, DreamWorld

from . import controls

log = logging.getLogger("dreamworld")

# Fields shown as controls on the Create tab, in this order; images are handled separately.
CREATE_FIELDS = [n for n in schema.FIELDS if schema.FIELDS[n].kind != "image"]
TEXT_FIELDS = ("prompt", "negative_prompt")
ADVANCED = ("clip_skip", "mask_blur", "vae", "backend", "device", "precision", "jit", "format")


def _mask_from_editor(editor: dict | None) -> tuple[Image.Image | None, Image.Image | None]:
    """The background and a white-on-black mask of everything painted on the layers."""
    if not editor or editor.get("background") is None:
        return None, None
    background = editor["background"].convert("RGB")
    mask = Image.new("L", background.size, 0)
    for layer in editor.get("layers") or []:
        alpha = layer.convert("RGBA").getchannel("A").point(lambda a: 255 if a else 0)
        mask.paste(255, mask=alpha)
    return background, mask


def _editor_from_mask(init_path: str, mask_path: str) -> dict:
    """The ImageMask value showing a stored init image with its mask painted on a layer."""
    background = creations.open_image(init_path).convert("RGBA")
    mask = creations.open_image(mask_path).convert("L").resize(background.size, Image.NEAREST)
    layer = Image.new("RGBA", background.size, (255, 255, 255, 0))
    layer.putalpha(mask)
    return {"background": background, "layers": [layer],
            "composite": Image.alpha_composite(background, layer)}


def build(world: DreamWorld, service: Service, note: str | None = None) -> gr.Blocks:
    """The page; `note`, if any, is shown under the Generate button until the first generation."""
    defaults = world.request()
    caps = world.capabilities()
    limits = world.settings.limits
    model_names = [m.name for m in world.list_models()]
    vae_names = [""] + [m.name for m in world.list_models("vae")]

    with gr.Blocks(title="DreamWorld") as page:
        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create"):
                fields: dict[str, gr.Component] = {}
                with gr.Row():
                    with gr.Column(scale=3):
                        for name in TEXT_FIELDS:
                            fields[name] = controls.control(name, getattr(defaults, name), caps, limits)
                    with gr.Column(scale=1, min_width=200):
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                        interrupt = gr.Button("Interrupt", variant="stop", elem_id="interrupt")
                        status = gr.Markdown(note or "", elem_id="status")
                with gr.Row():
                    with gr.Column():
                        fields["mode"] = controls.control("mode", defaults.mode, caps, limits)
                        init_image = gr.Image(label="Init image", type="filepath", elem_id="init-image",
                                              visible=defaults.mode == "img2img")
                        inpaint = gr.ImageMask(label="Image and mask (paint what to repaint)", type="pil",
                                               image_mode="RGBA", format="png", elem_id="inpaint-editor",
                                               brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"),
                                               visible=defaults.mode == "inpaint")
                        fields["model"] = controls.control("model", defaults.model, caps, limits,
                                                           choices=model_names)
                        for name in CREATE_FIELDS:
                            if name not in fields and name not in ADVANCED:
                                fields[name] = controls.control(name, getattr(defaults, name), caps, limits)
                        with gr.Accordion("Advanced", open=False):
                            for name in ADVANCED:
                                choices = vae_names if name == "vae" else None
                                fields[name] = controls.control(name, getattr(defaults, name), caps, limits,
                                                                choices=choices)
                    with gr.Column():
                        gallery = gr.Gallery(label="Results", format="png", columns=2, elem_id="results",
                                             height="auto")
                        info = gr.Textbox(label="Parameters", lines=4, interactive=False, elem_id="info")

            with gr.Tab("Cinema", id="cinema"):
                cinema_defaults = world.cinema_request()
                movie: dict[str, gr.Component] = {}

                def movie_control(name, **extra):
                    movie[name] = controls.control(name, getattr(cinema_defaults, name), caps, limits,
                                                   fields=schema.CINEMA_FIELDS, elem_id=f"cinema-{name}", **extra)
                    return movie[name]

                with gr.Row():
                    with gr.Column(scale=3):
                        for name in TEXT_FIELDS:
                            movie_control(name)
                    with gr.Column(scale=1, min_width=200):
                        make_movie = gr.Button("Make animation", variant="primary", elem_id="cinema-generate")
                        with gr.Row():
                            movie_interrupt = gr.Button("Interrupt", variant="stop", elem_id="cinema-interrupt")
                            movie_resume = gr.Button("Resume", elem_id="cinema-resume")
                        movie_run = gr.Textbox(label="Run folder", elem_id="cinema-run", max_lines=1,
                                               info="the run that Resume continues (filled in by the last run)")
                        movie_status = gr.Markdown("", elem_id="cinema-status")
                with gr.Row():
                    with gr.Column():
                        movie_control("motion")
                        with gr.Row():
                            movie_control("frames")
                            movie_control("fps")
                        with gr.Group(visible=cinema_defaults.motion in ("2d", "3d")) as init_group:
                            movie_init = gr.Image(label="Init image (first frame's input; optional)",
                                                  type="filepath", elem_id="cinema-init-image")
                            movie_control("reuse_init")
                        with gr.Group(visible=cinema_defaults.motion == "video") as video_group:
                            movie_video = gr.File(label="Input video (mp4 or gif)", file_types=[".mp4", ".gif", ".mov",
                                                                                                ".webm", ".mkv"],
                                                  type="filepath", elem_id="cinema-video-input")
                            movie_control("every_nth")
                        with gr.Accordion("Motion", open=True):
                            with gr.Group(visible=cinema_defaults.motion == "2d") as motion_2d:
                                for name in ("zoom", "angle", "center_x", "center_y"):
                                    movie_control(name)
                            with gr.Group(visible=cinema_defaults.motion in ("2d", "3d")) as motion_xy:
                                for name in ("translate_x", "translate_y"):
                                    movie_control(name)
                            with gr.Group(visible=cinema_defaults.motion == "3d") as motion_3d:
                                for name in ("translate_z", "rotate_x", "rotate_y", "rotate_z", "fov"):
                                    movie_control(name)
                            movie_control("border")
                        with gr.Accordion("Schedules and coherence", open=False):
                            for name in ("strength", "guidance_scale", "noise", "contrast", "color_coherence",
                                         "cadence"):
                                movie_control(name)
                        with gr.Accordion("Seeds and prompts by frame", open=False):
                            for name in ("seed", "seed_behavior", "seed_schedule", "prompts"):
                                movie_control(name)
                        with gr.Accordion("Model and sampling", open=False):
                            movie_control("model", choices=model_names)
                            for name in ("width", "height", "steps", "scheduler", "clip_skip"):
                                movie_control(name)
                            movie_control("vae", choices=vae_names)
                            for name in ("backend", "device", "precision", "jit"):
                                movie_control(name)
                        movie_control("gif")
                        leftover = [n for n in schema.CINEMA_FIELDS if n not in movie
                                    and schema.CINEMA_FIELDS[n].kind not in ("image", "video")]
                        for name in leftover:  # a field added to the schema later still gets a control
                            movie_control(name)
                    with gr.Column():
                        preview_button = gr.Button("Preview motion (no diffusion)", elem_id="cinema-preview")
                        with gr.Row():
                            movie_preview = gr.Image(label="Motion preview", type="filepath", format="gif",
                                                     elem_id="cinema-preview-image", interactive=False, height=256)
                            movie_latest = gr.Image(label="Latest frame", type="filepath", elem_id="cinema-latest",
                                                    interactive=False, height=256)
                        movie_player = gr.Video(label="Animation", elem_id="cinema-player", interactive=False)
                        movie_info = gr.Textbox(label="Run", lines=3, interactive=False, elem_id="cinema-info")

            with gr.Tab("Creations", id="creations") as creations_tab:
                refresh = gr.Button("Refresh", elem_id="refresh-creations")
                browse = gr.Gallery(label="Creations", format="png", columns=6, elem_id="creations",
                                    allow_preview=True)
                listed = gr.State([])  # the paths shown in `browse`, in its order
                chosen = gr.State(None)
                chosen_info = gr.Textbox(label="Parameters", lines=4, interactive=False,
                                         elem_id="creation-info")
                load = gr.Button("Load these settings into Create", elem_id="load-settings")

            with gr.Tab("Settings", id="settings"):
                settings_note = gr.Markdown(world.settings.problem or "")
                models_dir = gr.Textbox(label="Models folder", value=world.settings.models_dir)
                creations_dir = gr.Textbox(label="Creations folder", value=world.settings.creations_dir)
                default_fields = ("backend", "model", "device", "precision", "scheduler", "steps",
                                  "guidance_scale", "width", "height")
                setting_controls = {
                    name: controls.control(name, getattr(defaults, name), caps, {},
                                           choices=model_names if name == "model" else None,
                                           elem_id=f"setting-{name}")
                    for name in default_fields}
                max_steps = gr.Slider(1, schema.FIELDS["steps"].max, step=1,
                                      value=controls.limit("steps", limits), label="Maximum steps")
                save_settings = gr.Button("Save settings", variant="primary", elem_id="save-settings")
                saved = gr.Markdown("", elem_id="settings-saved")

        field_names = list(fields)
        field_inputs = [fields[n] for n in field_names]

        def run(init_path, editor, *values, progress=gr.Progress()):
            values = {n: controls.field_value(schema.FIELDS[n], v) for n, v in zip(field_names, values)}
            if values["mode"] == "img2img":
                if not init_path:
                    raise gr.Error("img2img needs an init image: upload one first.")
                values["init_image"] = init_path
            elif values["mode"] == "inpaint":
                values["init_image"], values["mask"] = _mask_from_editor(editor)
                if values["init_image"] is None:
                    raise gr.Error("Inpaint needs an image: upload one, then paint what to repaint.")
                if not values["mask"].getbbox():
                    raise gr.Error("Paint over the part of the image to repaint first.")
            try:
                task = service.create(**values)
                shown = None
                # Report only changes, twice a second at most: each report makes Gradio's image editor
                # (an input here) upload its layers again.
                while not task.done.wait(0.5):
                    p = task.progress
                    desc = p.describe() if p.images else "loading the model"
                    if desc != shown:
                        progress(p.fraction, desc=desc)
                        shown = desc
                result = task.wait()
            except USER_ERRORS as e:
                raise gr.Error(str(e)) from None
            pictures = [(str(path), f"seed {seed}") for path, seed in zip(result.paths, result.seeds)]
            note = f"Saved {len(result.paths)} image(s) in {result.request.width}x{result.request.height}."
            if result.interrupted:
                note = f"Interrupted: saved {len(result.paths)} of {len(result.request.image_seeds())} image(s)."
            return pictures, (result.parameters[0] if result.parameters else ""), note

        generate.click(run, [init_image, inpaint] + field_inputs, [gallery, info, status])
        interrupt.click(lambda: service.interrupt(), None, None, queue=False)

        movie_names = list(movie)
        movie_inputs = [movie_init, movie_video] + [movie[n] for n in movie_names]

        def movie_values(init_path, video_path, values) -> dict:
            values = {n: controls.field_value(schema.CINEMA_FIELDS[n], v) for n, v in zip(movie_names, values)}
            if values["motion"] in ("2d", "3d"):
                values["init_image"] = init_path or None
            else:
                values["reuse_init"] = False  # hidden with the init image
            if values["motion"] == "video":
                values["video"] = video_path
            return values

        def watch(task):
            """Yield (status, latest frame) while a cinema task runs."""
            shown = None
            while not task.done.wait(0.5):
                p = task.progress
                desc = p.describe() if p.frames else "loading the model"
                if (desc, p.latest) != shown:
                    shown = (desc, p.latest)
                    yield desc, p.latest

        def finish(result):
            r = result.request
            if result.interrupted:
                note = (f"Interrupted: {len(result.frames)} of {r.frames} frames saved. "
                        "Resume continues from the last saved frame.")
            else:
                note = f"Saved {len(result.frames)} frames at {r.width}x{r.height} and the video ({r.fps:g} fps)."
            info = f"{result.run_dir}\nseed {r.seed}, {r.frames} frames, {r.fps:g} fps, motion {r.motion}"
            latest = str(result.frames[-1]) if result.frames else None
            return (note, latest, str(result.video) if result.video else None, str(result.run_dir), info)

        def run_movie(task):
            try:
                for desc, latest in watch(task):
                    yield f"Working: {desc}", latest, gr.update(), gr.update(), gr.update()
                result = task.wait()
            except USER_ERRORS as e:
                raise gr.Error(str(e)) from None
            yield finish(result)

        def make(init_path, video_path, *values):
            try:
                task = service.cinema(**movie_values(init_path, video_path, values))
            except USER_ERRORS as e:
                raise gr.Error(str(e)) from None
            yield from run_movie(task)

        def resume(run_folder):
            if not (run_folder or "").strip():
                raise gr.Error("Nothing to resume: make (and interrupt) a run first, or paste a run folder.")
            yield from run_movie(service.resume_cinema(run_folder.strip()))

        movie_outputs = [movie_status, movie_latest, movie_player, movie_run, movie_info]
        make_movie.click(make, movie_inputs, movie_outputs)
        movie_resume.click(resume, movie_run, movie_outputs)
        movie_interrupt.click(lambda: service.interrupt(), None, None, queue=False)

        def show_preview(init_path, video_path, *values):
            from dreamworld import cinema, video
            try:
                request = world.cinema_request(**movie_values(init_path, video_path, values))
                frames = cinema.preview(request)
            except USER_ERRORS as e:
                raise gr.Error(str(e)) from None
            fps = min(request.fps or cinema.DEFAULT_FPS, 50)
            target = Path(tempfile.mkdtemp(prefix="dreamworld-preview-")) / "preview.gif"
            return str(video.write_gif(frames, target, fps))

        preview_button.click(show_preview, movie_inputs, movie_preview, concurrency_id="preview",
                             concurrency_limit=2)

        def show_motion_inputs(motion):
            return [gr.update(visible=motion in ("2d", "3d")), gr.update(visible=motion == "video"),
                    gr.update(visible=motion == "2d"), gr.update(visible=motion in ("2d", "3d")),
                    gr.update(visible=motion == "3d")]

        movie["motion"].change(show_motion_inputs, movie["motion"],
                               [init_group, video_group, motion_2d, motion_xy, motion_3d])

        def show_mode_inputs(mode):
            return gr.update(visible=mode == "img2img"), gr.update(visible=mode == "inpaint")

        fields["mode"].change(show_mode_inputs, fields["mode"], [init_image, inpaint])

        def follow_backend(group: dict) -> None:
            """Reshape a group of controls to the capabilities of the backend chosen in it."""
            names = [n for n in group if n != "backend"]

            def reshape(backend, *values):
                try:
                    new_caps = world.capabilities(backend)
                except USER_ERRORS as e:
                    gr.Warning(str(e))
                    return [gr.update() for _ in names]
                return [controls.reshape(n, v, new_caps, world.settings.limits) for n, v in zip(names, values)]

            group["backend"].change(reshape, [group["backend"]] + [group[n] for n in names],
                                    [group[n] for n in names])

        for group in (fields, movie, setting_controls):
            follow_backend(group)

        def list_creations():
            paths = [str(p) for p in creations.list_creations(world.creations_dir)[:200]]
            return [(p, Path(p).name) for p in paths], paths

        def choose(paths, evt: gr.SelectData):
            if not paths or evt.index >= len(paths):
                raise gr.Error("That creation is no longer listed; click Refresh.")
            path = paths[evt.index]
            try:
                data = creations.read_creation(path)
            except creations.CreationError as e:
                raise gr.Error(str(e)) from None
            return str(path), data["parameters"] or ""

        def load_settings(path):
            if not path:
                raise gr.Error("Choose a creation first.")
            try:
                stored = creations.request_from_file(path, world.creations_dir)
            except creations.CreationError as e:
                raise gr.Error(str(e)) from None
            updates = [gr.update(value=stored[n]) if n in stored else gr.update() for n in field_names]
            init, mask, mode = stored.get("init_image"), stored.get("mask"), stored.get("mode")
            try:
                editor = _editor_from_mask(init, mask) if mode == "inpaint" and init and mask else None
            except creations.CreationError as e:
                raise gr.Error(str(e)) from None
            return [gr.Tabs(selected="create"),
                    gr.update(value=init) if mode == "img2img" and init else gr.update(),
                    gr.update(value=editor) if editor else gr.update()] + updates

        for event in (refresh.click, creations_tab.select, page.load):
            event(list_creations, None, [browse, listed])
        browse.select(choose, listed, [chosen, chosen_info])
        load.click(load_settings, chosen, [tabs, init_image, inpaint] + field_inputs)

        def save(models_folder, creations_folder, top_steps, *values):
            chosen_defaults = {n: v for n, v in zip(setting_controls, values) if v not in (None, "")}
            for name in ("width", "height"):  # 0: the model's native size
                chosen_defaults[name] = chosen_defaults.get(name) or None
            new = settings_module.Settings(
                models_dir=models_folder, creations_dir=creations_folder,
                defaults={**world.settings.defaults, **chosen_defaults},
                limits={**world.settings.limits, "steps": {"max": int(top_steps)}},
                path=world.settings.path)
            try:
                path = settings_module.save(new)
            except settings_module.SettingsError as e:
                raise gr.Error(str(e)) from None
            world.settings = new
            return f"Saved to {path} at {time.strftime('%H:%M:%S')}. Folder changes apply after a restart."

        save_settings.click(save, [models_dir, creations_dir, max_steps] + list(setting_controls.values()),
                            saved)
        settings_note.visible = bool(world.settings.problem)
    return page


def launch(world: DreamWorld, host: str = "127.0.0.1", port: int = 7860, auth=None,
           block: bool = True, note: str | None = None) -> gr.Blocks:
    service = Service(world)
    page = build(world, service, note)
    page.queue(default_concurrency_limit=1)
    world.creations_dir.mkdir(parents=True, exist_ok=True)
    # The only folder served: the creations folder this process started with (checked by settings.check_folder).
    page.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block,
                allowed_paths=[str(world.creations_dir)], show_error=True, quiet=False)
    return page
