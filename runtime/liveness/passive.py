"""The passive texture signal: does the face look live, or like a recapture (print, screen)?

MiniFASNet V2 and V1SE (Minivision's Silent-Face-Anti-Spoofing, Apache-2.0; converted by
tools/convert_minifasnet.py, see models/PROVENANCE-minifasnet.md) each see the face box scaled
around its centre (2.7 and 4.0 times, capped so that it fits the frame, shifted inside it),
resized to 80x80, BGR 0-255 as the frame holds it. The score is the mean of their real-class
probabilities, in [0, 1]; under the file's threshold the face is taken for a recapture.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort
from siamese.runtime.errors import ModelError
from siamese.runtime.vision.detector import MODELS_DIR
from siamese.runtime.vision.imageio import as_bgr_frame

TEXTURE_PATH = MODELS_DIR / "minifasnet_texture.onnx"
PREFIX = "siamese.texture."
FORMAT = "siamese-texture-1"


class TextureScorer(Protocol):
    """What the liveness check needs: a threshold and a real score per face box."""

    threshold: float

    def score(self, image: np.ndarray, box: np.ndarray) -> float: ...


@dataclass(frozen=True)
class TextureInfo:
    """What a texture model says about itself (ONNX metadata_props, prefix siamese.texture.)."""

    models: tuple[str, ...]
    crop_scales: tuple[float, ...]
    input_size: tuple[int, int]  # (width, height)
    threshold: float

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str) -> TextureInfo:
        if metadata.get(PREFIX + "format") != FORMAT:
            raise ModelError(f"{source} is not a {FORMAT} texture model (its metadata lacks "
                             f"{PREFIX}format; convert it with tools/convert_minifasnet.py)")
        try:
            info = cls(tuple(json.loads(metadata[PREFIX + "models"])),
                       tuple(float(s) for s in json.loads(metadata[PREFIX + "crop_scales"])),
                       tuple(int(v) for v in json.loads(metadata[PREFIX + "input_size"])),
                       float(json.loads(metadata[PREFIX + "threshold"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{source}: malformed texture metadata ({exc})") from None
        if not (info.crop_scales and len(info.models) == len(info.crop_scales)
                and len(info.input_size) == 2 and 0 <= info.threshold <= 1):
            raise ModelError(f"{source}: inconsistent texture metadata {info}")
        return info


def crop_window(box: np.ndarray, scale: float, width: int, height: int
                ) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), inclusive, of `box` (x, y, w, h) scaled by `scale` around its centre:
    the scale is capped so that the window fits the frame, and the window is shifted inside it
    (Minivision's training crop rule), so any box, however small or far out, gives pixels."""
    x, y, w, h = (float(v) for v in box)
    w, h = max(w, 1.0), max(h, 1.0)
    scale = max(0.0, min(scale, (height - 1) / h, (width - 1) / w))
    side_w, side_h = w * scale, h * scale
    x0 = min(max(x + (w - side_w) / 2, 0.0), width - 1 - side_w)
    y0 = min(max(y + (h - side_h) / 2, 0.0), height - 1 - side_h)
    return int(x0), int(y0), int(x0 + side_w), int(y0 + side_h)


def texture_crops(image: np.ndarray, box: np.ndarray, scales: Sequence[float],
                  size: tuple[int, int]) -> np.ndarray:
    """(K, 3, h, w) float32 BGR 0-255 crops of `box` in a frame (any form
    vision.imageio.as_bgr_frame takes: grey, BGR or BGRA), one per scale."""
    image = as_bgr_frame(image)
    height, width = image.shape[:2]
    crops = []
    for scale in scales:
        x0, y0, x1, y1 = crop_window(box, scale, width, height)
        crops.append(cv2.resize(image[y0:y1 + 1, x0:x1 + 1], size))
    return np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)


class TextureModel:
    """The converted MiniFASNet pair run by onnxruntime.

    >>> model = TextureModel()
    >>> model.score(frame, face.box) < model.threshold   # a recapture
    """

    def __init__(self, path: str | Path | None = None, providers: Sequence[str] | None = None,
                 threads: int = 1) -> None:
        self.path = Path(path) if path else TEXTURE_PATH
        if not self.path.is_file():
            raise ModelError(f"texture model not found: {self.path} (reinstall the package, or "
                             f"turn the texture signal off: --texture off)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or
                                                               ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load texture model {self.path}: "
                             f"{str(exc).splitlines()[0]}") from None
        self.info = TextureInfo.from_metadata(self.session.get_modelmeta().custom_metadata_map,
                                              str(self.path))
        inputs = self.session.get_inputs()
        width, height = self.info.input_size
        if len(inputs) != 1 or tuple(inputs[0].shape[1:]) != (len(self.info.models), 3,
                                                                  height, width):
            raise ModelError(f"{self.path}: graph input {[i.shape for i in inputs]} disagrees "
                             f"with its metadata {self.info}")
        self.input_name = inputs[0].name
        self.threshold = self.info.threshold

    def scores(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Each model's real-class probability for the face `box` of BGR `image`, shape (K,)."""
        crops = texture_crops(image, box, self.info.crop_scales, self.info.input_size)
        return self.session.run(None, {self.input_name: crops[None]})[0][0]

    def score(self, image: np.ndarray, box: np.ndarray) -> float:
        """The real score in [0, 1]: the models' mean real-class probability."""
        return float(self.scores(image, box).mean())


@functools.lru_cache(maxsize=4)
def load_texture_model(path: Path = TEXTURE_PATH) -> TextureModel:
    """One shared model per path (onnxruntime sessions may run from several threads)."""
    return TextureModel(path)
