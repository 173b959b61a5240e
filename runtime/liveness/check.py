"""One session's liveness check: fed each frame's faces, it decides passed or failed, with why.

Modes: "off" (passes at once), "active" (a random challenge, runtime.liveness.challenge) and
"passive" (no prompts: the tracked face must show a non-planar motion of its own, the 3-D test,
plus the texture signal below). Both others hold identity: the same tracked face from the
frontal (matching) frame to the end, and no frame scored during the check below the verifier's
consistency limit (the score under which a face is taken for another person; low-resolution
frames of the right person do fall under the identity threshold itself, see docs/LIVENESS.md). A
second face, a jump of the tracked box (a swap), or the face missing for more than MAX_LOST
frames fails the check. The clock is the caller's (`now` in seconds), so a file, a camera or a
scripted source all run under the same deadlines.

The texture signal (runtime.liveness.passive, config `texture`) scores the tracked face on the
first TEXTURE_FRAMES frames from the frontal start; "refuse" fails a check that would pass when
their median is under the model's threshold, "report" only puts the median in the signals.
With the signal on, `update` needs each frame's image; a missing or broken model file is a
ModelError when the check is made (turn the signal off to run without it).
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

import numpy as np
from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.challenge import (
    HOLD_FRAMES,
    ChallengeConfig,
    draw_actions,
    motion,
    wrong_way,
)
from siamese.runtime.liveness.continuity import RAMP_FRAMES, MotionTrack
from siamese.runtime.liveness.passive import TextureScorer, load_texture_model
from siamese.runtime.liveness.planarity import naive_yaw, nose_offset
from siamese.runtime.vision.detector import Face, box_iou

MODES = ("off", "passive", "active")
TEXTURE_MODES = ("off", "report", "refuse")
DEFAULT_TEXTURE = "refuse"
TEXTURE_FRAMES = 10  # frames scored by the texture model, from the frontal start
MAX_LOST = 5  # consecutive frames without the tracked face before the check fails
SECOND_FACE_AREA = 0.25  # a second face this large (vs. the tracked one) fails the check
MIN_IOU = 0.3  # the tracked box's overlap with the last one; less is a swap or a jump
FRONTAL_YAW = 0.15  # |naive yaw| of the frame the plane is fitted to
RETURNED = 0.15  # nose offset under which the head is back to frontal after a prompt


@dataclass(frozen=True)
class LivenessConfig:
    mode: str = "off"
    challenge: ChallengeConfig = field(default_factory=ChallengeConfig)
    texture: str = DEFAULT_TEXTURE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"liveness must be one of {', '.join(MODES)}, not {self.mode!r}")
        if self.texture not in TEXTURE_MODES:
            raise ConfigError(f"texture must be one of {', '.join(TEXTURE_MODES)}, not "
                              f"{self.texture!r}")
        if not isinstance(self.challenge, ChallengeConfig):
            raise ConfigError(f"challenge must be a ChallengeConfig, not {self.challenge!r}")


def check_mode_for_still(mode: str) -> str | None:
    """The refusal for a still image under `mode`, or None when liveness is off."""
    if mode == "off":
        return None
    return f"a still image cannot prove liveness (--liveness {mode}): use a camera or video"


class LivenessCheck:
    """The liveness state of one session; `update` once per frame, then read `state`.

    `texture` replaces the packaged texture model (a test's stub, another file's model); it is
    used only when the config's mode and texture are not "off".
    """

    def __init__(self, config: LivenessConfig, rng: random.Random | None = None,
                 texture: TextureScorer | None = None) -> None:
        self.config = config
        used = config.mode != "off" and config.texture != "off"
        self.texture = (texture or load_texture_model()) if used else None
        self.texture_scores: list[float] = []
        self.rng = rng or random.SystemRandom()
        self.actions = draw_actions(config.challenge, self.rng) if config.mode == "active" \
            else []
        self.state = "passed" if config.mode == "off" else "frontal"
        self.reason: str | None = None
        self.step = 0
        self.deadline: float | None = None
        self.started: float | None = None
        self.decided: float | None = None
        self.frontal: np.ndarray | None = None
        self.box: np.ndarray | None = None
        self.lost = 0
        self.returned = False  # back near frontal since the latest prompt
        self.prompt_at: float | None = None  # when the next prompt is due (camera's clock)
        self.track = MotionTrack()
        self.held = 0  # consecutive frames performing the asked motion
        self.max_offset = 0.0
        self.step_offsets: list[float] = []
        self.best = 0.0

    @property
    def passed(self) -> bool:
        return self.state == "passed"

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    @property
    def done(self) -> bool:
        return self.state in ("passed", "failed")

    def update(self, faces: list[Face], scored: bool, match: bool, now: float,
               other_person: bool = False, image: np.ndarray | None = None) -> list[dict]:
        """Take one frame: every face detected in it (any order), whether its largest face was
        scored (passed the quality gate), matched (reached the identity threshold) and scored
        below the consistency limit (`other_person`), and the BGR frame the faces' boxes are in
        (`image`, needed by the texture signal). Returns prompt events."""
        if self.done:
            return []
        if self.started is None:
            self.started = now
        if self.deadline is not None and now > self.deadline:
            return self._fail(f"{self.actions[self.step]} not done within "
                              f"{self.config.challenge.step_s:g} s", now)
        faces = sorted(faces, key=lambda f: -f.area)
        if not faces:
            self.lost += 1
            if self.frontal is not None and self.lost > MAX_LOST:
                return self._fail("the face left the frame during the check", now)
            return []
        self.lost = 0
        face = faces[0]
        if len(faces) > 1 and faces[1].area >= SECOND_FACE_AREA * face.area:
            return self._fail(f"{len(faces)} faces in view: one person at a time", now)
        box = np.asarray(face.box, dtype=np.float64)
        if self.box is not None and box_iou(self.box[None], box[None])[0] < MIN_IOU:
            return self._fail("the tracked face jumped (a swap or a second person)", now)
        self.box = box
        if self.frontal is None:
            events = self._start(face, scored, match, now)
            if self.frontal is not None:
                self._score_texture(face, image)
            return events
        if scored and other_person:
            return self._fail("identity not held: a frame during the check scored as another "
                              "person", now)
        self._score_texture(face, image)
        return self._advance(face, now)

    def _score_texture(self, face: Face, image: np.ndarray | None) -> None:
        if self.texture is None or len(self.texture_scores) >= TEXTURE_FRAMES:
            return
        if image is None:
            raise ValueError("the texture signal needs each frame's image: update(..., image=)")
        self.texture_scores.append(self.texture.score(image, face.box))

    def _texture_refusal(self) -> str | None:
        if self.config.texture != "refuse" or not self.texture_scores:
            return None
        score = statistics.median(self.texture_scores)
        if score >= self.texture.threshold:
            return None
        return (f"the texture check scored the face as a recapture ({score:.2f} < "
                f"{self.texture.threshold:g})")

    def _start(self, face: Face, scored: bool, match: bool, now: float) -> list[dict]:
        if not (scored and match and abs(naive_yaw(face.landmarks)) <= FRONTAL_YAW):
            self.box = None  # nothing is tracked until a frontal, matching face
            return []
        self.frontal = np.asarray(face.landmarks, dtype=np.float64)
        self.state = "checking"
        return self._prompt(now)

    @property
    def asked(self) -> str | None:
        """The motion prompted now, or None (no prompt yet, or none due)."""
        if self.state != "checking" or not self.actions or self.deadline is None:
            return None
        return self.actions[self.step]

    def _prompt(self, now: float) -> list[dict]:
        """Schedule the next prompt a random moment from now (a recording cannot know when)."""
        if self.config.mode != "active":
            return []
        low, high = self.config.challenge.prompt_delay_s
        self.prompt_at = now + self.rng.uniform(low, high)
        self.deadline = None
        return self._due(now)

    def _due(self, now: float) -> list[dict]:
        if self.prompt_at is None or now < self.prompt_at:
            return []
        self.prompt_at = None
        self.deadline = now + self.config.challenge.step_s
        self.returned = False
        return [{"challenge": self.actions[self.step], "step": self.step + 1,
                 "of": len(self.actions), "deadline_s": self.config.challenge.step_s,
                 "mirrored": self.config.challenge.mirrored}]

    def _threshold(self) -> float:
        """The nose offset the current motion must reach (the smaller one when unprompted)."""
        challenge = self.config.challenge
        action = self.asked
        if action is None:
            return min(challenge.turn_offset, challenge.nod_offset)
        return challenge.nod_offset if action == "nod" else challenge.turn_offset

    def _advance(self, face: Face, now: float) -> list[dict]:
        events = self._due(now)
        offset = nose_offset(self.frontal, face.landmarks)
        if offset is None:
            return events
        self.max_offset = max(self.max_offset, offset.size)
        jumped = self.track.add(now, offset, RETURNED, self._threshold())
        if jumped is not None:
            return self._fail(jumped, now)
        done = motion(offset, self.config.challenge)
        if self.config.mode == "passive":
            self.held = self.held + 1 if done is not None else 0
            if self.held >= HOLD_FRAMES and self.track.ramp >= RAMP_FRAMES \
                    and self.track.settled:
                self._pass(now)
            return events
        action = self.asked
        self.returned |= offset.size < RETURNED
        if action is None:  # waiting for the prompt: nothing counts yet
            self.held = 0
            return events
        self.best = max(self.best, offset.size)
        if self.returned and wrong_way(action, offset, self.config.challenge):
            return self._fail(f"asked to {action}, the head turned the other way", now)
        counted = done == action and self.returned and self.track.ramp >= RAMP_FRAMES
        self.held = self.held + 1 if counted else 0
        if self.held < HOLD_FRAMES or not self.track.settled:
            return events
        self.step_offsets.append(round(self.best, 4))
        self.best, self.held = 0.0, 0
        self.step += 1
        if self.step == len(self.actions):
            self._pass(now)
            return []
        return self._prompt(now)

    def _pass(self, now: float) -> None:
        reason = self._texture_refusal()
        if reason is not None:
            self._fail(reason, now)
            return
        self.state, self.decided, self.deadline = "passed", now, None

    def _fail(self, reason: str, now: float) -> list[dict]:
        self.state, self.reason, self.decided, self.deadline = "failed", reason, now, None
        return []

    def give_up(self, reason: str, now: float) -> None:
        """End an undecided check (the source ended, the session timed out)."""
        if not self.done:
            if self.frontal is None:
                reason = f"{reason} before a frontal face matching the reference was seen"
            self._fail(reason, now)

    def result(self) -> dict:
        """The final JSON line's liveness part."""
        if self.config.mode == "off":
            return {"mode": "off"}
        out = {"mode": self.config.mode, "result": self.state, "reason": self.reason}
        out["signals"] = {"planarity_max_offset": round(self.max_offset, 4),
                          "continuity_max_step": round(self.track.max_step, 4),
                          "continuity_jumps": self.track.jumps}
        if self.texture is not None:
            out["signals"]["texture_score"] = round(statistics.median(
                self.texture_scores), 4) if self.texture_scores else None
            out["signals"]["texture_frames"] = len(self.texture_scores)
            out["signals"]["texture_threshold"] = self.texture.threshold
            out["signals"]["texture"] = self.config.texture
        if self.config.mode == "active":
            out["challenge"] = self.actions
            out["completed"] = self.step
            out["step_offsets"] = self.step_offsets
        if self.started is not None and self.decided is not None:
            out["time_to_decision_s"] = round(self.decided - self.started, 3)
        return out
