"""The generation service: sessions, a queue recorded in SQLite (dreamworld/jobs.py), one worker thread.

Every creation made through the GUI, the CLI, the API or Python is a job here. A job is recorded with
its resolved seeds before `create`/`queue` return, so a restart redoes it to the same pixels; the images
a job already saved are kept, not made again. Callers watch their job through its Task (progress, the
images as they are saved, the result); other processes see it through the store (`app.py queue list`).
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from . import creations, distributed, jobs, schema
from .errors import USER_ERRORS, RequestError
from .jobs import ADMIN, Job, JobStore, QueueError
from .webhooks import Webhooks
from .world import DreamWorld, Progress, Result

log = logging.getLogger("dreamworld")
LOCAL_USER = "local"  # the user of the CLI, of Python calls and of a GUI without --auth
OnImage = Callable[[Path, dict], None]  # (path, {"job", "index", "seed", "parameters"})


@dataclass
class Task:
    id: int
    user: str = LOCAL_USER
    on_image: OnImage | None = None
    progress: Progress = field(default_factory=Progress)
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    started: float | None = None  # time.monotonic() when the worker took it

    def watch(self, interval: float = 0.5) -> Iterator[Progress]:
        """Yield the task's progress each time it changes (checked every `interval` seconds) until it ends."""
        shown = None
        while not self.done.wait(interval):
            progress = self.progress
            seen = (self.started is not None, progress.image, progress.frame, progress.step, progress.latest)
            if seen != shown:
                shown = seen
                yield progress

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the task ends; return its result or raise its error."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"task {self.id} still running")
        if self.error is not None:
            raise self.error
        return self.result


