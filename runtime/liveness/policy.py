"""Which liveness mode runs: the command's flag, the site's setting and the source's kind.

The site setting (env SIAMESE_LIVENESS, or `siamese-serve run --liveness`) is a floor: a flag
weaker than it (off < passive < active) is refused unless the operator overrides it
explicitly, and the override is recorded in the output. Without a flag, live sources (a camera
or a stream: what a door sees) run `active`; recorded files and still images run the site's
setting or `off` (a file is an offline check, not a presentation: a still cannot prove
liveness, and a video file cannot answer a prompt).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.challenge import ChallengeConfig
from siamese.runtime.liveness.check import DEFAULT_TEXTURE, MODES, LivenessConfig

log = logging.getLogger(__name__)

SITE_ENV = "SIAMESE_LIVENESS"
STRENGTH = {"off": 0, "passive": 1, "active": 2}
LIVE_DEFAULT = "active"
RECORDED_DEFAULT = "off"


@dataclass(frozen=True)
class LivenessPolicy:
    """The mode that runs, the site setting it was held against, and whether an explicit
    override let it run weaker than that setting."""

    mode: str
    site: str | None = None
    override: bool = False

    def to_dict(self) -> dict:
        """What the final line records besides the check's own result."""
        out: dict = {}
        if self.site is not None:
            out["site"] = self.site
        if self.override:
            out["override"] = True
        return out


def check_site(site: str | None) -> str | None:
    """The site setting, or None when unset; an empty or unknown value is a ConfigError (a
    typo must not turn a door's liveness off)."""
    if site is None:
        return None
    if site not in MODES:
        raise ConfigError(f"{SITE_ENV}={site!r} is not a liveness mode (one of "
                          f"{', '.join(MODES)}); unset it for the defaults")
    return site


def resolve_policy(flag: str | None, site: str | None, live: bool, override: bool = False
                   ) -> LivenessPolicy:
    """The mode for a source: `flag` (None: not given), the raw site setting, `live` (a
    camera or stream). ConfigError for a bad site value or a flag weaker than the site's
    without `override`."""
    site = check_site(site)
    if flag is not None and flag not in MODES:
        raise ConfigError(f"liveness must be one of {', '.join(MODES)}, not {flag!r}")
    if flag is None:
        return LivenessPolicy(site or (LIVE_DEFAULT if live else RECORDED_DEFAULT), site)
    weaker = site is not None and STRENGTH[flag] < STRENGTH[site]
    if weaker and not override:
        raise ConfigError(f"--liveness {flag} is weaker than the site setting {SITE_ENV}="
                          f"{site}: add --override-site-liveness to run it anyway (the final "
                          f"line records the override)")
    return LivenessPolicy(flag, site, weaker)


@dataclass(frozen=True)
class LivenessRequest:
    """What a command was asked for; `resolve` once the source's kind is known."""

    flag: str | None = None
    site: str | None = None
    override: bool = False
    challenge: ChallengeConfig = ChallengeConfig()
    texture: str = DEFAULT_TEXTURE

    def resolve(self, live: bool) -> tuple[LivenessConfig, LivenessPolicy]:
        policy = resolve_policy(self.flag, self.site, live, self.override)
        return LivenessConfig(policy.mode, self.challenge, self.texture), policy
