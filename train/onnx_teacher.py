"""An ONNX embedder run by torch, so that a teacher (SFace) describes each augmented view on the
training device instead of only the cached crop, once, on the CPU.

The graph is interpreted node by node with torch's functional ops (convolutions, batch norm,
PReLU, elementwise arithmetic, Gemm, quantise/dequantise): enough for SFace as OpenCV Zoo ships
it (block-quantised weights) and as siamese-import and its INT8 write it. Every node whose inputs
are all constants is evaluated once at load, so quantised weights become float tensors. With
`float_activations`, Quantize/DequantizeLinear on activations pass values through: an INT8 file
then runs as its FP32 source with the INT8 weights. Training only; the runtime never uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from siamese.runtime.errors import ModelError
from siamese.runtime.model_info import ModelInfo
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.data import model_input

Op = Callable[..., torch.Tensor]
_INTEGER_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _conv(a: dict, x, w, b=None):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ModelError("Conv auto_pad is not supported: the teacher needs explicit pads")
    pads = list(a.get("pads", [0] * 2 * (w.dim() - 2)))
    half = len(pads) // 2
    if pads[:half] != pads[half:]:  # asymmetric: pad explicitly (F.pad takes the last axis first)
        x = F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])])
        pads = [0] * len(pads)
    return F.conv2d(x, w, b, stride=list(a.get("strides", [1, 1])), padding=pads[:half],
                    dilation=list(a.get("dilations", [1, 1])), groups=a.get("group", 1))


def _gemm(a: dict, x, w, c=None):
    x = x.t() if a.get("transA", 0) else x
    w = w.t() if a.get("transB", 0) else w
    y = a.get("alpha", 1.0) * (x @ w)
    return y if c is None else y + a.get("beta", 1.0) * c


def _channel_shape(value: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """A per-channel (1-D) scale or zero point shaped to broadcast along `axis` of `x`."""
    if value.dim() != 1 or value.numel() == 1:
        return value
    shape = [1] * x.dim()
    shape[axis % x.dim()] = -1
    return value.reshape(shape)


def _blocks(value: torch.Tensor, x: torch.Tensor, axis: int, block: int) -> torch.Tensor:
    """A blocked scale or zero point repeated to `x`'s extent along `axis`."""
    axis %= x.dim()
    return value.repeat_interleave(block, dim=axis).narrow(axis, 0, x.shape[axis])


def _dequantize(a: dict, x, scale, zero=None):
    axis, block = a.get("axis", 1), a.get("block_size", 0)
    zero = torch.zeros_like(scale) if zero is None else zero.to(scale.dtype)
    if block:
        scale, zero = _blocks(scale, x, axis, block), _blocks(zero, x, axis, block)
    else:
        scale, zero = _channel_shape(scale, x, axis), _channel_shape(zero, x, axis)
    return (x.to(scale.dtype) - zero) * scale


def _quantize(a: dict, low: int, high: int, x, scale, zero=None):
    """Integer values held in a float tensor (DequantizeLinear takes them back)."""
    axis = a.get("axis", 1)
    zero = torch.zeros_like(scale) if zero is None else zero.to(scale.dtype)
    q = torch.round(x / _channel_shape(scale, x, axis)) + _channel_shape(zero, x, axis)
    return q.clamp(low, high)


def _flatten(a: dict, x):
    return x.flatten(a.get("axis", 1)) if a.get("axis", 1) else x.reshape(1, -1)


def _reshape(a: dict, x, shape):
    dims = [int(s) for s in shape.tolist()]
    if not a.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


