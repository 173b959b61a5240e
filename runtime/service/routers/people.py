"""The gallery: enrol (admin), list, remove (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from siamese.runtime.service.dependencies import Admin, Caller, PersonName, State
from siamese.runtime.service.engine import ServiceError, Upload
from siamese.runtime.service.schemas import ERRORS, Enrolled, People, Removed, SkippedPhoto

router = APIRouter(prefix="/v1/people", tags=["people"], responses=ERRORS)


@router.get("", response_model=People)
async def list_people(_: Caller, state: State):
    return People(people=state.engine.people())


@router.post("/{name}", response_model=Enrolled, status_code=201)
async def enrol(name: PersonName, images: Annotated[list[UploadFile], File()], key: Admin,
                state: State,
                replace: Annotated[bool, Query(description="replace an enrolled person")] = False):
    """Enrol `name` from one or more photos of that person (one face each); a photo without a
    usable face is skipped and named in `skipped` (422 when none is usable)."""
    limit = state.config.max_images
    if len(images) > limit:
        raise ServiceError(400, f"{len(images)} images; the limit is {limit}")
    if name in state.engine.templates and not replace:
        raise ServiceError(409, f"{name!r} is already enrolled (use ?replace=true)")
    uploads = [Upload(await f.read(), f"image {i}") for i, f in enumerate(images, start=1)]
    enrolment = await state.engine.run(state.engine.enroll, name, uploads)
    # the line is on disk before the change is committed: a crash between them leaves a line
    # for a change that may not have happened, never a change without a line
    await state.record(key.name, "enrol", person=name, decision="enrolled")
    try:
        await state.engine.add(enrolment.template, replace)
    except Exception as exc:
        await state.record(key.name, "enrol", person=name, decision="failed",
                           reason=type(exc).__name__)
        raise
    skipped = dict(enrolment.skipped)
    return Enrolled(name=name, images=len(enrolment.template.embeddings),
                    used=[u.name for u in uploads if u.name not in skipped],
                    skipped=[SkippedPhoto(image=i, reason=r) for i, r in skipped.items()])


@router.delete("/{name}", response_model=Removed)
async def remove(name: PersonName, key: Admin, state: State):
    state.engine.template(name)  # 404 before any line is written
    await state.record(key.name, "remove", person=name, decision="removed")
    try:
        await state.engine.remove(name)
    except Exception as exc:
        await state.record(key.name, "remove", person=name, decision="failed",
                           reason=type(exc).__name__)
        raise
    return Removed(removed=name)
