"""Running an embedding model over face tensors in batches."""

from __future__ import annotations

import numpy as np
import torch
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.data import normalize, to_unit_range


def resolve_device(name: str) -> torch.device:
    """auto (CUDA when there is one, else CPU), cpu or cuda[:N]."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@torch.no_grad()
def embed_pixels(model: torch.nn.Module, pixels: torch.Tensor, spec: Preprocess,
                 device: torch.device | str, batch_size: int = 512) -> np.ndarray:
    """Embeddings (N, D) float32 of uint8 pixels (N, C, H, W), model in eval mode."""
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start:start + batch_size].to(device, non_blocking=True)
        out.append(model(normalize(to_unit_range(batch), spec)).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy()


def crop_embedder(model: torch.nn.Module, spec: Preprocess, device: torch.device | str):
    """A function mapping aligned BGR crops (N, 112, 112, 3) to embeddings, via spec.pixels."""

    def embed(crops: np.ndarray) -> np.ndarray:
        pixels = torch.from_numpy(np.ascontiguousarray(spec.pixels(crops).transpose(0, 3, 1, 2)))
        return embed_pixels(model, pixels, spec, device)

    return embed
