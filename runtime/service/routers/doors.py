"""Doors and groups on a central gallery: who each door may admit (admin), and each door's
signed snapshot (that door's own key, or admin). A door key reads only its own door."""

from __future__ import annotations

import functools
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response
from siamese.runtime.service.dependencies import Admin, Caller, PersonName, State
from siamese.runtime.service.engine import ServiceError
from siamese.runtime.service.keys import KeyEntry
from siamese.runtime.service.state import Service
from siamese.runtime.storage.postgres import CentralGallery
from siamese.runtime.storage.snapshot import (
    default_signing_key_path,
    load_or_create_signing_key,
    sign_snapshot,
)

router = APIRouter(tags=["doors"])
Name = Annotated[str, Path(pattern=r"^\w[\w .-]{0,63}$", description="a door or group name")]
Since = Annotated[int | None, Query(ge=0, description="the door's generation: a delta")]


def _central(state: Service) -> CentralGallery:
    gallery = state.engine.gallery
    if not isinstance(gallery, CentralGallery):
        raise ServiceError(409, "doors, groups and snapshots need a central gallery "
                                "(siamese-serve run --gallery postgresql://...)")
    return gallery


def _own_door(key: KeyEntry, door: str) -> None:
    """Admin, or the door key named `door` (403 for any other door's key)."""
    if key.scope != "admin" and key.name != door:
        raise ServiceError(403, f"key {key.name!r} may read only its own door's people")


@functools.lru_cache(maxsize=4)
def _signing_key(path: FilePath):
    return load_or_create_signing_key(path)


def signing_key_path(state: Service) -> FilePath:
    return state.config.signing_key or default_signing_key_path()


async def _snapshot(state: Service, door: str, since: int | None) -> Response:
    gallery = _central(state)
    secret = _signing_key(signing_key_path(state))

    def build() -> bytes:
        generation, names, people = gallery.door_snapshot(door, since)
        return sign_snapshot(secret, door, generation, since, names, people,
                             state.engine.base.embedder.fingerprint)
    data = await state.engine.run(build)
    return Response(data, media_type="application/json")


@router.get("/v1/snapshot", response_class=Response)
async def own_snapshot(key: Caller, state: State, since: Since = None):
    """The calling door's signed snapshot (a door key; the door is the key's name)."""
    if key.scope != "door":
        raise ServiceError(403, "/v1/snapshot is a door's: an admin reads "
                                "/v1/doors/{door}/snapshot")
    return await _snapshot(state, key.name, since)


@router.get("/v1/doors/{door}/snapshot", response_class=Response)
async def door_snapshot(door: Name, key: Caller, state: State, since: Since = None):
    _own_door(key, door)
    return await _snapshot(state, door, since)


@router.get("/v1/doors/{door}/people")
async def door_people(door: Name, key: Caller, state: State):
    """The enrolled people `door` admits (its own list and its groups')."""
    _own_door(key, door)
    gallery = _central(state)
    return {"door": door, "people": await state.engine.run(gallery.door_people, door)}


async def _member(state: Service, key: KeyEntry, table: str, owner: str, member: str,
                  present: bool) -> dict:
    gallery = _central(state)
    route = f"{table}_{'add' if present else 'remove'}"
    # the audit line before the change is committed (as for enrol and remove)
    await state.record(key.name, route, person=f"{owner}/{member}", decision="requested")
    try:
        changed = await state.engine.run(gallery.set_member, table, owner, member, present)
    except Exception as exc:
        await state.record(key.name, route, person=f"{owner}/{member}", decision="failed",
                           reason=type(exc).__name__)
        raise
    return {"owner": owner, "member": member, "present": present, "changed": changed}


@router.put("/v1/doors/{door}/people/{name}")
async def admit(door: Name, name: PersonName, key: Admin, state: State):
    return await _member(state, key, "doors_people", door, name, True)


@router.delete("/v1/doors/{door}/people/{name}")
async def revoke(door: Name, name: PersonName, key: Admin, state: State):
    return await _member(state, key, "doors_people", door, name, False)


@router.put("/v1/doors/{door}/groups/{group}")
async def admit_group(door: Name, group: Name, key: Admin, state: State):
    return await _member(state, key, "doors_groups", door, group, True)


@router.delete("/v1/doors/{door}/groups/{group}")
async def revoke_group(door: Name, group: Name, key: Admin, state: State):
    return await _member(state, key, "doors_groups", door, group, False)


@router.get("/v1/groups")
async def groups(_: Admin, state: State):
    gallery = _central(state)
    return {"groups": await state.engine.run(gallery.groups)}


@router.put("/v1/groups/{group}/people/{name}")
async def join(group: Name, name: PersonName, key: Admin, state: State):
    return await _member(state, key, "groups_people", group, name, True)


@router.delete("/v1/groups/{group}/people/{name}")
async def leave(group: Name, name: PersonName, key: Admin, state: State):
    return await _member(state, key, "groups_people", group, name, False)
