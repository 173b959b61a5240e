"""The runtime on real video: a file and an HTTP MJPEG stream (with a dropped connection), the
packaged model, and every user error as one line with exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from siamese.runtime.errors import ModelError
from siamese.runtime.storage.integrity import load_or_create_key
from siamese.runtime.storage.references import Template, save_template
from siamese.runtime.verifier import DEFAULT_MODEL, Verifier

from .conftest import LFW_MINI
from .mjpeg_server import MJPEGServer

PEOPLE = LFW_MINI / "lfw-deepfunneled"
PERSON_A = sorted((PEOPLE / "Andy_Roddick").glob("*.jpg"))
PERSON_B = sorted((PEOPLE / "Joschka_Fischer").glob("*.jpg"))

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no packaged default model")


def frame_of(path: Path) -> np.ndarray:
    """A 640x480 camera-like frame with the 250x250 photo in the middle."""
    canvas = np.full((480, 640, 3), 90, np.uint8)
    canvas[115:365, 195:445] = cv2.imread(str(path))
    return canvas


def write_video(paths: list[Path], out: Path, repeats: int = 6) -> Path:
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), 15, (640, 480))
    for path in paths:
        for _ in range(repeats):
            writer.write(frame_of(path))
    writer.release()
    return out


def accuracy_threshold() -> str:
    """The packaged model's balanced-accuracy threshold (from its metadata). The tests check the
    pipeline, votes and exit codes at this operating point, so that they do not depend on how
    many genuine photos a given model accepts at its stricter FAR = 1e-3 default."""
    return str(Verifier.from_model().embedder.info.accuracy_threshold)


def run_cli(command: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    entry = {"verify": "verify_main", "enroll": "enroll_main"}[command]
    return subprocess.run([sys.executable, "-c",
                           f"from siamese.runtime.commands.verify import {entry}; {entry}()",
                           *args, "--cache-dir", str(cache)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    # Andy_Roddick_0002 is a hard photo (profile, low light); the video shows photos 3 and 4
    return write_video(PERSON_A[2:], root / "a.avi"), write_video(PERSON_B, root / "b.avi")


def events(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_video_of_the_reference_person_verifies_and_another_does_not(videos, tmp_path):
    a_video, b_video = videos
    threshold = ["--threshold", accuracy_threshold()]
    same = run_cli("verify", "--ref", str(PERSON_A[0]), "--camera", str(a_video), *threshold,
                   cache=tmp_path)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr
    assert events(same)[-1] == {**events(same)[-1], "final": True, "decision": "verified"}
    other = run_cli("verify", "--ref", str(PERSON_A[0]), "--camera", str(b_video), *threshold,
                    cache=tmp_path)
    assert other.returncode == 1, other.stdout[-2000:] + other.stderr
    scored = [e for e in events(other) if e.get("score") is not None]
    assert len(scored) == 4 * 6  # a video file drops no frame
    assert events(other)[-1]["decision"] == "not_verified"


def test_reference_embedding_is_cached_by_image_and_model(tmp_path):
    verifier = Verifier.from_model(cache_dir=tmp_path)
    first, digest = verifier.reference_embedding(PERSON_A[0])
    entries = list(tmp_path.glob("*.json"))
    assert len(entries) == 1 and digest[:32] in entries[0].name
    assert oct(entries[0].stat().st_mode & 0o777) == "0o600"
    again, _ = verifier.reference_embedding(PERSON_A[0])
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("person, expected", [(PERSON_A, 0), (PERSON_B, 1)])
def test_http_mjpeg_stream_with_a_drop_reconnects_and_decides(person, expected, tmp_path):
    frames = [frame_of(path) for path in person[2:]]
    with MJPEGServer(frames, fps=20, cut_after=2) as server:  # cut before K=3 votes
        result = run_cli("verify", "--ref", str(PERSON_A[0]), "--camera", server.url,
                         "--timeout", "8", "--threshold", accuracy_threshold(),
                         "--liveness", "off", cache=tmp_path)  # identity and reconnection only
        connections = server.connections
    assert result.returncode == expected, result.stdout[-2000:] + result.stderr
    assert connections >= 2
    assert any(e.get("reconnects", 0) >= 1 for e in events(result))


def test_enroll_writes_a_private_template_and_verify_accepts_it(tmp_path):
    store = tmp_path / "andy.json"
    enrolled = run_cli("enroll", "andy", str(PERSON_A[0]), str(PERSON_A[1]), "--store",
                       str(store), cache=tmp_path)
    assert enrolled.returncode == 0, enrolled.stderr
    assert oct(store.stat().st_mode & 0o777) == "0o600"
    template = json.loads(store.read_text())
    assert template["name"] == "andy" and len(template["embeddings"]) == 2
    still = run_cli("verify", "--ref", str(store), "--image", str(PERSON_A[2]), "--threshold",
                    accuracy_threshold(), cache=tmp_path)
    assert still.returncode == 0, still.stdout + still.stderr


def _two_faces(tmp_path: Path, second_scale: float | None = None) -> Path:
    """Person A beside person B's photo scaled by `second_scale`; None: A beside A (two faces
    of the same size)."""
    first = cv2.imread(str(PERSON_A[0]))
    second = first if second_scale is None else cv2.resize(
        cv2.imread(str(PERSON_B[0])), None, fx=second_scale, fy=second_scale)
    canvas = np.full((250, 250 + second.shape[1], 3), 90, np.uint8)
    canvas[:, :250] = first
    canvas[:second.shape[0], 250:] = second
    path = tmp_path / f"two-{second_scale}.jpg"
    cv2.imwrite(str(path), canvas)
    return path


def test_reference_with_a_dominant_face_takes_it(tmp_path):
    """A clearly larger face is the subject; a smaller bystander does not block enrolment."""
    verifier = Verifier.from_model(cache_dir=tmp_path)
    with_bystander, _ = verifier.reference_embedding(_two_faces(tmp_path, second_scale=0.5))
    alone, _ = verifier.reference_embedding(PERSON_A[0])
    assert float(with_bystander @ alone) > 0.9


def _blank(tmp_path: Path) -> Path:
    path = tmp_path / "blank.png"
    cv2.imwrite(str(path), np.full((200, 200, 3), 127, np.uint8))
    return path


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(PERSON_A[0].read_bytes()[:300])
    return path


def _foreign_template(tmp_path: Path) -> Path:
    """A correctly signed template of another model (fingerprint 0...0)."""
    path = tmp_path / "foreign.json"
    vectors = np.full((1, 128), 128 ** -0.5, np.float32)
    save_template(Template("x", vectors, "0" * 64), path, load_or_create_key())
    return path


@pytest.mark.parametrize("make_args, message", [
    (lambda t: ["--ref", str(_blank(t)), "--image", str(PERSON_A[1])], "no usable face"),
    (lambda t: ["--ref", str(_two_faces(t)), "--image", str(PERSON_A[1])],
     "2 faces of similar size"),
    (lambda t: ["--ref", str(PERSON_A[0]), "--image", str(_corrupt(t))], "cannot decode image"),
    (lambda t: ["--ref", str(PERSON_A[0]), "--image", str(PERSON_A[1]), "--model",
                str(t / "missing.onnx")], "model file not found"),
    (lambda t: ["--ref", str(_foreign_template(t)), "--image", str(PERSON_A[1])],
     "made with another model"),
    (lambda t: ["--ref", str(PERSON_A[0]), "--camera", str(t / "none.avi")],
     "no such video file"),
    (lambda t: ["--ref", str(PERSON_A[0]), "--camera", "http://127.0.0.1:9/none.mjpg",
                "--open-timeout", "1"], "cannot open camera or stream"),
])
def test_user_errors_are_one_line_with_exit_2(make_args, message, tmp_path):
    result = run_cli("verify", *make_args(tmp_path), cache=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_failed_enroll_leaves_an_existing_template_untouched(tmp_path):
    store = tmp_path / "keep.json"
    store.write_text("precious")
    result = run_cli("enroll", "x", str(_two_faces(tmp_path)), "--store", str(store),
                     cache=tmp_path)
    assert result.returncode == 2 and store.read_text() == "precious"
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".keep.json")]


def test_model_without_default_path_is_refused(tmp_path):
    with pytest.raises(ModelError):
        Verifier.from_model(tmp_path / "nothing.onnx")


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("video, expected", [("Abdullah_Gul.avi", 0), ("Adrien_Brody.avi", 1)])
def test_readme_quickstart_on_the_packaged_model(video, expected, tmp_path):
    """The README's main command, at the model's own FAR = 1e-3 threshold."""
    result = run_cli("verify", "--ref", str(EXAMPLES / "Abdullah_Gul"), "--camera",
                     str(EXAMPLES / video), cache=tmp_path)
    assert result.returncode == expected, result.stdout[-1500:] + result.stderr


@pytest.mark.parametrize("video, outcome", [("Abdullah_Gul.avi", "verified"),
                                            ("Adrien_Brody.avi", "not_verified")])
def test_readme_python_api_session_on_a_video(video, outcome, tmp_path):
    """The README's kiosk example: a bounded session over a source, decided by K of N."""
    from siamese.runtime.vision.sources import open_source

    verifier = Verifier.from_model(cache_dir=tmp_path)
    reference = verifier.enroll("abdullah", [EXAMPLES / "Abdullah_Gul"])
    with open_source(str(EXAMPLES / video)) as source:
        session = verifier.session(source, reference, timeout=30)
        decisions = list(session)
    assert session.outcome == outcome and decisions
    assert decisions[-1].verified == (outcome == "verified")


