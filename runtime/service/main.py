"""The application: routers, the body limit, CORS only when asked, the error handlers."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from siamese.runtime.service import errors
from siamese.runtime.service.guards import BodyLimit, KeyGate
from siamese.runtime.service.routers import doors, faces, ops, pages, people, sessions
from siamese.runtime.service.state import Service
from starlette.routing import Match


def _routes(routes):
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router
        yield from _routes(inner.routes) if inner is not None else (route,)


def _methods(app: FastAPI, scope) -> set[str]:
    """Every method some route of this path allows."""
    return {method for route in _routes(app.router.routes) if getattr(route, "methods", None)
            and route.matches(scope)[0] != Match.NONE for method in route.methods}


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
    for router in (ops.router, faces.router, people.router, sessions.router, pages.router,
                   doors.router):
        app.include_router(router)
    errors.install(app)

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        if response.status_code == 405:  # Starlette names only the first matching route's
            response.headers["Allow"] = ", ".join(sorted(_methods(app, request.scope)))
        route = request.scope.get("route")
        state.metrics.observe(getattr(route, "path", "other"), response.status_code,
                              time.perf_counter() - started)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    # the last added runs first: CORS (preflights), then the key from the headers alone, then
    # the body's size and deadline
    app.add_middleware(BodyLimit, limit=state.config.max_body_bytes,
                       deadline_s=state.config.body_timeout_s)
    app.add_middleware(KeyGate, state=state)
    if state.config.cors:
        app.add_middleware(CORSMiddleware, allow_origins=list(state.config.cors),
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization"], max_age=600)
    return app
