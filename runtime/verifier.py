"""Face verification against an enrolled reference: the API that kiosk and door apps embed.

>>> verifier = Verifier.from_model()            # the packaged default model
>>> me = verifier.enroll("me", ["me1.jpg", "me2.jpg"])
>>> decision = verifier.verify(frame, me)       # one BGR frame
>>> decision.match, decision.score
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from siamese.runtime.align import align_face
from siamese.runtime.datasets_io import list_images
from siamese.runtime.detector import MODELS_DIR, DetectorConfig, FaceDetector, largest_face
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import ModelError
from siamese.runtime.imageio import read_image
from siamese.runtime.quality import Quality, QualityConfig, assess
from siamese.runtime.references import (
    EmbeddingCache,
    ReferenceError,
    Template,
    is_template,
    load_template,
)
from siamese.runtime.sources import Frame

DEFAULT_MODEL = MODELS_DIR / "siamese_edge.int8.onnx"
DETECT_SIDE = 320  # frames are detected at this longest side; alignment uses full resolution


@dataclass(frozen=True)
class VerifyConfig:
    threshold: float | None = None  # None: the model's calibrated threshold
    votes_needed: int = 3  # K: matches needed among the last N scored frames
    window: int = 5  # N
    quality: QualityConfig = field(default_factory=QualityConfig)


@dataclass
class Decision:
    """The outcome of one frame (and the vote so far, when streaming)."""

    frame: int
    face_found: bool
    score: float | None = None
    match: bool = False
    box: list[float] | None = None
    quality: Quality | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    verified: bool = False
    votes: int = 0
    scored_frames: int = 0
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"time": round(self.time, 3), "frame": self.frame, "face": self.face_found,
                "score": None if self.score is None else round(self.score, 4),
                "match": self.match, "decision": "verified" if self.verified else "pending",
                "votes": self.votes, "box": self.box,
                "quality": self.quality.to_dict() if self.quality else None,
                "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()}}


class Vote:
    """Match when K of the last N scored frames passed."""

    def __init__(self, needed: int, window: int) -> None:
        if not 1 <= needed <= window:
            raise ValueError("votes needed must lie between 1 and the window size")
        self.needed, self.window = needed, window
        self.recent: deque[bool] = deque(maxlen=window)
        self.scored = 0

    def add(self, match: bool) -> bool:
        self.recent.append(match)
        self.scored += 1
        return self.passed

    @property
    def votes(self) -> int:
        return sum(self.recent)

    @property
    def passed(self) -> bool:
        return self.votes >= self.needed

    def final(self) -> bool:
        """The verdict at the end of a finite source: fewer scored frames than K suffice when
        every one of them matched."""
        return self.scored > 0 and self.votes >= min(self.needed, self.scored)


class Verifier:
    """Detector, embedder and decision rule around one embedding model."""

    def __init__(self, embedder: Embedder, detector: FaceDetector | None = None,
                 config: VerifyConfig | None = None, cache_dir: Path | None = None) -> None:
        self.embedder = embedder
        self.detector = detector or FaceDetector(config=DetectorConfig(max_side=DETECT_SIDE))
        self.config = config or VerifyConfig()
        self.cache = EmbeddingCache(cache_dir or Path.home() / ".cache" / "siamese" / "refs")
        self.last_vote: Vote | None = None  # the vote of the latest stream()

    @classmethod
    def from_model(cls, path: str | Path | None = None, providers: Sequence[str] | None = None,
                   config: VerifyConfig | None = None, cache_dir: Path | None = None) -> Verifier:
        """A verifier on `path`, or on the packaged default model when None."""
        if path is None:
            if not DEFAULT_MODEL.is_file():
                raise ModelError("no packaged default model in this install: pass a model path")
            path = DEFAULT_MODEL
        return cls(Embedder(path, providers), config=config, cache_dir=cache_dir)

    @property
    def threshold(self) -> float:
        if self.config.threshold is not None:
            return self.config.threshold
        return self.embedder.info.threshold

    def score(self, embedding: np.ndarray, template: Template) -> float:
        """Cosine similarity (or minus the Euclidean distance) to the template's mean."""
        reference = template.mean
        if self.embedder.info.metric == "cosine":
            reference = reference / max(float(np.linalg.norm(reference)), 1e-12)
            return float(np.dot(embedding, reference))
        return -float(np.linalg.norm(embedding - reference))

    # --- references -----------------------------------------------------------------------
    def _single_face_embedding(self, path: Path) -> np.ndarray:
        image = read_image(path)
        detected = self.detector.detect(image)
        # background faces too small to be the subject do not count against a reference
        faces = [f for f in detected if min(f.box[2], f.box[3]) >= self.config.quality.min_face_px]
        faces = faces if faces or len(detected) != 1 else detected
        if not faces:
            raise ReferenceError(f"no usable face in {path}")
        if len(faces) > 1:
            raise ReferenceError(f"{len(faces)} faces in {path}: a reference must show one person")
        return self.embedder.embed(align_face(image, faces[0].landmarks))[0]

    def reference_embedding(self, path: Path) -> np.ndarray:
        """The embedding of a one-face image, cached by image bytes and model fingerprint."""
        cached = self.cache.get(path, self.embedder.fingerprint)
        if cached is not None:
            return cached
        embedding = self._single_face_embedding(path)
        self.cache.put(path, self.embedder.fingerprint, embedding)
        return embedding

    def enroll(self, name: str, images: Iterable[str | Path]) -> Template:
        """A template from one or more images (files or folders), each with exactly one face."""
        paths = [p for item in images for p in list_images(Path(item))]
        if not paths:
            raise ReferenceError(f"no images given to enroll {name!r}")
        embeddings = np.stack([self.reference_embedding(p) for p in paths])
        return Template(name, embeddings, self.embedder.fingerprint, tuple(map(str, paths)))

    def load_reference(self, spec: str | Path) -> Template:
        """A saved template (.json), an image, or a folder of images of one person."""
        path = Path(spec)
        if not path.exists():
            raise ReferenceError(f"reference not found: {path}")
        if path.is_file() and is_template(path):
            return load_template(path, self.embedder.fingerprint)
        return self.enroll(path.stem if path.is_file() else path.name, [path])

    # --- frames ---------------------------------------------------------------------------
    def verify(self, image: np.ndarray, template: Template, index: int = 0) -> Decision:
        """Detect the largest face, check quality, align, embed and score one frame."""
        started = time.perf_counter()
        face = largest_face(self.detector.detect(image))
        detected = time.perf_counter()
        if face is None:
            return Decision(index, False, latency_ms={"detect": 1e3 * (detected - started)})
        crop = align_face(image, face.landmarks)
        aligned = time.perf_counter()
        quality = assess(face, crop, self.config.quality)
        embedding = self.embedder.embed(crop)[0]
        embedded = time.perf_counter()
        score = self.score(embedding, template)
        done = time.perf_counter()
        return Decision(
            index, True, score=score, match=quality.ok and score >= self.threshold,
            box=[round(float(v), 1) for v in face.box], quality=quality,
            latency_ms={"detect": 1e3 * (detected - started), "align": 1e3 * (aligned - detected),
                        "embed": 1e3 * (embedded - aligned), "compare": 1e3 * (done - embedded),
                        "total": 1e3 * (done - started)})

    def stream(self, frames: Iterable[Frame], template: Template) -> Iterator[Decision]:
        """Decisions for a sequence of frames with K-of-N voting over scored frames."""
        vote = self.last_vote = Vote(self.config.votes_needed, self.config.window)
        for frame in frames:
            decision = self.verify(frame.image, template, frame.index)
            if decision.face_found and decision.quality is not None and decision.quality.ok:
                vote.add(decision.match)
            decision.votes, decision.scored_frames = vote.votes, vote.scored
            decision.verified = vote.passed
            yield decision
