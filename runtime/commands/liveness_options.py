"""The --liveness option set shared by siamese-verify and siamese-identify."""

from __future__ import annotations

import functools

import click
from siamese.runtime.liveness.challenge import ChallengeConfig
from siamese.runtime.liveness.check import DEFAULT_TEXTURE, MODES, TEXTURE_MODES, LivenessConfig


def liveness_options(command):
    """Add --liveness, --mirrored, --challenge-steps, --step-timeout and --texture; the command
    receives them as one `liveness` LivenessConfig."""

    @functools.wraps(command)
    def wrapper(*args, liveness_mode, mirrored, challenge_steps, step_timeout, texture,
                **kwargs):
        config = LivenessConfig(liveness_mode, ChallengeConfig(
            steps=challenge_steps, step_s=step_timeout, mirrored=mirrored), texture)
        return command(*args, liveness=config, **kwargs)

    options = [
        click.option("--liveness", "liveness_mode", type=click.Choice(MODES), default="off",
                     show_default=True, envvar="SIAMESE_LIVENESS",
                     help="Presentation-attack check (docs/LIVENESS.md): active = random head "
                          "motions prompted as JSON events (a door with a screen); passive = "
                          "the 3-D test on unprompted motion; off = identity only "
                          "[env SIAMESE_LIVENESS]."),
        click.option("--mirrored", is_flag=True,
                     help="The frames are mirrored (a selfie view): left and right swap."),
        click.option("--challenge-steps", type=click.IntRange(1, 10), default=2,
                     show_default=True, help="Head motions in an active challenge."),
        click.option("--step-timeout", type=click.FloatRange(0.5, 60), default=5.0,
                     show_default=True, help="Seconds allowed for each challenge motion."),
        click.option("--texture", type=click.Choice(TEXTURE_MODES), default=DEFAULT_TEXTURE,
                     show_default=True,
                     help="The passive texture signal (MiniFASNet) with --liveness: refuse = "
                          "fail a face it scores as a print or screen; report = only put its "
                          "score in the final line; off = do not run it."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
