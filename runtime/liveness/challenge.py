"""The active mode's challenge: k head motions drawn at random, each with a deadline.

Directions are the subject's own: "turn_left" is a turn to the person's left. An unmirrored
camera (frames as the sensor delivers them, the default) sees that turn move the nose towards
the image's right; a mirrored one (a selfie preview) towards the left; `mirrored` says which.
A motion counts only when the nose leaves the landmark plane (planarity.nose_offset) by the
action's threshold in the asked direction, so a flat instrument, tilted however, cannot do it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.planarity import Offset

ACTIONS = ("turn_left", "turn_right", "nod")
# Thresholds in frontal eye distances (docs/LIVENESS.md): a live turn reaches 0.65 (p90); the
# live noise floor is 0.02 (p90) for a still head; simulated flat instruments tilted to 55 deg
# reached 0.32 on frames counted at an earlier 0.30 threshold (one screen passed), so a motion
# now needs TURN_OFFSET on HOLD_FRAMES consecutive frames.
TURN_OFFSET = 0.45
NOD_OFFSET = 0.40  # no bona fide nod clip: not measured on live nods
HOLD_FRAMES = 2
WRONG_WAY = 0.30  # a turn this far the other way fails the challenge (a replayed clip)
PROMPT_DELAY_S = (0.3, 1.2)  # each prompt comes a random moment after the head is settled


@dataclass(frozen=True)
class ChallengeConfig:
    actions: tuple[str, ...] = ACTIONS
    steps: int = 2  # k
    step_s: float = 5.0  # the deadline of each action, from its prompt
    mirrored: bool = False
    turn_offset: float = TURN_OFFSET
    nod_offset: float = NOD_OFFSET
    prompt_delay_s: tuple[float, float] = PROMPT_DELAY_S

    def __post_init__(self) -> None:
        unknown = set(self.actions) - set(ACTIONS)
        if unknown or not self.actions:
            raise ConfigError(f"challenge actions must be among {', '.join(ACTIONS)}, not "
                              f"{sorted(unknown) or 'none'}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) \
                or not 1 <= self.steps <= 10:
            raise ConfigError(f"challenge steps must be an integer from 1 to 10, not "
                              f"{self.steps!r}")
        _check_range("a challenge step's deadline (s)", self.step_s, 0.5, 60)
        if not isinstance(self.mirrored, bool):
            raise ConfigError(f"mirrored must be True or False, not {self.mirrored!r}")
        # a threshold under the live noise floor of a still head would pass a still photo
        _check_range("the turn threshold", self.turn_offset, 0.2, 2.0)
        _check_range("the nod threshold", self.nod_offset, 0.2, 2.0)
        delay = self.prompt_delay_s
        if not isinstance(delay, tuple) or len(delay) != 2:
            raise ConfigError(f"prompt_delay_s must be a (low, high) pair, not {delay!r}")
        _check_range("the shortest prompt delay (s)", delay[0], 0.0, 10.0)
        _check_range("the longest prompt delay (s)", delay[1], delay[0], 10.0)


def _check_range(what: str, value: object, low: float, high: float) -> None:
    """ConfigError unless `value` is a finite real number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise ConfigError(f"{what} must be a number in [{low:g}, {high:g}], not {value!r}")


def draw_actions(config: ChallengeConfig, rng: random.Random) -> list[str]:
    """k actions, no action twice in a row (when more than one is allowed)."""
    drawn: list[str] = []
    for _ in range(config.steps):
        choices = [a for a in config.actions if not drawn or a != drawn[-1]] or list(
            config.actions)
        drawn.append(rng.choice(choices))
    return drawn


def motion(offset: Offset, config: ChallengeConfig) -> str | None:
    """The action `offset` performs ("turn_left", "turn_right", "nod") or None."""
    dx = -offset.dx if config.mirrored else offset.dx
    if abs(dx) >= config.turn_offset and abs(dx) >= abs(offset.dy):
        return "turn_left" if dx > 0 else "turn_right"
    if abs(offset.dy) >= config.nod_offset and abs(offset.dy) > abs(dx):
        return "nod"
    return None


def wrong_way(action: str, offset: Offset, config: ChallengeConfig) -> bool:
    """True when `offset` is a clear turn opposite to the asked turn."""
    if action not in ("turn_left", "turn_right"):
        return False
    dx = -offset.dx if config.mirrored else offset.dx
    return (dx <= -WRONG_WAY) if action == "turn_left" else (dx >= WRONG_WAY)
