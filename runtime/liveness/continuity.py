"""Continuity of motion: a live head passes through every pose between two; photos jump.

The 3-D test (planarity) scores each frame against the frontal one, so a cut from a frontal
photo of the enrolled person to a photo of them with the head turned reads as a turn. What a
photo sequence lacks is continuity: its pose is held, jumps in one frame, and is held again. A
motion counts only when the nose offset's path (in frontal eye distances, on the camera's clock)
has, since the last prompt:

- no isolated jump: a frame-to-frame change over JUMP while the HOLD changes on each side of
  it are all under ISOLATED times it (hold, jump, hold: a swapped, flipped or injected photo;
  landmark noise on a blurred frame, a detector glitch out and back, or a turn's own changes
  are not held still around it), between poses of which one at least is away from frontal
  (noise about a still frontal head is no turn). A motion is counted only once it has settled;
- no change faster than MAX_SPEED eye distances per second (at least one frame's STEP_FLOOR);
- a ramp: at least RAMP_FRAMES frames strictly between the frontal band and the action's
  threshold on the way out (a turn goes through the poses between).

Live noise floor and margins: docs/LIVENESS.md ("Photo sequences").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from siamese.runtime.liveness.planarity import Offset

JUMP = 0.12  # frontal eye distances: smaller frame-to-frame changes are never a cut
ISOLATED = 0.35  # a jump whose neighbouring changes are all under this fraction is a cut
HOLD = 2  # changes looked at on each side of a jump
MAX_SPEED = 5.0  # eye distances per second (a live turn measured at 2.6, docs/LIVENESS.md)
STEP_FLOOR = 0.3  # one frame may always change this much, whatever the frame rate
RAMP_FRAMES = 2  # frames between the frontal band and the threshold, on the way out
MIN_DT = 1 / 120  # seconds: timestamps closer than this are taken as this far apart


@dataclass
class MotionTrack:
    """The nose offset's path since the check's frontal frame; `add` once per frame."""

    times: list[float] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)
    ramp: int = 0  # frames in the ramp band since the head was last back near frontal
    jumps: int = 0  # isolated jumps seen (the signal's count, for the result)
    max_step: float = 0.0

    def add(self, now: float, offset: Offset, frontal_band: float, threshold: float
            ) -> str | None:
        """Take one frame's offset; the refusal when the path is not continuous, else None."""
        if self.points:
            step = _distance(self.points[-1], (offset.dx, offset.dy))
            dt = max(now - self.times[-1], MIN_DT)
            self.max_step = max(self.max_step, step)
            if step > max(STEP_FLOOR, MAX_SPEED * dt):
                return (f"the head's pose jumped by {step:.2f} eye distances in {dt:.3f} s "
                        f"(a cut or a swapped photo)")
        self.times.append(now)
        self.points.append((offset.dx, offset.dy))
        if self._isolated_jump(frontal_band):
            self.jumps += 1
            return "the head's pose jumped between two still poses (a cut or a swapped photo)"
        if offset.size < frontal_band:
            self.ramp = 0
        elif offset.size < threshold:
            self.ramp += 1
        return None

    @property
    def settled(self) -> bool:
        """True when none of the last HOLD changes could still turn out to be a cut (a jump
        after a hold whose following frames are not all in yet)."""
        steps = self._steps(2 * HOLD)
        return not any(_held_before(steps[:i], steps[i]) for i in range(HOLD, len(steps)))

    def _steps(self, count: int) -> list[float]:
        points = self.points[-count - 1:]
        return [_distance(a, b) for a, b in zip(points, points[1:], strict=False)]

    def _isolated_jump(self, frontal_band: float) -> bool:
        """The change HOLD frames back: a jump between two holds, off the frontal band?"""
        steps = self._steps(2 * HOLD + 1)
        if len(steps) < 2 * HOLD + 1:
            return False
        middle = steps[HOLD]
        ends = self.points[-HOLD - 2], self.points[-HOLD - 1]
        if max(_distance(end, (0.0, 0.0)) for end in ends) < frontal_band:
            return False
        return _held_before(steps[:HOLD], middle) and max(steps[HOLD + 1:]) < ISOLATED * middle


def _held_before(before: list[float], step: float) -> bool:
    """A jump over JUMP after HOLD changes that were all under ISOLATED times it."""
    return step > JUMP and len(before) >= HOLD and max(before[-HOLD:]) < ISOLATED * step


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5)
