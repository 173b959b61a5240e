"""1:N identification: every face in an image against a gallery, with open-set rejection.

Each detected face (not only the largest) is aligned, checked for quality, embedded and
searched; it is named when its best score reaches the threshold (the model's FAR-calibrated
one, a site calibration's, or the caller's), else "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.storage.gallery import GalleryIndex, Match
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.detector import Face
from siamese.runtime.vision.imageio import as_bgr_frame
from siamese.runtime.vision.quality import assess

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

UNKNOWN = "unknown"


@dataclass
class Identity:
    """One face of one image: who it is (or "unknown"), how sure, and the runners-up."""

    face: int
    box: list[float]
    identity: str
    score: float | None
    candidates: list[Match] = field(default_factory=list)
    quality_flags: tuple[str, ...] = ()

    def to_dict(self, precision: int = 4) -> dict:
        return {"face": self.face, "box": self.box, "identity": self.identity,
                "score": None if self.score is None else round(self.score, precision),
                "candidates": [{"name": m.name, "score": round(m.score, precision)}
                               for m in self.candidates],
                "quality_flags": list(self.quality_flags)}


def identify_faces(verifier: Verifier, image: np.ndarray, index: GalleryIndex, k: int = 1,
                   threshold: float | None = None, strict: bool = False,
                   faces: list[Face] | None = None) -> list[Identity]:
    """Every face in `image`, largest first, identified against `index`.

    A face that fails the quality gate is searched and named like any other, its flags in
    `quality_flags`; with `strict` it is never named: "unknown", and its flags say why.
    `faces`: the faces already detected in `image`, if any.
    """
    image = as_bgr_frame(image)
    threshold = verifier.threshold if threshold is None else threshold
    detected = verifier.detector.detect(image) if faces is None else faces
    faces = sorted(detected, key=lambda f: -f.area)
    if not faces:
        return []
    crops = np.stack([align_face(image, face.landmarks) for face in faces])
    embeddings = verifier.embedder.embed(crops)
    results = index.search(embeddings, k)
    identities = []
    for number, (face, crop, matches) in enumerate(zip(faces, crops, results, strict=True)):
        quality = assess(face, crop, verifier.config.quality)
        best = matches[0] if matches else None
        named = best is not None and best.score >= threshold and (quality.ok or not strict)
        identities.append(Identity(number, [round(float(v), 1) for v in face.box],
                                   best.name if named else UNKNOWN,
                                   None if best is None else best.score, matches,
                                   quality.flags))
    return identities
