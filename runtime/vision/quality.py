"""Is a detected face good enough to decide on? Size, sharpness and a frontal pose."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from siamese.runtime.errors import ConfigError
from siamese.runtime.vision.detector import Face


@dataclass(frozen=True)
class QualityConfig:
    min_face_px: float = 60.0  # shorter side of the detector's box
    min_sharpness: float = 30.0  # variance of the Laplacian of the aligned grey crop
    max_yaw: float = 0.35  # nose offset from the eye midpoint, in eye distances
    max_roll_deg: float = 25.0

    def __post_init__(self) -> None:
        limits = {"min_face_px": (1.0, 10_000.0), "min_sharpness": (0.0, 1e6),
                  "max_yaw": (0.0, 10.0), "max_roll_deg": (0.0, 180.0)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or not low <= value <= high:
                raise ConfigError(f"{name} must be a finite number in [{low:g}, {high:g}], "
                                  f"not {value!r}")


@dataclass(frozen=True)
class Quality:
    face_px: float
    sharpness: float
    yaw: float
    roll_deg: float
    flags: tuple[str, ...]  # empty when the face passes

    @property
    def ok(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict:
        return {"face_px": round(self.face_px, 1), "sharpness": round(self.sharpness, 1),
                "yaw": round(self.yaw, 3), "roll_deg": round(self.roll_deg, 1),
                "flags": list(self.flags)}


def assess(face: Face, crop: np.ndarray, config: QualityConfig) -> Quality:
    """Quality of one face from its detector box, landmarks and aligned crop."""
    right_eye, left_eye, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    eye_vector = left_eye - right_eye
    eye_distance = float(np.linalg.norm(eye_vector)) or 1.0
    roll = float(np.degrees(np.arctan2(eye_vector[1], eye_vector[0])))
    midpoint = (right_eye + left_eye) / 2
    # signed horizontal offset of the nose along the eye axis, relative to eye distance
    yaw = float(np.dot(nose - midpoint, eye_vector) / eye_distance**2)
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    face_px = float(min(face.box[2], face.box[3]))
    flags = []
    if face_px < config.min_face_px:
        flags.append("small")
    if sharpness < config.min_sharpness:
        flags.append("blurry")
    if abs(yaw) > config.max_yaw:
        flags.append("turned")
    if abs(roll) > config.max_roll_deg:
        flags.append("tilted")
    return Quality(face_px, sharpness, yaw, roll, tuple(flags))


def describe_flags(quality: Quality, config: QualityConfig) -> str:
    """The quality flags in words, naming the option that sets each limit."""
    words = {"small": f"face {quality.face_px:.0f} px < --min-face {config.min_face_px:g} px",
             "blurry": f"sharpness {quality.sharpness:.0f} < {config.min_sharpness:g}",
             "turned": f"turned (yaw {quality.yaw:.2f} > {config.max_yaw:g})",
             "tilted": f"tilted ({quality.roll_deg:.0f} deg > {config.max_roll_deg:g})"}
    return "; ".join(words[flag] for flag in quality.flags)
