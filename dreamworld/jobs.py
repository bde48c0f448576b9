"""The job queue's record: sessions, jobs and their saved images in SQLite, in the creations folder.

A job is written here before the caller hears of it, so a restart (or `kill -9`) loses nothing: jobs
that a dead process had queued or was running are adopted by the next service on the same folder and
(re)run from their start with their recorded seeds. Several processes may share one file; each claims
its own jobs and those of dead processes (SQLite's locking keeps two from claiming the same one).
"""
from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import DreamWorldError, RequestError

QUEUE_FILE = "queue.sqlite3"
STATES = ("pending", "running", "done", "failed", "cancelled", "interrupted")
OPEN = ("pending", "running")
ADMIN = None  # the user that sees and may stop every job
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, user TEXT NOT NULL, project TEXT NOT NULL,
    fields TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS jobs(id INTEGER PRIMARY KEY AUTOINCREMENT, user TEXT NOT NULL, session TEXT,
    kind TEXT NOT NULL, fields TEXT NOT NULL, folder TEXT NOT NULL, webhook TEXT, status TEXT NOT NULL,
    position REAL NOT NULL, origin TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
    image INTEGER DEFAULT 0, images INTEGER DEFAULT 0, step INTEGER DEFAULT 0, steps INTEGER DEFAULT 0,
    stop INTEGER DEFAULT 0, error TEXT);
CREATE TABLE IF NOT EXISTS images(job INTEGER NOT NULL, idx INTEGER NOT NULL, path TEXT NOT NULL,
    seed INTEGER NOT NULL, parameters TEXT NOT NULL, PRIMARY KEY(job, idx));
"""
_SAFE = re.compile(r"[^A-Za-z0-9_-]+")


class QueueError(DreamWorldError):
    """A job or session that does not exist, or is not the user's to see or stop."""


@dataclass
class Job:
    id: int
    user: str
    session: str | None
    kind: str  # "art" (generateArt) or "cinema"
    fields: dict
    folder: str  # the creations folder its files go to
    webhook: str | None
    status: str
    position: float
    origin: str
    created: float
    started: float | None
    finished: float | None
    image: int
    images: int
    step: int
    steps: int
    stop: int
    error: str | None

    def describe(self) -> str:
        prompt = str(self.fields.get("prompt", ""))[:60]
        return f"{self.id}\t{self.status}\t{self.user}\t{self.kind}\t{prompt}"


