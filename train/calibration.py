"""Decision thresholds chosen on held-out people, and the validation figures behind them.

The FAR threshold follows the runtime's rule (runtime.far_bounds): the impostor pairs must show
the target FAR with 95% confidence (about 3/FAR pairs at least), else ConfigError; export,
siamese-import and tools/recalibrate.py all choose thresholds here and inherit it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from siamese.runtime.errors import ConfigError
from siamese.runtime.far_bounds import far_upper_bound, threshold_with_evidence
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train import metrics
from siamese.train.data import FaceTensors
from siamese.train.embedding import embed_pixels


@dataclass(frozen=True)
class Calibration:
    """Thresholds of one model. The validation figures are None where the thresholds were not
    chosen here (e.g. read from an exported model's metadata)."""

    accuracy_threshold: float  # best balanced accuracy on the held-out pairs
    far_threshold: float  # the threshold at `target_far` on the held-out impostor pairs
    target_far: float
    accuracy_threshold_weighting: str = "pair"  # pair | person (each person's pairs weigh 1)
    val_tar_at_threshold: float | None = None
    val_far_at_threshold: float | None = None
    val_auc: float | None = None
    val_genuine_pairs: int | None = None
    val_impostor_pairs: int | None = None
    # the FAR threshold on unlabelled, more varied faces (every pair an impostor pair), when
    # given: far_threshold is the higher of the two, so the FAR holds on both sets
    varied_far_threshold: float | None = None
    varied_faces: str | None = None
    # the 95% upper bound of the FAR at far_threshold on the held-out impostor pairs
    val_far_upper_95: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Calibration:
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as exc:
            raise ValueError(f"incomplete calibration: {exc}") from None


def calibrate(genuine: np.ndarray, impostor: np.ndarray, target_far: float,
              genuine_weights: np.ndarray | None = None,
              varied_impostor: np.ndarray | None = None,
              varied_faces: str | None = None, require_evidence: bool = True) -> Calibration:
    """Thresholds chosen on validation pairs: balanced accuracy (genuine pairs weighted by
    `genuine_weights`, e.g. each person equally), and the target FAR: on the validation
    impostor pairs, or on those and `varied_impostor` scores, whichever threshold is higher.

    Too few impostor pairs for the target FAR is a ConfigError unless `require_evidence` is
    False (the trainer's per-epoch figures on a small held-out set): then the plain empirical
    threshold is taken and `val_far_upper_95` says how little it shows."""
    scores = np.concatenate([genuine, impostor])
    same = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]
    weights = None if genuine_weights is None else np.r_[genuine_weights, np.ones(len(impostor))]
    far_threshold = _far_threshold(impostor, target_far, "held-out", require_evidence)
    varied_threshold = None
    if varied_impostor is not None:
        varied_threshold = _far_threshold(varied_impostor, target_far, "varied",
                                          require_evidence)
        far_threshold = max(far_threshold, varied_threshold)
    tar, far = metrics.rates(genuine, impostor, far_threshold)
    false_accepts = int((np.asarray(impostor) >= far_threshold).sum())
    return Calibration(
        accuracy_threshold=metrics.best_threshold(scores, same, balanced=True, weights=weights),
        far_threshold=far_threshold, target_far=target_far,
        accuracy_threshold_weighting="person" if genuine_weights is not None else "pair",
        val_tar_at_threshold=tar, val_far_at_threshold=far,
        val_auc=metrics.roc_auc(genuine, impostor),
        val_genuine_pairs=int(len(genuine)), val_impostor_pairs=int(len(impostor)),
        varied_far_threshold=varied_threshold, varied_faces=varied_faces,
        val_far_upper_95=far_upper_bound(false_accepts, len(impostor)))


def _far_threshold(impostor: np.ndarray, target_far: float, which: str,
                   require_evidence: bool) -> float:
    try:
        return threshold_with_evidence(impostor, target_far).threshold
    except ConfigError as exc:
        if not require_evidence:
            return metrics.threshold_at_far(impostor, target_far)
        raise ConfigError(f"{which} faces: {exc} (hold out more people, or choose a higher "
                          f"target FAR)") from None


def embedding_calibration(embeddings: np.ndarray, labels: np.ndarray, metric: str,
                          target_far: float, varied: np.ndarray | None = None,
                          varied_faces: str | None = None,
                          require_evidence: bool = True) -> Calibration:
    """`calibrate` over every pair of held-out people's embeddings (integer `labels`), each
    person's genuine pairs weighing alike; with `varied` embeddings (unlabelled, each a
    different person) the FAR threshold holds on every pair of those too."""
    genuine, impostor = metrics.all_pair_scores(embeddings, labels, metric)
    varied_impostor = None
    if varied is not None:
        scores = metrics.similarity_matrix(varied, metric)
        varied_impostor = scores[np.triu_indices(len(scores), k=1)]
    return calibrate(genuine, impostor, target_far, metrics.genuine_pair_weights(labels),
                     varied_impostor, varied_faces, require_evidence)


def validation_calibration(model: torch.nn.Module, val: FaceTensors, spec: Preprocess,
                           metric: str, device: torch.device | str, target_far: float,
                           varied: FaceTensors | None = None,
                           varied_faces: str | None = None,
                           require_evidence: bool = True) -> Calibration:
    """Thresholds and validation metrics of a PyTorch model on the held-out people's images
    (and `varied` faces: embedding_calibration)."""
    varied_embeddings = None if varied is None else embed_pixels(model, varied.pixels, spec,
                                                                 device)
    return embedding_calibration(embed_pixels(model, val.pixels, spec, device), val.labels,
                                 metric, target_far, varied_embeddings, varied_faces,
                                 require_evidence)
