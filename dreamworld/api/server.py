"""Mounting the API on the GUI's FastAPI app (Gradio runs on FastAPI), as A1111 does: after launch."""
from __future__ import annotations

from fastapi import FastAPI

from ..service import Service
from .routes import make_routers

# FastAPI arguments for the app Gradio makes, so that /docs shows the API (Gradio turns them off otherwise).
APP_KWARGS = {"docs_url": "/docs", "redoc_url": "/redoc", "openapi_url": "/openapi.json",
              "title": "DreamWorld (AUTOMATIC1111 web UI API)"}


def parse_auth(text: str | None, flag: str = "api-auth") -> list[tuple[str, str]] | None:
    """`user:pass[,user2:pass2]` as A1111's --api-auth takes it; ValueError with a sentence if malformed."""
    if text is None:
        return None
    pairs = []
    for item in text.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user or not password:
            raise ValueError(f"{flag} must look like user:password (several separated by commas)")
        pairs.append((user, password))
    return pairs


def mount(app: FastAPI, service: Service, credentials: list[tuple[str, str]] | None = None) -> FastAPI:
    """Add /sdapi/v1 and /dreamworld/v1 to `app` (the GUI's, or a bare FastAPI for tests) and drop any cached
    OpenAPI schema."""
    for router in make_routers(service, credentials):
        app.include_router(router)
    app.openapi_schema = None
    return app


def standalone(service: Service, credentials: list[tuple[str, str]] | None = None) -> FastAPI:
    """The API alone on its own FastAPI app (tests, benchmarks)."""
    return mount(FastAPI(**APP_KWARGS), service, credentials)
