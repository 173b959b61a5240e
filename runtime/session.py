"""A verification session: one person, one frame source, one deadline on the caller's clock.

The CLI and kiosk apps share this logic, so an app gets the CLI's guarantees: the deadline
holds whatever the source does (a stalled stream, a dead camera, a slow file), a dead reader
is an error rather than a wait, and the outcome is one of verified / not_verified / timeout.

>>> with open_source("0") as source:
...     session = VerificationSession(verifier, template, source, timeout=10)
...     for decision in session:
...         print(decision.score)
...     session.outcome
'verified'
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.check import LivenessCheck, LivenessConfig
from siamese.runtime.liveness.policy import resolve_policy
from siamese.runtime.vision.sources import Frame, ThreadedSource

if TYPE_CHECKING:
    from siamese.runtime.storage.references import Template
    from siamese.runtime.verifier import Decision, Verifier

POLL_S = 0.25  # longest wait for one frame before the deadline is checked again
MAX_TIMEOUT_S = 86_400.0


LIVE_TIMEOUT_S = 30.0  # the commands' default for cameras and streams


def timeout_for(source: ThreadedSource, timeout: float | None) -> float | None:
    """`timeout`, or LIVE_TIMEOUT_S for a live source when none is given."""
    return LIVE_TIMEOUT_S if timeout is None and source.live else timeout


def check_timeout(timeout: float | None) -> float | None:
    """`timeout` when it is None or a finite number of seconds in (0, 86400]."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT_S:
        raise ConfigError(f"timeout must be a finite number of seconds in (0, {MAX_TIMEOUT_S:g}]"
                          f", not {timeout!r}")
    return float(timeout)


class TimedFrames:
    """The frames of `source` until it ends or `timeout` seconds pass on the caller's clock;
    `timed_out` says which. Waits at most POLL_S at a time, so no source can hold it."""

    def __init__(self, source: ThreadedSource, timeout: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = check_timeout(timeout)
        if self.timeout is None and source.live:
            raise ConfigError("a live camera or stream needs a timeout")
        self.source, self.clock = source, clock
        self.timed_out = False

    def __iter__(self) -> Iterator[Frame]:
        deadline = math.inf if self.timeout is None else self.clock() + self.timeout
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                self.timed_out = True
                return
            frame = self.source.read(min(remaining, POLL_S))
            if frame is not None:
                yield frame
            elif self.source.finished:
                return


def liveness_step(check: LivenessCheck, decision: Decision, image: np.ndarray, now: float,
                  identity_floor: float) -> list[dict]:
    """Feed one decided frame (taken at `now` on the camera's clock) to `check`; returns its
    prompt events. The CLI's session and the service's WebSocket both decide through this."""
    scored = decision.quality is not None and decision.quality.ok
    # a screened score is on the cascade screen's scale: below its band is another person
    other = (scored and not decision.match) if decision.screened else (
        decision.score is not None and decision.score < identity_floor)
    return check.update(decision.faces, scored, decision.match, now, other, image)


class VerificationSession:
    """Decisions for the frames of `source` until verified, the source ends, or `timeout`.

    Iterate it for one Decision per frame (K-of-N voting over scored frames); afterwards
    `outcome` is "verified", "not_verified" (the source ended) or "timeout", and `verified`
    says whether the door may open. `timeout` None waits for a finite source to end; a live
    source then needs one (ConfigError otherwise). With `liveness` (runtime.liveness) verified
    needs the vote AND the liveness check; `events` holds its prompts for the caller to show,
    `liveness.result()` its outcome. Without it a live source runs the active check (a door
    must not open for a photo), a recorded one none. The check runs on the frames' own
    timestamps (the camera's clock); `clock` bounds the session (`timeout`).
    """

    def __init__(self, verifier: Verifier, template: Template, source: ThreadedSource,
                 timeout: float | None, clock: Callable[[], float] = time.monotonic,
                 liveness: LivenessConfig | None = None) -> None:
        self.frames = TimedFrames(source, timeout, clock)
        self.clock = clock
        if liveness is None:
            liveness = LivenessConfig(resolve_policy(None, None, source.live).mode)
        self.liveness = LivenessCheck(liveness)
        self.identity_floor = verifier.consistency.pair_limit
        self.events: list[dict] = []
        self.verifier, self.template, self.source = verifier, template, source
        self.outcome: str | None = None
        self.frame: Frame | None = None  # the frame of the latest decision
        self.rejected: Counter[str] = Counter()  # quality flags of faces not counted
        self.largest_face_px = 0.0
        self.scored_frames = 0

    @property
    def verified(self) -> bool:
        return self.outcome == "verified"

    def __iter__(self) -> Iterator[Decision]:
        self.outcome = "not_verified"
        vote = self.verifier.new_vote()
        for frame in self.frames:
            self.frame = frame
            decision = self.verifier.decide(frame.image, self.template, vote, frame.index)
            self.scored_frames = decision.scored_frames
            if decision.quality is not None:
                self.rejected.update(decision.quality.flags)
                self.largest_face_px = max(self.largest_face_px, decision.quality.face_px)
            self.events.extend(liveness_step(self.liveness, decision, frame.image,
                                             frame.timestamp, self.identity_floor))
            decision.verified = decision.verified and self.liveness.passed
            yield decision
            if decision.verified:
                self.outcome = "verified"
                return
            if self.liveness.failed:
                return
        if self.frames.timed_out:
            self.outcome = "timeout"
        last = self.frame.timestamp if self.frame is not None else 0.0
        self.liveness.give_up("timed out" if self.frames.timed_out else "the source ended",
                              last)

    def hint(self) -> str | None:
        """Why nothing could be decided, when faces were seen but all were too small."""
        if self.scored_frames or not self.rejected["small"]:
            return None
        return small_face_hint(self.largest_face_px, self.verifier.config.quality.min_face_px)


def small_face_hint(largest_px: float, min_face_px: float) -> str:
    return (f"faces were smaller than --min-face {min_face_px:g} px (largest "
            f"{largest_px:.0f} px): come closer to the camera, or lower --min-face")
