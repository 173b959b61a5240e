"""The training loop: fixed or mined triplets, optional margin-softmax head, validation on
held-out training-side people, atomic checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from siamese.train import metrics
from siamese.train.augment import AugmentConfig, augment
from siamese.train.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_atomic
from siamese.train.config import TrainConfig
from siamese.train.data import FaceTensors, normalize, to_unit_range
from siamese.train.datasets import split_people
from siamese.train.distill import (
    distillation_loss,
    load_extra_faces,
    load_morphs,
    load_teacher,
)
from siamese.train.embedding import embed_pixels
from siamese.train.face_cache import AlignedFaces, CacheRecord
from siamese.train.losses import MarginSoftmax, OnlineTripletLoss, TripletLoss
from siamese.train.models import create_backbone, default_preprocess
from siamese.train.samplers import PKSampler, RandomBatchSampler, TripletSampler
from tqdm import tqdm

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def calibrate(genuine: np.ndarray, impostor: np.ndarray, target_far: float,
              genuine_weights: np.ndarray | None = None) -> dict:
    """Thresholds chosen on validation pairs: balanced accuracy (genuine pairs weighted by
    `genuine_weights`, e.g. each person equally), and the target FAR."""
    scores = np.concatenate([genuine, impostor])
    same = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostor), bool)]
    weights = None if genuine_weights is None else np.r_[genuine_weights, np.ones(len(impostor))]
    far_threshold = metrics.threshold_at_far(impostor, target_far)
    tar, far = metrics.rates(genuine, impostor, far_threshold)
    return {
        "accuracy_threshold": metrics.best_threshold(scores, same, balanced=True,
                                                     weights=weights),
        "accuracy_threshold_weighting": "person" if genuine_weights is not None else "pair",
        "far_threshold": far_threshold, "target_far": target_far,
        "val_tar_at_threshold": tar, "val_far_at_threshold": far,
        "val_auc": metrics.roc_auc(genuine, impostor),
        "val_genuine_pairs": int(len(genuine)), "val_impostor_pairs": int(len(impostor)),
    }


def validation_calibration(model: torch.nn.Module, val: FaceTensors, spec, metric: str,
                           device: torch.device, target_far: float) -> dict:
    """Thresholds and validation metrics over every pair of the held-out people's images."""
    embeddings = embed_pixels(model, val.pixels, spec, device)
    genuine, impostor = metrics.all_pair_scores(embeddings, val.labels, metric)
    return calibrate(genuine, impostor, target_far, metrics.genuine_pair_weights(val.labels))


@dataclass
class RunResult:
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict]