class Service:
    """Feeds one DreamWorld from the queue so that the GUI, CLI and API never run two generations at once."""

    def __init__(self, world: DreamWorld, store: JobStore | None = None, *, adopt: bool = True,
                 remote: str | None = None, workers: int = 1):
        """`remote`: a redis:// address whose RQ workers (`app.py worker --queue URL`) make the images, up to
        `workers` jobs at a time (dreamworld/distributed.py); cinema jobs stay here."""
        self.world = world
        creations.check_folder(world.creations_dir)
        self.dispatcher = distributed.Dispatcher(remote) if remote else None
        self.store = store or JobStore(world.creations_dir / jobs.QUEUE_FILE)
        self.origin = jobs.origin()
        self.webhooks = Webhooks()
        self.tasks: dict[int, Task] = {}
        self.running: dict[int, Task] = {}
        self._wake = threading.Event()
        self._closed = False
        if adopt and (adopted := self.store.adopt(self.origin)):
            log.info("queue: %d job(s) left by a stopped process will run again", adopted)
        self._workers = [threading.Thread(target=self._work, name=f"dreamworld-worker-{i}", daemon=True)
                         for i in range(workers if remote else 1)]
        for worker in self._workers:
            worker.start()

    @property
    def current(self) -> Task | None:
        """The running task (the earliest, when remote workers run several)."""
        return next(iter(self.running.values()), None)

    # ----- sessions -----------------------------------------------------------------
    def open_session(self, user: str, project: str, mode: str = "txt2img", model: str = "",
                     loras=(), **fields) -> str:
        """A session: a user's project (its creations go to creations/<user>/<project>/) and the fields its
        jobs start from (mode, model, LoRAs, anything else). Returns the session id for `queue`."""
        defaults = {"mode": mode, **({"model": model} if model else {}), **({"loras": list(loras)} if loras else {}),
                    **fields}
        self.world.request(**{**defaults, **_placeholder_inputs(defaults)})  # bad fields are refused now
        return self.store.open_session(user, project, defaults)

    def queue(self, session_id: str, count: int = 1, seeds=None, on_image: OnImage | None = None,
              webhook: str | None = None, user=ADMIN, **fields) -> Task:
        """Queue `count` images (or one per seed of `seeds`) in a session; `on_image(path, info)` is called
        as each is saved, `webhook` receives a POST per image and at the end."""
        session = self.store.session(session_id, user)
        values = {**session["fields"], **fields, "count": count, **({"seeds": seeds} if seeds else {})}
        folder = self.world.creations_dir / session["user"] / session["project"]
        return self._add(session["user"], "art", self.world.request(**values), folder, on_image=on_image,
                         webhook=webhook, session=session_id)

    # ----- jobs ---------------------------------------------------------------------
    def create(self, *, user: str = LOCAL_USER, on_image: OnImage | None = None, webhook: str | None = None,
               **fields) -> Task:
        """Queue a creation from schema fields (validated now, so errors come back at once)."""
        return self._add(jobs.safe_name("user", user), "art", self.world.request(**fields),
                         self.world.creations_dir, on_image=on_image, webhook=webhook)

    def cinema(self, *, user: str = LOCAL_USER, **fields) -> Task:
        """Queue a cinema run from CinemaRequest fields (validated now; schedules are checked per frame when
        the run is planned, before any frame is made)."""
        request = self.world.cinema_request(**fields)
        return self._add(jobs.safe_name("user", user), "cinema", request, self.world.creations_dir)

    def resume_cinema(self, run, *, user: str = LOCAL_USER) -> Task:
        """Queue the continuation of an interrupted cinema run (its folder)."""
        return self._record(jobs.safe_name("user", user), "resume", {"run": str(run)}, self.world.creations_dir)

    def jobs(self, user=ADMIN) -> list[Job]:
        """The jobs `user` may see (all of them for ADMIN), in queue order."""
        return self.store.list(user)

    def cancel(self, job_id: int, user=ADMIN) -> Job:
        """Cancel a pending job, or interrupt a running one; only the user's own (ADMIN: any)."""
        job = self.store.cancel(job_id, user)
        if job.id in self.running:
            self._stop(job)
        self._wake.set()
        return job

    def interrupt(self, job_id: int | None = None, user=ADMIN) -> None:
        """Stop the running job (`job_id`, or whichever runs) if it is the user's to stop."""
        current = next((t for t in list(self.running.values()) if user in (ADMIN, t.user)), None)
        if job_id is None and current is None:
            return  # nothing of the user's runs
        job = self.store.get(job_id if job_id is not None else current.id, user)
        if job.status == "running":
            self.cancel(job.id, user)

    def idle(self) -> bool:
        """True when this service has nothing queued or running."""
        return not self.running and not self.store.list(statuses=jobs.OPEN, origin_=self.origin)

    @property
    def pending(self) -> int:
        return len(self.store.list(statuses=("pending",)))

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        for worker in self._workers:
            worker.join(timeout=60)
        self.webhooks.close()

    # ----- the worker ---------------------------------------------------------------
    def _add(self, user: str, kind: str, request, folder: Path, **options) -> Task:
        if kind == "art" and request.seed < 0:  # chosen now, so that a redo makes the same pixels
            request = request.replace(seed=random.randint(0, schema.MAX_SEED))
        if kind == "art":
            request = request.replace(seeds=tuple(request.image_seeds()))
        return self._record(user, kind, _record(request, folder), folder, **options)

    def _record(self, user, kind, fields, folder, on_image=None, webhook=None, session=None) -> Task:
        if webhook is not None and not str(webhook).startswith(("http://", "https://")):
            raise RequestError("webhook", f"webhook must be an http:// or https:// address, got {webhook!r}"[:200])
        job_id = self.store.add(user, kind, fields, folder, origin_=self.origin, session=session, webhook=webhook)
        task = self.tasks[job_id] = Task(job_id, user, on_image)
        self._wake.set()
        return task

    def _work(self) -> None:
        while not self._closed:
            job = self.store.claim(self.origin)
            if job is None:
                self._end_cancelled()
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            task = self.tasks.pop(job.id, None) or Task(job.id, job.user)
            task.started = time.monotonic()
            self.running[job.id] = task
            try:
                task.result = self._run(job, task)
                self.store.finish(job.id, "interrupted" if getattr(task.result, "interrupted", False) else "done")
            except BaseException as e:  # handed to the caller, never kills the worker
                task.error = e
                self.store.finish(job.id, "failed", str(e) if isinstance(e, USER_ERRORS) else f"internal error: {e!r}")
                if not isinstance(e, USER_ERRORS):
                    log.exception("job %s failed", job.id)
            finally:
                self.running.pop(job.id, None)
                self.webhooks.job_done(job, task)
                task.done.set()

    def _end_cancelled(self) -> None:
        """Tell the watchers of jobs cancelled before they ran (here or from another process)."""
        for job_id, task in list(self.tasks.items()):
            if self.store.get(job_id).status == "cancelled":
                task.error = QueueError(f"job {job_id} was cancelled")
                self.tasks.pop(job_id, None)
                task.done.set()

    def _run(self, job: Job, task: Task):
        def on_progress(progress: Progress):
            task.progress = progress
            if self.store.progress(job.id, progress.image or progress.frame, progress.images or progress.frames,
                                   progress.step, progress.steps):
                self._stop(job)

        if job.kind == "resume":
            return self.world.resume_cinema(job.fields["run"], on_progress)
        if job.kind == "cinema":
            return self.world.generateCinema(schema.validate_cinema(job.fields), on_progress)
        return self._run_art(job, task, on_progress)

    def _run_art(self, job: Job, task: Task, on_progress) -> Result:
        request = schema.validate(job.fields)
        seeds = list(request.seeds)
        saved = self.store.images(job.id)
        saved.update(_found(job, seeds, saved))  # saved by a killed process before it could record them
        todo = [i for i in range(len(seeds)) if i not in saved]

        def on_image(index, path, seed, parameters):
            index = todo[index]
            self.store.add_image(job.id, index, path, seed, parameters)
            info = {"job": job.id, "index": index, "seed": seed, "parameters": parameters}
            self.webhooks.image(job, path, info)
            if task.on_image:
                task.on_image(path, info)

        result = Result(request)
        if todo:
            request = request.replace(seeds=tuple(seeds[i] for i in todo))
            labels = [_label(job.id, i) for i in todo]
            if self.dispatcher:
                result = self.dispatcher.generate(job.id, request, on_progress, on_image, folder=Path(job.folder),
                                                  labels=labels)
            else:
                result = self.world.generateArt(request, on_progress, on_image, folder=job.folder,
                                                label=labels.__getitem__)
        done = self.store.images(job.id)
        result.request = result.request.replace(seeds=tuple(seeds))
        result.paths = [Path(done[i]["path"]) for i in sorted(done)]
        result.seeds = [done[i]["seed"] for i in sorted(done)]
        result.parameters = [done[i]["parameters"] for i in sorted(done)]
        return result


    def _stop(self, job: Job) -> None:
        if self.dispatcher and job.kind == "art":
            self.dispatcher.stop(job.id)
        else:
            self.world.interrupt()


