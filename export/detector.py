"""Static INT8 of a YuNet detector with our quantiser, and the parity gate for detectors.

`quantise_detector` calibrates onnxruntime's static QDQ quantiser on real photos (tiled four to
a frame at the graph's fixed input size, so faces have frame-like sizes); `detector_parity`
gates any candidate detector against the original on the same images: recall, overlap of the
reference's top face with the candidate's best-matching face, and landmark shift in pixels.
tools/bench_detector.py runs both and times the detectors interleaved.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from siamese.export.onnx_export import third_party_quiet
from siamese.runtime.vision.detector import box_iou
from siamese.runtime.vision.imageio import read_image

CALIBRATION_SIDE = 640  # YuNet's trained input size, for files whose sides are symbolic
ENGINE_KEY = "siamese.engine"


@dataclass(frozen=True)
class DetectorGate:
    """A candidate must find a face in as many images as the reference, and where both do, put
    the reference's top face at this mean overlap and mean landmark shift."""

    max_recall_drop: float = 0.0
    min_mean_iou: float = 0.99
    max_mean_landmark_shift_px: float = 1.0


@dataclass(frozen=True)
class DetectorParity:
    images: int
    reference_recall: float
    recall: float
    mean_iou: float
    min_iou: float
    mean_landmark_shift_px: float
    max_landmark_shift_px: float
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures


def detector_parity(reference: list[np.ndarray], candidate: list[np.ndarray],
                    gate: DetectorGate = DetectorGate()) -> DetectorParity:
    """Parity of two detectors' faces on the same images: per image an (F, 14) array of boxes
    (x, y, w, h) and 5 landmarks, best face first. The reference's top face is matched to the
    candidate's face that overlaps it most, so a change of score order is not a miss."""
    if len(reference) != len(candidate):
        raise ValueError("the two detectors did not see the same images")
    found = [i for i, (r, c) in enumerate(zip(reference, candidate, strict=True))
             if len(r) and len(c)]
    ious, shifts = np.zeros(0), np.zeros(0)
    if found:
        top = np.stack([reference[i][0] for i in found])
        matched = np.stack([
            candidate[i][int(np.argmax(box_iou(row[None, :4], candidate[i][:, :4])))]
            for row, i in zip(top, found, strict=True)])
        ious = box_iou(top[:, :4], matched[:, :4])
        shifts = np.linalg.norm((top[:, 4:] - matched[:, 4:]).reshape(-1, 5, 2), axis=2).mean(1)
    count = max(len(reference), 1)
    ref_recall = sum(len(r) > 0 for r in reference) / count
    recall = sum(len(c) > 0 for c in candidate) / count
    mean_iou = float(ious.mean()) if found else 0.0
    mean_shift = float(shifts.mean()) if found else float("inf")
    failures = []
    if ref_recall - recall > gate.max_recall_drop + 1e-12:
        failures.append(f"recall {100 * recall:.2f}% < {100 * ref_recall:.2f}%")
    if mean_iou < gate.min_mean_iou:
        failures.append(f"mean box IoU {mean_iou:.4f} < {gate.min_mean_iou}")
    if mean_shift > gate.max_mean_landmark_shift_px:
        failures.append(f"mean landmark shift {mean_shift:.3f} px > "
                        f"{gate.max_mean_landmark_shift_px} px")
    return DetectorParity(len(reference), ref_recall, recall, mean_iou,
                          float(ious.min()) if found else 0.0, mean_shift,
                          float(shifts.max()) if found else float("inf"), tuple(failures))


class _TiledFrames:
    """onnxruntime CalibrationDataReader: photos tiled 2 x 2 into the graph's input size."""

    def __init__(self, input_name: str, size: tuple[int, int], photos: list[Path]) -> None:
        height, width = size
        tiles = [cv2.resize(read_image(p), (width // 2, height // 2)) for p in photos]
        self.frames = iter([
            {input_name: np.vstack([np.hstack(tiles[i:i + 2]), np.hstack(tiles[i + 2:i + 4])])
             .transpose(2, 0, 1)[None].astype(np.float32)}
            for i in range(0, len(tiles) - 3, 4)])

    def get_next(self):
        return next(self.frames, None)

    def rewind(self) -> None:
        pass


def quantise_detector(source: Path, out: Path, photos: Iterable[Path],
                      per_channel: bool = False) -> Path:
    """Static QDQ INT8 of a YuNet ONNX file (U8S8; per-tensor weights by default, the variant
    OpenCV's DNN ran fastest here), calibrated on `photos` (BGR, any size) tiled into frames of
    the file's input size (640x640 when its sides are symbolic, as the packaged file's are).
    The result runs on OpenCV: it records no engine."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    graph_input = onnx.load(str(source)).graph.input[0]
    size = tuple(d.dim_value or CALIBRATION_SIDE
                 for d in graph_input.type.tensor_type.shape.dim[2:])
    photos = list(photos)
    if len(photos) < 4 or len(size) != 2:
        raise ValueError("need at least 4 calibration photos and a detector with an NCHW "
                         "image input")
    with tempfile.TemporaryDirectory() as tmp, third_party_quiet():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), _TiledFrames(graph_input.name, size, photos),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True})
    quantised = onnx.load(str(out))
    kept = [p for p in quantised.metadata_props if p.key != ENGINE_KEY]
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(kept)
    onnx.save(quantised, str(out))
    return out
