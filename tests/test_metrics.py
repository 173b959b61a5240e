import numpy as np
import pytest
from siamese.train import metrics


def test_threshold_at_far_lets_through_at_most_that_share():
    impostor = np.arange(1000, dtype=np.float64) / 1000
    threshold = metrics.threshold_at_far(impostor, 1e-2)
    assert (impostor >= threshold).mean() <= 1e-2
    assert (impostor >= threshold).sum() == 10


def test_roc_auc_eer_and_tar_on_known_scores():
    genuine = np.array([0.9, 0.8, 0.7, 0.3])
    impostor = np.array([0.6, 0.2, 0.1, 0.0])
    assert metrics.roc_auc(genuine, impostor) == pytest.approx(15 / 16)
    assert metrics.equal_error_rate(genuine, impostor) == pytest.approx(0.25)
    assert metrics.tar_at_far(genuine, impostor, 0.0) == pytest.approx(0.75)


def test_best_threshold_separates_separable_scores():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8])
    same = np.array([False, False, False, True, True])
    threshold = metrics.best_threshold(scores, same)
    assert 0.3 < threshold < 0.7
    assert metrics.accuracy(scores, same, threshold) == 1.0


def test_similarity_matrix_metrics_agree_on_unit_vectors():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = metrics.similarity_matrix(vectors, "cosine")
    euclid = metrics.similarity_matrix(vectors, "euclidean")
    np.testing.assert_allclose(euclid**2, 2 - 2 * cosine, atol=1e-5)


def test_kfold_accuracy_uses_the_other_folds():
    folds = [np.array([0.9, 0.1]), np.array([0.8, 0.2]), np.array([0.4, 0.6])]
    same = [np.array([True, False])] * 3
    mean, _ = metrics.kfold_accuracy(folds, same)
    assert mean == pytest.approx(2 / 3)  # the third fold is inverted


def test_genuine_pair_weights_count_every_person_once():
    labels = np.array([0] * 10 + [1, 1, 2, 2])
    genuine, _ = metrics.all_pair_scores(np.eye(len(labels)), labels, "cosine")
    weights = metrics.genuine_pair_weights(labels)
    assert len(weights) == len(genuine) == 45 + 1 + 1
    first = labels[np.triu_indices(len(labels), 1)[0]][
        (labels[:, None] == labels[None])[np.triu_indices(len(labels), 1)]]
    assert {int(p): weights[first == p].sum() for p in np.unique(first)} == \
        pytest.approx({0: 1.0, 1: 1.0, 2: 1.0})


def test_weighted_threshold_is_not_decided_by_one_prolific_person():
    # 45 easy genuine pairs of one person, one hard pair each of two others, impostors between
    genuine = np.r_[np.full(45, 0.9), 0.5, 0.5]
    impostor = np.array([0.45, 0.4, 0.3, 0.2, 0.55, 0.1, 0.0, 0.05, 0.15, 0.25])
    scores, same = np.r_[genuine, impostor], np.r_[np.ones(47, bool), np.zeros(10, bool)]
    unweighted = metrics.best_threshold(scores, same, balanced=True)
    weights = np.r_[np.full(45, 1 / 45), 1.0, 1.0, np.ones(10)]
    weighted = metrics.best_threshold(scores, same, balanced=True, weights=weights)
    assert unweighted > 0.55  # the prolific person's pairs dominate: the hard pairs are given up
    assert weighted < 0.5  # every person counts: the hard pairs are accepted
