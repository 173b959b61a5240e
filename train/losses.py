"""Triplet losses (fixed triplets and online mining in a batch) and margin-softmax heads."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean distance matrix, numerically safe at zero."""
    squared = torch.cdist(embeddings, embeddings).pow(2)
    return squared.clamp_min(1e-12).sqrt() * (squared > 1e-12)


class TripletLoss(nn.Module):
    """mean(relu(d(a, p) - d(a, n) + margin)) with Euclidean distance, as in the seed."""

    def __init__(self, margin: float = 1.0) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor,
                negative: torch.Tensor) -> torch.Tensor:
        return self.per_triplet(anchor, positive, negative).mean()

    def per_triplet(self, anchor: torch.Tensor, positive: torch.Tensor,
                    negative: torch.Tensor) -> torch.Tensor:
        d_pos = (anchor - positive).pow(2).sum(1).clamp_min(1e-12).sqrt()
        d_neg = (anchor - negative).pow(2).sum(1).clamp_min(1e-12).sqrt()
        return F.relu(d_pos - d_neg + self.margin)


def batch_hard_triplets(distances: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For each anchor: its hardest (farthest) positive and hardest (nearest) negative.

    Returns (anchor index, positive index, negative index) for anchors that have both.
    """
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    positive_mask, negative_mask = same & ~eye, ~same
    valid = positive_mask.any(1) & negative_mask.any(1)
    hardest_positive = distances.masked_fill(~positive_mask, -1.0).argmax(1)
    hardest_negative = distances.masked_fill(~negative_mask, math.inf).argmin(1)
    anchors = torch.nonzero(valid).squeeze(1)
    return anchors, hardest_positive[anchors], hardest_negative[anchors]


def semi_hard_triplets(distances: torch.Tensor, labels: torch.Tensor,
                       margin: float) -> tuple[torch.Tensor, ...]:
    """Every (anchor, positive) pair with a semi-hard negative: farther than the positive but
    inside the margin, the nearest such; the hardest negative where none is semi-hard."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchors, positives = torch.nonzero(same & ~eye, as_tuple=True)
    if len(anchors) == 0:
        return anchors, positives, positives
    d_ap = distances[anchors, positives][:, None]
    d_an = distances[anchors]
    negative_mask = ~same[anchors]
    semi = negative_mask & (d_an > d_ap) & (d_an < d_ap + margin)
    semi_choice = d_an.masked_fill(~semi, math.inf).argmin(1)
    hard_choice = d_an.masked_fill(~negative_mask, math.inf).argmin(1)
    negatives = torch.where(semi.any(1), semi_choice, hard_choice)
    keep = negative_mask.any(1)
    return anchors[keep], positives[keep], negatives[keep]


class OnlineTripletLoss(nn.Module):
    """Triplet loss over triplets mined inside a P x K batch ('batch-hard' or 'semi-hard')."""

    def __init__(self, margin: float = 0.3, miner: str = "batch-hard") -> None:
        super().__init__()
        if miner not in ("batch-hard", "semi-hard"):
            raise ValueError(f"unknown miner {miner!r}")
        self.margin, self.miner = margin, miner
        self.triplet = TripletLoss(margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distances = pairwise_distances(embeddings)
        if self.miner == "batch-hard":
            a, p, n = batch_hard_triplets(distances.detach(), labels)
        else:
            a, p, n = semi_hard_triplets(distances.detach(), labels, self.margin)
        if len(a) == 0:
            return embeddings.sum() * 0.0
        return self.triplet(embeddings[a], embeddings[p], embeddings[n])


class MarginSoftmax(nn.Module):
    """CosFace (additive cosine margin) or ArcFace (additive angular margin) classifier head.

    Used only in training; the embedding itself is what is exported.
    """

    def __init__(self, embedding_dim: int, classes: int, kind: str = "cosface",
                 scale: float = 30.0, margin: float | None = None) -> None:
        super().__init__()
        if kind not in ("cosface", "arcface"):
            raise ValueError(f"unknown margin head {kind!r}")
        self.kind, self.scale = kind, scale
        self.margin = margin if margin is not None else (0.35 if kind == "cosface" else 0.5)
        self.weight = nn.Parameter(torch.randn(classes, embedding_dim) * 0.01)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cosine = F.linear(F.normalize(embeddings), F.normalize(self.weight)).clamp(-1 + 1e-7,
                                                                                  1 - 1e-7)
        target = cosine.gather(1, labels[:, None])
        if self.kind == "cosface":
            adjusted = target - self.margin
        else:
            adjusted = torch.cos(torch.acos(target) + self.margin)
        logits = cosine.scatter(1, labels[:, None], adjusted) * self.scale
        return F.cross_entropy(logits, labels)
