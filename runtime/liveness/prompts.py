"""Words for the active challenge's prompts, as a kiosk screen or the --show window says them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siamese.runtime.liveness.check import LivenessCheck

WORDS = {"turn_left": "turn your head to your LEFT", "turn_right": "turn your head to your RIGHT",
         "nod": "nod your head"}


def prompt_text(check: LivenessCheck) -> str | None:
    """What the person should do now, or None when nothing is asked."""
    if check.config.mode == "off":
        return None
    if check.state == "frontal":
        return "look straight at the camera"
    if check.state == "checking" and check.config.mode == "active":
        if check.asked is None:
            return "keep looking at the camera"
        return f"{check.step + 1}/{len(check.actions)}: {WORDS[check.asked]}"
    if check.state == "checking":
        return "move your head a little"
    return f"liveness {check.state}" + (f": {check.reason}" if check.reason else "")
