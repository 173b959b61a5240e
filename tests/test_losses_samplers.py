import numpy as np
import pytest
import torch
from siamese.runtime.errors import DatasetError
from siamese.train.losses import (
    MarginSoftmax,
    OnlineTripletLoss,
    TripletLoss,
    batch_hard_triplets,
    pairwise_distances,
    semi_hard_triplets,
)
from siamese.train.samplers import PKSampler, TripletSampler


def test_triplet_loss_on_hand_made_embeddings():
    anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    positive = torch.tensor([[3.0, 4.0], [1.0, 0.0]])  # distances 5 and 1
    negative = torch.tensor([[0.0, 1.0], [0.0, 3.0]])  # distances 1 and 3
    loss = TripletLoss(margin=1.0)
    # relu(5 - 1 + 1) = 5 and relu(1 - 3 + 1) = 0
    assert loss.per_triplet(anchor, positive, negative).tolist() == pytest.approx([5.0, 0.0])
    assert float(loss(anchor, positive, negative)) == pytest.approx(2.5)


def test_batch_hard_picks_the_hardest_positive_and_negative():
    points = torch.tensor([[0.0], [1.0], [3.0], [10.0], [1.5], [20.0]])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    anchors, positives, negatives = batch_hard_triplets(pairwise_distances(points), labels)
    chosen = dict(zip(anchors.tolist(), zip(positives.tolist(), negatives.tolist(), strict=True),
                      strict=True))
    assert chosen[0] == (2, 4)  # farthest same-label point 3.0; nearest other 1.5
    assert chosen[3] == (4, 2)  # its only positive 1.5; nearest other 3.0 (distance 7)
    assert 5 not in chosen  # label 2 has no positive


def test_semi_hard_prefers_negatives_inside_the_margin():
    points = torch.tensor([[0.0], [1.0], [1.2], [5.0]])
    labels = torch.tensor([0, 0, 1, 1])
    a, p, n = semi_hard_triplets(pairwise_distances(points), labels, margin=0.5)
    chosen = {(int(x), int(y)): int(z) for x, y, z in zip(a, p, n, strict=True)}
    assert chosen[(0, 1)] == 2  # d(0,2)=1.2 lies in (1.0, 1.5)


def test_online_loss_is_zero_when_classes_are_separated():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [10.1, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert float(OnlineTripletLoss(margin=1.0)(points, labels)) == 0.0


def test_margin_softmax_penalises_the_margin():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    head = MarginSoftmax(2, 2, "cosface", scale=10.0, margin=0.0)
    head.weight.data = torch.eye(2)
    without = float(head(embeddings, labels))
    head.margin = 0.5
    assert float(head(embeddings, labels)) > without


def test_triplet_sampler_never_loops_on_singletons_and_keeps_its_ratio():
    labels = np.array([0, 0, 0, 1, 2, 3, 4, 4])  # 1, 2 and 3 are singletons
    sampler = TripletSampler(labels, negatives_per_positive=3, seed=1)
    triplets = sampler.epoch()
    assert len(triplets) == 5 * 3  # five anchor images, three negatives each
    a, p, n = triplets.T
    assert set(a.tolist()) == {0, 1, 2, 6, 7}
    assert np.all(labels[a] == labels[p]) and np.all(a != p)
    assert np.all(labels[a] != labels[n])
    assert set(n.tolist()) & {3, 4, 5}  # singletons serve as negatives
    counts = np.unique(a, return_counts=True)[1]
    assert np.all(counts == 3)


def test_triplet_sampler_rejects_data_without_pairs():
    with pytest.raises(DatasetError, match="two images"):
        TripletSampler(np.array([0, 1, 2]))


def test_pk_sampler_batches_p_identities_of_k_images():
    labels = np.repeat(np.arange(10), 3)
    batches = PKSampler(labels, p=4, k=2, seed=0).epoch()
    assert batches
    for batch in batches:
        assert len(batch) == 8
        assert len(set(labels[batch].tolist())) == 4
