"""Inference engines for embedding models: one small class per engine, the same surface.

`OnnxRuntimeEngine` runs any ONNX file onnxruntime loads (CUDA where present); `OpenCVEngine`
runs it through OpenCV 5's DNN engine, which loads the OpenCV Zoo's block-quantised files but not
onnxruntime's INT8 (QLinear/QDQ) graphs. A model's metadata (`ModelInfo.engine`) names the
engine measured fastest for it on a CPU (siamese-bench); an engine that cannot load the file is
a ModelError naming both, never a silent switch to the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from siamese.runtime.errors import ModelError

ONNXRUNTIME, OPENCV = "onnxruntime", "opencv"
ENGINES = (ONNXRUNTIME, OPENCV)


def default_providers() -> list[str]:
    """CUDA when onnxruntime-gpu sees a GPU, then the CPU."""
    available = ort.get_available_providers()
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in available] or available


def gpu_present() -> bool:
    return "CUDAExecutionProvider" in ort.get_available_providers()


class OnnxRuntimeEngine:
    """onnxruntime; its intra-op threads do not spin after a run (on 2 cores a spinning pool
    took the CPU from the OpenCV detector run next: detection 2x slower right after an embed)."""

    name = ONNXRUNTIME

    def __init__(self, path: Path, providers: Sequence[str] | None = None,
                 threads: int = 0) -> None:
        unknown = set(providers or []) - set(ort.get_available_providers())
        if unknown:
            raise ModelError(f"onnxruntime provider(s) not available here: {', '.join(unknown)}; "
                             f"available: {', '.join(ort.get_available_providers())}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=list(providers or default_providers()))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"onnxruntime cannot load model {path}: "
                             f"{str(exc).splitlines()[0]}") from None
        self.input = self.session.get_inputs()[0]
        self.input_name = self.input.name
        fixed = self.input.shape[0]
        self.fixed_batch = fixed if isinstance(fixed, int) and fixed > 0 else None

    @property
    def providers(self) -> list[str]:
        return self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0]


class OpenCVEngine:
    """OpenCV's DNN engine (`cv2.dnn.readNetFromONNX`); `threads` > 0 sets OpenCV's threads for
    the whole process (the detector shares them)."""

    name = OPENCV
    providers = ["OpenCV DNN (CPU)"]

    def __init__(self, path: Path, input_name: str, threads: int = 0) -> None:
        if threads > 0:
            cv2.setNumThreads(threads)
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as exc:
            raise ModelError(f"OpenCV's DNN engine cannot load model {path}: "
                             f"{_first_line(exc)}; run it with engine=\"onnxruntime\" "
                             f"or re-record the engine with siamese-bench --record") from None
        self.input_name = input_name
        self.fixed_batch = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.net.setInput(np.ascontiguousarray(batch, np.float32), self.input_name)
        try:
            return self.net.forward()
        except cv2.error as exc:
            raise ModelError(f"OpenCV's DNN engine failed on the model: "
                             f"{_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def choose_engine(recorded: str, requested: str | None, providers: Sequence[str] | None) -> str:
    """The engine to run: the caller's, else onnxruntime when providers are named or a GPU is
    present (CUDA stays the default there), else the one the model's metadata records."""
    if requested is not None:
        if requested not in ENGINES:
            raise ModelError(f"unknown engine {requested!r}; choose from {', '.join(ENGINES)}")
        return requested
    if providers or gpu_present():
        return ONNXRUNTIME
    return recorded or ONNXRUNTIME
