"""The liveness check: the 3-D planarity test, the active challenge and hostile sessions.

Faces are synthetic: five landmarks of a 3-D head model (or of a flat print of it) rotated and
projected through a pinhole camera, so every case is exact, fast and needs no data.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from siamese.runtime.consistency import ConsistencyRule
from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.challenge import TURN_OFFSET, ChallengeConfig, draw_actions, motion
from siamese.runtime.liveness.check import LivenessCheck, LivenessConfig
from siamese.runtime.liveness.planarity import nose_offset
from siamese.runtime.session import VerificationSession
from siamese.runtime.verifier import Decision, Vote
from siamese.runtime.vision.detector import Face
from siamese.runtime.vision.quality import Quality

ROOT = Path(__file__).resolve().parents[1]
# A head in eye distances: right eye, left eye, nose tip, right / left mouth corner (x right,
# y down, z away from the camera); the nose stands 0.6 in front of the eyes-mouth plane.
HEAD = np.array([[-0.5, 0, 0], [0.5, 0, 0], [0, 0.55, -0.6], [-0.42, 1.05, -0.05],
                 [0.42, 1.05, -0.05]])
PRINT = HEAD * np.array([1, 1, 0])  # the same face, flat


def rotation(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ ry @ rx


def landmarks(points: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
              distance: float = 8.0, shift: tuple[float, float] = (0, 0)) -> np.ndarray:
    """Project `points` turned about a pivot 1 eye distance behind the face. A positive yaw
    moves the nose towards the image's right: the person's left, for an unmirrored camera."""
    pivot = np.array([0, 0.5, 1.0])
    moved = (points - pivot) @ rotation(-yaw, pitch, roll).T + pivot
    z = moved[:, 2] + distance
    return np.stack([400 * moved[:, 0] / z + 160 + shift[0],
                     400 * moved[:, 1] / z + 120 + shift[1]], axis=1)


def face(marks: np.ndarray, scale: float = 1.0) -> Face:
    low, high = marks.min(axis=0), marks.max(axis=0)
    size = (high - low).max() * 1.6 * scale
    centre = (low + high) / 2
    return Face(np.array([centre[0] - size / 2, centre[1] - size / 2, size, size]), marks, 0.9)


# --- the 3-D test ------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.floats(-60, 60), st.floats(-45, 45), st.floats(-40, 40), st.floats(1.5, 12))
def test_a_flat_print_never_leaves_its_plane(yaw, pitch, roll, distance):
    offset = nose_offset(landmarks(PRINT), landmarks(PRINT, yaw, pitch, roll, distance))
    assert offset is None or offset.size < 1e-3  # None: too foreshortened to judge


@pytest.mark.parametrize("yaw, action", [(45, "turn_left"), (-45, "turn_right")])
def test_a_head_turn_leaves_the_plane_in_its_direction(yaw, action):
    offset = nose_offset(landmarks(HEAD), landmarks(HEAD, yaw))
    assert offset.size > TURN_OFFSET
    assert motion(offset, ChallengeConfig()) == action
    assert motion(offset, ChallengeConfig(mirrored=True)) != action  # the selfie view swaps


def test_a_nod_is_vertical_and_a_roll_is_planar():
    nod = nose_offset(landmarks(HEAD), landmarks(HEAD, pitch=45))
    assert motion(nod, ChallengeConfig()) == "nod"
    roll = nose_offset(landmarks(HEAD), landmarks(HEAD, roll=30))
    assert motion(roll, ChallengeConfig()) is None


def test_degenerate_or_broken_landmarks_give_no_offset():
    good = landmarks(HEAD)
    collapsed = np.repeat(good[:1], 5, axis=0)
    line = np.stack([np.linspace(0, 100, 5), np.zeros(5)], axis=1)
    broken = good.copy()
    broken[3] = np.nan
    for other in (collapsed, line, broken):
        assert nose_offset(good, other) is None
        assert nose_offset(other, good) is None


# --- the challenge -----------------------------------------------------------------------------
def active(steps=2, step_s=5.0, **kw) -> LivenessCheck:
    """An active check on synthetic faces (no frames: the texture signal is off)."""
    challenge = ChallengeConfig(steps=steps, step_s=step_s, prompt_delay_s=(0.0, 0.0), **kw)
    return LivenessCheck(LivenessConfig("active", challenge, texture="off"), random.Random(7))


def feed(check, frames, fps=15.0, match=True, start=0.0):
    """Feed `frames` (lists of Face) at `fps`; returns the prompt events."""
    events = []
    for number, faces in enumerate(frames):
        events += check.update(faces, True, match, start + number / fps)
        if check.done:
            break
    return events


def perform(action: str, points=HEAD, frames=10):
    yaw = {"turn_left": 50, "turn_right": -50}.get(action, 0)
    pitch = 45 if action == "nod" else 0
    out = [[face(landmarks(points, yaw * t, pitch * t))] for t in np.linspace(0, 1, frames)]
    return out + [[face(landmarks(points, yaw * t, pitch * t))]
                  for t in np.linspace(1, 0, frames)]


def test_the_challenge_passes_a_head_that_does_as_asked():
    check = active()
    events = feed(check, [[face(landmarks(HEAD))]])
    assert events[0]["challenge"] == check.actions[0] and events[0]["deadline_s"] == 5.0
    for step, action in enumerate(check.actions):
        feed(check, perform(action), start=1 + 2 * step)
    assert check.passed, check.reason
    result = check.result()
    assert result["result"] == "passed" and len(result["step_offsets"]) == 2


@pytest.mark.parametrize("yaw, pitch", [(50, 0), (-50, 0), (0, 40), (35, 25)])
def test_a_print_moved_as_asked_never_passes(yaw, pitch):
    check = active(steps=1, actions=("turn_left", "turn_right", "nod"))
    frames = [[face(landmarks(PRINT, yaw * t, pitch * t))] for t in np.linspace(0, 1, 60)]
    feed(check, [[face(landmarks(PRINT))], *frames, *frames[::-1]])
    assert not check.passed


def test_random_challenges_differ_and_never_repeat_an_action():
    config = ChallengeConfig(steps=4)
    drawn = {tuple(draw_actions(config, random.Random(seed))) for seed in range(40)}
    assert len(drawn) > 10
    assert all(a != b for seq in drawn for a, b in zip(seq, seq[1:], strict=False))


def test_turning_the_wrong_way_fails():
    check = active(steps=1, actions=("turn_left",))
    feed(check, [[face(landmarks(HEAD))], *perform("turn_right")])
    assert check.failed and "other way" in check.reason


def test_a_head_still_turned_from_the_last_step_is_not_the_wrong_way():
    check = active(steps=2, actions=("turn_left", "turn_right"))
    feed(check, [[face(landmarks(HEAD))]])
    first, second = check.actions
    feed(check, perform(first, frames=10)[:10], start=0.1)  # the peak: the next prompt
    assert check.step == 1 and not check.failed
    feed(check, perform(first, frames=10)[10:] + perform(second), start=1.0)
    assert check.passed, check.reason


def test_the_deadline_fails_a_still_head():
    check = active(steps=1, step_s=2.0)
    feed(check, [[face(landmarks(HEAD))]] * 60)
    assert check.failed and "not done within 2 s" in check.reason


@pytest.mark.parametrize("frames, words", [
    ([[face(landmarks(HEAD)), face(landmarks(HEAD, shift=(120, 0)))]], "2 faces"),
    ([[face(landmarks(HEAD, shift=(150, 0)))]], "jumped"),
    ([[]] * 10, "left the frame"),
])
def test_a_second_face_a_swap_or_a_lost_face_fails(frames, words):
    check = active()
    feed(check, [[face(landmarks(HEAD))], *frames])
    assert check.failed and words in check.reason


def test_identity_must_hold_through_the_challenge():
    check = active()
    feed(check, [[face(landmarks(HEAD))]])
    feed(check, [[face(landmarks(HEAD))]] * 5, match=False, start=0.1)  # weak frames: held
    assert not check.done
    check.update([face(landmarks(HEAD))], True, False, 0.6, other_person=True)
    assert check.failed and "identity not held" in check.reason


def test_nothing_starts_without_a_frontal_matching_face():
    check = active()
    feed(check, [[face(landmarks(HEAD, 40))]] * 5)  # turned from the start
    feed(check, [[face(landmarks(HEAD))]] * 5, match=False)  # someone else, frontal
    assert check.state == "frontal"
    check.give_up("the source ended", 1.0)
    assert check.failed and "before a frontal face" in check.reason


def test_config_errors():
    with pytest.raises(ConfigError):
        LivenessConfig("sometimes")
    with pytest.raises(ConfigError):
        ChallengeConfig(actions=("wink",))
    with pytest.raises(ConfigError):
        ChallengeConfig(steps=0)


# --- sessions: the decision needs identity AND liveness, and never hangs -----------------------
class _Source:
    live = True

    def __init__(self, frames):
        self.frames, self.finished = list(frames), False

    def read(self, timeout):
        return self.frames.pop(0) if self.frames else None  # then stalls


class _Verifier:
    """Decides from the face list carried in the frame's image slot."""

    consistency = ConsistencyRule(0.2, 0.2, "cosine")

    def new_vote(self):
        return Vote(1, 1)

    def decide(self, faces, template, vote, index=0):
        vote.add(bool(faces))
        return Decision(index, bool(faces), score=0.9, match=bool(faces), faces=faces,
                        verified=vote.passed, quality=Quality(100.0, 100.0, 0.0, 0.0, ()))


