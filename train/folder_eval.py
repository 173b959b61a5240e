"""Evaluation on your own folder: verification pairs drawn from its held-out people.

The people of the folder the model never trained on (for the training folder itself: the
validation people its thresholds were chosen on) give every genuine and impostor pair; the
report has the same all-pairs block, ROC and t-SNE as LFW's, plus the accuracy at the model's
threshold on balanced pairs (every genuine pair, as many impostor pairs drawn with a seed).
"""

from __future__ import annotations

import numpy as np
from siamese.runtime.errors import DatasetError
from siamese.train import metrics
from siamese.train.calibration import Calibration
from siamese.train.evaluate import EmbedFn, all_pair_figures, embed_paths
from siamese.train.face_cache import AlignedFaces


def evaluate_folder(embed: EmbedFn, metric: str, calibration: Calibration, faces: AlignedFaces,
                    trained_people: set[str], seed: int = 0) -> dict:
    """The report dictionary over the folder's people not in `trained_people`."""
    records = [r for r in faces.select() if r.identity not in trained_people]
    labels = np.array([r.identity for r in records])
    people, counts = np.unique(labels, return_counts=True) if len(labels) else ([], [])
    if len(people) < 2 or max(counts, default=0) < 2:
        raise DatasetError(f"evaluation needs two or more held-out people, one with two or more "
                           f"photos; the folder has {len(people)} people the model did not "
                           f"train on")
    paths = [r.path for r in records]
    vectors = embed_paths(embed, faces, paths)
    matrix = np.stack([vectors[p] for p in paths])
    genuine, impostor = metrics.all_pair_scores(matrix, labels, metric)
    rng = np.random.default_rng(seed)
    sample = impostor[rng.choice(len(impostor), size=min(len(genuine), len(impostor)),
                                 replace=False)]
    scores = np.concatenate([genuine, sample])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(sample), bool)])
    pairs = {
        "pairs": int(len(same)), "genuine_pairs": int(len(genuine)),
        "accuracy": metrics.accuracy(scores, same, calibration.accuracy_threshold),
        "threshold": calibration.accuracy_threshold,
        "best_threshold_accuracy": metrics.accuracy(scores, same,
                                                    metrics.best_threshold(scores, same)),
        "best_threshold_note": "oracle: threshold chosen on these pairs themselves",
    }
    all_pairs = {"people": int(len(people)), "images": len(paths),
                 **all_pair_figures(genuine, impostor, calibration)}
    return {"metric": metric, "held_out_people": sorted(people.tolist()),
            "folder_pairs": pairs, "folder_all_pairs": all_pairs,
            "_roc": metrics.roc_curve(genuine, impostor), "_tsne": (matrix, labels)}
