"""The 3-D test: does the nose leave the plane of the eyes and mouth corners?

A photo, print or screen moves as a plane, so its landmarks move between two frames by one
homography. Fit it on the four non-nose landmarks (eyes, mouth corners) of a frontal frame and
the current one; a live head that turns moves its nose away from where that plane puts it. The
nose's offset is measured back in the frontal frame's coordinates, normalised by the frontal
eye distance, so it does not depend on how the plane (or the head) moved in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PLANE_POINTS = (0, 1, 3, 4)  # YuNet order: right eye, left eye, nose, right / left mouth corner
NOSE = 2
MIN_EYE_PX = 4.0  # landmarks closer than this are noise, not a face


@dataclass(frozen=True)
class Offset:
    """The nose's offset from the landmark plane, in frontal eye distances.

    dx > 0: the nose moved towards the image's right (relative to the eyes and mouth plane);
    dy > 0: towards the image's bottom. `size` is their length: the 3-D test's score.
    """

    dx: float
    dy: float

    @property
    def size(self) -> float:
        return float(np.hypot(self.dx, self.dy))


def eye_distance(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0]))


def nose_offset(frontal: np.ndarray, current: np.ndarray) -> Offset | None:
    """The nose's offset in `current` from the plane fitted to `frontal`'s landmarks.

    Both are (5, 2) YuNet landmarks. None when the four plane points are degenerate (too close
    or nearly collinear in either frame), when no homography fits, or when values are not finite.
    """
    frontal = np.asarray(frontal, dtype=np.float64).reshape(5, 2)
    current = np.asarray(current, dtype=np.float64).reshape(5, 2)
    if not (np.isfinite(frontal).all() and np.isfinite(current).all()):
        return None
    scale = eye_distance(frontal)
    if scale < MIN_EYE_PX or eye_distance(current) < MIN_EYE_PX:
        return None
    if _degenerate(frontal[list(PLANE_POINTS)]) or _degenerate(current[list(PLANE_POINTS)]):
        return None
    # current -> frontal: the current nose is taken back to where the plane had it
    back = cv2.getPerspectiveTransform(current[list(PLANE_POINTS)].astype(np.float32),
                                       frontal[list(PLANE_POINTS)].astype(np.float32))
    point = back @ np.array([current[NOSE][0], current[NOSE][1], 1.0])
    if not np.isfinite(point).all() or abs(point[2]) < 1e-9:
        return None
    moved = point[:2] / point[2] - frontal[NOSE]
    return Offset(float(moved[0] / scale), float(moved[1] / scale))


TRIANGLES = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def _degenerate(points: np.ndarray) -> bool:
    """True when some three of the four points span no useful triangle (area vs. spread)."""
    spread = float((points.max(axis=0) - points.min(axis=0)).max())
    if spread < MIN_EYE_PX:
        return True
    a, b, c = (points[TRIANGLES[:, i]] for i in range(3))
    u, v = b - a, c - a
    areas = np.abs(u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]) / 2
    return bool(areas.min() < 0.02 * spread * spread)


def naive_yaw(landmarks: np.ndarray) -> float:
    """The common landmark yaw estimate: the nose's horizontal offset from the eyes' midpoint,
    in eye distances (what a "turn your head" check without a 3-D test reads)."""
    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    middle = (landmarks[0] + landmarks[1]) / 2
    return float((landmarks[NOSE][0] - middle[0]) / max(eye_distance(landmarks), 1e-9))
