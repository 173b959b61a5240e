"""Verification metrics on similarity scores (higher means more alike); numpy only.

Reused by evaluation of PyTorch checkpoints and of exported ONNX models.
"""

from __future__ import annotations

import numpy as np


def similarity_matrix(embeddings: np.ndarray, metric: str) -> np.ndarray:
    """Pairwise scores: cosine similarity, or minus the Euclidean distance."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if metric == "cosine":
        unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
        return unit @ unit.T
    if metric == "euclidean":
        squared = (embeddings**2).sum(1)
        return -np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * embeddings @ embeddings.T,
                                0, None))
    raise ValueError(f"unknown metric {metric!r}")


def pair_scores(left: np.ndarray, right: np.ndarray, metric: str) -> np.ndarray:
    """Scores of row-aligned embedding pairs."""
    if metric == "cosine":
        left = left / np.linalg.norm(left, axis=1, keepdims=True).clip(1e-12)
        right = right / np.linalg.norm(right, axis=1, keepdims=True).clip(1e-12)
        return (left * right).sum(1)
    return -np.linalg.norm(left - right, axis=1)


def all_pair_scores(embeddings: np.ndarray, labels: np.ndarray,
                    metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor scores over every unordered pair of distinct images."""
    scores = similarity_matrix(embeddings, metric)
    upper = np.triu_indices(len(labels), k=1)
    same = labels[upper[0]] == labels[upper[1]]
    flat = scores[upper]
    return flat[same], flat[~same]


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold at which at most `far` of impostor scores are >= it."""
    ordered = np.sort(impostor)[::-1]
    allowed = int(np.floor(far * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    return float(np.nextafter(ordered[allowed], np.inf))


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) when scores >= threshold are accepted."""
    return float((genuine >= threshold).mean()), float((impostor >= threshold).mean())


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every distinct threshold, from (0, 0) to (1, 1)."""
    scores = np.concatenate([genuine, impostor])
    is_genuine = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    order = np.argsort(-scores, kind="stable")
    scores, is_genuine = scores[order], is_genuine[order]
    last_of_value = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    tar = np.cumsum(is_genuine)[last_of_value] / max(len(genuine), 1)
    far = np.cumsum(~is_genuine)[last_of_value] / max(len(impostor), 1)
    return np.r_[0.0, far], np.r_[0.0, tar]


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    far, tar = roc_curve(genuine, impostor)
    return float(np.trapezoid(tar, far))


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    far, tar = roc_curve(genuine, impostor)
    frr = 1 - tar
    index = int(np.argmin(np.abs(far - frr)))
    return float((far[index] + frr[index]) / 2)


def d_prime(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Separation of the two score distributions in pooled standard deviations."""
    pooled = np.sqrt((genuine.var() + impostor.var()) / 2)
    return float((genuine.mean() - impostor.mean()) / max(pooled, 1e-12))


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> float:
    """True accept rate at the threshold that lets through at most `far` of impostors."""
    return rates(genuine, impostor, threshold_at_far(impostor, far))[0]


def accuracy(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((scores >= threshold) == same).mean())


def genuine_pair_weights(labels: np.ndarray) -> np.ndarray:
    """A weight per genuine score of `all_pair_scores`, 1 / (that person's genuine pairs), so
    that every person counts equally: a person with n images has n(n-1)/2 pairs, and a few
    people with many images would otherwise decide a threshold alone."""
    upper = np.triu_indices(len(labels), k=1)
    first = labels[upper[0]][labels[upper[0]] == labels[upper[1]]]
    return 1.0 / np.bincount(first)[first]


def best_threshold(scores: np.ndarray, same: np.ndarray, balanced: bool = False,
                   weights: np.ndarray | None = None) -> float:
    """Threshold maximising accuracy (or the mean of TAR and TRR when `balanced`), each score
    counted with its weight (1 when None).

    One sort and a scan: accepting the top i scores is evaluated for every i; the threshold is
    the midpoint between the last accepted and the first rejected score.
    """
    order = np.argsort(-scores, kind="stable")
    ordered, genuine = scores[order], same[order].astype(bool)
    weight = np.ones(len(scores)) if weights is None else np.asarray(weights, float)[order]
    positives, negatives = weight[genuine].sum(), weight[~genuine].sum()
    accepted_genuine = np.r_[0, np.cumsum(weight * genuine)]
    accepted_impostor = np.r_[0, np.cumsum(weight * ~genuine)]
    # only cut between distinct scores
    valid = np.r_[True, ordered[1:] != ordered[:-1], True]
    tar = accepted_genuine / max(positives, 1)
    trr = (negatives - accepted_impostor) / max(negatives, 1)
    if balanced:
        objective = (tar + trr) / 2
    else:
        objective = (accepted_genuine + negatives - accepted_impostor) / weight.sum()
    objective = np.where(valid, objective, -np.inf)
    cut = int(np.argmax(objective))
    if cut == 0:
        return float(ordered[0] + 1e-6)
    if cut == len(ordered):
        return float(ordered[-1] - 1e-6)
    return float((ordered[cut - 1] + ordered[cut]) / 2)


def kfold_accuracy(fold_scores: list[np.ndarray],
                   fold_same: list[np.ndarray]) -> tuple[float, float]:
    """LFW View 2: for each fold, the threshold is chosen on the other folds. (mean, std)."""
    results = []
    for test in range(len(fold_scores)):
        train_scores = np.concatenate([s for i, s in enumerate(fold_scores) if i != test])
        train_same = np.concatenate([s for i, s in enumerate(fold_same) if i != test])
        threshold = best_threshold(train_scores, train_same)
        results.append(accuracy(fold_scores[test], fold_same[test], threshold))
    return float(np.mean(results)), float(np.std(results))
