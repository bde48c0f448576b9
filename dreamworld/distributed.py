"""Workers on other machines (or one per GPU): the server's image jobs run by RQ workers sharing one Redis.

RQ is the engine (see docs/architecture.md, "Many machines"): a queue is a Redis list, a worker is one
command, a job is a plain function call, and Redis guarantees each job is popped by one worker only.
The server that owns the creations folder (`app.py --queue redis://host:6379`) keeps the SQLite record
(jobs.py) as the source of truth and hands each image job it claims to Redis with its request and the
bytes of its input files; a worker (`app.py worker --queue redis://host:6379`) makes the images into a
scratch folder and pushes each one's files back as soon as it is saved; the server writes them into the
creations folder under the same names, records them and calls back, so a worker needs no shared disk.
Interrupts travel the other way as a Redis key. Payloads are JSON (RQ's JSONSerializer), never pickles.
Cinema jobs stay on the server.
"""
from __future__ import annotations

import base64
import json
import logging
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Callable

from . import creations, schema
from .errors import USER_ERRORS, BackendError, DreamWorldError, RequestError
from .files import write_atomic
from .world import DreamWorld, Progress, Result

log = logging.getLogger("dreamworld")
QUEUE = "dreamworld"
KEEP = 24 * 3600  # seconds Redis keeps a job's keys and result


class QueueUnreachable(DreamWorldError):
    pass


def connect(url: str):
    """A checked connection to the Redis at `url` (one sentence if it cannot be reached)."""
    import redis
    if not str(url).startswith(("redis://", "rediss://", "unix://")):
        raise RequestError("queue", f"queue must be a redis://host:port address, got {url!r}"[:200])
    try:
        connection = redis.Redis.from_url(url)
        connection.ping()
    except (redis.RedisError, ValueError) as e:
        raise QueueUnreachable(f"queue: cannot reach Redis at {url}: {e}") from None
    return connection


def _queue(connection):
    from rq import Queue
    from rq.serializers import JSONSerializer
    return Queue(QUEUE, connection=connection, serializer=JSONSerializer)


def _keys(key: str) -> tuple[str, str, str]:
    return f"dreamworld:{key}:images", f"dreamworld:{key}:progress", f"dreamworld:{key}:stop"


# ----- the server's side ------------------------------------------------------------------------
class Dispatcher:
    """Runs image jobs on the RQ workers of one Redis, as DreamWorld.generateArt runs them locally."""

    def __init__(self, url: str):
        self.url = url
        self.connection = connect(url)
        self.queue = _queue(self.connection)
        self._keys: dict[int, str] = {}  # our job id -> its current Redis key

    def stop(self, job_id: int) -> None:
        if (key := self._keys.get(job_id)) is not None:
            self.connection.set(_keys(key)[2], 1, ex=KEEP)

    def generate(self, job_id: int, request: schema.Request, on_progress: Callable[[Progress], None],
                 on_image: Callable, *, folder: Path, labels: list[str]) -> Result:
        key = self._keys[job_id] = uuid.uuid4().hex
        images_key, progress_key, _ = _keys(key)
        remote = self.queue.enqueue_call(perform, args=(_payload(request, folder, labels, key),), timeout=-1,
                                         result_ttl=KEEP, failure_ttl=KEEP, job_id=f"dreamworld-{key}",
                                         description=f"job {job_id}")
        result, shown = Result(request), None
        try:
            while True:
                item = self.connection.blpop([images_key], timeout=0.5)
                if item is not None:
                    path, seed, text, index = _receive(json.loads(item[1]), Path(folder))
                    on_image(index, path, seed, text)
                    result.paths.append(path)
                    result.seeds.append(seed)
                    result.parameters.append(text)
                    continue
                seen = {k.decode(): int(v) for k, v in self.connection.hgetall(progress_key).items()}
                if seen and seen != shown:
                    shown = seen
                    on_progress(Progress(**seen))
                status = remote.get_status(refresh=True)
                if status == "finished" and not self.connection.llen(images_key):
                    return _outcome(remote.return_value(), result)
                if status in ("failed", "stopped", "canceled"):
                    raise BackendError(f"a remote worker failed on this job: {_last_line(remote)}")
        finally:
            self._keys.pop(job_id, None)


