"""YuNet face detector returning boxes, 5 landmarks and scores: run by onnxruntime
(runtime.vision.yunet) when the file records it, else by OpenCV's FaceDetectorYN."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.errors import ModelError
from siamese.runtime.vision.yunet import OnnxYuNet, onnx_session, runs_any_size

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
YUNET_PATH = MODELS_DIR / "face_detection_yunet_2023mar.onnx"
MIN_SIDE = 16  # pixels: no alignable face fits in a narrower image
DETECTOR_ENGINES = ("onnxruntime", "opencv")


@dataclass(frozen=True)
class Face:
    """One detected face in image pixels.

    box: (x, y, w, h); landmarks: (5, 2) right eye, left eye, nose tip, right and left mouth
    corners; score: detector confidence in [0, 1].
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    @property
    def center(self) -> np.ndarray:
        return self.box[:2] + self.box[2:] / 2


@dataclass(frozen=True)
class DetectorConfig:
    """YuNet thresholds; the defaults favour recall on cropped face photos."""

    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 50
    max_side: int | None = None  # detect on a copy downscaled to this longest side (speed)
    engine: str | None = None  # None: the one the file records (`siamese.engine`), else opencv
    threads: int = 1  # onnxruntime's threads (OpenCV's are the process's)


class FaceDetector:
    """YuNet on any image size; one instance per thread (OpenCV's detector keeps state).

    >>> faces = FaceDetector().detect(read_image("me.jpg"))
    """

    def __init__(self, model_path: str | Path | None = None,
                 config: DetectorConfig | None = None) -> None:
        self.model_path = Path(model_path) if model_path else YUNET_PATH
        self.config = config or DetectorConfig()
        if not self.model_path.is_file():
            raise ModelError(f"face detector model not found: {self.model_path}")
        session = onnx_session(self.model_path, self.config.threads)
        self.engine = self.config.engine or _recorded_engine(session)
        if self.engine not in DETECTOR_ENGINES:
            raise ModelError(f"unknown detector engine {self.engine!r}; choose from "
                             f"{', '.join(DETECTOR_ENGINES)}")
        self._yunet: OnnxYuNet | None = None
        if self.engine == "onnxruntime":
            if session is None or not runs_any_size(session):
                raise ModelError(f"onnxruntime cannot run face detector {self.model_path} on "
                                 f"any frame size: run it with engine \"opencv\"")
            self._yunet = OnnxYuNet(session, self.config.score_threshold,
                                    self.config.nms_threshold, self.config.top_k)
            return
        try:
            self._net = _create_quietly(self.model_path, self.config)
        except cv2.error as exc:
            raise ModelError(f"cannot load face detector {self.model_path}: {exc}") from None
        self._input_size: tuple[int, int] = (320, 320)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a BGR uint8 image, highest score first; an empty list when there are none.

        Images whose shorter side (after downscaling) is under `MIN_SIDE` pixels hold no face
        that could be aligned; every returned face has finite, positive box and landmarks.
        """
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif image.shape[2] == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        height, width = image.shape[:2]
        scale = 1.0
        limit = self.config.max_side
        if limit and max(height, width) > limit:
            scale = limit / max(height, width)
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        if min(height, width) < MIN_SIDE:
            return []
        rows = self._rows(image)
        if rows is None:
            return []
        rows = rows[np.isfinite(rows).all(axis=1) & (rows[:, 2] > 0) & (rows[:, 3] > 0)]
        faces = [
            Face(box=(row[:4] / scale).astype(np.float32),
                 landmarks=(row[4:14] / scale).astype(np.float32).reshape(5, 2),
                 score=float(row[14]))
            for row in rows
        ]
        return sorted(faces, key=lambda face: face.score, reverse=True)


    def _rows(self, image: np.ndarray) -> np.ndarray | None:
        """The engine's raw (N, 15) detections of a BGR image."""
        if self._yunet is not None:
            return self._yunet.detect(image)
        height, width = image.shape[:2]
        if (width, height) != self._input_size:
            self._net.setInputSize((width, height))
            self._input_size = (width, height)
        return self._net.detect(image)[1]


def _recorded_engine(session) -> str:
    """The engine the file's metadata records (measured fastest: docs/EXPORT.md), else opencv
    (files from elsewhere, which onnxruntime may not load)."""
    if session is None:
        return "opencv"
    recorded = session.get_modelmeta().custom_metadata_map.get("siamese.engine")
    try:
        return json.loads(recorded) if recorded else "opencv"
    except ValueError:
        raise ModelError(f"face detector metadata siamese.engine is not JSON: "
                         f"{recorded[:40]!r}") from None


def _create_quietly(model_path: Path, config: DetectorConfig) -> cv2.FaceDetectorYN:
    """OpenCV 5's FaceDetectorYN sets a DNN target its graph engine ignores and warns on stderr
    each time (one line per detector, in any process that imported cv2 before us): at most
    errors are logged while it is created."""
    logging = cv2.utils.logging
    level = logging.getLogLevel()
    logging.setLogLevel(min(level, logging.LOG_LEVEL_ERROR))
    try:
        return cv2.FaceDetectorYN.create(str(model_path), "", (320, 320),
                                         config.score_threshold, config.nms_threshold,
                                         config.top_k)
    finally:
        logging.setLogLevel(level)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of (N, 4) x, y, w, h boxes (0 where both are empty)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box, or None."""
    return max(faces, key=lambda face: face.area, default=None)


def most_central_face(faces: list[Face], image_shape: tuple[int, ...]) -> Face | None:
    """The face whose box centre lies nearest the image centre, or None."""
    centre = np.array([image_shape[1], image_shape[0]], dtype=np.float32) / 2
    return min(faces, key=lambda face: float(np.linalg.norm(face.center - centre)), default=None)
