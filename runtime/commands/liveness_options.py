"""The --liveness option set shared by siamese-verify and siamese-identify."""

from __future__ import annotations

import functools
import os

import click
from siamese.runtime.liveness.challenge import ChallengeConfig
from siamese.runtime.liveness.check import DEFAULT_TEXTURE, MODES, TEXTURE_MODES
from siamese.runtime.liveness.policy import SITE_ENV, LivenessRequest, check_site


def liveness_options(command):
    """Add --liveness, --override-site-liveness, --mirrored, --challenge-steps, --step-timeout
    and --texture; the command receives them, with the site setting (env SIAMESE_LIVENESS,
    checked here: an empty or unknown value exits 2), as one `liveness` LivenessRequest."""

    @functools.wraps(command)
    def wrapper(*args, liveness_mode, override_site, mirrored, challenge_steps, step_timeout,
                texture, **kwargs):
        request = LivenessRequest(
            liveness_mode, check_site(os.environ.get(SITE_ENV)), override_site,
            ChallengeConfig(steps=challenge_steps, step_s=step_timeout, mirrored=mirrored),
            texture)
        return command(*args, liveness=request, **kwargs)

    options = [
        click.option("--liveness", "liveness_mode", type=click.Choice(MODES), default=None,
                     help="Presentation-attack check (docs/LIVENESS.md): active = random head "
                          "motions prompted as JSON events (a door with a screen); passive = "
                          "the 3-D test on unprompted motion; off = identity only. Default: "
                          "active for a camera or stream, off for files and images, or the "
                          "site setting [env SIAMESE_LIVENESS], which a weaker flag cannot "
                          "lower without --override-site-liveness."),
        click.option("--override-site-liveness", "override_site", is_flag=True,
                     help="Run a --liveness weaker than the site setting (recorded in the "
                          "final line)."),
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


def warn_if_off(mode: str, live: bool) -> None:
    """One line on stderr when a live source runs without liveness."""
    if live and mode == "off":
        click.echo("warning: liveness is off on a live source: a photo held up to the camera "
                   "can pass", err=True)
