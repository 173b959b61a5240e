"""Enrolled references: authenticated templates and an authenticated reference-embedding cache.

A template holds every enrolment embedding of one person, the model fingerprint, the SHA-256 of
each enrolment photo (never its path) and an HMAC tag over all of them (runtime.integrity).
Loading validates everything before use: file size, JSON nesting, schema, name, dimension,
finite values, non-zero vectors, the model, then the tag.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from siamese.runtime.errors import ReferenceError
from siamese.runtime.storage.fileio import read_regular_file, write_text_atomic
from siamese.runtime.storage.integrity import tag, verify_tag

TEMPLATE_FORMAT = "siamese-template-2"
CACHE_FORMAT = "siamese-refcache-2"
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024
MAX_TEMPLATE_EMBEDDINGS = 256
MAX_ABS_VALUE = 1e4
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SAFE_NAME = re.compile(r"\w[\w .-]{0,63}")


def check_name(name: object) -> str:
    """An enrolment name that is also a safe file name: letters, digits, space . _ -, at most
    64 characters, starting with a letter or digit, no '..', no trailing dot or space."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name \
            or name[-1] in ". ":
        raise ReferenceError(f"enrolment name {name!r} is not allowed: use letters, digits, "
                             f"space, '.', '_' and '-' (at most 64, starting with a letter or "
                             f"digit)")
    return name


