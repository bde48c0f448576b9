"""The Creations tab: browse and search what was made, read its parameters, load them back into Create (a
cinema run into Cinema), upscale, delete to the trash and undo."""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from dreamworld import creations, library, trash
from dreamworld.cinema import runs
from dreamworld.errors import USER_ERRORS

from . import sending
from .context import Context, refusal
from .cinema import CinemaTab
from .create import CreateTab


def build(ctx: Context, page: gr.Blocks, tabs: gr.Tabs, tab: gr.Tab, create: CreateTab, cinema: CinemaTab) -> tuple:
    """The tab; returns (the chosen creation's path state, its parameters box), where Send to upscale puts one."""
    with gr.Row():
        words = gr.Textbox(label="Search", placeholder="words of the prompt, the model, a date (2026-12-04)...",
                           elem_id="creations-search", scale=4)
        refresh = gr.Button("Refresh", elem_id="refresh-creations", scale=1)
    browse = gr.Gallery(label="Creations (▶: a cinema run)", format="png", columns=6, elem_id="creations",
                        allow_preview=True)
    listed = gr.State([])  # the paths shown in `browse`, in its order
    chosen = gr.State(None)
    chosen_info = gr.Textbox(label="Parameters", lines=4, interactive=False, elem_id="creation-info",
                             buttons=["copy"])
    with gr.Row():
        load = gr.Button("Load these settings (a run: into Cinema)", elem_id="load-settings")
        delete = gr.Button("Delete (to the trash)", elem_id="delete-creation")
        undo = gr.Button("Undo delete", elem_id="undo-delete")
    sends = sending.buttons("creation-send")
    with gr.Row():
        upscaler = gr.Dropdown(ctx.world.upscalers(), value="Lanczos", label="Upscaler", elem_id="upscaler")
        scale = gr.Slider(1, 8, value=2, step=0.5, label="Upscale by", elem_id="upscale-by")
        upscale = gr.Button("Upscale", elem_id="upscale")

    def list_creations(text=""):
        found = library.entries(ctx.world.creations_dir, text or "")
        return [(str(e.path), e.caption) for e in found], [str(e.path) for e in found]

    def entry(path) -> library.Entry:
        path = Path(path)
        return library.Entry(path, path.parent if (path.parent / creations.RUN_SETTINGS).is_file() else None)

    def choose(paths, evt: gr.SelectData):
        if not paths or evt.index >= len(paths):
            raise refusal("That creation is no longer listed; click Refresh.")
        try:
            return paths[evt.index], entry(paths[evt.index]).describe()
        except (creations.CreationError, OSError, ValueError) as e:
            raise refusal(e) from None

    def load_settings(path):
        if not path:
            raise refusal("Choose a creation first.")
        try:
            if (run := entry(path).run) is not None:
                stored = runs.load_settings(run, ctx.world.creations_dir)
                return [gr.Tabs(selected="cinema")] + [gr.skip()] * len(create.inputs) + cinema.showing(stored)
            stored = creations.request_from_file(path, ctx.world.creations_dir)
            return [gr.Tabs(selected="create")] + create.showing(stored) + [gr.skip()] * len(cinema.inputs)
        except creations.CreationError as e:
            raise refusal(e) from None

    def delete_chosen(path, text):
        if not path:
            raise refusal("Choose a creation first.")
        try:
            trash.delete(path, ctx.world.creations_dir)
        except creations.CreationError as e:
            raise refusal(e) from None
        return *list_creations(text), None, "Deleted: Undo delete brings it back."

    def undo_delete(text):
        entry_ = trash.latest(ctx.world.creations_dir)
        if entry_ is None:
            raise refusal("Nothing to undo: the trash is empty.")
        try:
            back = trash.restore(entry_, ctx.world.creations_dir)
        except creations.CreationError as e:
            raise refusal(e) from None
        return *list_creations(text), gr.skip(), f"Restored {back[0].name}."

    def upscale_chosen(path, name, by):
        if not path:
            raise refusal("Choose a creation first.")
        try:
            made = ctx.world.upscale(path, by, name)
        except USER_ERRORS as e:
            raise refusal(e) from None
        gallery, paths = list_creations()
        return gallery, paths, str(made), creations.read_creation(made)["parameters"] or ""

    for event in (refresh.click, tab.select, page.load, words.submit):
        event(list_creations, words, [browse, listed])
    browse.select(choose, listed, [chosen, chosen_info])
    load.click(load_settings, chosen, [tabs] + create.inputs + cinema.inputs)
    delete.click(delete_chosen, [chosen, words], [browse, listed, chosen, chosen_info])
    undo.click(undo_delete, words, [browse, listed, chosen, chosen_info])
    upscale.click(upscale_chosen, [chosen, upscaler, scale], [browse, listed, chosen, chosen_info])

    def picture(path):
        if not path:
            raise refusal("Choose a creation first.")
        return path

    sending.wire(tabs, create, cinema, (chosen, chosen_info), sends, [chosen], picture)
    return chosen, chosen_info
