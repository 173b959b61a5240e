"""Small faces in large frames: a second detection pass when the first finds none.

The verifier detects on a copy downscaled to 320 px (speed), where a 60 px face of a 3840x2160
frame is 5 px and lost. When that pass finds nothing and the frame is large, `TwoPassDetector`
detects again on a copy where the quality gate's smallest face (`min_face_px`) is `TARGET_PX`
pixels, which YuNet finds; frames with a face pay nothing extra, frames without one pay the
second pass (tools/bench_pipeline.py --large measures both).
"""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
from siamese.runtime.vision.detector import Face, FaceDetector

TARGET_PX = 20.0  # the smallest face's side in the second pass


class TwoPassDetector:
    """A FaceDetector (with `max_side`) plus a finer pass when it finds no face."""

    def __init__(self, first: FaceDetector, min_face_px: float,
                 target_px: float = TARGET_PX) -> None:
        self.first, self.min_face_px, self.target_px = first, float(min_face_px), target_px
        self.config = first.config
        self.second = FaceDetector(first.model_path, replace(first.config, max_side=None))

    def second_pass_side(self, height: int, width: int) -> int | None:
        """The longest side of the second pass, or None when it would not be finer."""
        limit = self.first.config.max_side
        longest = max(height, width)
        if not limit or longest <= limit:
            return None
        side = min(longest, math.ceil(longest * self.target_px / self.min_face_px))
        return side if side > limit else None

    def detect(self, image: np.ndarray) -> list[Face]:
        faces = self.first.detect(image)
        side = None if faces else self.second_pass_side(*image.shape[:2])
        if side is None:
            return faces
        height, width = image.shape[:2]
        scale = side / max(height, width)
        small = image if scale >= 1 else cv2.resize(
            image, (max(1, round(width * scale)), max(1, round(height * scale))),
            interpolation=cv2.INTER_AREA)
        return [Face(box=(f.box / scale).astype(np.float32),
                     landmarks=(f.landmarks / scale).astype(np.float32), score=f.score)
                for f in self.second.detect(small)]
