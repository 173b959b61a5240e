"""Enrolled references: templates saved atomically (mode 0600) and tied to one model."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from siamese.runtime.errors import SiameseError
from siamese.runtime.fileio import write_text_atomic

TEMPLATE_FORMAT = "siamese-template-1"


class ReferenceError(SiameseError):
    """A reference (image, folder or template) cannot be used."""


@dataclass(frozen=True)
class Template:
    """Every enrolled embedding of one person, their mean, and the model that made them."""

    name: str
    embeddings: np.ndarray  # (N, D) float32
    model_fingerprint: str
    sources: tuple[str, ...] = ()

    @cached_property
    def mean(self) -> np.ndarray:
        """Computed once: the verifier scores every frame against it."""
        return self.embeddings.mean(axis=0)

    def to_json(self) -> str:
        return json.dumps({"format": TEMPLATE_FORMAT, "name": self.name,
                           "model_fingerprint": self.model_fingerprint,
                           "sources": list(self.sources),
                           "embeddings": self.embeddings.round(7).tolist(),
                           "mean": self.mean.round(7).tolist()})

    @classmethod
    def from_json(cls, text: str, source: str) -> Template:
        try:
            data = json.loads(text)
            if data.get("format") != TEMPLATE_FORMAT:
                raise ValueError("not a template")
            return cls(data["name"], np.asarray(data["embeddings"], dtype=np.float32),
                       data["model_fingerprint"], tuple(data.get("sources", ())))
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ReferenceError(f"{source} is not a siamese-edge template") from None


def save_template(template: Template, path: Path) -> None:
    """Write the template atomically, readable by its owner only (mode 0600)."""
    write_text_atomic(path, template.to_json(), mode=0o600)


def load_template(path: Path, model_fingerprint: str) -> Template:
    """Read a template; one made with another model is refused (embeddings don't compare)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReferenceError(f"cannot read template {path}: {exc}") from None
    template = Template.from_json(text, str(path))
    if template.model_fingerprint != model_fingerprint:
        raise ReferenceError(f"template {path} was made with another model "
                             f"({template.model_fingerprint[:12]}, this one is "
                             f"{model_fingerprint[:12]}): enroll again with this model")
    return template


def is_template(path: Path) -> bool:
    return path.suffix == ".json"


class EmbeddingCache:
    """Reference-image embeddings cached on disk, keyed by image bytes and model fingerprint."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, image_path: Path, model_fingerprint: str) -> Path:
        digest = hashlib.sha256(Path(image_path).read_bytes()).hexdigest()
        return self.root / f"{model_fingerprint[:16]}-{digest[:32]}.npy"

    def get(self, image_path: Path, model_fingerprint: str) -> np.ndarray | None:
        path = self._path(image_path, model_fingerprint)
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def put(self, image_path: Path, model_fingerprint: str, embedding: np.ndarray) -> None:
        path = self._path(image_path, model_fingerprint)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
        with os.fdopen(handle, "wb") as out:
            np.save(out, embedding.astype(np.float32))
        os.replace(tmp, path)
