"""The parity gate: a variant must make the same decisions as the PyTorch model on real faces."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from siamese.runtime.errors import ConfigError
from siamese.train import metrics


@dataclass(frozen=True)
class Gate:
    """Parity limits of one format against the PyTorch model (None: not checked)."""

    min_cosine: float | None = None
    mean_cosine: float | None = None
    decision_agreement: float | None = None
    max_accuracy_drop: float | None = None

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not 0.0 <= value <= 1.0:  # nan fails this too
                raise ConfigError(f"parity gate {name} must lie in [0, 1], not {value}")


@dataclass
class Parity:
    max_abs_error: float
    min_cosine: float
    mean_cosine: float
    decision_agreement: float  # over every pair of the parity faces, at the model's threshold
    pairs: int
    accuracy: float | None = None  # LFW View 1 of this variant, when LFW is given
    reference_accuracy: float | None = None
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare(reference: np.ndarray, candidate: np.ndarray, metric: str, threshold: float,
            gate: Gate, accuracy: tuple[float, float] | None = None) -> Parity:
    """Parity figures of `candidate` embeddings against `reference` (same faces, same order)."""
    unit_ref = reference / np.linalg.norm(reference, axis=1, keepdims=True).clip(1e-12)
    unit_cand = candidate / np.linalg.norm(candidate, axis=1, keepdims=True).clip(1e-12)
    cosine = (unit_ref * unit_cand).sum(1)
    upper = np.triu_indices(len(reference), k=1)
    decide_ref = metrics.similarity_matrix(reference, metric)[upper] >= threshold
    decide_cand = metrics.similarity_matrix(candidate, metric)[upper] >= threshold
    parity = Parity(max_abs_error=float(np.abs(reference - candidate).max()),
                    min_cosine=float(cosine.min()), mean_cosine=float(cosine.mean()),
                    decision_agreement=float((decide_ref == decide_cand).mean()),
                    pairs=int(len(upper[0])))
    if accuracy is not None:
        parity.reference_accuracy, parity.accuracy = accuracy
    failures = []
    if gate.min_cosine is not None and parity.min_cosine < gate.min_cosine:
        failures.append(f"min cosine {parity.min_cosine:.5f} < {gate.min_cosine}")
    if gate.mean_cosine is not None and parity.mean_cosine < gate.mean_cosine:
        failures.append(f"mean cosine {parity.mean_cosine:.5f} < {gate.mean_cosine}")
    if gate.decision_agreement is not None and parity.decision_agreement < gate.decision_agreement:
        failures.append(f"decision agreement {parity.decision_agreement:.4f} < "
                        f"{gate.decision_agreement}")
    # a drop equal to the limit passes (in floats, 0.993 - 0.991 > 0.002)
    if (gate.max_accuracy_drop is not None and accuracy is not None
            and accuracy[0] - accuracy[1] > gate.max_accuracy_drop + 1e-9):
        failures.append(f"LFW accuracy drop {100 * (accuracy[0] - accuracy[1]):.2f} points > "
                        f"{100 * gate.max_accuracy_drop:.2f}")
    parity.failures = tuple(failures)
    return parity
