"""GET /sdapi/v1/progress: the Service's current job in A1111's ProgressResponse shape."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..service import Service
from . import images


def _state(service: Service, task) -> dict[str, Any]:
    """A1111's shared.state.dict() for the job running now (or an idle one)."""
    p = task.progress if task else None
    return {"skipped": False, "interrupted": False,
            "stopping_generation": False, "job": f"task({task.id})" if task else "",
            "job_count": (1 if task else 0) + service.pending, "job_timestamp": "0",
            "job_no": max(0, p.image - 1) if p else 0,
            "sampling_step": p.step if p else 0, "sampling_steps": p.steps if p else 0}


def _image(latest: str | None) -> str | None:
    if not latest or not Path(latest).is_file():
        return None
    try:
        return images.encode_file(Path(latest), "")
    except OSError:
        return None


def progress(service: Service, skip_current_image: bool = False) -> dict[str, Any]:
    """Progress 0..1, the relative time left, the state, the last image of the job (if any) and a line."""
    task = service.current
    if task is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": _state(service, None),
                "current_image": None, "textinfo": None}
    fraction = task.progress.fraction
    elapsed = time.monotonic() - (task.started or time.monotonic())
    eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
    return {"progress": round(fraction, 4), "eta_relative": round(max(0.0, eta), 3),
            "state": _state(service, task),
            "current_image": None if skip_current_image else _image(task.progress.latest),
            "textinfo": task.progress.describe()}
