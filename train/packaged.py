"""PyTorch models rebuilt from exported ONNX files: the packaged models as starting points.

An FP32 export of an `edge-resnet*` architecture has every convolution's batch norm folded into
the convolution (weight and bias) and the head's last BatchNorm1d folded into the Gemm; only the
head's first BatchNorm2d is kept. The rebuild loads the folded weights into the training
architecture and sets each folded batch norm to the identity with the folded bias as its bias
(weight sqrt(1 + eps), mean 0, var 1), so the torch model computes the same function as the ONNX
graph and can still be trained, and `set_statistics` can give those batch norms real statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from siamese.runtime import model_zoo
from siamese.runtime.errors import ModelError
from siamese.runtime.model_info import ModelInfo
from siamese.train.models import FlipAveraged, backbone_names, create_backbone
from torch import nn

_PREFIXES = ("model.backbone.", "backbone.")  # flip-averaged export, plain export


@dataclass
class RebuiltModel:
    """A torch embedding model (flip-averaged as its file was) and the file's metadata."""

    model: nn.Module
    info: ModelInfo
    source: Path

    @property
    def embedding_model(self) -> nn.Module:
        """The trainable model under the flip average."""
        return self.model.model if isinstance(self.model, FlipAveraged) else self.model


def resolve_source(spec: str | Path) -> Path:
    """A packaged model name (edge, edge-fp32: the FP32 file) or an ONNX path."""
    name = str(spec)
    if name in ("edge", "edge-fp32"):
        return model_zoo.PACKAGED["edge-fp32"].path
    if name in model_zoo.PACKAGED:
        raise ModelError(f"{name} is not a supported architecture to start from; "
                         f"supported: edge ({', '.join(backbone_names())} ONNX files)")
    return Path(spec)


def _read_info(model: onnx.ModelProto, path: Path) -> ModelInfo:
    metadata = {p.key: p.value for p in model.metadata_props}
    if "siamese.arch" not in metadata:
        raise ModelError(f"{path}: no siamese-edge metadata; only ONNX files exported by "
                         "siamese-export of an edge-resnet architecture can be a starting point")
    info = ModelInfo.from_metadata(metadata, str(path))
    if info.arch not in backbone_names() or not info.arch.startswith("edge-resnet"):
        raise ModelError(f"{path}: architecture {info.arch!r} cannot be rebuilt in PyTorch; "
                         "supported: edge-resnet, edge-resnet-m, edge-resnet-l, edge-resnet-s")
    if info.variant != "fp32":
        raise ModelError(f"{path} is the {info.variant} variant; start from the FP32 file")
    return info


def _identity_bn(bn: nn.BatchNorm2d | nn.BatchNorm1d, bias: torch.Tensor) -> None:
    """A batch norm computing x + bias in eval mode."""
    with torch.no_grad():
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0)
        bn.weight.fill_(float(np.sqrt(1.0 + bn.eps)))
        bn.bias.copy_(bias)


def load_onnx(path: str | Path) -> RebuiltModel:
    """The torch model of an FP32 edge-resnet ONNX file, weights exact (see module doc)."""
    path = resolve_source(path)
    if not path.is_file():
        raise ModelError(f"not found: {path}")
    try:
        graph = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for a file that is not ONNX
        raise ModelError(f"{path} is not an ONNX file ({type(exc).__name__})") from None
    info = _read_info(graph, path)
    weights = {}
    for tensor in graph.graph.initializer:
        for prefix in _PREFIXES:
            if tensor.name.startswith(prefix):
                weights[tensor.name[len(prefix):]] = torch.from_numpy(
                    numpy_helper.to_array(tensor).copy())
    model = create_backbone(info.arch, info.embedding_dim, l2_normalize=True)
    backbone = model.backbone
    modules = dict(backbone.named_modules())
    try:
        for name, module in modules.items():
            if isinstance(module, nn.Conv2d):
                module.weight.data.copy_(weights[f"{name}.weight"])
                parent, index = name.rsplit(".", 1)
                _identity_bn(modules[f"{parent}.{int(index) + 1}"], weights[f"{name}.weight_bias"])
        head_bn, linear, last_bn = backbone.head[0], backbone.head[3], backbone.head[4]
        for key in ("weight", "bias", "running_mean", "running_var"):
            getattr(head_bn, key).data.copy_(weights[f"head.0.{key}"])
        linear.weight.data.copy_(weights["head.3.weight"])
        _identity_bn(last_bn, torch.zeros_like(weights["head.3.bias"]))
        linear.bias.data.copy_(weights["head.3.bias"])
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"{path}: its weights do not fit {info.arch} ({exc})") from None
    rebuilt = FlipAveraged(model) if info.flip_average else model
    return RebuiltModel(rebuilt.eval(), info, path)


