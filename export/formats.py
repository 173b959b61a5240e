"""The export formats, one row each: file suffix, writer, what embeds crops with the written
file, and the parity gate it must pass against the PyTorch model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from siamese.export.onnx_export import export_fp32
from siamese.export.parity import Gate
from siamese.export.torchscript import load_torchscript
from siamese.export.variants import export_fp16, export_int8, export_torchscript
from siamese.runtime.embedder import Embedder
from siamese.runtime.model_info import ModelInfo

EmbedFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ExportSource:
    """What every writer may draw on: the model, its metadata, the FP32 ONNX file written
    first, and preprocessed real faces for INT8 calibration."""

    model: torch.nn.Module
    info: ModelInfo
    fp32_path: Path
    calibration_inputs: np.ndarray
    opset: int


@dataclass(frozen=True)
class ExportFormat:
    name: str
    suffix: str
    description: str
    gate: Gate
    write: Callable[[ExportSource, Path], object]
    embedder: Callable[[Path], EmbedFn]

    def path_in(self, folder: Path) -> Path:
        return folder / f"model{self.suffix}"


def _onnx_embedder(path: Path) -> EmbedFn:
    return Embedder(path, providers=["CPUExecutionProvider"]).embed


def _torchscript_embedder(path: Path) -> EmbedFn:
    return load_torchscript(path).embed


FORMATS: dict[str, ExportFormat] = {row.name: row for row in (
    ExportFormat("fp32", ".onnx", "ONNX FP32, graph-optimised", Gate(min_cosine=0.9999),
                 lambda s, path: export_fp32(s.model, s.info, path, s.opset), _onnx_embedder),
    ExportFormat("fp16", ".fp16.onnx", "ONNX FP16 (float32 inputs and outputs), for GPUs",
                 Gate(min_cosine=0.999),
                 lambda s, path: export_fp16(s.fp32_path, s.info, path), _onnx_embedder),
    ExportFormat("int8", ".int8.onnx", "ONNX INT8, static per-channel QDQ",
                 Gate(mean_cosine=0.99, decision_agreement=0.99, max_accuracy_drop=0.01),
                 lambda s, path: export_int8(s.fp32_path, s.info, path, s.calibration_inputs),
                 _onnx_embedder),
    ExportFormat("torchscript", ".torchscript.pt", "TorchScript, traced",
                 Gate(min_cosine=0.9999),
                 lambda s, path: export_torchscript(s.model, s.info, path),
                 _torchscript_embedder),
)}
