"""What training optimises: the batches of an epoch (fixed triplets, P x K or random batches,
with morphs and extra faces alongside), their augmentation, and the sum of the configured
losses (triplets, teacher distillation, margin-softmax head)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.augment import AugmentConfig, augment
from siamese.train.config import TrainConfig
from siamese.train.data import FaceTensors, normalize, to_unit_range
from siamese.train.distill import (
    distillation_loss,
    load_extra_faces,
    load_morphs,
    load_teacher,
)
from siamese.train.embedding import embed_pixels
from siamese.train.losses import MarginSoftmax, OnlineTripletLoss, TripletLoss
from siamese.train.onnx_teacher import OnnxTeacher
from siamese.train.samplers import PKSampler, RandomBatchSampler, TripletSampler

log = logging.getLogger(__name__)


class Objective:
    """The losses of one run over `train`, and the batches they are computed on."""

    def __init__(self, config: TrainConfig, train: FaceTensors, spec: Preprocess,
                 device: torch.device) -> None:
        self.config, self.train, self.spec, self.device = config, train, spec, device
        self.labels = torch.as_tensor(train.labels, device=device)
        self.head = (MarginSoftmax(config.embedding_dim, len(train.identities), config.head)
                     .to(device) if config.head else None)
        self.teacher = (load_teacher(Path(config.distill), train.records, device,
                                     config.distill_centre) if config.distill else None)
        self.morphs = (load_morphs(Path(config.distill_morphs), train.records, self.teacher,
                                   device) if config.distill_morphs else None)
        self.extra = (load_extra_faces(Path(config.extra_faces), Path(config.extra_distill),
                                       spec, self.teacher, device)
                      if config.extra_faces else None)
        self.online_teacher = (OnnxTeacher(Path(config.distill_online)).to(device)
                               if config.distill_online else None)
        self.triplet_loss = TripletLoss(config.margin)
        self.online_loss = (OnlineTripletLoss(config.margin, config.loss)
                            if config.loss in ("batch-hard", "semi-hard") else None)
        if config.loss == "triplet":
            self.sampler = TripletSampler(train.labels, config.negatives_per_positive,
                                          config.seed)
        elif config.loss == "none" and config.head is None:  # distillation alone: every image
            self.sampler = RandomBatchSampler(len(train), config.p * config.k, config.seed)
        else:
            self.sampler = PKSampler(train.labels, config.p, config.k, config.seed)
        self.generator = torch.Generator(device).manual_seed(config.seed)
        self.augment_config = AugmentConfig()
        self.hard_triplets = np.zeros((0, 3), np.int64)

    def parameters(self) -> list[torch.nn.Parameter]:
        """Trainable parameters besides the model's (the margin head's class centres)."""
        return list(self.head.parameters()) if self.head else []

    # --- batches --------------------------------------------------------------------------
    def batches(self, epoch: int, model: torch.nn.Module) -> list[np.ndarray]:
        """Index batches of one epoch: (B,) images or (B, 3) fixed triplets."""
        if isinstance(self.sampler, PKSampler | RandomBatchSampler):
            return self.sampler.epoch()
        c = self.config
        if c.hard_mining_every and epoch > 0 and epoch % c.hard_mining_every == 0:
            self.hard_triplets = self._mine_hard_triplets(model)
        triplets = np.concatenate([self.sampler.epoch(), self.hard_triplets])
        triplets = triplets[self.sampler.rng.permutation(len(triplets))]
        return [triplets[i:i + c.batch_size] for i in range(0, len(triplets), c.batch_size)]

    def _mine_hard_triplets(self, model: torch.nn.Module) -> np.ndarray:
        """Seed trick: score fresh triplets (4 negatives per positive) with the current model and
        keep the ones it gets wrong (loss > 0), to be trained on until the next mining."""
        embeddings = torch.from_numpy(embed_pixels(model, self.train.pixels, self.spec,
                                                   self.device))
        candidates = np.concatenate([self.sampler.epoch() for _ in range(4)])
        losses = self.triplet_loss.per_triplet(*(embeddings[candidates[:, i]] for i in range(3)))
        hard = candidates[(losses > 0).numpy()]
        log.info("hard mining: %d of %d triplets violate the margin", len(hard), len(candidates))
        return hard

    def _views(self, indices: torch.Tensor, morphs: torch.Tensor | None = None,
               extra: torch.Tensor | None = None) -> torch.Tensor:
        """(Augmented) training images in [0, 1], then the given morphs and extra faces."""
        x = to_unit_range(self.train.pixels[indices])
        if morphs is not None:
            weights = self.morphs.weights[morphs][:, None, None, None]
            first = to_unit_range(self.train.pixels[self.morphs.first[morphs]])
            second = to_unit_range(self.train.pixels[self.morphs.second[morphs]])
            x = torch.cat([x, weights * first + (1 - weights) * second])
        if self.config.augment:
            x = augment(x, self.augment_config, self.generator)
        if extra is not None:
            faces = to_unit_range(self.extra.pixels[extra])
            if self.config.augment and self.config.extra_augment:
                faces = augment(faces, self.augment_config, self.generator)
            x = torch.cat([x, faces])
        return x

    # --- loss -----------------------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        """The batch's loss and how many images it counts."""
        if batch.ndim == 2:  # fixed triplets (B, 3)
            indices = torch.as_tensor(batch.T.reshape(-1), device=self.device)
            embeddings = model(normalize(self._views(indices), self.spec)).view(3, len(batch), -1)
            return self.triplet_loss(*embeddings), batch.size
        c = self.config
        indices = torch.as_tensor(batch, device=self.device)
        labels = self.labels[indices]
        # as many morphs and extra faces as images, in the same forward pass
        morphs = None if self.morphs is None else torch.randint(
            len(self.morphs), (len(batch),), device=self.device, generator=self.generator)
        extra = None if self.extra is None else torch.randint(
            len(self.extra), (len(batch),), device=self.device, generator=self.generator)
        views = self._views(indices, morphs, extra)
        parts = model(normalize(views, self.spec)).split(len(batch))
        embeddings = parts[0]
        loss = embeddings.sum() * 0.0
        if morphs is not None:
            loss = loss + c.morph_weight * distillation_loss(parts[1],
                                                             self.morphs.targets[morphs])
        if extra is not None:
            loss = loss + c.extra_weight * distillation_loss(parts[-1],
                                                             self.extra.targets[extra])
        if self.online_loss is not None:
            loss = loss + self.online_loss(embeddings, labels)
        if self.teacher is not None:
            loss = loss + c.distill_weight * distillation_loss(embeddings,
                                                               self.teacher.targets[indices])
        if self.online_teacher is not None:  # the teacher sees the very view the student sees
            targets = self.online_teacher(views[:len(batch)])
            loss = loss + c.distill_weight * distillation_loss(embeddings, targets)
        if self.head is not None:
            loss = loss + c.head_weight * self.head(embeddings, labels)
        return loss, len(batch)

    # --- resuming -------------------------------------------------------------------------
    def state(self) -> dict:
        """Head weights, sampler and augmentation RNG states, mined triplets."""
        return {"head": self.head.state_dict() if self.head else None,
                "rng": {"sampler": self.sampler.rng.bit_generator.state,
                        "augment": self.generator.get_state()},
                "hard_triplets": self.hard_triplets}

    def restore(self, head: dict | None, rng: dict, hard_triplets: np.ndarray) -> None:
        if self.head is not None and head is not None:
            self.head.load_state_dict(head)
        self.sampler.rng.bit_generator.state = rng["sampler"]
        self.generator.set_state(rng["augment"].cpu())
        self.hard_triplets = hard_triplets
