"""Frames for session tests: a video's frames, and a live head turn (tests/fixtures/live_turn,
CC BY 4.0, PROVENANCE.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLIP = Path(__file__).resolve().parent / "fixtures" / "live_turn"
FPS = 12.5  # the recording's rate
ENROL = [CLIP / f"frame_{number:02d}.jpg" for number in (19, 20, 21)]
# the person turns to their right (the image's left: an unmirrored camera)
ACTION = "turn_right"


def frame(number: int) -> np.ndarray:
    return cv2.imread(str(CLIP / f"frame_{number:02d}.jpg"))


def live_turn(hold_s: float = 2.0, seed: int = 0) -> list[np.ndarray]:
    """Frontal frames for `hold_s` (the recording's frontal frame with fresh sensor noise in
    each, as a camera delivers a still head), then the turn out and back, at FPS."""
    rng = np.random.default_rng(seed)
    still = frame(8).astype(np.float32)
    held = [np.clip(still + rng.normal(0, 2.0, still.shape), 0, 255).astype(np.uint8)
            for _ in range(round(hold_s * FPS))]
    turn = [frame(number) for number in (*range(7, -1, -1), *range(1, 9))]
    return held + turn


def read_video(video: Path, frames: int = 90) -> list[np.ndarray]:
    """The first `frames` frames of `video`."""
    capture, images = cv2.VideoCapture(str(video)), []
    while len(images) < frames:
        ok, image = capture.read()
        if not ok:
            break
        images.append(image)
    capture.release()
    assert images, f"no frames in {video}"
    return images
