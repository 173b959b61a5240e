"""YuNet (2023mar) through onnxruntime: the network run on a padded image and its outputs
decoded as OpenCV's FaceDetectorYN decodes them (same boxes, landmarks and scores, to float
rounding), with OpenCV's NMS.

onnxruntime runs this small network 2-4x faster than OpenCV 5.1's DNN engine on this CPU
(docs/EXPORT.md); the file needs symbolic input height and width (the packaged one has them).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

STRIDES = (8, 16, 32)
ALIGN = 32  # the network's input sides are padded to a multiple of this


class OnnxYuNet:
    """FaceDetectorYN's `detect` on onnxruntime: rows of x, y, w, h, 5 landmarks, score."""

    def __init__(self, session: ort.InferenceSession, score_threshold: float,
                 nms_threshold: float, top_k: int) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.score_threshold, self.nms_threshold, self.top_k = (score_threshold, nms_threshold,
                                                                top_k)
        self._grids: dict[tuple[int, int], list[np.ndarray]] = {}

    def _grid(self, height: int, width: int) -> list[np.ndarray]:
        """Per stride, the (column, row) of every anchor, in the network's output order."""
        if (height, width) not in self._grids:
            grids = []
            for stride in STRIDES:
                rows, cols = np.divmod(np.arange((height // stride) * (width // stride)),
                                       width // stride)
                grids.append(np.stack([cols, rows], axis=1).astype(np.float32))
            self._grids = {(height, width): grids}  # one frame size at a time
        return self._grids[(height, width)]

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """Faces in a BGR uint8 image as (N, 15) float32 rows, or None when there are none."""
        height, width = image.shape[:2]
        padded_h, padded_w = (-(-height // ALIGN) * ALIGN, -(-width // ALIGN) * ALIGN)
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = image.transpose(2, 0, 1)
        outputs = self.session.run(None, {self.input_name: blob})
        found = []
        for level, (grid, stride) in enumerate(zip(self._grid(padded_h, padded_w), STRIDES,
                                                   strict=True)):
            cls, obj, box, marks = (outputs[level + 3 * part][0] for part in range(4))
            score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = score >= self.score_threshold
            if not keep.any():
                continue
            cell, box = grid[keep], box[keep]
            centre, size = (cell + box[:, :2]) * stride, np.exp(box[:, 2:4]) * stride
            landmarks = (marks[keep].reshape(-1, 5, 2) + cell[:, None, :]) * stride
            found.append(np.concatenate([centre - size / 2, size, landmarks.reshape(-1, 10),
                                         score[keep, None]], axis=1))
        if not found:
            return None
        rows = np.concatenate(found).astype(np.float32)
        kept = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(),
                                self.score_threshold, self.nms_threshold, top_k=self.top_k)
        return rows[np.asarray(kept, dtype=np.int64).reshape(-1)] if len(kept) else None


def onnx_session(path: Path, threads: int) -> ort.InferenceSession | None:
    """An onnxruntime session on the CPU for a detector file, or None when onnxruntime cannot
    load it (OpenCV Zoo's block-quantised files) -- such files run on OpenCV."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:  # onnxruntime raises its own exception types
        return None


def runs_any_size(session: ort.InferenceSession) -> bool:
    """Whether the file's input height and width are symbolic (any frame size)."""
    shape = session.get_inputs()[0].shape
    return len(shape) == 4 and not isinstance(shape[2], int) and not isinstance(shape[3], int)
