"""How many impostor pairs a false accept rate needs: exact binomial (Clopper-Pearson) bounds.

A threshold chosen from data is trusted only when the impostor pairs behind it show the asked
FAR with 95% confidence: with zero false accepts that takes about 3/FAR pairs (the rule of
three); with k false accepts, the one-sided upper bound of the binomial proportion must still
lie at or under the target. Every place that picks a threshold from scores (site calibration,
export, import, recalibration tools) goes through `threshold_with_evidence`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from siamese.runtime.errors import ConfigError

CONFIDENCE = 0.95
MIN_FAR = 1e-9  # below this no site could gather the pairs (3e9); refused as an input error


def _log_binomial_cdf(errors: int, trials: int, rate: float) -> float:
    """log P(X <= errors) for X ~ Binomial(trials, rate)."""
    if rate <= 0.0:
        return 0.0
    if rate >= 1.0:
        return 0.0 if errors >= trials else -math.inf
    k = np.arange(errors + 1, dtype=np.float64)
    log_terms = (math.lgamma(trials + 1) - _lgamma(k + 1) - _lgamma(trials - k + 1)
                 + k * math.log(rate) + (trials - k) * math.log1p(-rate))
    top = float(log_terms.max())
    return top + math.log(float(np.exp(log_terms - top).sum()))


def _lgamma(values: np.ndarray) -> np.ndarray:
    return np.fromiter((math.lgamma(v) for v in values), dtype=np.float64, count=len(values))


def far_upper_bound(false_accepts: int, impostor_pairs: int,
                    confidence: float = CONFIDENCE) -> float:
    """The one-sided `confidence` upper bound of a FAR seen as `false_accepts` of
    `impostor_pairs` (exact binomial; 1.0 with no pairs)."""
    if impostor_pairs <= 0:
        return 1.0
    if not 0 <= false_accepts <= impostor_pairs:
        raise ValueError(f"false accepts {false_accepts} outside [0, {impostor_pairs}]")
    if false_accepts == impostor_pairs:
        return 1.0
    alpha = 1.0 - confidence
    if false_accepts == 0:  # closed form: (1 - p)^n = alpha
        return float(-math.expm1(math.log(alpha) / impostor_pairs))
    low, high = false_accepts / impostor_pairs, 1.0
    for _ in range(80):  # bisection: the CDF falls as the rate rises
        middle = 0.5 * (low + high)
        if _log_binomial_cdf(false_accepts, impostor_pairs, middle) > math.log(alpha):
            low = middle
        else:
            high = middle
    return float(high)


def impostor_pairs_needed(target_far: float, confidence: float = CONFIDENCE) -> int:
    """The fewest impostor pairs that can show FAR <= target_far with no false accept
    (about 3 / target_far at 95%)."""
    if not MIN_FAR <= target_far < 1.0 or not math.isfinite(target_far):
        raise ConfigError(f"FAR must lie in [{MIN_FAR:g}, 1), not {target_far:g}")
    return int(math.ceil(math.log(1.0 - confidence) / math.log1p(-target_far)))


def people_needed(impostor_pairs: int, photos_per_person: float) -> int:
    """How many people with `photos_per_person` photos each give `impostor_pairs` pairs."""
    photos = max(photos_per_person, 1.0)
    # pairs between people: (n^2 - n) / 2 * photos^2 >= impostor_pairs
    people = (1 + math.sqrt(1 + 8 * impostor_pairs / photos ** 2)) / 2
    return max(2, int(math.ceil(people)))


@dataclass(frozen=True)
class FarEvidence:
    """A threshold and what its impostor pairs show about the FAR there."""

    threshold: float
    target_far: float
    impostor_pairs: int
    false_accepts: int
    measured_far: float
    far_upper_95: float

    def to_dict(self) -> dict:
        return asdict(self)


def threshold_with_evidence(impostor: np.ndarray, target_far: float,
                            confidence: float = CONFIDENCE) -> FarEvidence:
    """The lowest threshold (score >= threshold accepts) whose FAR upper bound at `confidence`
    is at most `target_far`. Raises ConfigError when no threshold can show it: too few pairs."""
    needed = impostor_pairs_needed(target_far, confidence)
    scores = np.sort(np.asarray(impostor, dtype=np.float64).ravel())[::-1]
    if not np.isfinite(scores).all():
        raise ConfigError("impostor scores hold NaN or infinity")
    count = len(scores)
    if count < needed:
        raise ConfigError(f"{count:,} impostor pairs cannot show FAR {target_far:g} with "
                          f"{confidence:.0%} confidence: it needs at least {needed:,}")
    # the largest k whose bound still holds (bounds rise with k): binary search
    low, high = 0, min(count - 1, int(target_far * count) + 1)
    while low < high:
        middle = (low + high + 1) // 2
        if far_upper_bound(middle, count, confidence) <= target_far:
            low = middle
        else:
            high = middle - 1
    allowed = low
    # accept the `allowed` highest impostors at most; ties with the next one are not accepted
    threshold = float(np.nextafter(scores[allowed], np.inf))
    false_accepts = int((scores >= threshold).sum())
    return FarEvidence(threshold, target_far, count, false_accepts, false_accepts / count,
                       far_upper_bound(false_accepts, count, confidence))
