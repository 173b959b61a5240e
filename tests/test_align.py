import cv2
import numpy as np
import pytest
from siamese.runtime import TEMPLATE_112, FaceDetector, align_face, read_image
from siamese.runtime.vision.align import similarity_transform, transform_points

from .conftest import FIXTURES, LFW_MINI

FACES = LFW_MINI / "lfw-deepfunneled"
FACE = FACES / "Andy_Roddick" / "Andy_Roddick_0001.jpg"
OTHER = FACES / "Joschka_Fischer" / "Joschka_Fischer_0001.jpg"
# YuNet's landmarks for FACE, fixed here so that the golden crop pins alignment alone.
FACE_LANDMARKS = np.array([[107.54, 122.15], [138.40, 121.95], [117.12, 137.71],
                           [110.91, 155.08], [136.53, 154.68]], dtype=np.float32)
GOLDEN_CROP = FIXTURES / "golden_crop_andy_roddick_0001.png"


def _rotation(angle_deg: float, scale: float) -> np.ndarray:
    angle = np.deg2rad(angle_deg)
    return scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def _landmarks(image: np.ndarray) -> np.ndarray:
    faces = FaceDetector().detect(image)
    assert faces, "no face detected"
    return faces[0].landmarks


def test_similarity_transform_recovers_a_known_transform():
    rotation, shift = _rotation(20, 1.7), np.array([12.0, -5.0])
    src = TEMPLATE_112.astype(np.float64)
    matrix = similarity_transform(src, src @ rotation.T + shift)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


@pytest.mark.parametrize("angle, scale", [(0, 2.0), (25, 3.0), (-40, 1.2)])
def test_aligned_crop_puts_landmarks_on_the_template(angle, scale):
    """Five dots drawn at a rotated, scaled template land within 2 px of the template."""
    points = TEMPLATE_112 @ _rotation(angle, scale).T.astype(np.float32) + 150
    canvas = np.zeros((720, 720, 3), np.uint8)
    for x, y in points:
        radius = round(2.5 * scale * 16)
        cv2.circle(canvas, (round(x * 16), round(y * 16)), radius, (255, 255, 255), -1,
                   cv2.LINE_AA, shift=4)
    crop = cv2.cvtColor(align_face(canvas, points), cv2.COLOR_BGR2GRAY)
    count, _, _, centroids = cv2.connectedComponentsWithStats((crop > 60).astype(np.uint8))
    assert count == 6  # background and five dots
    found = sorted(centroids[1:].tolist(), key=lambda p: (round(p[1] / 10), p[0]))
    expected = sorted(TEMPLATE_112.tolist(), key=lambda p: (round(p[1] / 10), p[0]))
    assert np.abs(np.array(found) - np.array(expected)).max() < 2.0


def test_real_faces_fit_the_template_closely():
    """Least-squares residual of detected landmarks on the fixture faces, in crop pixels."""
    residuals = []
    for path in sorted(FACES.glob("*/*_0001.jpg")):
        landmarks = _landmarks(read_image(path))
        mapped = transform_points(similarity_transform(landmarks, TEMPLATE_112), landmarks)
        residuals.append(np.linalg.norm(mapped - TEMPLATE_112, axis=1).mean())
    assert np.mean(residuals) < 3.5


def test_golden_crop_is_pinned():
    crop = align_face(read_image(FACE), FACE_LANDMARKS)
    golden = cv2.imread(str(GOLDEN_CROP))
    assert crop.shape == golden.shape == (112, 112, 3)
    assert np.abs(crop.astype(int) - golden.astype(int)).max() <= 2


def _signature(crop: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), 2)[16:96, 16:96]
    grey -= grey.mean()
    return grey / np.linalg.norm(grey)


@pytest.mark.parametrize("angle, scale", [(10, 0.8), (-20, 1.4)])
def test_rotated_and_scaled_copy_aligns_to_nearly_the_same_crop(angle, scale):
    image = read_image(FACE)
    canvas = cv2.copyMakeBorder(image, 150, 150, 150, 150, cv2.BORDER_CONSTANT)
    size = canvas.shape[1], canvas.shape[0]
    moved = cv2.warpAffine(canvas, cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), angle,
                                                           scale), size)
    reference = _signature(align_face(image, _landmarks(image)))
    again = _signature(align_face(moved, _landmarks(moved)))
    stranger = _signature(align_face(read_image(OTHER), _landmarks(read_image(OTHER))))
    assert float((reference * again).sum()) > 0.55
    assert float((reference * stranger).sum()) < 0.3