class Trainer:
    """Trains one run into `out_dir` (last.pt every epoch, best.pt on the best validation AUC)."""

    def __init__(self, config: TrainConfig, faces: AlignedFaces, train_records: list[CacheRecord],
                 out_dir: Path, source: dict, progress: bool = True) -> None:
        config.validate()
        self.config, self.out_dir = config, Path(out_dir)
        self.source, self.progress = source, progress
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.spec = default_preprocess(config.arch)
        train_people, val_people = split_people(
            sorted({r.identity for r in train_records}), config.val_fraction, config.seed)
        self.val_people = sorted(val_people)
        self.train = FaceTensors.from_cache(
            faces, [r for r in train_records if r.identity in train_people], self.spec, self.device)
        self.val = FaceTensors.from_cache(
            faces, [r for r in train_records if r.identity in val_people], self.spec, self.device)
        self.train_labels = torch.as_tensor(self.train.labels, device=self.device)
        self.model = create_backbone(config.arch, config.embedding_dim,
                                     config.l2_normalize).to(self.device)
        self.head = (MarginSoftmax(config.embedding_dim, len(self.train.identities), config.head)
                     .to(self.device) if config.head else None)
        params = list(self.model.parameters()) + (list(self.head.parameters()) if self.head else [])
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr,
                                              weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                                             weight_decay=config.weight_decay, nesterov=True)
        self.teacher = (load_teacher(Path(config.distill), self.train.records, self.device)
                        if config.distill else None)
        self.morphs = (load_morphs(Path(config.distill_morphs), self.train.records, self.teacher,
                                   self.device) if config.distill_morphs else None)
        self.extra = (load_extra_faces(Path(config.extra_faces), Path(config.extra_distill),
                                       self.spec, self.teacher, self.device)
                      if config.extra_faces else None)
        self.triplet_loss = TripletLoss(config.margin)
        self.online_loss = (OnlineTripletLoss(config.margin, config.loss)
                            if config.loss in ("batch-hard", "semi-hard") else None)
        if config.loss in ("triplet",):
            self.sampler = TripletSampler(self.train.labels, config.negatives_per_positive,
                                          config.seed)
        elif config.loss == "none" and config.head is None:  # distillation alone: every image
            self.sampler = RandomBatchSampler(len(self.train), config.p * config.k, config.seed)
        else:
            self.sampler = PKSampler(self.train.labels, config.p, config.k, config.seed)
        self.generator = torch.Generator(self.device).manual_seed(config.seed)
        self.augment_config = AugmentConfig()
        self.hard_triplets = np.zeros((0, 3), np.int64)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best_auc = -math.inf

    # --- epochs ---------------------------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        c = self.config
        if epoch < c.warmup_epochs:
            return c.warmup_lr
        if c.schedule == "cosine":
            progress = (epoch - c.warmup_epochs) / max(1, c.epochs - c.warmup_epochs)
            return 0.5 * c.lr * (1 + math.cos(math.pi * progress))
        return c.lr

    def _inputs(self, indices: torch.Tensor, morphs: torch.Tensor | None = None,
                extra: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised (augmented) training images, then the given morphs and extra faces."""
        x = to_unit_range(self.train.pixels[indices])
        if morphs is not None:
            weights = self.morphs.weights[morphs][:, None, None, None]
            first = to_unit_range(self.train.pixels[self.morphs.first[morphs]])
            second = to_unit_range(self.train.pixels[self.morphs.second[morphs]])
            x = torch.cat([x, weights * first + (1 - weights) * second])
        if extra is not None:
            x = torch.cat([x, to_unit_range(self.extra.pixels[extra])])
        if self.config.augment:
            x = augment(x, self.augment_config, self.generator)
        return normalize(x, self.spec)

    def _batches(self, epoch: int) -> list[np.ndarray]:
        if isinstance(self.sampler, PKSampler | RandomBatchSampler):
            return self.sampler.epoch()
        c = self.config
        if c.hard_mining_every and epoch > 0 and epoch % c.hard_mining_every == 0:
            self.hard_triplets = self._mine_hard_triplets()
        triplets = np.concatenate([self.sampler.epoch(), self.hard_triplets])
        triplets = triplets[self.sampler.rng.permutation(len(triplets))]
        return [triplets[i:i + c.batch_size] for i in range(0, len(triplets), c.batch_size)]

    def _mine_hard_triplets(self) -> np.ndarray:
        """Seed trick: score fresh triplets (4 negatives per positive) with the current model and
        keep the ones it gets wrong (loss > 0), to be trained on until the next mining."""
        embeddings = torch.from_numpy(embed_pixels(self.model, self.train.pixels, self.spec,
                                                   self.device))
        candidates = np.concatenate([self.sampler.epoch() for _ in range(4)])
        losses = self.triplet_loss.per_triplet(*(embeddings[candidates[:, i]] for i in range(3)))
        hard = candidates[(losses > 0).numpy()]
        log.info("hard mining: %d of %d triplets violate the margin", len(hard), len(candidates))
        return hard

    def _step_loss(self, batch: np.ndarray) -> tuple[torch.Tensor, int]:
        if batch.ndim == 2:  # fixed triplets (B, 3)
            indices = torch.as_tensor(batch.T.reshape(-1), device=self.device)
            embeddings = self.model(self._inputs(indices)).view(3, len(batch), -1)
            return self.triplet_loss(*embeddings), batch.size
        indices = torch.as_tensor(batch, device=self.device)
        labels = self.train_labels[indices]
        # as many morphs and extra faces as images, in the same forward pass
        morphs = None if self.morphs is None else torch.randint(
            len(self.morphs), (len(batch),), device=self.device, generator=self.generator)
        extra = None if self.extra is None else torch.randint(
            len(self.extra), (len(batch),), device=self.device, generator=self.generator)
        parts = self.model(self._inputs(indices, morphs, extra)).split(len(batch))
        embeddings = parts[0]
        loss = embeddings.sum() * 0.0
        if morphs is not None:
            loss = loss + self.config.morph_weight * distillation_loss(
                parts[1], self.morphs.targets[morphs])
        if extra is not None:
            loss = loss + self.config.extra_weight * distillation_loss(
                parts[-1], self.extra.targets[extra])
        if self.online_loss is not None:
            loss = loss + self.online_loss(embeddings, labels)
        if self.teacher is not None:
            loss = loss + self.config.distill_weight * distillation_loss(
                embeddings, self.teacher.targets[indices])
        if self.head is not None:
            loss = loss + self.config.head_weight * self.head(embeddings, labels)
        return loss, len(batch)

    def run_epoch(self, epoch: int) -> dict:
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        batches = self._batches(epoch)
        total, images, started = 0.0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for batch in bar:
            loss, count = self._step_loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += float(loss.detach()) * count
            images += count
            bar.set_postfix(loss=f"{total / images:.4f}",
                            img_s=f"{images / (time.perf_counter() - started):.0f}")
        seconds = time.perf_counter() - started
        return {"epoch": epoch + 1, "lr": lr, "loss": total / max(images, 1),
                "images_per_s": images / seconds, "seconds": seconds}

    def validate(self) -> dict:
        return validation_calibration(self.model, self.val, self.spec, self.metric, self.device,
                                      self.config.target_far)

    @property
    def metric(self) -> str:
        return "cosine" if self.config.l2_normalize else "euclidean"

    # --- checkpoints ----------------------------------------------------------------------
    def _payload(self, epoch: int, calibration: dict) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "arch": self.config.arch,
            "config": self.config.to_dict(), "preprocess": self.spec.to_dict(),
            "metric": self.metric, "embedding_dim": self.config.embedding_dim,
            "epoch": epoch, "history": self.history, "calibration": calibration,
            "val_people": self.val_people, "train_people": self.train.identities,
            "source": self.source, "model": self.model.state_dict(),
            "head": self.head.state_dict() if self.head else None,
            "optimizer": self.optimizer.state_dict(),
            "best_auc": self.best_auc,
            "rng": {"sampler": self.sampler.rng.bit_generator.state,
                    "augment": self.generator.get_state(),
                    "torch": torch.get_rng_state()},
            "hard_triplets": self.hard_triplets,
        }

    def resume(self, path: Path) -> None:
        checkpoint = load_checkpoint(path, str(self.device))
        if TrainConfig.from_dict(checkpoint["config"]) != self.config:
            log.warning("resuming with a changed config; the checkpoint's config is kept")
        self.model.load_state_dict(checkpoint["model"])
        if self.head is not None and checkpoint["head"] is not None:
            self.head.load_state_dict(checkpoint["head"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.sampler.rng.bit_generator.state = checkpoint["rng"]["sampler"]
        self.generator.set_state(checkpoint["rng"]["augment"].cpu())
        torch.set_rng_state(checkpoint["rng"]["torch"].cpu())
        self.hard_triplets = checkpoint["hard_triplets"]
        self.history = checkpoint["history"]
        self.best_auc = checkpoint["best_auc"]
        self.start_epoch = checkpoint["epoch"]

    def run(self) -> RunResult:
        last, best = self.out_dir / "last.pt", self.out_dir / "best.pt"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))
        for epoch in range(self.start_epoch, self.config.epochs):
            record = self.run_epoch(epoch)
            started = time.perf_counter()
            calibration = self.validate()
            record.update(val_auc=calibration["val_auc"],
                          val_tar_at_far=calibration["val_tar_at_threshold"],
                          val_seconds=time.perf_counter() - started)
            self.history.append(record)
            log.info("epoch %(epoch)d loss %(loss).4f val AUC %(val_auc).4f", record)
            if self.progress:
                tqdm.write(f"epoch {record['epoch']}: loss {record['loss']:.4f}, "
                           f"{record['images_per_s']:.0f} img/s, val AUC {record['val_auc']:.4f}")
            improved = calibration["val_auc"] > self.best_auc
            if improved:
                self.best_auc = calibration["val_auc"]
            payload = self._payload(epoch + 1, calibration)
            save_atomic(payload, last)
            if improved:
                save_atomic(payload, best)
        return RunResult(best, last, self.history)
