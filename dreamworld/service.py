"""The generation queue: one worker thread runs jobs one at a time, callers watch their progress."""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .errors import USER_ERRORS
from .world import DreamWorld, Progress

log = logging.getLogger("dreamworld")


@dataclass
class Task:
    id: int
    run: Callable[[Callable[[Progress], None]], Any]
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
            seen = (progress.image, progress.frame, progress.step, progress.latest)
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
    """Feeds one DreamWorld from a queue so that the GUI, CLI and API never run two generations at once."""

    def __init__(self, world: DreamWorld):
        self.world = world
        self._queue: queue.Queue[Task | None] = queue.Queue()
        self._ids = itertools.count(1)
        self.current: Task | None = None
        self._worker = threading.Thread(target=self._work, name="dreamworld-worker", daemon=True)
        self._worker.start()

    def submit(self, run: Callable[[DreamWorld, Callable[[Progress], None]], Any]) -> Task:
        """Queue `run(world, on_progress)`; returns the task to watch."""
        task = Task(next(self._ids), lambda on_progress: run(self.world, on_progress))
        self._queue.put(task)
        return task

    def create(self, **fields) -> Task:
        """Queue a creation from schema fields (validated now, so errors come back at once)."""
        request = self.world.request(**fields)
        return self.submit(lambda world, on_progress: world.generateArt(request, on_progress))

    def cinema(self, **fields) -> Task:
        """Queue a cinema run from CinemaRequest fields (validated now; schedules are checked per frame when
        the run is planned, before any frame is made)."""
        request = self.world.cinema_request(**fields)
        return self.submit(lambda world, on_progress: world.generateCinema(request, on_progress))

    def resume_cinema(self, run) -> Task:
        """Queue the continuation of an interrupted cinema run (its folder)."""
        return self.submit(lambda world, on_progress: world.resume_cinema(run, on_progress))

    def interrupt(self) -> None:
        self.world.interrupt()

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def _work(self) -> None:
        while (task := self._queue.get()) is not None:
            task.started = time.monotonic()
            self.current = task

            def on_progress(progress: Progress, task=task):
                task.progress = progress

            try:
                task.result = task.run(on_progress)
            except BaseException as e:  # handed to the caller, never kills the worker
                task.error = e
                if not isinstance(e, USER_ERRORS):
                    log.exception("task %s failed", task.id)
            finally:
                self.current = None
                task.done.set()

    def close(self) -> None:
        self._queue.put(None)
