"""Face verification against an enrolled reference: the API that kiosk and door apps embed.

>>> verifier = Verifier.from_model()            # the packaged default model
>>> me = verifier.enroll("me", ["me1.jpg", "me2.jpg"])
>>> decision = verifier.verify(frame, me)       # one frame (any dtype / channel count)
>>> decision.match, decision.score
>>> with open_source("0") as camera:            # a bounded session, as siamese-verify runs
...     session = verifier.session(camera, me, timeout=10)
...     opened = any(d.verified for d in session)
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import ConfigError, ModelError, ReferenceError, StorageError
from siamese.runtime.liveness.check import LivenessConfig
from siamese.runtime.model_info import check_threshold
from siamese.runtime.session import VerificationSession
from siamese.runtime.storage.datasets_io import list_images
from siamese.runtime.storage.fileio import read_regular_file
from siamese.runtime.storage.integrity import load_or_create_key
from siamese.runtime.storage.references import (
    EmbeddingCache,
    Template,
    check_name,
    is_template,
    load_template,
)
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.detector import (
    MODELS_DIR,
    DetectorConfig,
    Face,
    FaceDetector,
    largest_face,
)
from siamese.runtime.vision.imageio import MAX_IMAGE_BYTES, as_bgr_frame, decode_image
from siamese.runtime.vision.quality import Quality, QualityConfig, assess, describe_flags
from siamese.runtime.vision.sources import Frame, ThreadedSource

log = logging.getLogger(__name__)

DEFAULT_MODEL = MODELS_DIR / "siamese_edge.int8.onnx"
DETECT_SIDE = 320  # frames are detected at this longest side; alignment uses full resolution
MAX_VOTES = 1000
DOMINANT_AREA_RATIO = 1.3  # measured on LFW DevTest; see Verifier.dominant_face


@dataclass(frozen=True)
class VerifyConfig:
    threshold: float | None = None  # None: the model's calibrated threshold
    votes_needed: int = 3  # K: matches needed among the last N scored frames
    window: int = 5  # N
    quality: QualityConfig = field(default_factory=QualityConfig)

    def __post_init__(self) -> None:
        for name in ("votes_needed", "window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not 1 <= value <= MAX_VOTES:
                raise ConfigError(f"{name} must be an integer from 1 to {MAX_VOTES}, not "
                                  f"{value!r}")
        if self.votes_needed > self.window:
            raise ConfigError(f"votes needed ({self.votes_needed}) cannot exceed the window "
                              f"({self.window})")


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
    faces: list[Face] = field(default_factory=list, repr=False)  # all detected (liveness)

    def to_dict(self, precision: int = 4) -> dict:
        return {"time": round(self.time, 3), "frame": self.frame, "face": self.face_found,
                "score": None if self.score is None else round(self.score, precision),
                "match": self.match, "decision": "verified" if self.verified else "pending",
                "votes": self.votes, "box": self.box,
                "quality": self.quality.to_dict() if self.quality else None,
                "latency_ms": {k: round(v, 2) for k, v in self.latency_ms.items()}}


class Vote:
    """Match when K of the last N scored frames passed."""

    def __init__(self, needed: int, window: int) -> None:
        if not 1 <= needed <= window:
            raise ConfigError("votes needed must lie between 1 and the window size")
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


@dataclass(frozen=True)
class Comparison:
    """Two faces compared: their score, the decision, and the threshold it was made at."""

    score: float
    same_person: bool
    threshold: float

    def to_dict(self, precision: int = 4) -> dict:
        return {"score": round(self.score, precision), "same_person": self.same_person,
                "threshold": round(self.threshold, max(precision, 4))}


def default_reference_cache() -> Path:
    """$SIAMESE_CACHE/refs, else ~/.cache/siamese/refs."""
    root = os.environ.get("SIAMESE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "siamese") / "refs"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Verifier:
    """Detector, embedder and decision rule around one embedding model.

    `key` authenticates templates and cached embeddings (default: this installation's key,
    created on first use; see runtime.integrity).
    """

    def __init__(self, embedder: Embedder, detector: FaceDetector | None = None,
                 config: VerifyConfig | None = None, cache_dir: Path | None = None,
                 key: bytes | None = None) -> None:
        self.embedder = embedder
        self.detector = detector or FaceDetector(config=DetectorConfig(max_side=DETECT_SIDE))
        self.config = config or VerifyConfig()
        if self.config.threshold is not None:
            check_threshold(self.config.threshold, embedder.info.metric, "threshold")
        self.key = key if key is not None else load_or_create_key()
        self.cache = EmbeddingCache(cache_dir or default_reference_cache(), self.key)

    @classmethod
    def from_model(cls, path: str | Path | None = None, providers: Sequence[str] | None = None,
                   config: VerifyConfig | None = None, cache_dir: Path | None = None,
                   key: bytes | None = None) -> Verifier:
        """A verifier on `path`, or on the packaged default model when None."""
        if path is None:
            if not DEFAULT_MODEL.is_file():
                raise ModelError("no packaged default model in this install: pass a model path")
            path = DEFAULT_MODEL
        return cls(Embedder(path, providers), config=config, cache_dir=cache_dir, key=key)

    def use_threshold(self, threshold: float) -> None:
        """Decide at `threshold` from now on (range-checked for the model's metric)."""
        check_threshold(threshold, self.embedder.info.metric, "threshold")
        self.config = replace(self.config, threshold=float(threshold))

    @property
    def threshold(self) -> float:
        if self.config.threshold is not None:
            return self.config.threshold
        return self.embedder.info.threshold

    @property
    def dim(self) -> int:
        return self.embedder.info.embedding_dim

    @property
    def consistency_limit(self) -> float:
        """The score below which an enrolment image is taken for another person.

        Half the model's balanced-accuracy threshold (cosine; 1.5 times it for distances): loose
        enough that hard photos of one person pass (on the LFW fixture with the packaged model:
        0 of 96 genuine pairs below it, 86% of impostor pairs), so it catches mixed-up sets, not
        bad photos (the quality gate and the threshold do that).
        """
        info = self.embedder.info
        base = info.accuracy_threshold if info.accuracy_threshold is not None else info.threshold
        return base / 2 if info.metric == "cosine" else base * 1.5

    def score_against(self, embedding: np.ndarray, reference: np.ndarray) -> float:
        """Cosine similarity (or minus the Euclidean distance) of two vectors."""
        if self.embedder.info.metric == "cosine":
            reference = reference / max(float(np.linalg.norm(reference)), 1e-12)
            return float(np.dot(embedding, reference))
        return -float(np.linalg.norm(embedding - reference))

    def score(self, embedding: np.ndarray, template: Template) -> float:
        """The score of an embedding against the template's mean."""
        return self.score_against(embedding, template.mean)

    # --- references -----------------------------------------------------------------------
    def dominant_face(self, image: np.ndarray, source: str) -> Face:
        """The subject of a reference photo: its only face, or the largest when its box area is
        at least DOMINANT_AREA_RATIO times the next one's; ReferenceError when it is ambiguous.

        Faces under --min-face do not count (background people). On LFW DevTest (3,708 photos,
        7.9% with two or more such faces) a ratio of 1.3 takes 80.5% of the multi-face photos,
        and the face taken is the photo's subject (the central one) in 99.1% of them.
        """
        detected = self.detector.detect(image)
        faces = sorted((f for f in detected if min(f.box[2], f.box[3])
                        >= self.config.quality.min_face_px), key=lambda f: -f.area)
        if not faces and len(detected) == 1:
            faces = detected
        if not faces:
            raise ReferenceError(f"no usable face in {source}" + (
                f" (the faces found are smaller than --min-face "
                f"{self.config.quality.min_face_px:g} px)" if detected else ""))
        if len(faces) > 1 and faces[0].area < DOMINANT_AREA_RATIO * faces[1].area:
            sides = ", ".join(f"{min(f.box[2], f.box[3]):.0f}" for f in faces[:3])
            raise ReferenceError(f"{len(faces)} faces of similar size in {source} ({sides} px): "
                                 f"a reference must show one person clearly larger than others")
        return faces[0]

    def _single_face_embedding(self, image: np.ndarray, source: str) -> np.ndarray:
        """The dominant face's embedding, after the same quality gate as verification."""
        face = self.dominant_face(image, source)
        crop = align_face(image, face.landmarks)
        quality = assess(face, crop, self.config.quality)
        if not quality.ok:
            raise ReferenceError(f"the face in {source} fails the quality gate "
                                 f"({describe_flags(quality, self.config.quality)})")
        return self.embedder.embed(crop)[0]

    def reference_embedding(self, path: Path) -> tuple[np.ndarray, str]:
        """(embedding, image SHA-256) of a one-face image, cached by image bytes and model."""
        data = read_regular_file(path, MAX_IMAGE_BYTES, ReferenceError, "image")
        digest = sha256_bytes(data)
        cached = self.cache.get(digest, self.embedder.fingerprint, self.dim)
        if cached is not None:
            return cached, digest
        embedding = self._single_face_embedding(decode_image(data, str(path)), str(path))
        try:
            self.cache.put(digest, self.embedder.fingerprint, embedding)
        except StorageError as exc:  # the cache is an optimisation: enrolment goes on
            log.warning("reference cache not written: %s", exc)
        return embedding, digest

    def enroll(self, name: str, images: Iterable[str | Path]) -> Template:
        """A template from one or more images (files or folders), each with exactly one face.

        With several images, each must look like the same person as the rest: its score
        against the mean of the others must reach `consistency_limit`; otherwise ReferenceError
        names the image that disagrees most.
        """
        check_name(name)
        paths = [p for item in images for p in list_images(Path(item))]
        if not paths:
            raise ReferenceError(f"no images given to enroll {name!r}")
        results = [self.reference_embedding(p) for p in paths]
        embeddings = np.stack([embedding for embedding, _ in results]).astype(np.float32)
        self._check_one_person(embeddings, paths)
        return Template(name, embeddings, self.embedder.fingerprint,
                        tuple(digest for _, digest in results))

    def _check_one_person(self, embeddings: np.ndarray, paths: list[Path]) -> None:
        if len(embeddings) < 2:
            return
        limit = self.consistency_limit
        total = embeddings.sum(axis=0)
        scores = [self.score_against(e, (total - e) / (len(embeddings) - 1)) for e in embeddings]
        worst = int(np.argmin(scores))
        if scores[worst] < limit:
            others = "the other image" if len(paths) == 2 else f"the other {len(paths) - 1}"
            raise ReferenceError(f"{paths[worst]} does not look like the same person as "
                                 f"{others} (score {scores[worst]:.3f} < {limit:.3f}): remove "
                                 f"it, or enroll it separately")

    def compare(self, first: str | Path | np.ndarray, second: str | Path | np.ndarray
                ) -> Comparison:
        """Are two faces the same person? Each is an image path or a frame (numpy array)
        showing one face; the decision uses this verifier's threshold.

        >>> Verifier.from_model().compare("a.jpg", "b.jpg").same_person
        """
        score = self.score_against(self._face_embedding(first), self._face_embedding(second))
        return Comparison(score, score >= self.threshold, self.threshold)

    def _face_embedding(self, item: str | Path | np.ndarray) -> np.ndarray:
        if isinstance(item, (str, Path)):
            return self.reference_embedding(Path(item))[0]
        return self._single_face_embedding(as_bgr_frame(item), "the frame")

    def load_reference(self, spec: str | Path) -> Template:
        """A saved template (.json), an image, or a folder of images of one person."""
        path = Path(spec)
        if not path.exists():
            raise ReferenceError(f"reference not found: {path}")
        if is_template(path):
            return load_template(path, self.embedder.fingerprint, self.key, self.dim)
        name = path.stem if path.is_file() else path.name
        return self.enroll(name if _safe(name) else "reference", [path])

    # --- frames ---------------------------------------------------------------------------
    def verify(self, image: np.ndarray, template: Template, index: int = 0) -> Decision:
        """Detect the largest face, check quality, align, embed and score one frame.

        `image` may be grey, BGR or BGRA, uint8/uint16/float (see imageio.as_bgr_frame).
        """
        self.check_template(template)
        image = as_bgr_frame(image)
        started = time.perf_counter()
        faces = self.detector.detect(image)
        face = largest_face(faces)
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
                        "total": 1e3 * (done - started)}, faces=faces)

    def check_template(self, template: Template) -> None:
        """Refuse a template that was not made with this model."""
        if not isinstance(template, Template) or template.model_fingerprint \
                != self.embedder.fingerprint or template.embeddings.shape[1:] != (self.dim,):
            raise ReferenceError("the template was not made with this model")

    def new_vote(self) -> Vote:
        return Vote(self.config.votes_needed, self.config.window)

    def decide(self, image: np.ndarray, template: Template, vote: Vote,
               index: int = 0) -> Decision:
        """`verify` one frame and count it in `vote` when its face passed the quality gate."""
        decision = self.verify(image, template, index)
        if decision.face_found and decision.quality is not None and decision.quality.ok:
            vote.add(decision.match)
        decision.votes, decision.scored_frames = vote.votes, vote.scored
        decision.verified = vote.passed
        return decision

    def stream(self, frames: Iterable[Frame], template: Template) -> Iterator[Decision]:
        """Decisions for an iterable of frames with K-of-N voting; no deadline (see session)."""
        vote = self.new_vote()
        for frame in frames:
            yield self.decide(frame.image, template, vote, frame.index)

    def session(self, source: ThreadedSource, template: Template, timeout: float | None,
                liveness: LivenessConfig | None = None) -> VerificationSession:
        """A bounded verification session over `source` (runtime.session); `liveness` adds a
        presentation-attack check (runtime.liveness) that `verified` also needs."""
        return VerificationSession(self, template, source, timeout, liveness=liveness)


def _safe(name: str) -> bool:
    try:
        check_name(name)
    except ReferenceError:
        return False
    return True