OPS: dict[str, Op] = {
    "Conv": _conv,
    "BatchNormalization": lambda a, x, g, b, m, v: F.batch_norm(
        x, m, v, g, b, training=False, eps=a.get("epsilon", 1e-5)),
    "PRelu": lambda a, x, slope: torch.where(x >= 0, x, x * slope),
    "Relu": lambda a, x: F.relu(x),
    "Add": lambda a, x, y: x + y,
    "Sub": lambda a, x, y: x - y,
    "Mul": lambda a, x, y: x * y,
    "Div": lambda a, x, y: x / y,
    "MatMul": lambda a, x, y: x @ y,
    "Gemm": _gemm,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": lambda a, x, *_: x,
    "Identity": lambda a, x: x,
    "DequantizeLinear": _dequantize,
}


class OnnxTeacher(torch.nn.Module):
    """A siamese-edge ONNX embedder (its metadata gives the preprocessing) as a frozen torch
    module: `forward` takes [0, 1] RGB views (N, 3, H, W) and returns unit embeddings."""

    def __init__(self, path: Path, float_activations: bool = True) -> None:
        super().__init__()
        try:
            model = onnx.load(str(path))
        except Exception as exc:  # onnx raises DecodeError, OSError, ...
            raise ModelError(f"cannot read teacher ONNX model {path}: {exc}") from None
        metadata = {p.key: p.value for p in model.metadata_props}
        self.info = ModelInfo.from_metadata(metadata, str(path))
        self.spec: Preprocess = self.info.preprocess
        self.float_activations = float_activations
        graph = model.graph
        arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        # QuantizeLinear saturates to its zero point's type (uint8 when it has none)
        self.integer_ranges = {name: _INTEGER_RANGES[a.dtype] for name, a in arrays.items()
                               if a.dtype in _INTEGER_RANGES}
        constants = {name: torch.from_numpy(np.array(a)) for name, a in arrays.items()}
        self.input_name, self.output_name = graph.input[0].name, graph.output[0].name
        unsupported = sorted({n.op_type for n in graph.node}
                             - set(OPS) - {"QuantizeLinear", "Constant"})
        if unsupported:
            raise ModelError(f"teacher {path} uses operators the torch teacher does not run: "
                             f"{', '.join(unsupported)}")
        self.nodes: list[tuple[str, list[str], list[str], dict]] = []
        for node in graph.node:  # ONNX graphs are stored in topological order
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                constants[node.output[0]] = torch.from_numpy(
                    np.array(numpy_helper.to_array(attributes["value"])))
                continue
            entry = (node.op_type, list(node.input), list(node.output), attributes)
            if all(not name or name in constants for name in node.input):
                constants[node.output[0]] = self._evaluate(entry, constants)  # once, at load
            else:
                self.nodes.append(entry)
        used = {name for _, inputs, _, _ in self.nodes for name in inputs}
        self.constant_names = sorted(name for name in constants if name in used)
        for i, name in enumerate(self.constant_names):
            value = constants[name]
            self.register_buffer(f"c{i}", value.float() if value.is_floating_point() else value)
        self.requires_grad_(False)
        self.eval()

    def _evaluate(self, entry: tuple, values: dict) -> torch.Tensor:
        op, inputs, _, attributes = entry
        args = [values[name] if name else None for name in inputs]
        while args and args[-1] is None:
            args.pop()
        if op == "QuantizeLinear":
            low, high = self.integer_ranges.get(inputs[2] if len(inputs) > 2 else "", (0, 255))
            return _quantize(attributes, low, high, *args)
        return OPS[op](attributes, *args)

    def model_input(self, views: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB views (N, 3, H, W), or grey (N, 1, H, W), to this model's input."""
        return model_input(views, self.spec)

    @torch.no_grad()
    def forward(self, views: torch.Tensor) -> torch.Tensor:
        values = {name: getattr(self, f"c{i}") for i, name in enumerate(self.constant_names)}
        values[self.input_name] = self.model_input(views.float())
        for entry in self.nodes:
            op, inputs, outputs, _ = entry
            values[outputs[0]] = (values[inputs[0]] if self.float_activations
                                  and op in ("QuantizeLinear", "DequantizeLinear")
                                  else self._evaluate(entry, values))
        return F.normalize(values[self.output_name].flatten(1), dim=1)
