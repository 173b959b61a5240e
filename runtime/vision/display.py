"""The optional --show window: box, score and decision drawn on each frame."""

from __future__ import annotations

import logging
import os

import cv2

log = logging.getLogger(__name__)


class Display:
    """An OpenCV window; `open()` returns None where no display exists (headless)."""

    WINDOW = "siamese-verify"

    @classmethod
    def open(cls) -> Display | None:
        if os.name != "nt" and not os.environ.get("DISPLAY") and not os.environ.get(
                "WAYLAND_DISPLAY"):
            log.warning("no display: running headless")
            return None
        try:
            cv2.namedWindow(cls.WINDOW, cv2.WINDOW_NORMAL)
        except cv2.error:
            log.warning("this OpenCV build cannot open windows: running headless")
            return None
        return cls()

    def draw(self, image, decision, threshold: float, prompt: str | None = None) -> None:
        canvas = image.copy()
        colour = (0, 200, 0) if decision.match else (0, 0, 230)
        if decision.box is not None:
            x, y, w, h = (int(v) for v in decision.box)
            cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        state = "VERIFIED" if decision.verified else "checking"
        score = "-" if decision.score is None else f"{decision.score:.3f}"
        cv2.putText(canvas, f"{state}  score {score} / {threshold:.3f}", (10, 24),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
        if prompt:  # the liveness challenge's instruction
            cv2.putText(canvas, prompt, (10, canvas.shape[0] - 16), cv2.FONT_HERSHEY_SIMPLEX,
                        0.6, (0, 220, 255), 2)
        cv2.imshow(self.WINDOW, canvas)
        cv2.waitKey(1)

    def close(self) -> None:
        cv2.destroyAllWindows()
