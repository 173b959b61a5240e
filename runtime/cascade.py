"""The photos path's cascade: the fast edge model screens each comparison, SFace decides only
when the edge score is uncertain.

A pair whose edge score is at least `high` is taken for the same person, one below `low` for
another; in between, the verifier's own model (SFace) decides at its own threshold. The band was
chosen on one half of LFW View 1 DevTest's people and scored on the other (tools/cascade.py,
figures in docs/EXPORT.md): SFace's TAR at FAR 1e-3 kept within 0.1 point while SFace scores
about 30% of pairs. It holds for these exact files at SFace's shipped threshold only: another model,
another threshold (`--threshold`, a site calibration) or a template without the screen's
embeddings is scored by the model alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from siamese.runtime import model_zoo
from siamese.runtime.embedder import Embedder


@dataclass(frozen=True)
class Band:
    """Edge scores in [low, high) are uncertain: the main model decides them."""

    low: float
    high: float

    def verdict(self, score: float) -> bool | None:
        """True (same person) above the band, False below it, None inside."""
        if score >= self.high:
            return True
        if score < self.low:
            return False
        return None


@dataclass(frozen=True)
class PackagedCascade:
    model: str  # packaged name of the deciding model
    screen: str  # packaged name of the screening model
    band: Band


# `python tools/cascade.py --lfw-root LFW --out DIR` (2026-12-06): chosen on one half of View 1
# DevTest's people, scored on the other (a band chosen on DevTrain, whose people the edge model
# was trained on, lost 1.5 points of TAR on DevTest)
PACKAGED = {c.model: c for c in (
    PackagedCascade("sface", "edge", Band(0.2239, 0.5768)),
)}


@dataclass(frozen=True)
class Screen:
    """A screening model and the band where it defers to the verifier's model."""

    embedder: Embedder
    band: Band
    name: str

    def score(self, embedding: np.ndarray, reference: np.ndarray) -> float:
        """Cosine similarity (the packaged screens' metric)."""
        return float(np.dot(embedding, reference) / max(
            float(np.linalg.norm(embedding) * np.linalg.norm(reference)), 1e-12))


def packaged_screen(model: Embedder, providers: Sequence[str] | None = None) -> Screen | None:
    """The screen of a packaged model that has one (the exact file, by fingerprint), else None."""
    cascade = PACKAGED.get(model_zoo.packaged_name(model.fingerprint) or "")
    if cascade is None or not model_zoo.PACKAGED[cascade.screen].path.is_file():
        return None
    return Screen(Embedder(model_zoo.PACKAGED[cascade.screen].path, providers), cascade.band,
                  cascade.screen)
