"""Decisions on uploaded photos: compare two, identify everyone in one, verify one person."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, UploadFile
from siamese.runtime.service.dependencies import Caller, PersonName, State
from siamese.runtime.service.engine import Upload
from siamese.runtime.service.schemas import (
    ERRORS,
    CompareResult,
    IdentifyResult,
    VerifyResult,
)

router = APIRouter(prefix="/v1", tags=["faces"], responses=ERRORS)
STILL_REASON = "a single still cannot prove a live person: no door decision (use /v1/sessions)"


async def upload(file: UploadFile, field: str) -> Upload:
    return Upload(await file.read(), f"upload {field!r}")


@router.post("/compare", response_model=CompareResult)
async def compare(a: Annotated[UploadFile, File()], b: Annotated[UploadFile, File()],
                  key: Caller, state: State):
    """Are the faces in photos `a` and `b` the same person?"""
    result = await state.engine.run(state.engine.compare, await upload(a, "a"),
                                    await upload(b, "b"))
    await state.record(key.name, "compare", score=result.score,
                 decision="same" if result.same_person else "different")
    return CompareResult(score=round(result.score, 4), same_person=result.same_person,
                         threshold=result.threshold, screened=result.screened)


@router.post("/identify", response_model=IdentifyResult)
async def identify(image: Annotated[UploadFile, File()], key: Caller,
                   state: State):
    """Every face in `image`, largest first, with its identity or "unknown"."""
    faces = await state.engine.run(state.engine.identify, await upload(image, "image"),
                                   state.config.max_faces)
    for face in faces:
        await state.record(key.name, "identify", person=face.identity, score=face.score,
                     decision="named" if face.identity != "unknown" else "unknown")
    return IdentifyResult(faces=[face.to_dict() for face in faces],
                          threshold=state.engine.base.threshold)


@router.post("/verify/{name}", response_model=VerifyResult)
async def verify(name: PersonName, image: Annotated[UploadFile, File()], key: Caller,
                 state: State):
    """Is the largest face in `image` the enrolled person `name`? (one frame, no voting)

    Under a liveness policy (the default) one still cannot prove a live person: the answer
    carries the score and `match`, and `verified` is always false (no door decision; use the
    /v1/sessions WebSocket). With `--liveness off` `verified` is the match.
    """
    state.engine.template(name)
    decision = await state.engine.run(state.engine.verify, name, await upload(image, "image"))
    policy = state.config.liveness.mode
    verified = decision.match and policy == "off"
    liveness = {"mode": policy} if policy == "off" else {
        "mode": policy, "result": "not_checked", "reason": STILL_REASON}
    await state.record(key.name, "verify", person=name, score=decision.score,
                       decision="verified" if verified else
                       ("match_no_door_decision" if decision.match else "rejected"),
                       liveness=liveness)
    flags = list(decision.quality.flags) if decision.quality is not None else []
    return VerifyResult(person=name, verified=verified, match=decision.match,
                        face_found=decision.face_found,
                        score=None if decision.score is None else round(decision.score, 4),
                        threshold=state.engine.base.threshold, quality_flags=flags,
                        liveness=liveness)
