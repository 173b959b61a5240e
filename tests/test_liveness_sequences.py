"""Photo sequences cannot fake a head turn; the site's liveness setting cannot be weakened.

Faces are the synthetic 3-D head of test_liveness (five landmarks, projected), so every case
is exact: a live turn moves through every pose between, a photo sequence holds a pose, jumps,
and holds the next.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.challenge import ChallengeConfig
from siamese.runtime.liveness.check import LivenessCheck, LivenessConfig
from siamese.runtime.liveness.policy import resolve_policy

from tests.test_liveness import HEAD, active, face, feed, landmarks, perform

ROOT = Path(__file__).resolve().parents[1]
YAW = {"turn_left": 50, "turn_right": -50}


def prompted(check: LivenessCheck) -> None:
    """Frontal frames until the first prompt."""
    feed(check, [[face(landmarks(HEAD))]])
    assert check.asked is not None


def photos(action: str, poses: int, hold: int) -> list:
    """`poses` photos from frontal to the asked turn, each held `hold` frames, and back."""
    yaws = np.linspace(0, YAW[action], poses)
    out = [[face(landmarks(HEAD, yaw))] for yaw in yaws for _ in range(hold)]
    return out + out[::-1]


@pytest.mark.parametrize("poses, hold", [(2, 5), (3, 4), (4, 3), (5, 3), (3, 1)])
def test_a_sequence_of_photos_answering_the_prompt_never_passes(poses, hold):
    check = active(steps=1, actions=("turn_left", "turn_right"))
    prompted(check)
    feed(check, photos(check.asked, poses, hold), start=0.1)
    assert not check.passed
    assert check.failed and "jumped" in check.reason, check.reason


def test_a_cut_between_two_photos_fails_in_passive_mode_too():
    check = LivenessCheck(LivenessConfig("passive", texture="off"), random.Random(1))
    feed(check, [[face(landmarks(HEAD))]] * 5 + [[face(landmarks(HEAD, 50))]] * 5)
    assert check.failed and "jumped" in check.reason


@pytest.mark.parametrize("fps", [10.0, 15.0, 30.0])
def test_a_live_turn_passes_at_the_camera_rates_a_door_sees(fps):
    check = active(steps=1, actions=("turn_left", "turn_right"))
    prompted(check)
    frames = max(4, round(0.5 * fps))  # half a second out, half back
    feed(check, perform(check.asked, frames=frames), fps=fps, start=0.1)
    assert check.passed, check.reason
    assert check.result()["signals"]["continuity_jumps"] == 0


def test_a_detector_glitch_out_and_back_is_not_a_cut():
    check = active(steps=1, actions=("turn_left",))
    prompted(check)
    still = [[face(landmarks(HEAD))]] * 4
    glitch = [[face(landmarks(HEAD, 15))]]
    feed(check, still + glitch + still, start=0.1)
    assert not check.failed, check.reason
    feed(check, perform("turn_left"), start=1.0)
    assert check.passed, check.reason


def test_the_prompt_comes_at_a_random_moment_and_earlier_motion_does_not_count():
    config = LivenessConfig("active", ChallengeConfig(steps=1, actions=("turn_left",)),
                            texture="off")
    moments = set()
    for seed in range(8):
        check = LivenessCheck(config, random.Random(seed))
        events = []
        for number in range(40):
            events += check.update([face(landmarks(HEAD))], True, True, number / 15)
            if events:
                moments.add(number)
                break
        assert events and 0.3 <= check.deadline - 5.0 <= 1.2 + 1 / 15
    assert len(moments) > 3
    check = LivenessCheck(config, random.Random(0))
    feed(check, [[face(landmarks(HEAD))], *perform("turn_left")])  # turned before the prompt
    assert not check.passed


@pytest.mark.parametrize("field, value", [
    ("turn_offset", 0.0), ("turn_offset", math.nan), ("turn_offset", -0.5),
    ("nod_offset", -0.4), ("nod_offset", math.inf), ("step_s", math.nan),
    ("prompt_delay_s", (1.0, 0.5)), ("prompt_delay_s", (-1.0, 0.5)), ("mirrored", "yes"),
])
def test_every_challenge_field_is_range_checked(field, value):
    with pytest.raises(ConfigError):
        ChallengeConfig(**{field: value})
    with pytest.raises(ConfigError):
        LivenessConfig("active", challenge="turn")


@pytest.mark.parametrize("flag, site, live, override, mode, overridden", [
    (None, None, True, False, "active", False),
    (None, None, False, False, "off", False),
    (None, "passive", True, False, "passive", False),
    (None, "active", False, False, "active", False),
    ("active", "passive", True, False, "active", False),
    ("off", "active", True, True, "off", True),
    ("off", None, True, False, "off", False),
])
def test_the_policy_resolves_flag_site_and_source(flag, site, live, override, mode,
                                                  overridden):
    policy = resolve_policy(flag, site, live, override)
    assert (policy.mode, policy.override) == (mode, overridden)


@pytest.mark.parametrize("flag, site", [(None, ""), (None, "on"), ("off", "active"),
                                        ("passive", "active"), ("off", "passive")])
def test_a_bad_or_weakened_site_setting_is_refused(flag, site):
    with pytest.raises(ConfigError):
        resolve_policy(flag, site, live=True)


def _verify(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    command = [str(Path(sys.executable).with_name("siamese-verify")),
               "--ref", str(ROOT / "examples" / "Abdullah_Gul"), *args]
    environment = {k: v for k, v in os.environ.items() if k != "SIAMESE_LIVENESS"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**environment, **(env or {})})


@pytest.mark.parametrize("site", ["", "actve"])
def test_an_empty_or_unknown_site_setting_exits_2(site):
    result = _verify("--camera", str(ROOT / "examples" / "Abdullah_Gul.avi"),
                     env={"SIAMESE_LIVENESS": site})
    assert result.returncode == 2, result.stderr
    assert "SIAMESE_LIVENESS" in result.stderr and len(result.stderr.splitlines()) == 1


def test_a_flag_weaker_than_the_site_exits_2_unless_overridden_and_recorded():
    video = str(ROOT / "examples" / "Abdullah_Gul.avi")
    refused = _verify("--camera", video, "--liveness", "off", env={"SIAMESE_LIVENESS": "active"})
    assert refused.returncode == 2 and "--override-site-liveness" in refused.stderr
    allowed = _verify("--camera", video, "--liveness", "off", "--override-site-liveness",
                      env={"SIAMESE_LIVENESS": "active"})
    assert allowed.returncode == 0, allowed.stderr
    final = json.loads(allowed.stdout.splitlines()[-1])
    assert final["liveness"] == {"mode": "off", "site": "active", "override": True}


def test_the_site_setting_applies_to_a_recorded_video_without_a_flag():
    result = _verify("--camera", str(ROOT / "examples" / "Abdullah_Gul.avi"), "--texture", "off",
                     env={"SIAMESE_LIVENESS": "active"})
    assert result.returncode == 1  # a filmed photo cannot answer the challenge
    final = json.loads(result.stdout.splitlines()[-1])
    assert final["liveness"]["mode"] == "active" and final["liveness"]["site"] == "active"
