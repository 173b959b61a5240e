"""Checkpoints: the config, Preprocess spec, thresholds, people and weights of a run in one file.

On disk a checkpoint is a dict (format 1) written by torch.save; in code it is a `Checkpoint`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from siamese.runtime.errors import ModelError
from siamese.runtime.storage.fileio import check_output_path
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.calibration import Calibration
from siamese.train.config import TrainConfig
from siamese.train.models import FlipAveraged, create_backbone
from torch import nn

CHECKPOINT_FORMAT = 1


@dataclass(frozen=True)
class TrainingSource:
    """Where the training faces came from: LFW (with the people file) or a folder."""

    kind: str  # lfw | folder
    root: str
    people: str | None = None

    @property
    def lfw_root(self) -> Path | None:
        """The training LFW, when it was LFW and is still there."""
        root = Path(self.root)
        return root if self.kind == "lfw" and root.is_dir() else None

    @property
    def folder_root(self) -> Path | None:
        """The training folder, when it was a folder and is still there."""
        root = Path(self.root)
        return root if self.kind == "folder" and root.is_dir() else None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "root": self.root,
                **({"people": self.people} if self.people else {})}


@dataclass
class TrainingState:
    """What resuming needs beyond the weights."""

    optimizer: dict
    head: dict | None
    rng: dict
    hard_triplets: np.ndarray
    best_auc: float


@dataclass
class Checkpoint:
    config: TrainConfig
    preprocess: Preprocess
    calibration: Calibration
    weights: dict[str, torch.Tensor]
    epoch: int
    train_people: list[str]
    val_people: list[str]
    source: TrainingSource | None = None
    history: list[dict] = field(default_factory=list)  # one record per epoch
    flip_average: bool = False  # embed as the mean of the face and its mirror image
    training: TrainingState | None = None  # None in a slimmed (inference-only) checkpoint

    @property
    def arch(self) -> str:
        return self.config.arch

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def metric(self) -> str:
        return self.config.metric

    def build_model(self) -> nn.Module:
        """The embedding model, weights loaded, in eval mode (mirror-averaged if flip_average)."""
        model = create_backbone(self.arch, self.embedding_dim, self.config.l2_normalize)
        model.load_state_dict(self.weights)
        return (FlipAveraged(model) if self.flip_average else model).eval()

    def slimmed(self, half: bool = False) -> Checkpoint:
        """Inference only: no training state; weights in float16 if `half`."""
        weights = ({k: v.half() if v.is_floating_point() else v for k, v in self.weights.items()}
                   if half else self.weights)
        return replace(self, weights=weights, training=None)

    def to_payload(self) -> dict:
        payload = {
            "format": CHECKPOINT_FORMAT, "arch": self.arch, "config": self.config.to_dict(),
            "preprocess": self.preprocess.to_dict(), "metric": self.metric,
            "embedding_dim": self.embedding_dim, "epoch": self.epoch, "history": self.history,
            "calibration": self.calibration.to_dict(), "val_people": self.val_people,
            "train_people": self.train_people,
            "source": self.source.to_dict() if self.source else None,
            "model": self.weights, "flip_average": self.flip_average,
        }
        if self.training is not None:
            t = self.training
            payload.update(optimizer=t.optimizer, head=t.head, rng=t.rng,
                           hard_triplets=t.hard_triplets, best_auc=t.best_auc)
        return payload

    @classmethod
    def from_payload(cls, payload: dict) -> Checkpoint:
        training = None
        if payload.get("optimizer") is not None:
            training = TrainingState(payload["optimizer"], payload.get("head"), payload["rng"],
                                     payload.get("hard_triplets", np.zeros((0, 3), np.int64)),
                                     float(payload.get("best_auc", float("-inf"))))
        source = payload.get("source")
        return cls(config=TrainConfig.from_dict(payload["config"]),
                   preprocess=Preprocess.from_dict(payload["preprocess"]),
                   calibration=Calibration.from_dict(payload["calibration"]),
                   weights=payload["model"], epoch=int(payload["epoch"]),
                   train_people=list(payload["train_people"]),
                   val_people=list(payload["val_people"]),
                   source=TrainingSource(**source) if source else None,
                   history=list(payload.get("history", [])),
                   flip_average=bool(payload.get("flip_average", False)), training=training)

    def save(self, path: str | Path) -> None:
        """torch.save to a temporary file beside `path`, then rename over it."""
        path = check_output_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        torch.save(self.to_payload(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> Checkpoint:
        """Read a checkpoint written by siamese-train; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"checkpoint not found: {path}")
        try:
            payload = torch.load(path, map_location=device, weights_only=False)
        except Exception as exc:  # torch raises many types for a damaged file
            raise ModelError(f"cannot read checkpoint {path}: {exc}") from None
        if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"{path} is not a siamese-edge checkpoint")
        try:
            return cls.from_payload(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{path}: damaged checkpoint ({exc})") from None
