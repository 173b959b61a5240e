"""The gate of `siamese-adapt`: the adapted model ships only when it beats the packaged one on
site people it never adapted on, holds the FAR and keeps its general-face accuracy.

The rates are honest: the check people are split in two halves; each half's threshold (the
security rule at the target FAR) is scored on the other half's pairs, and the accepted pairs of
both directions are pooled. The shipped threshold is then calibrated on all the check people.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from siamese.runtime.errors import DatasetError
from siamese.train import metrics
from siamese.train.calibration import Calibration, embedding_calibration


@dataclass
class ModelFigures:
    """One model on the check people (and the general check)."""

    tar_at_far: float  # at the threshold calibrated on the other half of the people
    far_at_threshold: float  # likewise: cross-validated, never on the calibration pairs
    threshold: float  # the security rule's threshold on all the check people (shipped)
    auc: float
    tar_at_far_roc: float  # the ROC's TAR at the target FAR over all pairs (oracle threshold)
    general_accuracy: float | None
    roc: dict = field(default_factory=dict)


@dataclass
class GateResult:
    packaged: ModelFigures
    adapted: ModelFigures
    passed: bool
    reasons: list[str]

    def to_dict(self) -> dict:
        return {"packaged": asdict(self.packaged), "adapted": asdict(self.adapted),
                "passed": self.passed, "reasons": self.reasons}


def cross_validated_rates(vectors: np.ndarray, labels: np.ndarray, target_far: float,
                          seed: int = 0) -> tuple[float, float]:
    """(TAR, FAR): thresholds calibrated on one half of the people, counted on the other half,
    both ways, pooled. Needs at least 4 people (2 per half)."""
    people = np.unique(labels)
    if len(people) < 4:
        raise DatasetError(f"{len(people)} check people: the gate needs at least 4")
    half = set(np.random.default_rng(seed).permutation(people)[:len(people) // 2].tolist())
    first = np.isin(labels, sorted(half))
    accepted, total = np.zeros(2), np.zeros(2)  # genuine, impostor
    for calibrate_on in (first, ~first):
        threshold = embedding_calibration(vectors[calibrate_on], labels[calibrate_on], "cosine",
                                          target_far, require_evidence=False).far_threshold
        genuine, impostor = metrics.all_pair_scores(vectors[~calibrate_on],
                                                    labels[~calibrate_on], "cosine")
        accepted += [(genuine >= threshold).sum(), (impostor >= threshold).sum()]
        total += [len(genuine), len(impostor)]
    return float(accepted[0] / total[0]), float(accepted[1] / total[1])


def figures(embed, crops: np.ndarray, labels: np.ndarray, target_far: float,
            general: float | None) -> tuple[ModelFigures, Calibration]:
    """A model's figures on the check crops, and its calibration on all of them."""
    vectors = embed(crops)
    calibration = embedding_calibration(vectors, labels, "cosine", target_far,
                                        require_evidence=False)
    tar, far = cross_validated_rates(vectors, labels, target_far)
    genuine, impostor = metrics.all_pair_scores(vectors, labels, "cosine")
    roc_far, roc_tar = metrics.roc_curve(genuine, impostor)
    keep = np.unique(np.linspace(0, len(roc_far) - 1, min(len(roc_far), 200)).astype(int))
    return ModelFigures(
        tar_at_far=tar, far_at_threshold=far, threshold=float(calibration.far_threshold),
        auc=float(metrics.roc_auc(genuine, impostor)),
        tar_at_far_roc=float(metrics.tar_at_far(genuine, impostor, target_far)),
        general_accuracy=general,
        roc={"far": roc_far[keep].tolist(), "tar": roc_tar[keep].tolist()}), calibration


def gate(packaged: ModelFigures, adapted: ModelFigures, target_far: float, tar_margin: float,
         max_far_ratio: float, max_general_drop: float) -> GateResult:
    """Ship the adapted model only when it is measurably better and no less safe."""
    reasons = []
    if adapted.tar_at_far < packaged.tar_at_far + tar_margin:
        reasons.append(f"TAR at the calibrated FAR {target_far:g} on the check people "
                       f"{adapted.tar_at_far:.3f} does not beat the packaged model's "
                       f"{packaged.tar_at_far:.3f} by {tar_margin:g}")
    if adapted.far_at_threshold > max_far_ratio * target_far:
        reasons.append(f"FAR at its calibrated threshold {adapted.far_at_threshold:.4f} exceeds "
                       f"{max_far_ratio:g}x the design {target_far:g}")
    if packaged.general_accuracy is not None and adapted.general_accuracy is not None \
            and adapted.general_accuracy < packaged.general_accuracy - max_general_drop:
        reasons.append(f"general-face accuracy drops from {packaged.general_accuracy:.4f} to "
                       f"{adapted.general_accuracy:.4f} (at most {max_general_drop:g})")
    return GateResult(packaged, adapted, not reasons, reasons)
