"""A door camera in bad light, as a random degradation of aligned face crops (for adaptation).

Each crop: grey, a strong light from one side (a gain ramp along a random direction, the far
side dark), underexposure, sensor noise, blur (motion along a random axis, or defocus), JPEG
compression. The kinds are those of issue 28's door camera; the code and the ranges are this
module's own (tools/render_door_light.py renders evaluation sets from whole photos with a
left-right ramp, fixed gain and noise ranges and horizontal blur; here the ramp's direction, the
blur's axis and every range are drawn wider, on 112 px aligned crops).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class DegradeConfig:
    grey_prob: float = 0.8
    floor: tuple[float, float] = (0.03, 0.4)  # gain on the dark side
    slope: tuple[float, float] = (0.6, 1.8)  # gain added across the face
    power: tuple[float, float] = (1.0, 3.0)  # ramp curvature
    exposure: tuple[float, float] = (0.25, 0.9)
    noise: tuple[float, float] = (0.0, 0.06)  # sensor noise std, [0, 1] units
    blur: tuple[int, int] = (1, 9)  # kernel length (1: none)
    jpeg: tuple[int, int] = (10, 50)


def _side_light(shape: tuple[int, int], rng: np.random.Generator,
                config: DegradeConfig) -> np.ndarray:
    height, width = shape
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    along = np.cos(angle) * (xs / (width - 1) - 0.5) + np.sin(angle) * (ys / (height - 1) - 0.5)
    ramp = np.clip(along + 0.5, 0.0, 1.0) ** rng.uniform(*config.power)
    return rng.uniform(*config.floor) + rng.uniform(*config.slope) * ramp


def _blur(x: np.ndarray, rng: np.random.Generator, config: DegradeConfig) -> np.ndarray:
    length = int(rng.integers(config.blur[0], config.blur[1] + 1))
    if length <= 1:
        return x
    if rng.random() < 0.3:  # defocus
        return cv2.GaussianBlur(x, (0, 0), length / 4)
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0 / length
    if rng.random() < 0.5:
        kernel = kernel.T
    return cv2.filter2D(x, -1, kernel)


def degrade(crop: np.ndarray, rng: np.random.Generator,
            config: DegradeConfig = DegradeConfig()) -> np.ndarray:
    """One degraded view of a BGR uint8 crop (H, W, 3), BGR uint8."""
    if rng.random() < config.grey_prob:
        grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        x = np.repeat(grey[..., None], 3, axis=2).astype(np.float32) / 255.0
    else:
        x = crop.astype(np.float32) / 255.0
    x = x * _side_light(x.shape[:2], rng, config)[..., None] * rng.uniform(*config.exposure)
    x = x + rng.normal(0.0, rng.uniform(*config.noise), x.shape[:2])[..., None]
    x = _blur(x.astype(np.float32), rng, config)
    out = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    quality = int(rng.integers(config.jpeg[0], config.jpeg[1] + 1))
    _, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)


def degrade_batch(crops: np.ndarray, rng: np.random.Generator,
                  config: DegradeConfig = DegradeConfig()) -> np.ndarray:
    """Degraded views (N, H, W, 3) of BGR uint8 crops, each with its own draw."""
    return np.stack([degrade(crop, rng, config) for crop in crops])
