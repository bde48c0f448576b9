"""The Queue tab: the logged-in user's jobs (an unnamed local user: every job), refreshed every second, with
the running job's live preview, and Cancel / Interrupt by job number."""
from __future__ import annotations

import html
import time
from urllib.parse import quote

import gradio as gr

from dreamworld.errors import USER_ERRORS
from dreamworld.jobs import Job

from .context import Context, viewer_of

SHOWN_DONE = 20  # finished jobs listed, newest first, after the open ones


def _progress(job: Job) -> str:
    if job.status != "running":
        return ""
    return f"image {job.image}/{job.images}, step {job.step}/{job.steps}" if job.images else "starting"


def _outcome(job: Job, files: list[str]) -> str:
    if job.status == "failed":
        return html.escape(job.error or "")
    links = [f'<a href="/gradio_api/file={quote(path)}" target="_blank">{html.escape(path.rsplit("/", 1)[-1])}</a>'
             for path in files]
    return " ".join(links)


def table(ctx: Context, user: str) -> str:
    """The user's open jobs in queue order, then the latest finished ones, as an HTML table."""
    store = ctx.service.store
    jobs = store.list(user, ("running", "pending"))
    finished = [j for j in store.list(user, ("done", "failed", "cancelled", "interrupted"))]
    jobs += sorted(finished, key=lambda j: j.finished or 0, reverse=True)[:SHOWN_DONE]
    if not jobs:
        return '<p id="queue-empty">No jobs yet: Generate, or Queue from the Create or Cinema tab.</p>'
    rows = []
    for job in jobs:
        files = [image["path"] for image in store.images(job.id).values()]
        cells = (job.id, job.status, job.kind, html.escape(str(job.fields.get("prompt", ""))[:80]),
                 _progress(job), _outcome(job, files))
        rows.append(f'<tr class="job job-{job.status}" data-job="{job.id}">'
                    + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("Job", "Status", "Kind", "Prompt", "Progress", "Result"))
    return f'<table id="queue-jobs"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def build(ctx: Context) -> None:
    with gr.Row():
        with gr.Column(scale=3):
            jobs = gr.HTML(elem_id="queue-table")
        with gr.Column(scale=1, min_width=220):
            preview = gr.Image(label="Running now", interactive=False, elem_id="queue-preview", height=256)
            number = gr.Number(label="Job", precision=0, elem_id="queue-job")
            with gr.Row():
                cancel = gr.Button("Cancel", elem_id="queue-cancel")
                interrupt = gr.Button("Interrupt", variant="stop", elem_id="queue-interrupt")
            said = gr.Markdown("", elem_id="queue-said")

    def refresh(request: gr.Request):
        user = viewer_of(request)
        running = ctx.service.current
        mine = running is not None and user in (None, running.user)
        shown = (running.progress.preview or running.progress.latest) if mine else None
        picture = shown if shown is not None else gr.update()
        return table(ctx, user), picture

    def stop(job, user, interrupt_only: bool) -> str:
        if job is None:
            return "Type the number of the job first (the Job column)."
        try:
            if interrupt_only:
                ctx.service.interrupt(int(job), user)
                done = ctx.service.store.get(int(job), user)
            else:
                done = ctx.service.cancel(int(job), user)
        except USER_ERRORS as e:
            return f"**Error:** {e}"  # said beside the buttons: these events skip the queue, and its toasts
        return f"Job {done.id}: {'stopping' if done.status == 'running' else done.status} ({time.strftime('%X')})."

    def cancel_job(request: gr.Request, job):
        return stop(job, viewer_of(request), interrupt_only=False)

    def interrupt_job(request: gr.Request, job):
        return stop(job, viewer_of(request), interrupt_only=True)

    timer = gr.Timer(1.0)
    timer.tick(refresh, None, [jobs, preview], queue=False, show_progress="hidden")
    cancel.click(cancel_job, number, said, queue=False)
    interrupt.click(interrupt_job, number, said, queue=False)
