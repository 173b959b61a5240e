"""The JSON bodies of the routes (they make /openapi.json exact)."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    error: str


ERRORS = {status: {"model": ErrorBody, "description": text,
                   "content": {"application/json": {}}} for status, text in {
    400: "bad input", 401: "missing or unknown key", 403: "the key's scope does not allow it",
    404: "not found", 409: "already enrolled", 413: "upload over the limit",
    422: "no usable face, or too many",
    429: "rate limit or queue full (see Retry-After)", 503: "over the request time limit"}.items()}


class CompareResult(BaseModel):
    score: float
    same_person: bool
    threshold: float
    screened: bool = False  # the cascade's edge screen decided: its score, its band's edge


class Candidate(BaseModel):
    name: str
    score: float


class FaceIdentity(BaseModel):
    face: int
    box: list[float]
    identity: str
    score: float | None
    candidates: list[Candidate]
    quality_flags: list[str]


class IdentifyResult(BaseModel):
    faces: list[FaceIdentity]
    threshold: float


class VerifyResult(BaseModel):
    person: str
    verified: bool  # a door decision: never true from one still under a liveness policy
    match: bool  # the score reached the threshold
    face_found: bool
    score: float | None
    threshold: float
    quality_flags: list[str]
    liveness: dict


class Person(BaseModel):
    name: str
    images: int


class People(BaseModel):
    people: list[Person]


class SkippedPhoto(BaseModel):
    image: str  # "image N": the Nth upload
    reason: str


class Enrolled(Person):
    """An enrolment: the uploads used and those skipped (no usable face), each named."""

    used: list[str]
    skipped: list[SkippedPhoto]


class Removed(BaseModel):
    removed: str


class Health(BaseModel):
    status: str


class AuditHead(BaseModel):
    lines: int
    hash: str
