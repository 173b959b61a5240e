"""Derived variants of the FP32 ONNX model: FP16 and static per-channel QDQ INT8, plus the
traced TorchScript file."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from siamese.export.onnx_export import (
    INPUT_NAME,
    save_atomic,
    third_party_quiet,
    write_metadata,
)
from siamese.export.recipes import FLOAT_KEEP_RECIPES
from siamese.runtime.model_info import ModelInfo


def export_fp16(fp32_path: Path, info: ModelInfo, path: Path) -> Path:
    """FP16 weights and arithmetic; inputs and outputs stay float32. A GPU artefact: on
    onnxruntime's CPU provider it runs slower than FP32 (casts are inserted)."""
    from onnxconverter_common import float16

    with third_party_quiet():  # "the float16 value is truncated" notices
        model = float16.convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
    write_metadata(model, info.with_variant("fp16"))
    save_atomic(model, path)
    return path


class _CalibrationReader:
    """onnxruntime CalibrationDataReader over preprocessed real faces."""

    def __init__(self, inputs: np.ndarray, batch_size: int = 16,
                 input_name: str = INPUT_NAME) -> None:
        self.input_name = input_name
        self.batches = iter([inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:  # onnxruntime may call it; one pass is all we give
        pass


def float_nodes(model: onnx.ModelProto, keep_float: str) -> list[str]:
    """Names of the nodes a `keep_float` recipe leaves unquantised: "none", "depthwise"
    (grouped convolutions: one activation scale per tensor cannot serve each channel's own range,
    the largest INT8 error in MobileFaceNet-like models such as SFace) or "depthwise+first" (also
    the first convolution, which sees raw pixels)."""
    if keep_float not in FLOAT_KEEP_RECIPES:
        raise ValueError(f"keep_float must be one of {FLOAT_KEEP_RECIPES}, not {keep_float!r}")
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    names = []
    if keep_float != "none":
        names = [n.name for n in convs
                 if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    if keep_float == "depthwise+first" and convs and convs[0].name not in names:
        names.append(convs[0].name)
    return names


def export_int8(fp32_path: Path, info: ModelInfo, path: Path, calibration: np.ndarray,
                input_name: str = INPUT_NAME, keep_float: str = "none") -> Path:
    """Static QDQ INT8, per-channel signed 7-bit weights and unsigned activations (U8S8),
    calibrated on `calibration` (preprocessed real aligned faces). Ops that onnxruntime does not
    quantise (e.g. PReLU) stay float, and so do the nodes of the `keep_float` recipe
    (`float_nodes`).

    U8S8 is onnxruntime's fast x86 path: measured here on the edge model, 0.24 ms per face
    against 0.93 ms for S8S8 activations and 0.46 ms for FP32. Weights use 7 of their 8 bits
    (`reduce_range`): on x86 CPUs without VNNI (AVX2 only) onnxruntime sums pairs of u8 x s8
    products in 16 bits, which saturate with full-range weights. Measured on such a CPU (AMD
    EPYC, AVX2, 2026-12-04), the edge model's full-range file agreed with its FP32 at mean
    cosine 0.942 (min 0.002), the 7-bit one at 0.997 (min 0.987), both 0.96-1.00 ms per face."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp, third_party_quiet():
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        reader = _CalibrationReader(calibration, input_name=input_name)
        excluded = float_nodes(onnx.load(str(prepared)), keep_float)
        quantize_static(str(prepared), str(quantized), reader, nodes_to_exclude=excluded,
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, reduce_range=True,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        model = onnx.load(str(quantized))
    write_metadata(model, info.with_variant("int8"))
    save_atomic(model, path)
    return path


def export_torchscript(model: torch.nn.Module, info: ModelInfo, path: Path) -> Path:
    """A traced TorchScript module (the seed's deployment path) with the metadata as an extra
    file `siamese.json`."""
    example = torch.zeros(1, *info.preprocess.input_shape)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated upstream; kept for the seed
        traced = torch.jit.trace(model.eval().cpu(), example)
        torch.jit.save(traced, str(tmp), _extra_files={
            "siamese.json": json.dumps(info.with_variant("torchscript").to_dict())})
    os.replace(tmp, path)
    return path
