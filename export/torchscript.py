"""Loading the exported TorchScript file (the seed tutorial's deployment path) in Python.

The runtime serves ONNX through onnxruntime; this loader is for code that already runs PyTorch.
The file carries the same metadata as the ONNX exports (an extra file `siamese.json`), so the
crops are preprocessed exactly as the runtime does.

>>> from siamese.export.torchscript import load_torchscript
>>> model = load_torchscript("exports/<run>/model.torchscript.pt")
>>> vectors = model.embed(crops)      # aligned BGR uint8 crops (N, 112, 112, 3) -> (N, D)
>>> model.info.threshold              # the calibrated decision threshold
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from siamese.runtime.errors import ModelError
from siamese.runtime.model_info import ModelInfo

EXTRA_FILE = "siamese.json"


class TorchScriptEmbedder:
    """A traced embedding network and its ModelInfo; `embed` mirrors runtime.Embedder.embed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(f"TorchScript file not found: {self.path}")
        extra = {EXTRA_FILE: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.jit is deprecated upstream
                self.module = torch.jit.load(str(self.path), map_location="cpu",
                                             _extra_files=extra)
        except (RuntimeError, ValueError) as exc:
            raise ModelError(f"cannot load TorchScript {self.path}: "
                             f"{str(exc).splitlines()[0]}") from None
        if not extra[EXTRA_FILE]:
            raise ModelError(f"{self.path} lacks siamese-edge metadata: export it with "
                             f"siamese-export --torchscript")
        try:
            self.info = ModelInfo.from_dict(json.loads(extra[EXTRA_FILE]), str(self.path))
        except (ValueError, TypeError, AttributeError):
            raise ModelError(f"{self.path}: malformed metadata") from None
        self.module.eval()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) of aligned BGR uint8 crops, one (H, W, 3) or a batch."""
        with torch.no_grad():
            vectors = self.module(torch.from_numpy(self.info.preprocess(crops))).numpy()
        vectors = vectors.astype(np.float32)
        if self.info.metric == "cosine":
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        return vectors


def load_torchscript(path: str | Path) -> TorchScriptEmbedder:
    """The exported `model.torchscript.pt` with its metadata."""
    return TorchScriptEmbedder(path)
