import os
import subprocess
import sys

import numpy as np
import pytest
from siamese.runtime import FaceDetector, ModelError, Preprocess, read_image
from siamese.runtime.errors import ImageError

from .conftest import ATT_FACES, LFW_MINI


def test_preprocess_grey_nchw_matches_hand_computation():
    crop = np.zeros((112, 112, 3), np.uint8)
    crop[..., 2] = 255  # pure red in BGR
    spec = Preprocess(size=100, color="gray", mean=(0.5,), std=(0.5,))
    x = spec(crop)
    assert x.shape == (1, 1, 100, 100) and x.dtype == np.float32
    grey = 0.299  # OpenCV's weight of red
    assert x[0, 0, 50, 50] == pytest.approx((grey - 0.5) / 0.5, abs=0.01)


def test_preprocess_rgb_nhwc_keeps_channel_order():
    crop = np.zeros((2, 112, 112, 3), np.uint8)
    crop[..., 0] = 255  # blue in BGR
    x = Preprocess(size=112, color="rgb", mean=(0, 0, 0), std=(1, 1, 1), layout="NHWC")(crop)
    assert x.shape == (2, 112, 112, 3)
    np.testing.assert_allclose(x[0, 0, 0], [0.0, 0.0, 1.0])


def test_preprocess_round_trips_and_rejects_bad_specs():
    spec = Preprocess(size=96, color="rgb", mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert Preprocess.from_json(spec.to_json()) == spec
    with pytest.raises(ModelError):
        Preprocess(color="gray", mean=(0.5, 0.5, 0.5), std=(0.5,))
    with pytest.raises(ModelError):
        Preprocess.from_json('{"size": 96}')
    with pytest.raises(ModelError):
        Preprocess.from_json("not json")


def test_detector_finds_one_face_in_each_fixture_image():
    detector = FaceDetector()
    for path in [*sorted((LFW_MINI / "lfw-deepfunneled").glob("*/*_0001.jpg")),
                 *sorted(ATT_FACES.glob("*/1.pgm"))]:
        faces = detector.detect(read_image(path))
        assert faces, path
        best = faces[0]
        assert best.landmarks.shape == (5, 2) and best.box.shape == (4,)
        assert best.score > 0.8
        # the right eye (image left) is left of the left eye, the eyes above the mouth
        assert best.landmarks[0, 0] < best.landmarks[1, 0]
        assert best.landmarks[:2, 1].max() < best.landmarks[3:, 1].min()


def test_detector_returns_an_empty_list_for_any_size_without_faces():
    detector = FaceDetector()
    for shape in [(480, 640, 3), (37, 53, 3), (1080, 1920, 3)]:
        assert detector.detect(np.full(shape, 128, np.uint8)) == []


def test_unreadable_images_raise_image_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ImageError, match="bad.jpg"):
        read_image(bad)
    with pytest.raises(ImageError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ModelError, match="nope.onnx"):
        FaceDetector(tmp_path / "nope.onnx")


def test_creating_a_detector_writes_nothing_on_stderr_even_after_a_bare_cv2_import():
    """OpenCV 5 warns about DNN targets on each FaceDetectorYN; a tool that imports cv2 before
    siamese (so before our log level is set) must still keep stderr to its own one line."""
    code = ("import cv2, numpy as np\n"
            "from siamese.runtime.vision.detector import FaceDetector\n"
            "level = cv2.utils.logging.getLogLevel()\n"
            "FaceDetector().detect(np.zeros((64, 64, 3), np.uint8))\n"
            "assert cv2.utils.logging.getLogLevel() == level\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _all_faces(detector: FaceDetector, paths) -> list[np.ndarray]:
    """Per image, one row per face: box, landmarks, score."""
    return [np.array([np.r_[f.box, f.landmarks.ravel(), f.score] for f in
                      detector.detect(read_image(p))]) for p in paths]


def test_the_packaged_detector_runs_on_onnxruntime_and_finds_what_opencv_finds():
    from siamese.runtime.vision.detector import DetectorConfig

    paths = sorted(LFW_MINI.rglob("*.jpg"))[:12] + sorted(ATT_FACES.rglob("*.pgm"))[:6]
    recorded = FaceDetector(config=DetectorConfig(max_side=320))
    opencv = FaceDetector(config=DetectorConfig(max_side=320, engine="opencv"))
    assert (recorded.engine, opencv.engine) == ("onnxruntime", "opencv")
    found = 0
    for ours, theirs in zip(_all_faces(recorded, paths), _all_faces(opencv, paths), strict=True):
        assert ours.shape == theirs.shape  # the same faces ...
        if len(ours):
            found += 1  # ... at the same places (pixels) and scores
            np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert found == len(paths)
    # a large frame, downscaled, and a frame whose sides are no multiple of 32
    frame = np.zeros((487, 731, 3), np.uint8)
    frame[100:350, 200:450] = read_image(paths[0])
    ours, theirs = ([np.r_[f.box, f.landmarks.ravel(), f.score] for f in d.detect(frame)]
                    for d in (recorded, opencv))
    assert len(ours) == len(theirs) == 1
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-2)
    with_alpha = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])  # BGRA
    assert [f.score for f in recorded.detect(with_alpha)] == [f.score for f in
                                                               recorded.detect(frame)]


def test_a_detector_engine_that_cannot_run_the_file_is_one_clear_error(tmp_path):
    from siamese.runtime.vision.detector import YUNET_PATH, DetectorConfig

    onnx = pytest.importorskip("onnx")
    with pytest.raises(ModelError, match="unknown detector engine"):
        FaceDetector(config=DetectorConfig(engine="tensorrt"))
    fixed = onnx.load(YUNET_PATH)  # as OpenCV Zoo ships it: 640x640 only, no metadata
    for dim in fixed.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 640
    del fixed.metadata_props[:]
    path = tmp_path / "yunet_640.onnx"
    onnx.save(fixed, path)
    assert FaceDetector(path).engine == "opencv"  # a file from elsewhere runs as before
    with pytest.raises(ModelError, match="any frame size"):
        FaceDetector(path, DetectorConfig(engine="onnxruntime"))
