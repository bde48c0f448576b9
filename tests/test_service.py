"""The generation queue: one job at a time, errors handed back, the worker survives them."""
import threading

import pytest

from dreamworld.schema import RequestError
from dreamworld.service import Service

from .conftest import FAST


def test_jobs_run_one_at_a_time_in_order_and_errors_come_back(world):
    service = Service(world)
    running, overlaps, order = [0], [], []
    lock = threading.Lock()

    def job(name):
        def run(world, on_progress):
            with lock:
                running[0] += 1
                overlaps.append(running[0])
            result = world.generateArt(world.request(prompt=name, seed=1, **FAST), on_progress)
            with lock:
                running[0] -= 1
                order.append(name)
            return result
        return run

    def failing(world, on_progress):
        raise RuntimeError("boom")

    tasks = [service.submit(job("a")), service.submit(failing), service.submit(job("b"))]
    assert tasks[0].wait(120).paths and tasks[2].wait(120).paths
    with pytest.raises(RuntimeError, match="boom"):
        tasks[1].wait(1)
    assert order == ["a", "b"] and max(overlaps) == 1
    assert tasks[2].progress.step == FAST["steps"]
    service.close()


def test_bad_fields_are_refused_at_submission(world):
    service = Service(world)
    with pytest.raises(RequestError, match="steps"):
        service.create(prompt="x", steps=0)
    service.close()
