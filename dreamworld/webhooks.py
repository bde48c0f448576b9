"""Webhooks: a POST of JSON per finished image and at the end of each job, sent from a thread of their own
and retried with back-off, so a slow or failing receiver never holds up the worker."""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

log = logging.getLogger("dreamworld")
DELAYS = (1, 2, 4, 8, 16, 32)  # seconds before each retry
TIMEOUT = 10


class Webhooks:
    def __init__(self, delays=DELAYS):
        self.delays = delays
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._send_all, name="dreamworld-webhooks", daemon=True)
        self._thread.start()

    def image(self, job, path: Path, info: dict) -> None:
        if job.webhook:
            self._queue.put((job.webhook, {"event": "image", "path": str(path), "user": job.user, **info}))

    def job_done(self, job, task) -> None:
        if job.webhook:
            paths = [str(p) for p in getattr(task.result, "paths", [])]
            error = str(task.error) if task.error is not None else None
            self._queue.put((job.webhook, {"event": "job", "job": job.id, "user": job.user, "paths": paths,
                                           "status": "failed" if error else "interrupted" if getattr(
                                               task.result, "interrupted", False) else "done", "error": error}))

    def close(self) -> None:
        self._queue.put(None)

    def _send_all(self) -> None:
        while (item := self._queue.get()) is not None:
            url, payload = item
            for attempt, delay in enumerate((0, *self.delays)):
                time.sleep(delay)
                if _post(url, payload):
                    break
            else:
                log.warning("webhook %s: gave up on %s after %d attempts", url, payload.get("event"), attempt + 1)


def _post(url: str, payload: dict) -> bool:
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return 200 <= answer.status < 300
    except (urllib.error.URLError, OSError, ValueError) as e:
        log.info("webhook %s: %s; will retry", url, e)
        return False
