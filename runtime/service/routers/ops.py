"""Health (the one route without a key), metrics, the OpenAPI document, the audit head."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from siamese.runtime.service.dependencies import Admin, Caller, State
from siamese.runtime.service.schemas import ERRORS, AuditHead, Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz():
    return Health(status="ok")


@router.get("/metrics", response_class=PlainTextResponse, responses=ERRORS)
async def metrics(_: Admin, state: State):
    """Counters in Prometheus' text format (admin)."""
    engine = state.engine
    return PlainTextResponse(state.metrics.render(engine.in_flight, engine.capacity,
                                                  len(engine.templates), state.sessions),
                             media_type="text/plain; version=0.0.4")


@router.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, _: Caller):
    return request.app.openapi()


@router.get("/v1/audit/head", response_model=AuditHead, responses=ERRORS)
async def audit_head(_: Admin, state: State):
    """The audit chain's length and last hash: keep copies to detect a truncated log."""
    head = state.audit.head
    return AuditHead(lines=head.lines, hash=head.hash)
