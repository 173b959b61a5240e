"""FP32 ONNX export: dynamic batch, checked by onnx.checker, graph-optimised by onnxruntime,
self-describing metadata."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from siamese.runtime.model_info import ModelInfo
from siamese.runtime.storage.fileio import check_output_path

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "input", "embedding"


def write_metadata(model: onnx.ModelProto, info: ModelInfo) -> None:
    """Replace the model's siamese metadata_props with `info`."""
    keep = [p for p in model.metadata_props if not p.key.startswith("siamese.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in info.to_metadata().items():
        model.metadata_props.add(key=key, value=value)


def save_atomic(model: onnx.ModelProto, path: Path) -> None:
    check_output_path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


@contextlib.contextmanager
def third_party_quiet():
    """Silence the converters' and quantiser's own chatter (warnings, log lines such as
    "Axis 1 is out-of-range", float16 truncation notices, stray prints) unless the command
    runs verbose (-v sets the root logger to INFO); our own results and errors still show."""
    root = logging.getLogger()
    if root.isEnabledFor(logging.INFO):
        yield
        return
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_fp32(model: torch.nn.Module, info: ModelInfo, path: Path, opset: int) -> Path:
    """Export, check and optimise; the result carries `info` in metadata_props."""
    example = torch.zeros(2, *info.preprocess.input_shape)
    model = model.eval().cpu()
    with tempfile.TemporaryDirectory() as tmp:
        raw, optimised = Path(tmp) / "raw.onnx", Path(tmp) / "optimised.onnx"
        with third_party_quiet():
            torch.onnx.export(model, (example,), str(raw), input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], opset_version=opset, dynamo=True,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
                              external_data=False, verbose=False)
        onnx.checker.check_model(str(raw), full_check=True)
        options = ort.SessionOptions()
        # basic level only: constant folding and fusions that any execution provider can run
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimised)
        ort.InferenceSession(str(raw), options, providers=["CPUExecutionProvider"])
        exported = onnx.load(str(optimised))
    _rename_batch_axis(exported)
    onnx.checker.check_model(exported)
    write_metadata(exported, info)
    save_atomic(exported, path)
    return path


def _rename_batch_axis(model: onnx.ModelProto) -> None:
    for value in [*model.graph.input, *model.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.dim_param = "batch"
