"""The DreamWorld web page: one module per tab (layout and event wiring only; generation is the controller's)."""
from __future__ import annotations

import gradio as gr

from dreamworld.api import server as api_server
from dreamworld.errors import USER_ERRORS
from dreamworld.service import Service
from dreamworld.world import DreamWorld

from . import cinema, controls, create, library, opening, parts_tab, png_info, queue_tab, sending, settings_tab
from .context import Context


def follow_backend(ctx: Context, group: dict[str, gr.Component]) -> None:
    """Reshape a group of controls to the capabilities of the backend chosen in it."""
    names = [n for n in group if n != "backend"]

    def reshape(backend, *values):
        try:
            caps = ctx.world.capabilities(backend)
        except USER_ERRORS as e:
            gr.Warning(str(e))
            return [gr.update() for _ in names]
        return [controls.reshape(n, v, caps, ctx.world.settings.limits) for n, v in zip(names, values)]

    group["backend"].change(reshape, [group["backend"]] + [group[n] for n in names], [group[n] for n in names])


def build(world: DreamWorld, service: Service, note: str | None = None) -> gr.Blocks:
    """The page; `note`, if any, is shown under the Generate button until the first generation."""
    ctx = Context(world, service)
    with gr.Blocks(title="DreamWorld") as page:
        title = gr.Markdown("", elem_id="header")  # filled when the page has its current values (opening)
        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create"):
                made = create.build(ctx, note)
            with gr.Tab("Cinema", id="cinema"):
                movie = cinema.build(ctx)
            with gr.Tab("Queue", id="queue"):
                queue_tab.build(ctx)
            with gr.Tab("Creations", id="creations") as creations_tab:
                chosen = library.build(ctx, page, tabs, creations_tab, made, movie)
            with gr.Tab("Parts", id="parts", visible=ctx.caps.parts):
                parts_tab.build(ctx)
            with gr.Tab("PNG Info", id="png-info"):
                png_info.build(ctx, tabs, made)
            with gr.Tab("Settings", id="settings"):
                saved = settings_tab.build(ctx)
        for group in (made.fields, movie.fields, saved.chosen):
            follow_backend(ctx, group)
        opening.wire(ctx, page, title, made, movie.fields, saved)
        sending.wire(tabs, made, movie, chosen, made.sends, list(made.looked_at), made.picture)
    return page


# Ctrl+Enter generates and Esc interrupts, in the tab on show (Create or Cinema), as in A1111. A number typed
# into a slider's box beyond its range is set to the nearest end by Gradio: the slider says so.
PAGE_JS = """() => {
  document.addEventListener("keydown", (event) => {
    const visible = (id) => { const b = document.getElementById(id); return b && b.offsetParent ? b : null; };
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      const button = visible("generate") || visible("cinema-generate");
      if (button) { event.preventDefault(); button.click(); }
    } else if (event.key === "Escape") {
      const button = visible("interrupt") || visible("cinema-interrupt");
      if (button) button.click();
    }
  });
  const checkRange = (event) => {
    const box = event.target;
    if (!(box instanceof HTMLInputElement) || box.dataset.testid !== "number-input" || box.value === "") return;
    const slider = box.closest(".block");
    if (!slider) return;
    const value = Number(box.value), low = Number(box.min), high = Number(box.max);
    const name = (box.getAttribute("aria-label") || "").replace("number input for ", "");
    let note = slider.querySelector(".range-note");
    const text = value > high ? `${name}: ${value} is above the maximum ${high}, so ${high} is used` :
      value < low ? `${name}: ${value} is below the minimum ${low}, so ${low} is used` : "";
    if (!note && text) {
      note = document.createElement("div");
      note.className = "range-note";
      note.style.color = "var(--error-text-color, #b91c1c)";
      slider.appendChild(note);
    }
    if (note) note.textContent = text;
  };
  document.addEventListener("input", checkRange, true);  // capturing: before Gradio sets the value in range
}"""


def launch(world: DreamWorld, host: str = "127.0.0.1", port: int = 7860, auth=None,
           block: bool = True, note: str | None = None, api: bool = False, api_auth=None,
           service: Service | None = None) -> gr.Blocks:
    """Serve the page; with `api`, the A1111 API on the same server, over the same Service."""
    service = service or Service(world)
    page = build(world, service, note)
    page.queue(default_concurrency_limit=1)
    world.creations_dir.mkdir(parents=True, exist_ok=True)
    # The only folder served: the creations folder this process started with (checked by settings.check_folder).
    app, _, _ = page.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=True,
                            allowed_paths=[str(world.creations_dir)], show_error=True, quiet=False, js=PAGE_JS,
                            app_kwargs=api_server.APP_KWARGS if api else None)
    if api:
        api_server.mount(app, service, api_auth)
    if block:
        page.block_thread()
    return page
