"""What every route needs: the service, and the caller's key checked for its scope.

All async: they run on the event loop (no thread hop; the rate limiter needs no lock)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from siamese.runtime.errors import ReferenceError
from siamese.runtime.service.engine import ServiceError
from siamese.runtime.service.keys import KeyEntry
from siamese.runtime.service.state import Service
from siamese.runtime.storage.references import check_name

bearer = HTTPBearer(auto_error=False, description="an API key from `siamese-serve keys add`")


async def service(request: Request) -> Service:
    return request.app.state.service


async def caller(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
                 ) -> KeyEntry:
    """The key's entry (401 when missing or unknown), after its rate limit (429). The front
    door (guards.KeyGate) has checked it from the headers before the body was read."""
    state: Service = request.app.state.service
    entry = request.scope.get("state", {}).get("key_entry")
    if entry is not None:
        state.limiter.take(entry.name)
        return entry
    if credentials is None:
        raise ServiceError(401, "missing API key: send Authorization: Bearer KEY",
                           {"WWW-Authenticate": "Bearer"})
    state: Service = request.app.state.service
    entry = state.keys.authenticate(credentials.credentials)
    if entry is None:
        raise ServiceError(401, "unknown API key", {"WWW-Authenticate": "Bearer"})
    state.limiter.take(entry.name)
    return entry


async def admin(entry: Annotated[KeyEntry, Depends(caller)]) -> KeyEntry:
    """An admin key (403 for a door key)."""
    if entry.scope != "admin":
        raise ServiceError(403, f"key {entry.name!r} has scope {entry.scope!r}; this needs admin")
    return entry


async def person(name: Annotated[str, Path(pattern=r"^\w[\w .-]{0,63}$",
                                           description="an enrolment name")]) -> str:
    """The path's person name, checked like the CLI's (400 when not allowed)."""
    try:
        return check_name(name)
    except ReferenceError as exc:
        raise ServiceError(400, str(exc)) from None


State = Annotated[Service, Depends(service)]
Caller = Annotated[KeyEntry, Depends(caller)]  # any valid key
Admin = Annotated[KeyEntry, Depends(admin)]  # an admin key
PersonName = Annotated[str, Depends(person)]