def origin() -> str:
    """This process, as recorded on the jobs it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(origin_: str) -> bool:
    host, _, pid = origin_.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's: not ours to judge
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def safe_name(field_name: str, value: str) -> str:
    """A user or project name as a single folder name that cannot leave its parent."""
    name = _SAFE.sub("-", str(value)).strip("-")[:64]
    if not name:
        raise RequestError(field_name, f"{field_name} must hold a letter or digit, got {value!r}"[:200])
    return name


class JobStore:
    def __init__(self, path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _run(self, sql: str, *args, create: bool = False) -> list[sqlite3.Row]:
        """Run one statement; the file is made by the first job or session, so bad input writes nothing."""
        with self._lock:
            if self._db is None:
                if not create and not self.path.exists():
                    return []
                self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
                self._db.row_factory = sqlite3.Row
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.executescript(_SCHEMA)
            return self._db.execute(sql, args).fetchall()

    # ----- sessions ---------------------------------------------------------------
    def open_session(self, user: str, project: str, fields: dict) -> str:
        session = uuid.uuid4().hex[:16]
        self._run("INSERT INTO sessions VALUES (?,?,?,?,?)", session, safe_name("user", user),
                  safe_name("project", project), json.dumps(fields), time.time(), create=True)
        return session

    def session(self, session: str, user=ADMIN) -> dict:
        rows = self._run("SELECT * FROM sessions WHERE id=?", str(session))
        if not rows or (user is not ADMIN and rows[0]["user"] != safe_name("user", user)):
            raise QueueError(f"there is no session {session!r} of yours")
        row = rows[0]
        return {"id": row["id"], "user": row["user"], "project": row["project"], "fields": json.loads(row["fields"])}

    # ----- jobs -------------------------------------------------------------------
    def add(self, user: str, kind: str, fields: dict, folder, *, origin_: str, session: str | None = None,
            webhook: str | None = None) -> int:
        now = time.time()
        rows = self._run("INSERT INTO jobs(user, session, kind, fields, folder, webhook, status, position, origin,"
                         " created) VALUES (?,?,?,?,?,?,'pending',?,?,?) RETURNING id", user, session, kind,
                         json.dumps(fields), str(folder), webhook, now, origin_, now, create=True)
        return rows[0]["id"]

    def get(self, job_id: int, user=ADMIN) -> Job:
        rows = self._run("SELECT * FROM jobs WHERE id=?", int(job_id))
        if not rows or (user is not ADMIN and rows[0]["user"] != user):
            raise QueueError(f"there is no job {job_id} of yours")
        return _job(rows[0])

    def list(self, user=ADMIN, statuses=STATES, origin_: str | None = None) -> list[Job]:
        marks = ",".join("?" * len(statuses))
        where = f"status IN ({marks})" + ("" if user is ADMIN else " AND user=?") + (" AND origin=?" if origin_ else "")
        args = (*statuses, *(() if user is ADMIN else (user,)), *((origin_,) if origin_ else ()))
        return [_job(r) for r in self._run(f"SELECT * FROM jobs WHERE {where} ORDER BY position, id", *args)]

    def adopt(self, origin_: str) -> int:
        """Take over the open jobs of dead processes; the running ones start again. Returns how many."""
        orphans = [r["id"] for r in self._run("SELECT id, origin FROM jobs WHERE status IN ('pending','running')")
                   if r["origin"] != origin_ and not _alive(r["origin"])]
        for job_id in orphans:
            self._run("UPDATE jobs SET origin=?, status='pending', step=0 WHERE id=? AND status IN "
                      "('pending','running')", origin_, job_id)
        return len(orphans)

    def claim(self, origin_: str) -> Job | None:
        """The next pending job of this process, marked running; None when there is none."""
        rows = self._run("UPDATE jobs SET status='running', started=? WHERE id=(SELECT id FROM jobs WHERE "
                         "status='pending' AND origin=? ORDER BY position, id LIMIT 1) RETURNING *",
                         time.time(), origin_)
        return _job(rows[0]) if rows else None

    def progress(self, job_id: int, image: int, images: int, step: int, steps: int) -> bool:
        """Record a running job's progress; True if someone asked it to stop."""
        rows = self._run("UPDATE jobs SET image=?, images=?, step=?, steps=? WHERE id=? RETURNING stop",
                         image, images, step, steps, job_id)
        return bool(rows and rows[0]["stop"])

    def finish(self, job_id: int, status: str, error: str | None = None) -> None:
        self._run("UPDATE jobs SET status=?, error=?, finished=? WHERE id=?", status, error, time.time(), job_id)

    def cancel(self, job_id: int, user=ADMIN) -> Job:
        """Cancel a pending job, or ask a running one to stop (its worker interrupts it)."""
        job = self.get(job_id, user)
        if job.status not in OPEN:
            raise QueueError(f"job {job.id} is {job.status}; only a pending or running job can be cancelled")
        self._run("UPDATE jobs SET status=CASE status WHEN 'pending' THEN 'cancelled' ELSE status END, stop=1 "
                  "WHERE id=? AND status IN ('pending','running')", job.id)
        return self.get(job_id)

    def move(self, job_id: int, before: int | None, user=ADMIN) -> None:
        """Put a pending job before another (None: at the end of the queue)."""
        job = self.get(job_id, user)
        if job.status != "pending":
            raise QueueError(f"job {job_id} is {job.status}; only a pending job can be moved")
        if before is None:
            position = time.time()
        else:
            position = self.get(before).position - 1e-6
        self._run("UPDATE jobs SET position=? WHERE id=?", position, job.id)

    # ----- images -----------------------------------------------------------------
    def add_image(self, job_id: int, index: int, path, seed: int, parameters: str) -> None:
        self._run("INSERT OR REPLACE INTO images VALUES (?,?,?,?,?)", job_id, index, str(path), seed, parameters)

    def images(self, job_id: int) -> dict[int, dict]:
        rows = self._run("SELECT * FROM images WHERE job=? ORDER BY idx", job_id)
        return {r["idx"]: {"path": r["path"], "seed": r["seed"], "parameters": r["parameters"]} for r in rows}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()


def _job(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["fields"] = json.loads(values["fields"])
    return Job(**values)