def _payload(request: schema.Request, folder: Path, labels: list[str], key: str) -> dict:
    fields = request.to_dict()
    inputs = {}
    for name in creations.INPUT_FIELDS:
        if fields.get(name):
            path = Path(fields[name]) if Path(fields[name]).is_absolute() else Path(folder) / fields[name]
            inputs[name] = {"name": path.name, "data": base64.b64encode(path.read_bytes()).decode()}
            fields[name] = None
    return {"fields": fields, "inputs": inputs, "labels": labels, "key": key}


def _receive(item: dict, folder: Path) -> tuple[Path, int, str, int]:
    """Write one image's files from a worker into the creations folder; return (image path, seed, text, index)."""
    image = None
    for name, data in item["files"].items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or len(relative.parts) != 2:
            raise BackendError(f"a remote worker sent a file name outside the creations folder: {name!r}")
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, base64.b64decode(data))
        if target.suffix != ".txt":
            image = target
    if image is None:
        raise BackendError("a remote worker sent an image without its file")
    return image, int(item["seed"]), str(item["parameters"]), int(item["index"])


def _outcome(value, result: Result) -> Result:
    value = value or {}
    if value.get("error"):
        if value.get("field"):
            raise RequestError(value["field"], value["error"])
        raise DreamWorldError(value["error"])
    result.interrupted = bool(value.get("interrupted"))
    return result


def _last_line(remote) -> str:
    latest = remote.latest_result()
    text = (getattr(latest, "exc_string", None) or "no reason given").strip()
    return text.splitlines()[-1][:300]


# ----- the worker's side ------------------------------------------------------------------------
_world: DreamWorld | None = None
_device: str | None = None


def perform(payload: dict) -> dict:
    """An RQ job: make a request's images into a scratch folder and push each one's files back to Redis."""
    from rq import get_current_job
    connection = get_current_job().connection
    images_key, progress_key, stop_key = _keys(payload["key"])
    with tempfile.TemporaryDirectory(prefix="dreamworld-") as scratch:
        fields = dict(payload["fields"], **({"device": _device} if _device else {}))
        for name, sent in payload["inputs"].items():
            path = Path(scratch) / "in" / name / Path(sent["name"]).name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(sent["data"]))
            fields[name] = str(path)
        out = Path(scratch) / "out"

        def on_progress(progress: Progress) -> None:
            connection.hset(progress_key, mapping={"image": progress.image, "images": progress.images,
                                                   "step": progress.step, "steps": progress.steps})
            connection.expire(progress_key, KEEP)
            if connection.exists(stop_key):
                _world.interrupt()

        def on_image(index: int, path: Path, seed: int, text: str) -> None:
            files = {f"{p.parent.name}/{p.name}": base64.b64encode(p.read_bytes()).decode()
                     for p in path.parent.glob(f"{path.stem}.*")}
            connection.rpush(images_key, json.dumps({"index": index, "seed": seed, "parameters": text,
                                                     "files": files}))
            connection.expire(images_key, KEEP)

        try:
            request = schema.validate(fields)
            labels = payload["labels"]
            made = _world.generateArt(request, on_progress, on_image, folder=out, label=lambda i: labels[i])
        except USER_ERRORS as e:
            return {"error": str(e), "field": getattr(e, "field", None)}
    return {"interrupted": made.interrupted, "images": len(made.paths)}


def serve(world: DreamWorld, url: str, *, device: str | None = None, burst: bool = False) -> None:
    """Run jobs from the Redis at `url` in this process (its models stay loaded) until stopped; with `burst`,
    until the queue is empty."""
    global _world, _device
    from rq import SimpleWorker
    from rq.serializers import JSONSerializer
    _world, _device = world, device
    connection = connect(url)
    worker = SimpleWorker([_queue(connection)], connection=connection, serializer=JSONSerializer)
    worker.work(burst=burst, logging_level="WARNING")