def _session(frames, mode, clock_step=1 / 15):
    from siamese.runtime.vision.sources import Frame

    ticks = iter(range(10**6))
    source = _Source(Frame(f, i, i * clock_step) for i, f in enumerate(frames))
    return VerificationSession(_Verifier(), None, source, timeout=20,
                               clock=lambda: next(ticks) * clock_step,
                               liveness=LivenessConfig(mode, texture="off"))


def test_a_stalled_stream_during_the_challenge_times_out_not_verified():
    session = _session([[face(landmarks(HEAD))]] * 30, "active")  # past the prompt's delay
    decisions = list(session)
    assert session.outcome == "timeout" and not session.verified
    assert not any(d.verified for d in decisions)
    assert session.liveness.failed and session.events[0]["challenge"]


def test_liveness_off_keeps_the_identity_decision():
    session = _session([[face(landmarks(HEAD))]], "off")
    list(session)
    assert session.verified


def test_a_still_image_with_liveness_exits_1_saying_so(tmp_path):
    still = ROOT / "examples" / "Abdullah_Gul_0003.jpg"
    command = [str(Path(sys.executable).with_name("siamese-verify")), "--ref", str(still),
               "--image", str(still), "--liveness", "active"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "still image cannot prove liveness" in result.stderr


# --- the attack generator and the real detector --------------------------------------------------
def _tool(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def test_a_print_tilted_as_asked_fails_the_challenge_through_the_real_detector():
    import cv2
    from siamese.runtime.vision.detector import DetectorConfig, FaceDetector

    attacks = _tool("make_attacks")
    rng = np.random.default_rng(0)
    photo = cv2.imread(str(ROOT / "examples" / "Abdullah_Gul_0003.jpg"))
    attack = attacks.make_attack("print", photo, rng)
    hand = attacks.Motion(rng, attacks.holding_distance(attack, rng))
    detector = FaceDetector(config=DetectorConfig(max_side=320))
    check = active(steps=1, step_s=2.0, actions=("turn_left", "turn_right"))
    for number in range(40):
        if check.state == "checking" and number == 3:
            hand.aim(check.actions[0])  # the attacker tilts the print the asked way
        faces = detector.detect(attack.frame(hand.step(), rng))
        check.update(faces, bool(faces), bool(faces), number / 15)
        if check.done:
            break
    assert check.state == "failed" and check.max_offset < TURN_OFFSET, check.result()


@pytest.mark.parametrize("species", ["print_bent", "screen", "replay"])
def test_every_species_renders_a_frame(species):
    import cv2

    attacks = _tool("make_attacks")
    rng = np.random.default_rng(1)
    photo = cv2.imread(str(ROOT / "examples" / "Abdullah_Gul_0003.jpg"))
    attack = attacks.make_attack(species, photo, rng, [photo, photo[:, ::-1]])
    frame = attack.frame(attacks.Pose(yaw=30, z=0.4), rng)
    assert frame.shape == (attacks.SIZE[1], attacks.SIZE[0], 3) and frame.std() > 5


def test_eval_liveness_runs_folders_of_recorded_videos(tmp_path):
    """--videos: each video of DIR/<species>/ is one session as recorded; the example video (a
    still photo filmed) is an attack the passive check refuses."""
    import shutil
    import subprocess

    (tmp_path / "print").mkdir()
    shutil.copy(ROOT / "examples" / "Abdullah_Gul.avi", tmp_path / "print" / "still.avi")
    tool = ROOT / "tools" / "eval_liveness.py"
    run = subprocess.run([sys.executable, str(tool), "--videos", str(tmp_path), "--mode",
                          "passive"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    row = next(line for line in run.stdout.splitlines() if line.startswith("| print |"))
    assert "| print | 1 | APCER 0.0% |" in row and "the video ended" in row
    usage = subprocess.run([sys.executable, str(tool)], capture_output=True, text=True)
    assert usage.returncode == 2 and "--videos" in usage.stderr
