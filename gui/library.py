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

    shelf = Shelf(ctx, create, cinema)
    for event in (refresh.click, tab.select, page.load, words.submit):
        event(shelf.list_creations, words, [browse, listed])
    browse.select(shelf.choose, listed, [chosen, chosen_info])
    load.click(shelf.load_settings, chosen, [tabs] + create.inputs + cinema.inputs)
    delete.click(shelf.delete_chosen, [chosen, words], [browse, listed, chosen, chosen_info])
    undo.click(shelf.undo_delete, words, [browse, listed, chosen, chosen_info])
    upscale.click(shelf.upscale_chosen, [chosen, upscaler, scale], [browse, listed, chosen, chosen_info])

    def picture(path):
        if not path:
            raise refusal("Choose a creation first.")
        return path

    sending.wire(tabs, create, cinema, (chosen, chosen_info), sends, [chosen], picture)
    return chosen, chosen_info


class Shelf:
    """The tab's handlers: what each button does with the chosen creation."""

    def __init__(self, ctx: Context, create: CreateTab, cinema: CinemaTab):
        self.ctx, self.create, self.cinema = ctx, create, cinema

    def list_creations(self, text=""):
        found = library.entries(self.ctx.world.creations_dir, text or "")
        return [(str(e.path), e.caption) for e in found], [str(e.path) for e in found]

    @staticmethod
    def entry(path) -> library.Entry:
        path = Path(path)
        return library.Entry(path, path.parent if (path.parent / creations.RUN_SETTINGS).is_file() else None)

    def choose(self, paths, evt: gr.SelectData):
        if not paths or evt.index >= len(paths):
            raise refusal("That creation is no longer listed; click Refresh.")
        try:
            return paths[evt.index], self.entry(paths[evt.index]).describe()
        except (creations.CreationError, OSError, ValueError) as e:
            raise refusal(e) from None

    def load_settings(self, path):
        if not path:
            raise refusal("Choose a creation first.")
        try:
            if (run := self.entry(path).run) is not None:
                stored = runs.load_settings(run, self.ctx.world.creations_dir)
                return [gr.Tabs(selected="cinema")] + [gr.skip()] * len(self.create.inputs) + \
                    self.cinema.showing(stored)
            stored = creations.request_from_file(path, self.ctx.world.creations_dir)
            return [gr.Tabs(selected="create")] + self.create.showing(stored) + \
                [gr.skip()] * len(self.cinema.inputs)
        except creations.CreationError as e:
            raise refusal(e) from None

    def delete_chosen(self, path, text):
        if not path:
            raise refusal("Choose a creation first.")
        try:
            trash.delete(path, self.ctx.world.creations_dir)
        except creations.CreationError as e:
            raise refusal(e) from None
        return *self.list_creations(text), None, "Deleted: Undo delete brings it back."

    def undo_delete(self, text):
        latest = trash.latest(self.ctx.world.creations_dir)
        if latest is None:
            raise refusal("Nothing to undo: the trash is empty.")
        try:
            back = trash.restore(latest, self.ctx.world.creations_dir)
        except creations.CreationError as e:
            raise refusal(e) from None
        return *self.list_creations(text), gr.skip(), f"Restored {back[0].name}."

    def upscale_chosen(self, path, name, by):
        if not path:
            raise refusal("Choose a creation first.")
        try:
            made = self.ctx.world.upscale(path, by, name)
        except USER_ERRORS as e:
            raise refusal(e) from None
        gallery, paths = self.list_creations()
        return gallery, paths, str(made), creations.read_creation(made)["parameters"] or ""
