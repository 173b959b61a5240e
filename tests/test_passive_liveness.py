"""The passive texture signal: the converted MiniFASNet, its crops, its errors, and the check's
use of it (with a stub scorer, so the decision rule is tested without the model)."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from siamese.runtime.errors import ConfigError, ModelError
from siamese.runtime.liveness.check import TEXTURE_FRAMES, LivenessCheck, LivenessConfig
from siamese.runtime.liveness.passive import TEXTURE_PATH, TextureModel, crop_window
from siamese.runtime.vision.detector import YUNET_PATH, FaceDetector, largest_face
from siamese.runtime.vision.imageio import read_image

from tests.conftest import FIXTURES
from tests.test_liveness import HEAD, face, landmarks, perform

SAMPLES = FIXTURES / "minifasnet"
FRAME = np.zeros((240, 320, 3), np.uint8)


@pytest.fixture(scope="module")
def model() -> TextureModel:
    if not TEXTURE_PATH.is_file():
        pytest.skip(f"the texture model is not built here ({TEXTURE_PATH})")
    return TextureModel()


def test_the_sample_real_face_scores_above_the_fakes(model):
    if not (SAMPLES / "image_T1.jpg").is_file():
        pytest.skip(f"sample images missing under {SAMPLES}")
    detector = FaceDetector()
    scores = {}
    for name in ("image_F1", "image_F2", "image_T1"):
        image = read_image(SAMPLES / f"{name}.jpg")
        scores[name] = model.score(image, largest_face(detector.detect(image)).box)
    assert scores["image_T1"] >= model.threshold > max(scores["image_F1"], scores["image_F2"]), \
        scores
    assert model.info.crop_scales == (2.7, 4.0) and model.info.input_size == (80, 80)


@pytest.mark.parametrize("content, words", [
    (None, "texture model not found"),
    (b"not an onnx file at all", "cannot load texture model"),
    ("yunet", "not a siamese-texture-1 texture model"),
])
def test_an_absent_corrupt_or_foreign_model_is_a_one_line_model_error(tmp_path, content, words):
    path = tmp_path / "texture.onnx"
    if content == "yunet":
        path.write_bytes(YUNET_PATH.read_bytes())
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=words) as caught:
        TextureModel(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("box, shape", [
    ((0, 0, 1, 1), (240, 320)),  # one pixel in the corner
    ((318, 238, 30, 30), (240, 320)),  # past the bottom-right edge
    ((-50, -40, 20, 20), (240, 320)),  # outside the frame
    ((100, 80, 0, 0), (240, 320)),  # degenerate
    ((0, 0, 300, 300), (240, 320)),  # larger than the frame
    ((2, 2, 4, 4), (8, 6)),  # a tiny frame
])
def test_edge_boxes_give_a_score_not_a_crash(model, box, shape):
    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    assert 0.0 <= model.score(image, np.array(box, np.float32)) <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.tuples(*[st.floats(-500, 900)] * 2, *[st.floats(0, 900)] * 2),
       st.sampled_from([2.7, 4.0]), st.integers(1, 700), st.integers(1, 700))
def test_the_crop_window_always_lies_inside_the_frame(box, scale, width, height):
    x0, y0, x1, y1 = crop_window(np.array(box), scale, width, height)
    assert 0 <= x0 <= x1 <= width - 1 and 0 <= y0 <= y1 <= height - 1


class Stub:
    """A texture scorer that gives every face the same score."""

    threshold = 0.5

    def __init__(self, value: float) -> None:
        self.value, self.calls = value, 0

    def score(self, image: np.ndarray, box: np.ndarray) -> float:
        self.calls += 1
        return self.value


def run_passive(texture: str, stub: Stub) -> LivenessCheck:
    """A live head (frontal, then a turn) through a passive check with the stub scorer."""
    check = LivenessCheck(LivenessConfig("passive", texture=texture), random.Random(1), stub)
    frames = [[face(landmarks(HEAD))]] + perform("turn_left")
    for number, faces in enumerate(frames):
        check.update(faces, True, True, number / 15, image=FRAME)
        if check.done:
            break
    return check


def test_a_low_texture_score_fails_a_check_the_3d_test_passed():
    check = run_passive("refuse", Stub(0.12))
    assert check.failed
    assert check.reason == "the texture check scored the face as a recapture (0.12 < 0.5)"
    assert check.result()["signals"]["texture_score"] == 0.12


def test_a_high_texture_score_passes_and_is_reported():
    stub = Stub(0.9)
    check = run_passive("refuse", stub)
    signals = check.result()["signals"]
    assert check.passed and signals["texture_score"] == 0.9
    assert signals["texture_frames"] == stub.calls <= TEXTURE_FRAMES


def test_report_only_passes_a_low_score_but_reports_it():
    check = run_passive("report", Stub(0.12))
    assert check.passed and check.result()["signals"]["texture_score"] == 0.12


def test_texture_off_runs_no_scorer():
    stub = Stub(0.12)
    check = run_passive("off", stub)
    assert check.passed and stub.calls == 0
    assert "texture_score" not in check.result()["signals"]


def test_the_texture_signal_needs_the_frame():
    check = LivenessCheck(LivenessConfig("passive"), random.Random(1), Stub(0.9))
    with pytest.raises(ValueError, match="needs each frame's image"):
        check.update([face(landmarks(HEAD))], True, True, 0.0)


def test_texture_config_errors():
    with pytest.raises(ConfigError, match="texture must be one of"):
        LivenessConfig("active", texture="maybe")
