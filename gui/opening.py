"""What a page shows when it opens and after settings are saved: the saved defaults and limits (never the
launch-time ones), the engine loaded, and a job of the user's that is already running."""
from __future__ import annotations

import gradio as gr

from dreamworld import backends, schema
from dreamworld.jobs import ADMIN

from . import controls
from .context import Context, viewer_of


def header(ctx: Context) -> str:
    """The model and engine loaded (or the ones the first generation loads), with device and precision."""
    world, backend = ctx.world, ctx.world.backend
    if backend is None:
        request = world.request()
        engine = backends.engine(request.backend, request.device)
        backend = request.backend if engine == request.backend else f"{request.backend} ({engine})"
        return (f"**DreamWorld** · {request.model} on {backend} · loads at the first generation "
                f"(device {request.device}, precision {request.precision})")
    model = (world._key or {}).get("model", "?")
    return f"**DreamWorld** · {model} on {backend.name} · device {backend.device} · precision {backend.precision}"


def showing_defaults(ctx: Context, group: dict[str, gr.Component], fields: dict, defaults) -> list:
    """Updates of a group of field controls to the saved defaults, within the saved limits."""
    limits, caps = ctx.world.settings.limits, backends.capabilities(defaults.backend)
    updates = []
    for name in group:
        value = controls.shown_value(fields[name], getattr(defaults, name))
        if isinstance(group[name], gr.Slider):
            updates.append(gr.update(value=value, maximum=controls.limit(name, limits, caps, fields)))
        else:
            updates.append(gr.update(value=value))
    return updates


def running_job(ctx: Context, request: gr.Request | None) -> str | None:
    """A sentence on the job running now, if the page's user may see it."""
    task, viewer = ctx.service.current, viewer_of(request)
    if task is None or viewer not in (ADMIN, task.user):
        return None
    p = task.progress
    doing = p.describe() if (p.images or p.frames) else "loading the model"
    return f"Job {task.id} is running ({doing}): Interrupt stops it; the Queue tab shows it."


def wire(ctx: Context, page: gr.Blocks, title: gr.Markdown, create, cinema: dict, settings) -> None:
    """Fill the page from the current settings on each load and after a save; follow a running job."""
    create_fields = create.fields
    watching = gr.Timer(1.0, active=False)

    def opened(request: gr.Request):
        job = running_job(ctx, request)
        return ([header(ctx), gr.update(value=job) if job else gr.skip(), gr.Timer(active=job is not None)]
                + showing_defaults(ctx, create_fields, schema.FIELDS, ctx.world.request())
                + showing_defaults(ctx, cinema, schema.CINEMA_FIELDS, ctx.world.cinema_request())
                + settings.showing(ctx))

    def follow(request: gr.Request, own: bool):
        job = running_job(ctx, request)
        if own:  # a generation started on this page says its own progress
            return gr.skip(), gr.Timer(active=False), gr.skip()
        if job is None:
            return "The job that was running has ended: its images are in the Queue and Creations tabs.", \
                gr.Timer(active=False), header(ctx)
        return job, gr.skip(), gr.skip()

    every = [title, create.status, watching] + list(create_fields.values()) + list(cinema.values()) \
        + settings.components
    page.load(opened, None, every, show_progress="hidden")
    generating = gr.State(False)  # this page started a generation: its status is that one's
    watching.tick(follow, generating, [create.status, watching, title], queue=False, show_progress="hidden")
    create.generate.click(lambda: True, None, generating, queue=False, show_progress="hidden")
    saved_defaults = {n: create_fields[n] for n in settings.chosen if n in create_fields}
    settings.saved.success(lambda: showing_defaults(ctx, saved_defaults, schema.FIELDS, ctx.world.request()),
                           None, list(saved_defaults.values()), show_progress="hidden")
