"""The generation service: one job at a time from a queue recorded in SQLite, sessions, per-user jobs,
callbacks per image, webhooks, and a restart (even kill -9) that loses nothing."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from dreamworld import DreamWorld
from dreamworld.jobs import QueueError
from dreamworld.schema import RequestError
from dreamworld.service import Service
from dreamworld.settings import PROJECT_DIR, Settings

from .conftest import FAST, pixels


@pytest.fixture
def service(world, tmp_path):
    service = Service(DreamWorld(settings=Settings(), models_dir=world.models_dir, creations_dir=tmp_path))
    yield service
    service.close()


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.png"))


def test_jobs_run_one_at_a_time_in_order_and_errors_come_back_as_sentences(service):
    order = []
    tasks = [service.create(prompt=name, seed=1, on_image=lambda p, i, n=name: order.append(n), **FAST)
             for name in ("a", "b")]
    tasks.insert(1, service.create(prompt="x", model="no-such-model", **FAST))
    assert tasks[0].wait(120).paths and tasks[2].wait(120).paths
    with pytest.raises(RequestError, match="no-such-model"):
        tasks[1].wait(1)
    assert order == ["a", "b"] and tasks[2].progress.step == FAST["steps"]
    listed = {job.id: job for job in service.jobs()}
    assert [listed[t.id].status for t in tasks] == ["done", "failed", "done"]
    assert "'no-such-model' was not found" in listed[tasks[1].id].error


def test_bad_fields_are_refused_at_submission_and_nothing_is_queued(service):
    with pytest.raises(RequestError, match="steps"):
        service.create(prompt="x", steps=0)
    with pytest.raises(RequestError, match="webhook"):
        service.create(prompt="x", webhook="file:///etc/passwd", **FAST)
    assert service.jobs() == []


def test_a_session_saves_in_its_project_folder_and_calls_back_per_image_as_each_is_saved(service, tmp_path):
    session = service.open_session(user="ann", project="../../birds", model="dreamworld-tiny")
    calls = []
    task = service.queue(session, count=3, seeds=[5, 6, 7], prompt="owl",
                         on_image=lambda path, info: calls.append((path, info, task.done.is_set(),
                                                                   Path(path).exists())), **FAST)
    result = task.wait(180)
    project = tmp_path / "ann" / "birds"
    assert images(tmp_path) == images(project) == sorted(result.paths) and len(result.paths) == 3
    assert [info["seed"] for _, info, _, _ in calls] == [5, 6, 7] == result.seeds
    assert all(exists and not done for _, _, done, exists in calls)  # each one as soon as it is saved
    assert "Seed: 6," in calls[1][1]["parameters"]
    with pytest.raises(QueueError):
        service.queue(session, user="bob", prompt="mine now")


def test_a_user_sees_and_stops_only_their_own_jobs(service):
    blocker = service.create(user="ann", prompt="long", steps=30, width=64, height=64)
    bobs = service.create(user="bob", prompt="bob's", **FAST)
    assert [j.user for j in service.jobs("bob")] == ["bob"] and len(service.jobs()) == 2
    for stop in (lambda: service.cancel(blocker.id, user="bob"), lambda: service.interrupt(blocker.id, user="bob")):
        with pytest.raises(QueueError, match="of yours"):
            stop()
    assert service.cancel(bobs.id, user="bob").status == "cancelled"
    while blocker.progress.step < 2:
        time.sleep(0.05)
    service.interrupt(blocker.id, user="ann")
    assert blocker.wait(120).interrupted
    with pytest.raises(QueueError, match="cancelled"):
        bobs.wait(10)
    assert {j.id: j.status for j in service.jobs()} == {blocker.id: "interrupted", bobs.id: "cancelled"}


def test_pending_jobs_can_be_reordered(service):
    service.world._lock.acquire()  # hold the worker on the first job
    try:
        first = service.create(prompt="first", **FAST)
        while service.current is None:
            time.sleep(0.01)
        late, early = (service.create(prompt=p, **FAST) for p in ("late", "early"))
        service.store.move(early.id, late.id)
    finally:
        service.world._lock.release()
    late.wait(120)
    assert first.done.is_set() and early.done.is_set()
    done = {j.id: j.finished for j in service.jobs()}
    assert done[early.id] < done[late.id]


class Receiver(BaseHTTPRequestHandler):
    got: list = []
    failures: dict = {}

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = (body["event"], body.get("path"))
        if self.failures.get(key, 0) < 2:  # every message fails twice before it is taken
            self.failures[key] = self.failures.get(key, 0) + 1
            self.send_response(503)
        else:
            self.got.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_webhook_gets_every_image_once_and_the_end_even_when_it_fails_twice(service):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    service.webhooks.delays = (0.1, 0.2, 0.4)
    try:
        task = service.create(prompt="hook", seeds=[1, 2], webhook=f"http://127.0.0.1:{server.server_port}/",
                              **FAST)
        result = task.wait(120)
        deadline = time.monotonic() + 30
        while len(Receiver.got) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.shutdown()
    assert [m["event"] for m in Receiver.got] == ["image", "image", "job"]
    assert [m["path"] for m in Receiver.got[:2]] == [str(p) for p in result.paths]
    assert Receiver.got[2]["paths"] == [str(p) for p in result.paths] and Receiver.got[2]["status"] == "done"
    assert [m["seed"] for m in Receiver.got[:2]] == [1, 2]


QUEUE_AND_DIE = """
import sys, time
from dreamworld import DreamWorld
from dreamworld.service import Service
from dreamworld.settings import Settings
service = Service(DreamWorld(settings=Settings(), creations_dir=sys.argv[1]))
first = service.create(prompt="first", seeds=[11, 12], steps=12, width=64, height=64)
for seed in (13, 14, 15):
    service.create(prompt=f"queued {seed}", seed=seed, steps=4, width=64, height=64)
while first.progress.image < 2 or first.progress.step < 5:  # image 1 saved, image 2 half made
    time.sleep(0.02)
print("ready", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_kill_9_with_jobs_queued_and_one_running_then_a_restart_finishes_all_with_the_same_pixels(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    proc = subprocess.Popen([sys.executable, "-c", QUEUE_AND_DIE, str(tmp_path)], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(images(tmp_path)) == 1  # the first image of the running job
    listed = subprocess.run([sys.executable, "app.py", "queue", "list", "--creations-dir", str(tmp_path)],
                            cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout
    assert [line.split("\t")[1] for line in listed.splitlines()] == ["running", "pending", "pending", "pending"]
    subprocess.run([sys.executable, "app.py", "worker", "--exit-when-empty", "--creations-dir", str(tmp_path)],
                   cwd=PROJECT_DIR, check=True, timeout=600, env=env)
    made = images(tmp_path)
    assert len(made) == 5 and not list(tmp_path.rglob("*.tmp*"))  # nothing made twice, nothing half-written
    again = DreamWorld(settings=Settings(), creations_dir=tmp_path / "again")
    fresh = again.create(prompt="first", seeds=[11, 12], steps=12, width=64, height=64).paths
    redone = [p for p in made if p.name.endswith("job1-2.png")]
    assert (pixels(redone[0]) == pixels(fresh[1])).all()
    statuses = subprocess.run([sys.executable, "app.py", "queue", "list", "--all", "--creations-dir", str(tmp_path)],
                              cwd=PROJECT_DIR, capture_output=True, text=True, check=True).stdout
    assert [line.split("\t")[1] for line in statuses.splitlines()] == ["done"] * 4
