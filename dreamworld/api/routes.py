"""The /sdapi/v1 router: A1111's routes over one shared Service (generation, progress, options, lists, tools).

User errors (a bad field, an unknown model, an unreadable image) answer 4xx with a JSON `detail` sentence and
the `field` it concerns (under its A1111 name); anything else is a fault and is logged.
"""
from __future__ import annotations

import logging
import secrets
from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from ..errors import USER_ERRORS, BackendError, RequestError
from ..jobs import QueueError
from ..service import LOCAL_USER, Service
from . import generate, info, jobs, models, state

log = logging.getLogger("dreamworld")


def _unprocessable(errors: list[dict]) -> JSONResponse:
    first = errors[0] if errors else {}
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    name = where[0] if where else "body"
    sentence = f"{'.'.join(where) or 'body'}: {first.get('msg', 'invalid value')}"
    return JSONResponse({"detail": sentence, "field": name, "errors": _plain(errors)}, status_code=422)


def _plain(errors: list[dict]) -> list[dict]:
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in errors]


def _user_error(e: Exception) -> JSONResponse:
    body: dict[str, Any] = {"detail": str(e)}
    if isinstance(e, RequestError):  # the sentence and field under their A1111 names
        name = body["field"] = models.API_OF_FIELD.get(e.field, e.field)
        if body["detail"].startswith(e.field):
            body["detail"] = name + body["detail"][len(e.field):]
        if e.field == "count":
            body["detail"] += " (n_iter times batch_size)"
    status = 422 if isinstance(e, (RequestError, ValueError)) else 500 if isinstance(e, BackendError) else \
        404 if isinstance(e, QueueError) else 400
    return JSONResponse(body, status_code=status)


class SdRoute(APIRoute):
    """An API route whose user errors become 4xx JSON, never a traceback (scoped to /sdapi, not the GUI)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def answer(request: Request):
            try:
                return await handler(request)
            except RequestValidationError as e:
                return _unprocessable(list(e.errors()))
            except USER_ERRORS as e:
                return _user_error(e)
        return answer


def caller(credentials: list[tuple[str, str]] | None) -> Callable:
    """A dependency naming the user of a request: one of `credentials` (HTTP basic, else 401), or the local
    user when the API has no credentials. Each user sees and stops only their own jobs."""
    if not credentials:
        return lambda: LOCAL_USER
    security = HTTPBasic()

    def check(given: HTTPBasicCredentials = Depends(security)) -> str:
        for user, password in credentials:
            if secrets.compare_digest(given.username.encode(), user.encode()) and \
                    secrets.compare_digest(given.password.encode(), password.encode()):
                return user
        raise HTTPException(401, "incorrect username or password", headers={"WWW-Authenticate": "Basic"})
    return check


def make_router(service: Service, credentials: list[tuple[str, str]] | None = None) -> APIRouter:
    user_of = caller(credentials)
    router = APIRouter(prefix="/sdapi/v1", route_class=SdRoute, dependencies=[Depends(user_of)], tags=["sdapi"])

    @router.post("/txt2img")
    def txt2img(body: models.Txt2Img, user: str = Depends(user_of)) -> dict:
        return generate.run(service, body, "txt2img", user)

    @router.post("/img2img")
    def img2img(body: models.Img2Img, user: str = Depends(user_of)) -> dict:
        return generate.run(service, body, "img2img", user)

    @router.get("/progress")
    def progress(skip_current_image: bool = False) -> dict:
        return state.progress(service, skip_current_image)

    @router.post("/interrupt")
    def interrupt(user: str = Depends(user_of)) -> dict:
        service.interrupt(user=user)  # the caller's running job only
        return {}

    @router.post("/skip")
    def skip(user: str = Depends(user_of)) -> dict:
        service.interrupt(user=user)  # for now the whole job stops, not only its current image
        return {}

    info.add_routes(router, service.world)
    return router


def make_routers(service: Service, credentials: list[tuple[str, str]] | None = None) -> list[APIRouter]:
    """A1111's /sdapi/v1 and DreamWorld's own /dreamworld/v1 (sessions and the queue)."""
    return [make_router(service, credentials), jobs.make_router(service, caller(credentials), SdRoute)]
