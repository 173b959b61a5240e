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
from siamese.runtime import model_zoo
from siamese.runtime.cascade import Screen, packaged_screen
from siamese.runtime.consistency import ConsistencyRule
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import ConfigError, ModelError, ReferenceError, StorageError
from siamese.runtime.liveness.check import LivenessConfig
from siamese.runtime.model_info import check_threshold
from siamese.runtime.session import VerificationSession
from siamese.runtime.storage.datasets_io import image_paths
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
    DetectorConfig,
    Face,
    FaceDetector,
    largest_face,
)
from siamese.runtime.vision.imageio import MAX_IMAGE_BYTES, as_bgr_frame, decode_image
from siamese.runtime.vision.large_frames import TwoPassDetector
from siamese.runtime.vision.quality import Quality, QualityConfig, assess, describe_flags
from siamese.runtime.vision.sources import Frame, ThreadedSource

log = logging.getLogger(__name__)

DEFAULT_MODEL = model_zoo.PACKAGED[model_zoo.default_model("door")].path
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
    screened: bool = False  # decided by the cascade's screening model; `score` is its score

    def to_dict(self, precision: int = 4) -> dict:
        return {"time": round(self.time, 3), "frame": self.frame, "face": self.face_found,
                "score": None if self.score is None else round(self.score, precision),
                "screened": self.screened,
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
    """Two faces compared: their score, the decision, and the threshold it was made at (when
    `screened`, the cascade's screening model decided: its score and the band edge crossed)."""

    score: float
    same_person: bool
    threshold: float
    quality_flags: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # of each face
    screened: bool = False

    def to_dict(self, precision: int = 4) -> dict:
        return {"score": round(self.score, precision), "same_person": self.same_person,
                "threshold": round(self.threshold, max(precision, 4)),
                "screened": self.screened,
                "quality_flags": [list(flags) for flags in self.quality_flags]}


def default_reference_cache() -> Path:
    """$SIAMESE_CACHE/refs, else ~/.cache/siamese/refs."""
    root = os.environ.get("SIAMESE_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "siamese") / "refs"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()



class Verifier:
    """Detector, embedder and decision rule around one embedding model.

    `key` authenticates templates and cached embeddings (default: this installation's key,
    created on first use; see runtime.integrity). `screen` makes it a cascade (runtime.cascade):
    the screening model decides the clear cases at the model's own threshold.
    """

    def __init__(self, embedder: Embedder, detector: FaceDetector | None = None,
                 config: VerifyConfig | None = None, cache_dir: Path | None = None,
                 key: bytes | None = None, screen: Screen | None = None) -> None:
        self.embedder = embedder
        self.config = config or VerifyConfig()
        # the band holds at the model's own threshold only
        self.screen = screen if self.config.threshold is None else None
        # a second, finer pass finds faces down to the quality gate's minimum in large frames
        self.detector = detector or TwoPassDetector(
            FaceDetector(config=DetectorConfig(max_side=DETECT_SIDE)),
            self.config.quality.min_face_px)
        if self.config.threshold is not None:
            check_threshold(self.config.threshold, embedder.info.metric, "threshold")
        self.key = key if key is not None else load_or_create_key()
        self.cache = EmbeddingCache(cache_dir or default_reference_cache(), self.key)

    @classmethod
    def from_model(cls, path: str | Path | None = None, providers: Sequence[str] | None = None,
                   config: VerifyConfig | None = None, cache_dir: Path | None = None,
                   key: bytes | None = None, use: str = "door",
                   cascade: bool = True) -> Verifier:
        """A verifier on a packaged model's name (`model_zoo.PACKAGED`: "edge", "sface"), a
        model file, or when None the default for `use`, as the commands choose: "door" (edge:
        siamese-verify, siamese-enroll) or "photos" (sface: siamese-compare, siamese-gallery,
        siamese-identify). A packaged model with a cascade (runtime.cascade: sface) runs it
        unless `cascade` is False.

        >>> Verifier.from_model(use="photos").compare("a.jpg", "b.jpg")  # as siamese-compare
        """
        default = model_zoo.PACKAGED[model_zoo.default_model(use)].path
        if path is None and not default.is_file():
            raise ModelError(f"no packaged {use} model in this install: pass a model path")
        embedder = Embedder(model_zoo.resolve(path, use), providers)
        screen = packaged_screen(embedder, providers) if cascade else None
        return cls(embedder, config=config, cache_dir=cache_dir, key=key, screen=screen)

    def use_threshold(self, threshold: float) -> None:
        """Decide at `threshold` from now on (range-checked for the model's metric)."""
        check_threshold(threshold, self.embedder.info.metric, "threshold")
        self.config = replace(self.config, threshold=float(threshold))
        self.screen = None  # the cascade's band holds at the model's own threshold only

    @property
    def threshold(self) -> float:
        if self.config.threshold is not None:
            return self.config.threshold
        return self.embedder.info.threshold

    @property
    def dim(self) -> int:
        return self.embedder.info.embedding_dim

    @property
    def consistency(self) -> ConsistencyRule:
        """The rule a set of enrolment photos must meet to be taken for one person
        (runtime.consistency; measured in docs/RELIABILITY.md)."""
        info = self.embedder.info
        base = info.accuracy_threshold if info.accuracy_threshold is not None else info.threshold
        return ConsistencyRule.for_model(base, info.metric)

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
        faces = self._usable_faces(image, source)
        if len(faces) > 1 and faces[0].area < DOMINANT_AREA_RATIO * faces[1].area:
            sides = ", ".join(f"{min(f.box[2], f.box[3]):.0f}" for f in faces[:3])
            raise ReferenceError(f"{len(faces)} faces of similar size in {source} ({sides} px): "
                                 f"a reference must show one person clearly larger than others")
        return faces[0]

    def subject_face(self, image: np.ndarray, source: str) -> tuple[Face, tuple[str, ...]]:
        """The face a photo is about, answering where `dominant_face` refuses: among faces of
        similar size (within DOMINANT_AREA_RATIO of the largest) the one nearest the centre,
        flagged "several_faces"."""
        faces = self._usable_faces(image, source)
        similar = [f for f in faces if f.area * DOMINANT_AREA_RATIO > faces[0].area]
        if len(similar) == 1:
            return faces[0], ()
        height, width = image.shape[:2]

        def off_centre(face: Face) -> float:
            x, y, w, h = face.box
            return float(np.hypot(x + w / 2 - width / 2, y + h / 2 - height / 2))

        return min(similar, key=off_centre), ("several_faces",)

    def _usable_faces(self, image: np.ndarray, source: str) -> list[Face]:
        """Faces at least --min-face in size, largest first (a lone smaller face counts)."""
        detected = self.detector.detect(image)
        faces = sorted((f for f in detected if min(f.box[2], f.box[3])
                        >= self.config.quality.min_face_px), key=lambda f: -f.area)
        if not faces and len(detected) == 1:
            faces = detected
        if not faces:
            raise ReferenceError(f"no usable face in {source}" + (
                f" (the faces found are smaller than --min-face "
                f"{self.config.quality.min_face_px:g} px)" if detected else ""))
        return faces

    def _single_face_crop(self, image: np.ndarray, source: str) -> np.ndarray:
        """The dominant face's aligned crop, after the same quality gate as verification."""
        face = self.dominant_face(image, source)
        crop = align_face(image, face.landmarks)
        quality = assess(face, crop, self.config.quality)
        if not quality.ok:
            raise ReferenceError(f"the face in {source} fails the quality gate "
                                 f"({describe_flags(quality, self.config.quality)})")
        return crop

    def _cache_key(self, embedder: Embedder) -> str:
        """The model's fingerprint, or with a non-default quality gate a digest of both: a
        cached embedding passed the gate it was made under, not necessarily this one."""
        if self.config.quality == QualityConfig():
            return embedder.fingerprint
        return sha256_bytes(f"{embedder.fingerprint}|{self.config.quality!r}".encode())

    def reference_embedding(self, path: Path) -> tuple[np.ndarray, str]:
        """(embedding, image SHA-256) of a one-face image, cached by image bytes and model."""
        return self.photo_embedding(
            read_regular_file(path, MAX_IMAGE_BYTES, ReferenceError, "image"), str(path))

    def photo_embedding(self, data: bytes, source: str) -> tuple[np.ndarray, str]:
        """`reference_embedding` of an image held in memory (an upload): nothing is written
        but the cached embedding. `source` names it in errors."""
        digest = sha256_bytes(data)
        return self._cached_embedding(self.embedder, data, digest, source), digest

    def _cached_embedding(self, embedder: Embedder, data: bytes, digest: str,
                          source: str) -> np.ndarray:
        """`embedder`'s embedding of a one-face photo, cached by its bytes, the model and the
        quality gate (the verifier's model, or the cascade's screen)."""
        key = self._cache_key(embedder)
        cached = self.cache.get(digest, key, embedder.info.embedding_dim)
        if cached is not None:
            return cached
        embedding = embedder.embed(self._single_face_crop(decode_image(data, source), source))[0]
        try:
            self.cache.put(digest, key, embedding)
        except StorageError as exc:  # the cache is an optimisation: enrolment goes on
            log.warning("reference cache not written: %s", exc)
        return embedding

    def enroll(self, name: str, images: Iterable[str | Path] | str | Path) -> Template:
        """A template from one or more images (files or folders), each with exactly one face;
        one file or folder may be given alone (`enroll("me", "photos/me")`). With a cascade,
        the screen's embeddings of the same photos come with it.

        With several images, they must look like one person (`consistency`: every pair, and
        each image against the mean of the others); otherwise ReferenceError names the image
        that disagrees most.
        """
        check_name(name)
        paths = image_paths(images)
        if not paths:
            raise ReferenceError(f"no images given to enroll {name!r}")
        results, screened = [], []
        for path in paths:
            data = read_regular_file(path, MAX_IMAGE_BYTES, ReferenceError, "image")
            results.append(self.photo_embedding(data, str(path)))
            if self.screen is not None:
                screened.append(self._cached_embedding(self.screen.embedder, data,
                                                       results[-1][1], str(path)))
        template = self.template_of(name, results, paths)
        if self.screen is None:
            return template
        return replace(template, screen=np.stack(screened),
                       screen_fingerprint=self.screen.embedder.fingerprint)

    def template_of(self, name: str, results: list[tuple[np.ndarray, str]],
                    sources: list[Path]) -> Template:
        """The template of (embedding, image SHA-256) pairs, once they look like one person
        (`consistency`, naming the odd one of `sources`)."""
        embeddings = np.stack([embedding for embedding, _ in results]).astype(np.float32)
        self.consistency.check(embeddings, sources)
        return Template(name, embeddings, self.embedder.fingerprint,
                        tuple(digest for _, digest in results))

    def compare(self, first: str | Path | np.ndarray, second: str | Path | np.ndarray,
                strict: bool = False) -> Comparison:
        """Are two faces the same person? Each is an image path or a frame (numpy array)
        showing one face; the decision uses this verifier's threshold. Photos that fail the
        quality gate, or show several faces of similar size (the central one is taken), are
        still compared, their flags in `quality_flags`; `strict` refuses them
        (ReferenceError), as enrolment does.

        >>> Verifier.from_model(use="photos").compare("a.jpg", "b.jpg").same_person
        """
        if self.screen is not None:
            return self._screened_comparison(first, second, strict)
        (one, one_flags), (two, two_flags) = (self._face_embedding(item, strict)
                                              for item in (first, second))
        score = self.score_against(one, two)
        return Comparison(score, score >= self.threshold, self.threshold, (one_flags, two_flags))

    def _screened_comparison(self, first: str | Path | np.ndarray,
                             second: str | Path | np.ndarray, strict: bool) -> Comparison:
        """`compare` through the cascade: the screen decides outside its band."""
        assert self.screen is not None
        (one, one_flags), (two, two_flags) = (self._compared_crop(item, strict)
                                              for item in (first, second))
        crops = np.stack([one, two])
        screened = self.screen.embedder.embed(crops)
        score = self.screen.score(screened[0], screened[1])
        verdict = self.screen.band.verdict(score)
        if verdict is not None:
            band = self.screen.band
            return Comparison(score, verdict, band.high if verdict else band.low,
                              (one_flags, two_flags), screened=True)
        embedded = self.embedder.embed(crops)
        score = self.score_against(embedded[0], embedded[1])
        return Comparison(score, score >= self.threshold, self.threshold, (one_flags, two_flags))

    def _face_embedding(self, item: str | Path | np.ndarray,
                        strict: bool) -> tuple[np.ndarray, tuple[str, ...]]:
        if strict and isinstance(item, (str, Path)):
            return self.reference_embedding(Path(item))[0], ()
        crop, flags = self._compared_crop(item, strict)
        return self.embedder.embed(crop)[0], flags

    def _compared_crop(self, item: str | Path | np.ndarray,
                       strict: bool) -> tuple[np.ndarray, tuple[str, ...]]:
        """The aligned crop of the face a compared photo is about, and its quality flags;
        `strict` refuses a photo that fails the gate or shows several similar faces."""
        if isinstance(item, (str, Path)):
            data = read_regular_file(item, MAX_IMAGE_BYTES, ReferenceError, "image")
            image, source = decode_image(data, str(item)), str(item)
        else:
            image, source = as_bgr_frame(item), "the frame"
        if strict:
            return self._single_face_crop(image, source), ()
        face, flags = self.subject_face(image, source)
        crop = align_face(image, face.landmarks)
        return crop, assess(face, crop, self.config.quality).flags + flags

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
        score, match, screened = self._scored(crop, template)
        done = time.perf_counter()
        return Decision(
            index, True, score=score, match=quality.ok and match, screened=screened,
            box=[round(float(v), 1) for v in face.box], quality=quality,
            latency_ms={"detect": 1e3 * (detected - started), "align": 1e3 * (aligned - detected),
                        "embed": 1e3 * (done - aligned),
                        "total": 1e3 * (done - started)}, faces=faces)

    def _scored(self, crop: np.ndarray, template: Template) -> tuple[float, bool, bool]:
        """(score, match, screened) of an aligned face against a template: the cascade's
        screen decides outside its band when the template holds its embeddings."""
        if self.screen is not None and template.screen_mean is not None \
                and template.screen_fingerprint == self.screen.embedder.fingerprint:
            score = self.screen.score(self.screen.embedder.embed(crop)[0], template.screen_mean)
            verdict = self.screen.band.verdict(score)
            if verdict is not None:
                return score, verdict, True
        score = self.score(self.embedder.embed(crop)[0], template)
        return score, score >= self.threshold, False

    def check_template(self, template: Template) -> None:
        """Refuse a template that was not made with this model."""
        if not isinstance(template, Template) or template.model_fingerprint \
                != self.embedder.fingerprint or template.embeddings.shape[1:] != (self.dim,):
            raise ReferenceError("the template was not made with this model")
        if not np.isfinite(template.embeddings).all():
            raise ReferenceError("the template holds non-finite values (NaN or infinity)")

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
