"""Every error as JSON {"error": ...} with a status that mirrors the CLI's exit statuses:
400 bad input, 401/403 keys, 404/409 people, 413 limits, 422 faces, 429 busy, 503 storage or
time limit; 500 only for our bugs (logged, never shown)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from siamese.runtime.errors import (
    ConfigError,
    ImageError,
    IntegrityError,
    ReferenceError,
    SiameseError,
    StorageError,
)
from siamese.runtime.redact import redact
from siamese.runtime.service.engine import ServiceError
from starlette.exceptions import HTTPException

log = logging.getLogger("siamese.serve")


def status_of(exc: SiameseError) -> int:
    if isinstance(exc, ServiceError):
        return exc.status
    if isinstance(exc, (IntegrityError, StorageError)):
        return 503
    if isinstance(exc, ReferenceError):
        return 422
    if isinstance(exc, (ImageError, ConfigError)):
        return 400
    return 400


def _body(message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": redact(" ".join(str(message).split()))}, status,
                        headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(SiameseError)
    async def library_error(_: Request, exc: SiameseError):
        return _body(str(exc), status_of(exc), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"
                             for e in exc.errors()[:5])
        return _body(f"bad request: {problems}", 400)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException):
        return _body(str(exc.detail), exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return _body(f"internal error ({type(exc).__name__})", 500)
