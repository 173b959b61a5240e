"""Does a set of enrolment photos show one person? The rule the verifier's enrolment applies.

Two scores per set: the lowest score of any pair of photos, and the lowest score of a photo
against the mean of the others. A set is refused when either is under its limit; the limits
are fractions of the model's balanced-accuracy threshold, measured on held-out LFW people by
tools/eval_enrol_consistency.py (figures in docs/RELIABILITY.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from siamese.runtime.errors import ReferenceError

PAIR_FRACTION = 0.5  # pairwise minimum >= 0.5 x accuracy threshold
MEAN_FRACTION = 0.5  # each photo against the others' mean >= 0.5 x accuracy threshold


def _scores(vectors: np.ndarray, metric: str) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    if metric == "cosine":
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        return unit @ unit.T
    return -np.linalg.norm(vectors[:, None] - vectors[None], axis=2)


def set_scores(embeddings: np.ndarray, metric: str) -> tuple[float, float]:
    """(lowest pairwise score, lowest photo-vs-mean-of-the-others score) of a set of >= 2."""
    scores = _scores(embeddings, metric)
    first, second = np.triu_indices(len(embeddings), 1)
    return float(scores[first, second].min()), float(min(_against_rest(embeddings, metric)))


def _against_rest(embeddings: np.ndarray, metric: str) -> list[float]:
    total = embeddings.sum(axis=0)
    rest = [(total - e) / (len(embeddings) - 1) for e in embeddings]
    return [float(_scores(np.stack([e, r]), metric)[0, 1]) for e, r in zip(embeddings, rest,
                                                                          strict=True)]


@dataclass(frozen=True)
class ConsistencyRule:
    """Limits on a set's pairwise minimum and photo-vs-rest scores."""

    pair_limit: float
    mean_limit: float
    metric: str

    @classmethod
    def for_model(cls, accuracy_threshold: float, metric: str) -> ConsistencyRule:
        if metric == "cosine":
            return cls(PAIR_FRACTION * accuracy_threshold, MEAN_FRACTION * accuracy_threshold,
                       metric)
        return cls(1.5 * accuracy_threshold, 1.5 * accuracy_threshold, metric)  # distances

    def check(self, embeddings: np.ndarray, paths: list[Path]) -> None:
        """ReferenceError naming the photo that disagrees most, when the set is mixed."""
        if len(embeddings) < 2:
            return
        rest = _against_rest(embeddings, self.metric)
        worst = int(np.argmin(rest))
        others = "the other image" if len(paths) == 2 else f"the other {len(paths) - 1}"
        if rest[worst] < self.mean_limit:
            raise ReferenceError(f"{paths[worst]} does not look like the same person as "
                                 f"{others} (score {rest[worst]:.3f} < {self.mean_limit:.3f}): "
                                 f"remove it, or enroll it separately")
        scores = _scores(embeddings, self.metric)
        first, second = np.triu_indices(len(embeddings), 1)
        low = int(np.argmin(scores[first, second]))
        if scores[first[low], second[low]] < self.pair_limit:
            a, b = first[low], second[low]
            odd = a if rest[a] < rest[b] else b
            raise ReferenceError(f"{paths[odd]} does not look like the same person as "
                                 f"{paths[b if odd == a else a].name} (pair score "
                                 f"{scores[a, b]:.3f} < {self.pair_limit:.3f}): remove it, or "
                                 f"enroll it separately")
