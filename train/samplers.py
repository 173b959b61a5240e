"""Seeded samplers: the seed's triplets with a positive:negative ratio, and P x K batches."""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
from siamese.runtime.errors import DatasetError

log = logging.getLogger(__name__)


def group_by_label(labels: np.ndarray) -> dict[int, np.ndarray]:
    groups: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels.tolist()):
        groups[label].append(index)
    return {label: np.array(indices) for label, indices in groups.items()}


class TripletSampler:
    """Triplets (anchor, positive, negative) for one epoch, as the seed draws them.

    Only images of identities with two or more images are anchors (the seed looped forever on
    singletons); every image, singletons included, can be a negative. Each anchor-positive pair
    gets `negatives_per_positive` different negatives (the seed advises 1 to 3).
    """

    def __init__(self, labels: np.ndarray, negatives_per_positive: int = 1, seed: int = 0) -> None:
        if negatives_per_positive < 1:
            raise DatasetError("negatives_per_positive must be at least 1")
        self.labels = np.asarray(labels)
        self.negatives_per_positive = negatives_per_positive
        self.rng = np.random.default_rng(seed)
        self.groups = group_by_label(self.labels)
        self.anchors = np.array([i for g in self.groups.values() if len(g) >= 2 for i in g])
        if len(self.anchors) == 0:
            raise DatasetError("no identity has two images: cannot form triplets")
        if len(self.groups) < 2:
            raise DatasetError("triplets need at least two identities")

    def __len__(self) -> int:
        return len(self.anchors) * self.negatives_per_positive

    def epoch(self) -> np.ndarray:
        """(len(self), 3) int array of triplets in random order."""
        anchors = np.repeat(self.rng.permutation(self.anchors), self.negatives_per_positive)
        positives = np.empty_like(anchors)
        for row, anchor in enumerate(anchors):
            group = self.groups[int(self.labels[anchor])]
            # a uniform draw among the group's other images: index into group without anchor
            choice = group[self.rng.integers(len(group) - 1)]
            positives[row] = choice if choice != anchor else group[-1]
        negatives = self.rng.integers(len(self.labels), size=len(anchors))
        clash = self.labels[negatives] == self.labels[anchors]
        while clash.any():  # resample only the clashes; terminates since >= 2 identities exist
            negatives[clash] = self.rng.integers(len(self.labels), size=int(clash.sum()))
            clash = self.labels[negatives] == self.labels[anchors]
        return np.stack([anchors, positives, negatives], 1)


class PKSampler:
    """Batches of P identities x K images (identities with two or more images; images drawn
    with replacement when an identity has fewer than K)."""

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0) -> None:
        self.labels = np.asarray(labels)
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)
        self.groups = {label: g for label, g in group_by_label(self.labels).items()
                       if len(g) >= 2}
        if len(self.groups) < 2:
            raise DatasetError(f"P x K batches need two or more identities with two images; "
                               f"found {len(self.groups)}")
        if len(self.groups) < p:  # a small folder: every identity in every batch
            log.info("P x K batches of %d identities (fewer than P = %d)", len(self.groups), p)
            self.p = p = len(self.groups)
        self.batches_per_epoch = max(1, sum(len(g) for g in self.groups.values()) // (p * k))

    def epoch(self) -> list[np.ndarray]:
        identities = np.array(list(self.groups))
        batches = []
        for _ in range(self.batches_per_epoch):
            chosen = self.rng.choice(identities, size=self.p, replace=False)
            batch = [self.rng.choice(self.groups[int(label)], size=self.k,
                                     replace=len(self.groups[int(label)]) < self.k)
                     for label in chosen]
            batches.append(np.concatenate(batch))
        return batches


class RandomBatchSampler:
    """Every index once per epoch, shuffled, in batches of `batch_size` (the last may be short)."""

    def __init__(self, size: int, batch_size: int, seed: int = 0) -> None:
        self.size, self.batch_size = size, batch_size
        self.rng = np.random.default_rng(seed)

    def epoch(self) -> list[np.ndarray]:
        order = self.rng.permutation(self.size)
        return [order[i:i + self.batch_size] for i in range(0, self.size, self.batch_size)
                if len(order[i:i + self.batch_size]) > 1]
