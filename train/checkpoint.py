"""Checkpoints: architecture, config, Preprocess spec, epoch, metrics and weights in one file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from siamese.runtime.errors import ModelError
from siamese.runtime.preprocess import Preprocess
from siamese.train.config import TrainConfig
from siamese.train.models import FlipAveraged, create_backbone
from torch import nn

CHECKPOINT_FORMAT = 1


def save_atomic(payload: dict, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> dict:
    """Read a checkpoint written by siamese-train; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise ModelError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a siamese-edge checkpoint")
    return checkpoint


def build_model(checkpoint: dict) -> nn.Module:
    """The embedding model of a checkpoint, weights loaded, in eval mode; averaged with the
    mirror image when the checkpoint says `flip_average` (tools/recalibrate.py)."""
    config = TrainConfig.from_dict(checkpoint["config"])
    model = create_backbone(config.arch, config.embedding_dim, config.l2_normalize)
    model.load_state_dict(checkpoint["model"])
    return (FlipAveraged(model) if checkpoint.get("flip_average") else model).eval()


def checkpoint_preprocess(checkpoint: dict) -> Preprocess:
    return Preprocess.from_dict(checkpoint["preprocess"])

