"""Face tensors for training: cached crops through the runtime's Preprocess, then torch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.datasets import split_people
from siamese.train.face_cache import AlignedFaces, CacheRecord


@dataclass
class FaceTensors:
    """Model-sized uint8 pixels (N, C, H, W) on a device, with integer identity labels."""

    pixels: torch.Tensor
    labels: np.ndarray
    identities: list[str]
    records: list[CacheRecord]

    @classmethod
    def from_cache(cls, faces: AlignedFaces, records: list[CacheRecord], spec: Preprocess,
                   device: torch.device | str = "cpu", chunk: int = 2048) -> FaceTensors:
        """Resize and colour-convert with the runtime's own Preprocess.pixels (one code path)."""
        rows = np.array([record.row for record in records])
        parts = [spec.pixels(np.asarray(faces.crops[rows[i:i + chunk]]))
                 for i in range(0, len(rows), chunk)]
        pixels = np.concatenate(parts) if parts else np.zeros(
            (0, spec.size, spec.size, spec.channels), np.uint8)
        identities = sorted({record.identity for record in records})
        index = {name: i for i, name in enumerate(identities)}
        labels = np.array([index[record.identity] for record in records], dtype=np.int64)
        tensor = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
        return cls(tensor.to(device), labels, identities, records)

    def __len__(self) -> int:
        return len(self.labels)


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    return pixels.float() / 255.0


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Grey (N, 1, H, W) of RGB (N, 3, H, W) with BT.601's weights, as OpenCV converts."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
    return (x * weights[:, None, None]).sum(1, keepdim=True)


def normalize(x: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """The runtime's Preprocess.normalize on a (N, C, H, W) tensor already scaled to [0, 1]."""
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def model_input(views: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """[0, 1] RGB views (N, 3, H, W), or grey (N, 1, H, W), of any size as a model's input:
    resized to `spec.size`, coloured, normalised and laid out as `spec` says."""
    if views.shape[-1] != spec.size:
        views = torch.nn.functional.interpolate(views, size=(spec.size, spec.size),
                                                mode="bilinear", align_corners=False,
                                                antialias=True)
    if spec.color == "gray" and views.shape[1] == 3:
        views = luminance(views)
    elif spec.color == "rgb" and views.shape[1] == 1:
        views = views.expand(-1, 3, -1, -1)
    x = normalize(views, spec)
    return x.permute(0, 2, 3, 1).contiguous() if spec.layout == "NHWC" else x


def split_train_val(faces: AlignedFaces, records: list[CacheRecord], val_fraction: float,
                    seed: int, spec: Preprocess,
                    device: torch.device | str) -> tuple[FaceTensors, FaceTensors]:
    """Training and held-out (validation) faces: a `val_fraction` of the people, all their
    images, never trained on."""
    train_people, val_people = split_people(sorted({r.identity for r in records}),
                                            val_fraction, seed)
    return (FaceTensors.from_cache(faces, [r for r in records if r.identity in train_people],
                                   spec, device),
            FaceTensors.from_cache(faces, [r for r in records if r.identity in val_people],
                                   spec, device))
