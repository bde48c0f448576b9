"""/dreamworld/v1: the service's own routes (metafusion's sessions and the queue), beside A1111's /sdapi/v1.

A session names a project and the fields its jobs start from; queuing answers at once with the job's number
(the images arrive by webhook, or are read with GET /jobs/{id}). Each caller sees and stops only their jobs.
"""
from __future__ import annotations

from typing import Any, Callable

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from ..jobs import OPEN, STATES, Job
from ..service import Service
from . import fields


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = Field(description="the project folder under creations/<user>/")
    mode: str = "txt2img"
    model: str = ""
    loras: list[str] = Field(default_factory=list)
    fields: dict[str, Any] = Field(default_factory=dict, description="schema fields every job starts from")


class QueueBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(1, ge=1, le=64)
    seeds: list[int] | None = None
    webhook: str | None = Field(None, description="an http(s) URL that receives a POST per image and at the end")
    fields: dict[str, Any] = Field(default_factory=dict, description="schema fields for this job only")


def describe(job: Job, images: dict[int, dict] | None = None) -> dict[str, Any]:
    shown = {k: getattr(job, k) for k in ("id", "user", "session", "kind", "status", "image", "images", "step",
                                          "steps", "error", "created", "started", "finished")}
    shown["prompt"] = job.fields.get("prompt", "")
    if images is not None:
        shown["files"] = [{"index": i, **image} for i, image in sorted(images.items())]
    return shown


def make_router(service: Service, user_of: Callable, route_class) -> APIRouter:
    router = APIRouter(prefix="/dreamworld/v1", route_class=route_class, dependencies=[Depends(user_of)],
                       tags=["dreamworld"])

    @router.post("/sessions")
    def open_session(body: SessionBody, user: str = Depends(user_of)) -> dict:
        return {"session": service.open_session(user, body.project, body.mode, body.model, body.loras,
                                                **fields.decode_fields(body.fields, pictures=False))}

    @router.post("/sessions/{session}/jobs")
    def queue(session: str, body: QueueBody, user: str = Depends(user_of)) -> dict:
        task = service.queue(session, body.count, body.seeds, webhook=body.webhook, user=user,
                             **fields.decode_fields(body.fields))
        return {"job": task.id}

    @router.get("/jobs")
    def jobs(all: bool = False, user: str = Depends(user_of)) -> list[dict]:
        return [describe(job) for job in service.store.list(user, STATES if all else OPEN)]

    @router.get("/jobs/{job_id}")
    def job(job_id: int, user: str = Depends(user_of)) -> dict:
        return describe(service.store.get(job_id, user), service.store.images(job_id))

    @router.post("/jobs/{job_id}/cancel")
    def cancel(job_id: int, user: str = Depends(user_of)) -> dict:
        return describe(service.cancel(job_id, user))

    return router