def check_embeddings(value: object, dim: int | None, what: str) -> np.ndarray:
    """A (N, D) float32 array of finite, non-zero rows, 1 <= N <= 256, or ReferenceError."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ReferenceError(f"{what}: embeddings are not a list of number lists") from None
    if array.ndim != 2 or not 1 <= len(array) <= MAX_TEMPLATE_EMBEDDINGS or array.shape[1] < 1:
        raise ReferenceError(f"{what}: embeddings must be 1 to {MAX_TEMPLATE_EMBEDDINGS} "
                             f"vectors; got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ReferenceError(f"{what}: embeddings have {array.shape[1]} values, the model "
                             f"gives {dim}")
    if not np.isfinite(array).all() or np.abs(array).max() > MAX_ABS_VALUE:
        raise ReferenceError(f"{what}: embeddings hold non-finite or huge values")
    if (np.linalg.norm(array, axis=1) < 1e-6).any():
        raise ReferenceError(f"{what}: an embedding is all zeros")
    return np.ascontiguousarray(array, dtype=np.float32)


@dataclass(frozen=True)
class Template:
    """Every enrolled embedding of one person, their mean, and the model that made them."""

    name: str
    embeddings: np.ndarray  # (N, D) float32
    model_fingerprint: str
    image_sha256: tuple[str, ...] = ()  # of the enrolment photos, in order
    # the same photos embedded by a cascade's screening model (runtime.cascade); made at
    # enrolment, never saved: a loaded template is scored by the model alone
    screen: np.ndarray | None = field(default=None, compare=False, repr=False)
    screen_fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        """However it was built (file, gallery, code), a template holds 1-256 finite, non-zero
        vectors: NaN or infinity is a ReferenceError here, never a score."""
        what = f"template {str(self.name)[:64]!r}"
        object.__setattr__(self, "embeddings", check_embeddings(self.embeddings, None, what))
        if self.screen is not None:
            object.__setattr__(self, "screen", check_embeddings(self.screen, None, what))

    @cached_property
    def mean(self) -> np.ndarray:
        """Computed once: the verifier scores every frame against it."""
        return self.embeddings.mean(axis=0)

    @cached_property
    def screen_mean(self) -> np.ndarray | None:
        return None if self.screen is None else self.screen.mean(axis=0)

    def tag_parts(self) -> tuple[bytes, ...]:
        """What the HMAC covers: format, name, model, shape, exact float32 values, photos."""
        embeddings = np.ascontiguousarray(self.embeddings, dtype="<f4")
        return (TEMPLATE_FORMAT.encode(), self.name.encode(), self.model_fingerprint.encode(),
                np.array(embeddings.shape, dtype="<u4").tobytes(), embeddings.tobytes(),
                ",".join(self.image_sha256).encode())

    def to_json(self, key: bytes) -> str:
        """The template as JSON with its HMAC tag (float32 values round-trip exactly)."""
        return json.dumps({"format": TEMPLATE_FORMAT, "name": self.name,
                           "model_fingerprint": self.model_fingerprint,
                           "image_sha256": list(self.image_sha256),
                           "embeddings": self.embeddings.astype(np.float32).tolist(),
                           "mac": tag(key, *self.tag_parts())})

    @classmethod
    def from_json(cls, text: str | bytes, source: str, key: bytes,
                  dim: int | None = None) -> Template:
        """Parse, validate and authenticate a template; ReferenceError or IntegrityError."""
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise ReferenceError(f"{source} is not a siamese-edge template (not JSON)") from None
        if not isinstance(data, dict) or data.get("format") != TEMPLATE_FORMAT:
            old = isinstance(data, dict) and data.get("format") == "siamese-template-1"
            raise ReferenceError(f"{source} is an unsigned template from an older version: "
                                 f"enroll again" if old else
                                 f"{source} is not a siamese-edge template")
        expected = {"format", "name", "model_fingerprint", "image_sha256", "embeddings", "mac"}
        if set(data) != expected:
            raise ReferenceError(f"{source}: template fields must be {sorted(expected)}")
        name = check_name(data["name"])
        fingerprint = data["model_fingerprint"]
        if not isinstance(fingerprint, str) or not _HEX64.fullmatch(fingerprint):
            raise ReferenceError(f"{source}: malformed model fingerprint")
        hashes = data["image_sha256"]
        if not isinstance(hashes, list) or not all(
                isinstance(h, str) and _HEX64.fullmatch(h) for h in hashes):
            raise ReferenceError(f"{source}: image_sha256 must be a list of SHA-256 hex digests")
        template = cls(name, check_embeddings(data["embeddings"], dim, source), fingerprint,
                       tuple(hashes))
        if hashes and len(hashes) != len(template.embeddings):
            raise ReferenceError(f"{source}: one image hash per embedding is needed")
        verify_tag(key, data["mac"], f"template {source}", *template.tag_parts())
        return template


def save_template(template: Template, path: Path, key: bytes) -> None:
    """Write the template atomically and durably, readable by its owner only (mode 0600)."""
    write_text_atomic(path, template.to_json(key), mode=0o600)


def load_template(path: Path, model_fingerprint: str, key: bytes, dim: int) -> Template:
    """Read a template made with this model; anything else is refused with a reason."""
    path = Path(path)
    data = read_regular_file(path, MAX_TEMPLATE_BYTES, ReferenceError, "template")
    template = Template.from_json(data, str(path), key, dim)
    if template.model_fingerprint != model_fingerprint:
        raise other_model(f"template {path}", template.model_fingerprint, model_fingerprint)
    return template


def _short_fingerprint(fingerprint: str) -> str:
    return fingerprint[:12]


_model_namer: Callable[[str], str] = _short_fingerprint


def set_model_namer(namer: Callable[[str], str]) -> None:
    """How messages name a model by fingerprint (runtime.model_zoo names packaged models)."""
    global _model_namer
    _model_namer = namer


def other_model(what: str, made_with: str, this_one: str) -> ReferenceError:
    """The one-line refusal of something made with another model, naming both models."""
    return ReferenceError(f"{what} was made with another model ({_model_namer(made_with)}, "
                          f"this one is {_model_namer(this_one)}): enroll again with this model")


def is_template(path: Path) -> bool:
    return path.suffix == ".json"


class EmbeddingCache:
    """Reference-image embeddings cached on disk, keyed by image bytes and model fingerprint.

    Each entry is authenticated like a template: an edited entry is refused (IntegrityError),
    never silently used. A failure to write the cache is logged and ignored: the cache is an
    optimisation, enrolment does not depend on it.
    """

    def __init__(self, root: Path, key: bytes) -> None:
        self.root, self.key = Path(root), key
        # entries made under another key are other entries (a miss), not tampered ones
        self.key_id = hashlib.sha256(b"siamese-cache-key-id" + key).hexdigest()[:8]

    def _path(self, image_sha256: str, model_fingerprint: str) -> Path:
        return self.root / f"{model_fingerprint[:16]}-{image_sha256[:32]}-{self.key_id}.json"

    @staticmethod
    def _parts(image_sha256: str, model_fingerprint: str, embedding: np.ndarray) -> tuple:
        return (CACHE_FORMAT.encode(), image_sha256.encode(), model_fingerprint.encode(),
                np.ascontiguousarray(embedding, dtype="<f4").tobytes())

    def get(self, image_sha256: str, model_fingerprint: str, dim: int) -> np.ndarray | None:
        path = self._path(image_sha256, model_fingerprint)
        if not path.exists():
            return None
        data = read_regular_file(path, 1024 * 1024, ReferenceError, "cache entry")
        try:
            entry = json.loads(data)
            fields_ok = (entry["format"] == CACHE_FORMAT and entry["image_sha256"] == image_sha256
                         and entry["model_fingerprint"] == model_fingerprint)
        except (ValueError, RecursionError, KeyError, TypeError):
            fields_ok = False
        if not fields_ok:
            raise ReferenceError(f"cache entry {path} is malformed: remove it")
        embedding = check_embeddings([entry.get("embedding")], dim, f"cache entry {path}")[0]
        verify_tag(self.key, entry.get("mac"), f"cache entry {path}",
                   *self._parts(image_sha256, model_fingerprint, embedding))
        return embedding

    def put(self, image_sha256: str, model_fingerprint: str, embedding: np.ndarray) -> None:
        embedding = np.asarray(embedding, dtype=np.float32)
        entry = {"format": CACHE_FORMAT, "image_sha256": image_sha256,
                 "model_fingerprint": model_fingerprint, "embedding": embedding.tolist(),
                 "mac": tag(self.key, *self._parts(image_sha256, model_fingerprint, embedding))}
        write_text_atomic(self._path(image_sha256, model_fingerprint), json.dumps(entry),
                          mode=0o600)
