"""WebSocket /v1/sessions: a live verification, frame by frame, with K-of-N voting AND the
site's liveness check (the CLI's check, runtime.session.liveness_step: one implementation).

Messages (JSON text; frames are binary JPEG or PNG):
  client -> {"type": "start", "person": NAME, "key": KEY}   (or the key in Authorization;
            optional "liveness": a mode at least as strong as the site's policy)
  server -> {"type": "ready", "person", "votes_needed", "window", "max_frames", "timeout_s",
             "liveness": MODE}
  client -> binary frame, then waits for its answer
  server -> {"type": "challenge", "challenge": ACTION, "prompt": TEXT, "step", "of",
             "deadline_s", "mirrored"}   (an active check's prompt; ACTION is turn_left,
             turn_right or nod, in the person's own sense: a mirrored preview shows a turn
             to the person's left on the screen's left)
  server -> {"type": "frame", "frame", "face_found", "score", "match", "votes",
             "scored_frames", "verified", "quality_flags", "liveness": STATE, "prompt": TEXT}
  server -> {"type": "final", "person", "verified", "frames", "reason", "liveness": RESULT}
            and closes (1000); RESULT = {mode, result, reason, signals, ...}
  server -> {"type": "error", "status", "error"} and closes (4000 + status)

Verified needs the votes and the liveness check. The check's clock is the server's receive
time of each frame (monotonic): a client cannot stretch a deadline or claim its own timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from siamese.runtime.errors import SiameseError
from siamese.runtime.liveness.check import MODES, LivenessCheck, LivenessConfig
from siamese.runtime.liveness.policy import STRENGTH
from siamese.runtime.liveness.prompts import WORDS, prompt_text
from siamese.runtime.service.engine import ServiceError
from siamese.runtime.service.errors import status_of
from siamese.runtime.service.guards import bearer_key
from siamese.runtime.service.state import Service

router = APIRouter()


def _origin_allowed(socket: WebSocket, state: Service) -> bool:
    """Same-origin pages and --cors origins only (no cross-site WebSocket hijacking)."""
    origin = socket.headers.get("origin")
    if origin is None or origin in state.config.cors:
        return True
    return urlsplit(origin).netloc == socket.headers.get("host")


async def _fail(socket: WebSocket, status: int, message: str) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await socket.send_json({"type": "error", "status": status, "error": message})
        await socket.close(4000 + status)


async def _first_message(socket: WebSocket, state: Service, evicted: asyncio.Event) -> dict:
    """The socket's first message within auth_timeout_s, unless a newer socket evicts it."""
    receive = asyncio.ensure_future(socket.receive())
    evict = asyncio.ensure_future(evicted.wait())
    try:
        done, _ = await asyncio.wait({receive, evict}, timeout=state.config.auth_timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        evict.cancel()
        if not receive.done():
            receive.cancel()
    if receive in done:
        return receive.result()
    if evict in done:
        raise ServiceError(503, "evicted: too many connections waiting to start")
    raise TimeoutError


async def _start(socket: WebSocket, state: Service, evicted: asyncio.Event):
    """The first message, within `auth_timeout_s`: who is to be verified, by which key (a
    blocked address gets 429 before its key is looked at)."""
    message = await _first_message(socket, state, evicted)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    try:
        text = message.get("text")
        if text is None:
            raise ValueError
        start = json.loads(text)
        if not isinstance(start, dict) or start.get("type") != "start":
            raise ValueError
    except ValueError:
        raise ServiceError(400, 'the first message must be the text {"type": "start", '
                                '"person": NAME, "key": KEY}') from None
    client = socket.client.host if socket.client else "unknown"
    wait = state.failures.retry_after(client)
    if wait is not None:
        raise ServiceError(429, "too many failed key attempts from this address",
                           {"Retry-After": str(wait)})
    key = start.get("key") or bearer_key({b"authorization": socket.headers.get(
        "authorization", "").encode("latin-1")}) or ""
    entry = state.keys.authenticate(str(key)) if key else None
    if entry is None:
        state.failures.failed(client)
        raise ServiceError(401, "missing or unknown API key")
    state.limiter.take(entry.name)
    person = start.get("person")
    if not isinstance(person, str):
        raise ServiceError(400, "start needs a person")
    return entry, person, state.engine.template(person), _mode(start, state)


def _mode(start: dict, state: Service) -> str:
    """The session's liveness mode: the site's policy, or a stronger one the client asks."""
    policy = state.config.liveness.mode
    asked = start.get("liveness", policy)
    if asked not in MODES:
        raise ServiceError(400, f"liveness must be one of {', '.join(MODES)}")
    if STRENGTH[asked] < STRENGTH[policy]:
        raise ServiceError(403, f"the site's liveness policy is {policy}: a key cannot weaken "
                                f"it")
    return asked


@router.websocket("/v1/sessions")
async def session(socket: WebSocket):
    """A socket must authenticate (its start message) within auth_timeout_s; until then it
    holds no session slot, only a place among the sockets waiting to start, where a new one
    evicts the oldest when they are full (idle keyless sockets cannot lock a door out)."""
    state: Service = socket.app.state.service
    if not _origin_allowed(socket, state):
        await socket.close(4403)
        return
    waiting = state.unauthenticated
    if len(waiting) >= state.config.max_sessions:  # the oldest waiting socket gives way
        waiting.pop(next(iter(waiting))).set()
    ticket, evicted = object(), asyncio.Event()
    waiting[ticket] = evicted
    counted = False
    try:
        await socket.accept()
        started = await _start(socket, state, evicted)
        waiting.pop(ticket, None)
        if state.sessions >= state.config.max_sessions:
            await socket.close(1013, "too many sessions: try again later")
            return
        state.sessions += 1
        counted = True
        await _run(socket, state, *started)
    except WebSocketDisconnect:
        pass
    except TimeoutError:
        await _fail(socket, 408, "no start message in time")
    except ServiceError as exc:
        await _fail(socket, exc.status, str(exc))
    except SiameseError as exc:
        await _fail(socket, status_of(exc), str(exc))
    finally:
        waiting.pop(ticket, None)
        state.sessions -= counted


async def _run(socket: WebSocket, state: Service, entry, person: str, template, mode: str
               ) -> None:
    config, engine = state.config, state.engine
    vote = engine.new_vote()
    check = LivenessCheck(LivenessConfig(mode, state.challenge), rng=state.challenge_rng)
    await socket.send_json({"type": "ready", "person": person,
                            "votes_needed": vote.needed, "window": vote.window,
                            "max_frames": config.session_frames,
                            "timeout_s": config.session_timeout_s, "liveness": mode})
    deadline = time.monotonic() + config.session_timeout_s
    frames, verified, reason, score = 0, False, "frame limit", None
    while frames < config.session_frames:
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout"
            break
        try:
            message = await asyncio.wait_for(socket.receive(), left)
        except TimeoutError:
            reason = "timeout"
            break
        received = time.monotonic()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = message.get("bytes")
        if not data:
            raise ServiceError(400, "frames are binary messages (JPEG or PNG)")
        if len(data) > config.max_frame_bytes:
            raise ServiceError(413, f"frame over {config.max_frame_bytes:,} bytes")
        try:
            decision, events = await engine.run(engine.decide_live, data, template, vote,
                                                frames, check, received)
        except ServiceError as exc:
            if exc.status not in (429, 503):
                raise
            await socket.send_json({"type": "frame", "frame": frames, "skipped": str(exc)})
            frames += 1
            continue
        frames += 1
        for event in events:
            await socket.send_json({"type": "challenge", "prompt": WORDS[event["challenge"]],
                                    **event})
        score = decision.score if decision.score is not None else score
        flags = list(decision.quality.flags) if decision.quality is not None else []
        await socket.send_json({
            "type": "frame", "frame": decision.frame, "face_found": decision.face_found,
            "score": None if decision.score is None else round(decision.score, 4),
            "match": decision.match, "votes": decision.votes,
            "scored_frames": decision.scored_frames, "verified": decision.verified,
            "quality_flags": flags, "liveness": check.state, "prompt": prompt_text(check)})
        if decision.verified:
            verified, reason = True, "votes reached, liveness passed"
            break
        if check.failed:
            reason = f"liveness failed: {check.reason}"
            break
    check.give_up("the session ended", time.monotonic())
    result = check.result()
    await state.record(entry.name, "session", person=person, score=score,
                       decision="verified" if verified else "rejected", liveness=result)
    await socket.send_json({"type": "final", "person": person, "verified": verified,
                            "frames": frames, "reason": reason, "liveness": result})
    await socket.close(1000)