def _compare_cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c",
                           "from siamese.runtime.commands.verify import compare_main; "
                           "compare_main()",
                           *args, "--cache-dir", str(cache)],
                          capture_output=True, text=True, timeout=120)


def test_compare_two_photos_prints_score_decision_and_threshold(tmp_path):
    threshold = ["--threshold", accuracy_threshold()]
    same = _compare_cli(str(PERSON_A[0]), str(PERSON_A[2]), *threshold, cache=tmp_path)
    assert same.returncode == 0, same.stdout + same.stderr
    result = json.loads(same.stdout)
    assert result["same_person"] is True and result["score"] >= result["threshold"]
    other = _compare_cli(str(PERSON_A[0]), str(PERSON_B[0]), *threshold, cache=tmp_path)
    assert other.returncode == 1 and json.loads(other.stdout)["same_person"] is False
    missing = _compare_cli(str(PERSON_A[0]), str(tmp_path / "none.jpg"), cache=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1


def test_compare_api_takes_paths_or_frames(tmp_path):
    verifier = Verifier.from_model(cache_dir=tmp_path)
    by_path = verifier.compare(PERSON_A[0], PERSON_A[2])
    by_frame = verifier.compare(cv2.imread(str(PERSON_A[0])), frame_of(PERSON_A[2]))
    assert by_path.threshold == verifier.threshold
    assert abs(by_path.score - by_frame.score) < 0.05
    assert verifier.compare(PERSON_A[0], PERSON_B[0]).score < by_path.score


def test_faces_too_small_are_named_with_the_option(tmp_path):
    """Every face under --min-face: the final line says so and names the option."""
    store = tmp_path / "andy.json"
    assert run_cli("enroll", "andy", str(PERSON_A[0]), "--store", str(store),
                   cache=tmp_path).returncode == 0
    result = run_cli("verify", "--ref", str(store), "--image", str(PERSON_A[2]),
                     "--min-face", "400", cache=tmp_path)
    final = events(result)[-1]
    assert result.returncode == 1 and "--min-face 400" in final["hint"]
    assert result.stderr.startswith("note: faces were smaller than --min-face")
