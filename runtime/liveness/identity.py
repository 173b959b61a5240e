"""1:N identification with a liveness check: the largest face must pass it holding one name.

The core's identify_faces and the detector are passed in (this layer sits below the core).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from siamese.runtime.liveness.check import LivenessCheck, LivenessConfig


@dataclass
class LiveIdentification:
    check: LivenessCheck
    name: str | None = None  # the identity held through the check

    @property
    def identified(self) -> bool:
        return self.check.passed and self.name is not None

    def final(self) -> dict:
        return {"time": round(time.time(), 3), "final": True,
                "decision": "identified" if self.identified else "not_identified",
                "identity": self.name if self.identified else None,
                "liveness": self.check.result()}


def identify_live(detect: Callable, identify: Callable, frames: Iterable, config: LivenessConfig,
                  on_rows: Callable, on_event: Callable, unknown: str = "unknown",
                  floor: float = -float("inf")
                  ) -> LiveIdentification:
    """Run `config`'s check over `frames` (runtime.session.TimedFrames): `detect(image)` gives
    the faces, `identify(image, faces)` their identities, largest first. The largest face must
    be named, keep the name it had when the check started and never score under `floor` (the
    verifier's consistency limit) against it; `on_rows(frame, identities)`
    and `on_event(prompt)` report as it goes."""
    live = LiveIdentification(LivenessCheck(config))
    last = 0.0  # the latest frame's time on the camera's clock
    for frame in frames:
        last = frame.timestamp
        faces = detect(frame.image)
        found = identify(frame.image, faces)
        on_rows(frame.index, found)
        top = found[0] if found else None
        scored = top is not None and not top.quality_flags
        named = top is not None and top.identity != unknown
        match = named and (live.name is None or top.identity == live.name)
        held = None if top is None or live.name is None else next(
            (m.score for m in top.candidates if m.name == live.name), None)
        other = top is not None and live.name is not None and (
            (named and top.identity != live.name) or held is None or held < floor)
        for event in live.check.update(faces, scored, match, frame.timestamp, other,
                                       frame.image):
            on_event(event)
        if live.name is None and live.check.state != "frontal" and named:
            live.name = top.identity
        if live.check.done:
            return live
    live.check.give_up("timed out" if frames.timed_out
                       else "the source ended", last)
    return live