def _label(job_id: int, index: int) -> str:
    return f"job{job_id}-{index + 1}"


def _found(job: Job, seeds: list[int], saved: dict) -> dict:
    """Images of the job on disk but not in the store (the process died between the two)."""
    found = {}
    for index in range(len(seeds)):
        if index not in saved:
            for path in Path(job.folder).glob(f"*/*-{_label(job.id, index)}.*"):
                if path.suffix != ".txt" and path.with_suffix(".txt").exists():
                    found[index] = {"path": str(path), "seed": seeds[index],
                                    "parameters": path.with_suffix(".txt").read_text("utf-8")}
    return found


def _record(request, folder: Path) -> dict:
    """The request as JSON, its input files stored in the folder (inputs/) and named by absolute path."""
    record = request.to_dict()
    names = creations.INPUT_FIELDS if isinstance(request, schema.Request) else ("init_image", "video")
    for name in names:  # every input readable before any is stored: a refused job leaves nothing behind
        value = getattr(request, name, None)
        if isinstance(value, (str, Path)) and name != "video":
            try:
                creations.open_image(value)
            except creations.CreationError as e:
                raise RequestError(name, f"{name}: {e}") from None
    for unit, stored in zip(getattr(request, "controlnet", ()) or (), record.get("controlnet") or []):
        if unit.image is not None:  # a unit's own control image is kept like the other inputs
            stored["image"] = str((folder / creations.store_input(unit.image, folder)).resolve())
    for name in names:
        if record.get(name) is not None:
            store = creations.store_file if name == "video" else creations.store_input
            try:
                record[name] = str((folder / store(getattr(request, name), folder)).resolve())
            except creations.CreationError as e:
                raise RequestError(name, f"{name}: {e}") from None
    return record


def _placeholder_inputs(fields: dict) -> dict:
    """A session's image modes need an input only when jobs are queued: stand-ins let its fields be checked."""
    return {name: "session-input.png" for name in creations.INPUT_FIELDS
            if fields.get("mode") in schema.IMAGE_MODES and name not in fields}


__all__ = ["Service", "Task", "LOCAL_USER", "ADMIN", "QueueError", "RequestError"]
