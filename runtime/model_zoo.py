"""Packaged embedding models by name, the default per use, and names for fingerprints.

`--model NAME|PATH` and `Verifier.from_model(NAME)` resolve names here. Each packaged file
carries its own thresholds and measured figures in its ONNX metadata (`siamese-models` lists
them); this table only says which file a name means and which name each use gets by default.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from siamese.runtime.errors import ModelError
from siamese.runtime.fingerprint import model_fingerprint
from siamese.runtime.storage import references
from siamese.runtime.vision.detector import MODELS_DIR


@dataclass(frozen=True)
class PackagedModel:
    name: str
    file: str  # in runtime/models/
    summary: str

    @property
    def path(self) -> Path:
        return MODELS_DIR / self.file


PACKAGED = {m.name: m for m in (
    PackagedModel("edge", "siamese_edge.int8.onnx",
                  "edge-resnet INT8, 96 px, distilled from SFace: the fast model"),
    PackagedModel("edge-fp32", "siamese_edge.onnx", "the same weights in FP32"),
    PackagedModel("sface", "sface.onnx",
                  "OpenCV Zoo SFace (Apache-2.0) through siamese-import, then our static INT8 "
                  "(per-channel QDQ; depthwise and first convolutions kept float)"),
)}

# Chosen by measurement (docs/MODEL_CARD.md, "Defaults per use"): a door sees frontal, cooperative
# faces at camera rate; photos are turned, small and years apart.
DEFAULTS = {"door": "edge", "photos": "sface"}
USES = tuple(DEFAULTS)


def default_model(use: str = "door") -> str:
    if use not in DEFAULTS:
        raise ModelError(f"unknown use {use!r}: one of {', '.join(USES)}")
    return DEFAULTS[use]


def installed() -> list[PackagedModel]:
    """The packaged models whose files are present in this install."""
    return [m for m in PACKAGED.values() if m.path.is_file()]


def resolve(model: str | Path | None, use: str = "door") -> Path:
    """The file of a packaged model NAME, a PATH as given, or the use's default when None."""
    if model is None:
        model = default_model(use)
    text = str(model)
    if text in PACKAGED:
        path = PACKAGED[text].path
        if not path.is_file():
            raise ModelError(f"packaged model {text!r} is not in this install ({path})")
        return path
    path = Path(model)
    if not path.exists() and path.suffix == "" and "/" not in text:
        names = ", ".join(m.name for m in installed()) or "none"
        raise ModelError(f"unknown model {text!r}: packaged models are {names}, or give an "
                         f"ONNX file")
    return path


@functools.cache
def _packaged_fingerprints() -> dict[str, str]:
    return {model_fingerprint(m.path): m.name for m in installed()}


def gallery_model(gallery: str | Path, model: str | Path | None, use: str = "photos") -> Path:
    """The model to open `gallery` with: the one it records (one model per gallery), `model`
    when given and the same, or the use's default for a new gallery. ModelError when `model`
    is another model, or the recorded one is not packaged and no `model` names its file."""
    from siamese.runtime.storage.gallery import recorded_model

    recorded = recorded_model(gallery)
    if model is not None:
        path = resolve(model, use)
        if recorded is not None and path.is_file() and model_fingerprint(path) != recorded:
            raise ModelError(f"gallery {gallery} was made with {model_label(recorded)}, not "
                             f"{path.name}: leave out --model to use the gallery's own model")
        return path
    if recorded is None:
        return resolve(None, use)
    name = _packaged_fingerprints().get(recorded)
    if name is None:
        raise ModelError(f"gallery {gallery} was made with a model that is not packaged "
                         f"({recorded[:12]}): give that model's file with --model")
    return PACKAGED[name].path


def packaged_name(fingerprint: str) -> str | None:
    """The name of the packaged model with this fingerprint, or None."""
    return _packaged_fingerprints().get(fingerprint)


def model_label(fingerprint: str) -> str:
    """'sface (1a2b3c4d5e6f)' for a packaged model's fingerprint, else the short fingerprint."""
    name = _packaged_fingerprints().get(fingerprint)
    return f"{name} ({fingerprint[:12]})" if name else fingerprint[:12]


references.set_model_namer(model_label)  # storage cannot import the core
