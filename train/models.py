"""Embedding networks and their registry: `create_backbone(name)`.

Every model maps a preprocessed face batch to a 128-d embedding; with `l2_normalize` the
normalisation is the graph's last op, so exported models emit unit vectors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from siamese.runtime.errors import ConfigError
from siamese.runtime.vision.preprocess import Preprocess
from torch import nn

_REGISTRY: dict[str, tuple[Callable[..., nn.Module], Preprocess]] = {}


def register(name: str, preprocess: Preprocess):
    """Register a backbone factory under `name` with its default input spec."""

    def wrap(factory):
        _REGISTRY[name] = (factory, preprocess)
        return factory

    return wrap


def backbone_names() -> list[str]:
    return sorted(_REGISTRY)


def default_preprocess(name: str) -> Preprocess:
    return _REGISTRY[name][1]


class EmbeddingModel(nn.Module):
    """A backbone producing `embedding_dim` features, optionally L2-normalised as the last op."""

    def __init__(self, backbone: nn.Module, l2_normalize: bool) -> None:
        super().__init__()
        self.backbone = backbone
        self.l2_normalize = l2_normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding = self.backbone(x)
        return F.normalize(embedding, dim=1) if self.l2_normalize else embedding


class FlipAveraged(nn.Module):
    """A model whose embedding of a face is combined with that of its mirror image (the mean,
    re-normalised for unit embeddings): a test-time average that the exported graph carries."""

    def __init__(self, model: EmbeddingModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one pass over the doubled batch: the exported graph then holds each weight once
        both = self.model(torch.cat([x, x.flip(3)]))
        total = both[:x.shape[0]] + both[x.shape[0]:]
        return F.normalize(total, dim=1) if self.model.l2_normalize else total / 2


def create_backbone(name: str, embedding_dim: int = 128, l2_normalize: bool = True,
                    **kwargs) -> EmbeddingModel:
    """Build a registered architecture, e.g. `create_backbone("seed")`."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}; choose from {', '.join(_REGISTRY)}")
    factory, _ = _REGISTRY[name]
    return EmbeddingModel(factory(embedding_dim=embedding_dim, **kwargs), l2_normalize)


@register("seed", Preprocess(size=100, color="gray", mean=(0.5,), std=(0.5,)))
class EmbeddingNet(nn.Module):
    """The seed tutorial's network: two 5x5 conv blocks and three linear layers, 1x100x100 input."""

    def __init__(self, embedding_dim: int = 128) -> None:
        super().__init__()
        self.convnet = nn.Sequential(
            nn.Conv2d(1, 32, 5), nn.PReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(32, 64, 5), nn.PReLU(), nn.MaxPool2d(2, 2),
        )
        self.fc = nn.Sequential(
            nn.Linear(64 * 22 * 22, 256), nn.PReLU(),
            nn.Linear(256, 256), nn.PReLU(),
            nn.Linear(256, embedding_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.convnet(x), 1))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (projected when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.shortcut(x))


class EdgeResNet(nn.Module):
    """A plain-convolution ResNet for edge CPUs: BasicBlocks, BatchNorm, ReLU, no depthwise ops.

    A stride-2 stem, four stages (each halving the resolution), then a flattened
    BatchNorm-Dropout-Linear-BatchNorm embedding head as in ArcFace's "E" output, which keeps
    spatial layout (better for faces than global pooling).
    """

    def __init__(self, embedding_dim: int = 128, channels: tuple[int, ...] = (32, 64, 96, 128),
                 blocks: tuple[int, ...] = (1, 2, 2, 1), input_size: int = 96,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False),
                                  nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        layers, in_channels = [], channels[0]
        for out_channels, count in zip(channels, blocks, strict=True):
            for index in range(count):
                layers.append(BasicBlock(in_channels, out_channels, 2 if index == 0 else 1))
                in_channels = out_channels
        self.stages = nn.Sequential(*layers)
        side = input_size
        for _ in range(len(channels) + 1):  # a stride-2, padding-1 3x3 conv rounds up
            side = (side + 1) // 2
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_channels), nn.Dropout(dropout), nn.Flatten(),
            nn.Linear(in_channels * side * side, embedding_dim), nn.BatchNorm1d(embedding_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


_EDGE_SPEC = Preprocess(size=96, color="rgb", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@register("edge-resnet", _EDGE_SPEC)
def edge_resnet(embedding_dim: int = 128, **kwargs) -> EdgeResNet:
    """Stages 32-64-96-128: 0.9 M parameters, 46 M multiply-adds per 96x96 face."""
    return EdgeResNet(embedding_dim, **kwargs)


@register("edge-resnet-m", _EDGE_SPEC)
def edge_resnet_medium(embedding_dim: int = 128, **kwargs) -> EdgeResNet:
    """Wider stages (32-64-128-256): 1.9 M parameters, 60 M multiply-adds at 96 px."""
    kwargs.setdefault("channels", (32, 64, 128, 256))
    return EdgeResNet(embedding_dim, **kwargs)


@register("edge-resnet-l", Preprocess(size=112, color="rgb", mean=(0.5, 0.5, 0.5),
                                       std=(0.5, 0.5, 0.5)))
def edge_resnet_large(embedding_dim: int = 128, **kwargs) -> EdgeResNet:
    """Stages 48-96-160-256 (1-2-3-1 blocks) at the crop's own 112 px: 3.2 M parameters,
    177 M multiply-adds."""
    kwargs.setdefault("channels", (48, 96, 160, 256))
    kwargs.setdefault("blocks", (1, 2, 3, 1))
    kwargs.setdefault("input_size", 112)
    return EdgeResNet(embedding_dim, **kwargs)


@register("edge-resnet-s", Preprocess(size=64, color="rgb", mean=(0.5, 0.5, 0.5),
                                       std=(0.5, 0.5, 0.5)))
def edge_resnet_small(embedding_dim: int = 128, **kwargs) -> EdgeResNet:
    """A 64 px variant for quick experiments and tests."""
    kwargs.setdefault("channels", (16, 32, 48, 64))
    kwargs.setdefault("input_size", 64)
    return EdgeResNet(embedding_dim, **kwargs)


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of conv and linear layers, counted with hooks."""
    total = 0

    def hook(module, _inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.kernel_size[0] \
                * module.kernel_size[1]
            total += output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    for handle in handles:
        handle.remove()
    return total
