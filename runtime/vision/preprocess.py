"""The model-input spec that travels with a model: crop size, colour, normalisation, layout."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

import cv2
import numpy as np
from siamese.runtime.errors import ModelError


@dataclass(frozen=True)
class Preprocess:
    """How an aligned BGR uint8 crop becomes a float32 model input.

    The crop is resized to `size` x `size`, converted to grey or RGB, scaled to [0, 1],
    normalised per channel with `mean` and `std`, and laid out as NCHW or NHWC.
    """

    size: int = 112
    color: Literal["gray", "rgb"] = "rgb"
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    layout: Literal["NCHW", "NHWC"] = "NCHW"

    def __post_init__(self) -> None:
        channels = self.channels
        if self.color not in ("gray", "rgb"):
            raise ModelError(f"preprocess color must be 'gray' or 'rgb', not {self.color!r}")
        if self.layout not in ("NCHW", "NHWC"):
            raise ModelError(f"preprocess layout must be NCHW or NHWC, not {self.layout!r}")
        if len(self.mean) != channels or len(self.std) != channels:
            raise ModelError(f"preprocess mean and std need {channels} values for {self.color}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) \
                or not 8 <= self.size <= 1024:
            raise ModelError(f"preprocess size must be an integer from 8 to 1024, not "
                             f"{self.size!r}")
        values = np.asarray((*self.mean, *self.std), dtype=np.float64)
        if not np.isfinite(values).all() or min(self.std) <= 0:
            raise ModelError("preprocess mean and std must be finite, std positive")

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one input without the batch axis."""
        if self.layout == "NCHW":
            return (self.channels, self.size, self.size)
        return (self.size, self.size, self.channels)

    def pixels(self, crops: np.ndarray) -> np.ndarray:
        """Resize and colour-convert crops (N, H, W, 3) BGR uint8 to (N, size, size, C) uint8."""
        crops = np.asarray(crops, dtype=np.uint8)
        if crops.ndim == 3:
            crops = crops[None]
        out = np.empty((len(crops), self.size, self.size, self.channels), dtype=np.uint8)
        code = cv2.COLOR_BGR2GRAY if self.color == "gray" else cv2.COLOR_BGR2RGB
        for i, crop in enumerate(crops):
            if crop.shape[:2] != (self.size, self.size):
                crop = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)
            out[i] = cv2.cvtColor(crop, code).reshape(self.size, self.size, self.channels)
        return out

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """Scale (N, size, size, C) uint8 pixels to the float32 model input in `layout`."""
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (pixels.astype(np.float32) / 255.0 - mean) / std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.layout == "NCHW" else x)

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Aligned BGR uint8 crops, one (H, W, 3) or a batch (N, H, W, 3), to a float32 batch."""
        return self.normalize(self.pixels(crops))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        try:
            return cls(size=int(data["size"]), color=data["color"],
                       mean=tuple(float(v) for v in data["mean"]),
                       std=tuple(float(v) for v in data["std"]), layout=data["layout"])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"malformed preprocess spec: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocess:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, RecursionError) as exc:
            raise ModelError(f"malformed preprocess spec: {exc}") from None
