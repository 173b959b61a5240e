"""Batched face augmentation on tensors (CPU or GPU): flip, shift and scale, photometric, blur."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from siamese.train.data import luminance


@dataclass(frozen=True)
class AugmentConfig:
    flip: bool = True
    shift: float = 0.05  # fraction of the side
    scale: float = 0.08  # +- relative zoom
    rotate: float = 8.0  # +- degrees
    brightness: float = 0.2  # +- in [0, 1] pixel units
    contrast: float = 0.2  # +- relative
    blur_prob: float = 0.2
    grey_prob: float = 0.1


def augment(pixels: torch.Tensor, config: AugmentConfig,
            generator: torch.Generator) -> torch.Tensor:
    """Augment a float batch (N, C, H, W) scaled to [0, 1]; returns the same shape and range."""
    n, channels = pixels.shape[:2]
    device = pixels.device

    def uniform(low: float, high: float, size: int = n) -> torch.Tensor:
        return torch.rand(size, generator=generator, device=device) * (high - low) + low

    x = pixels
    if config.flip:
        flip = torch.rand(n, generator=generator, device=device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if config.shift or config.scale or config.rotate:
        angle = torch.deg2rad(uniform(-config.rotate, config.rotate))
        zoom = 1.0 / uniform(1 - config.scale, 1 + config.scale)
        theta = torch.zeros(n, 2, 3, device=device)
        theta[:, 0, 0] = zoom * torch.cos(angle)
        theta[:, 0, 1] = -zoom * torch.sin(angle)
        theta[:, 1, 0] = zoom * torch.sin(angle)
        theta[:, 1, 1] = zoom * torch.cos(angle)
        theta[:, :, 2] = torch.stack([uniform(-2 * config.shift, 2 * config.shift)
                                      for _ in range(2)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if channels == 3 and config.grey_prob:
        grey = luminance(x)
        to_grey = torch.rand(n, generator=generator, device=device) < config.grey_prob
        x = torch.where(to_grey[:, None, None, None], grey.expand_as(x), x)
    if config.contrast or config.brightness:
        mean = x.mean((1, 2, 3), keepdim=True)
        contrast = uniform(1 - config.contrast, 1 + config.contrast)[:, None, None, None]
        brightness = uniform(-config.brightness, config.brightness)[:, None, None, None]
        x = (x - mean) * contrast + mean + brightness
    if config.blur_prob:
        blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        blur = torch.rand(n, generator=generator, device=device) < config.blur_prob
        x = torch.where(blur[:, None, None, None], blurred, x)
    return x.clamp(0.0, 1.0)
