"""The application: routers, the body limit, CORS only when asked, the error handlers."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from siamese.runtime.service import errors
from siamese.runtime.service.guards import BodyLimit
from siamese.runtime.service.routers import faces, ops, pages, people, sessions
from siamese.runtime.service.state import Service


def create_app(state: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        state.close()  # after uvicorn has drained the requests in flight

    app = FastAPI(title="siamese-serve", version="1", lifespan=lifespan, openapi_url=None,
                  docs_url=None, redoc_url=None,
                  description="Face verification behind API keys. Every route but /healthz "
                              "needs `Authorization: Bearer KEY`.")
    app.state.service = state
    for router in (ops.router, faces.router, people.router, sessions.router, pages.router):
        app.include_router(router)
    errors.install(app)

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        state.metrics.observe(getattr(route, "path", "other"), response.status_code,
                              time.perf_counter() - started)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    if state.config.cors:
        app.add_middleware(CORSMiddleware, allow_origins=list(state.config.cors),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization"], max_age=600)
    app.add_middleware(BodyLimit, limit=state.config.max_body_bytes)
    return app