@torch.no_grad()
def set_statistics(model: nn.Module, pixels: torch.Tensor, batch_size: int = 64) -> None:
    """Give each batch norm of `model` (an embedding model, no flip average) the running
    statistics of `pixels` (normalised faces) while keeping the function it computes in eval
    mode: weight and bias are re-expressed around the new mean and variance. Adapting those
    statistics afterwards (AdaBN) then normalises each channel as the source faces did."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    sums: dict[nn.Module, list] = {m: [0.0, 0.0, 0] for m in norms}

    def hook(module, inputs, _output):
        x = inputs[0].double()
        dims = [0, 2, 3] if x.dim() == 4 else [0]
        acc = sums[module]
        acc[0] = acc[0] + x.sum(dims)
        acc[1] = acc[1] + (x * x).sum(dims)
        acc[2] += x.numel() // x.shape[1]

    handles = [m.register_forward_hook(hook) for m in norms]
    was_training = model.training
    model.eval()
    for start in range(0, len(pixels), batch_size):
        model(pixels[start:start + batch_size])
    for handle in handles:
        handle.remove()
    for bn in norms:
        total, squares, count = sums[bn]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(1e-8)
        old_scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        shift = bn.bias.double() - old_scale * bn.running_mean.double()
        # y = old_scale * x + shift = w_new * (x - mean) / sqrt(var + eps) + b_new
        new_std = (var + bn.eps).sqrt()
        bn.weight.copy_((old_scale * new_std).float())
        bn.bias.copy_((shift + old_scale * mean).float())
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
    model.train(was_training)



@dataclass
class StartingPoint:
    """The weights a training run starts from (`siamese-train --init`)."""

    arch: str
    embedding_dim: int
    weights: dict[str, torch.Tensor]
    train_people: list[str]
    folded: bool  # rebuilt from an export: its conv batch norms are identities


def load_start(spec: str | Path, device: str = "cpu") -> StartingPoint:
    """A packaged model name, an FP32 ONNX export of an edge-resnet, or a checkpoint; anything
    else is a ModelError of one line."""
    from siamese.train.checkpoint import Checkpoint

    path = resolve_source(spec)
    if not path.is_file():
        names = ", ".join(n for n in model_zoo.PACKAGED if n.startswith("edge"))
        raise ModelError(f"--init {spec}: no such file, and not a packaged model ({names})")
    with path.open("rb") as handle:
        head = handle.read(2)
    if path.suffix == ".onnx" or head[:1] == b"\x08":  # an ONNX protobuf opens with ir_version
        rebuilt = load_onnx(path)
        model = rebuilt.embedding_model
        return StartingPoint(rebuilt.info.arch, rebuilt.info.embedding_dim, model.state_dict(),
                             [], folded=True)
    if head[:1] != b"P" and head != b"\x80\x02":  # torch.save writes a zip (PK) archive
        raise ModelError(f"--init {spec}: neither a siamese-edge checkpoint nor an ONNX export "
                         "of a supported architecture")
    checkpoint = Checkpoint.load(path, device)
    return StartingPoint(checkpoint.arch, checkpoint.embedding_dim, checkpoint.weights,
                         checkpoint.train_people, folded=False)
