"""The training loop: epochs of the Objective, validation on held-out training-side people,
atomic checkpoints (last.pt every epoch, best.pt on the best validation AUC), resume."""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from siamese.runtime.errors import ConfigError, ModelError
from siamese.runtime.storage.fileio import write_text_atomic
from siamese.train.calibration import Calibration, validation_calibration
from siamese.train.checkpoint import Checkpoint, TrainingSource, TrainingState
from siamese.train.config import TrainConfig
from siamese.train.data import normalize, split_train_val, to_unit_range
from siamese.train.embedding import resolve_device
from siamese.train.face_cache import AlignedFaces, CacheRecord
from siamese.train.models import create_backbone, default_preprocess
from siamese.train.objective import Objective
from siamese.train.packaged import load_start, set_statistics
from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    best_checkpoint: Path
    last_checkpoint: Path
    history: list[dict]


class Trainer:
    """Trains one run into `out_dir` (last.pt every epoch, best.pt on the best validation AUC)."""

    def __init__(self, config: TrainConfig, faces: AlignedFaces, train_records: list[CacheRecord],
                 out_dir: Path, source: TrainingSource | None, progress: bool = True) -> None:
        config.validate()
        self.config, self.out_dir = config, Path(out_dir)
        self.source, self.progress = source, progress
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.spec = default_preprocess(config.arch)
        self.train, self.val = split_train_val(faces, train_records, config.val_fraction,
                                               config.seed, self.spec, self.device)
        self.model = create_backbone(config.arch, config.embedding_dim,
                                     config.l2_normalize).to(self.device)
        if config.init:
            self._init_from(config.init)
        self.objective = Objective(config, self.train, self.spec, self.device)
        params = list(self.model.parameters()) + self.objective.parameters()
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=config.lr,
                                              weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.lr, momentum=0.9,
                                             weight_decay=config.weight_decay, nesterov=True)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.best_auc = -math.inf
        self.epochs_done = 0
        self.interrupted_checkpoint: Path | None = None  # set when Ctrl-C stopped run()

    @property
    def val_people(self) -> list[str]:
        return self.val.identities

    def _init_from(self, spec: str) -> None:
        """Start from a packaged model name, an FP32 ONNX export or a training checkpoint."""
        start = load_start(spec, str(self.device))
        if (start.arch, start.embedding_dim) != (self.config.arch, self.config.embedding_dim):
            raise ConfigError(f"--init {spec} is a {start.arch} ({start.embedding_dim}-d); this "
                              f"run trains a {self.config.arch} ({self.config.embedding_dim}-d)")
        held_out_seen = set(start.train_people) & set(self.val_people)
        if held_out_seen:
            raise ConfigError(f"--init {spec} was trained on {len(held_out_seen)} of this run's "
                              f"held-out people; its thresholds would not be honest")
        self.model.load_state_dict(start.weights)
        if start.folded:  # give the folded batch norms this data's statistics, same function
            set_statistics(self.model, normalize(to_unit_range(self.train.pixels[:2048]),
                                                 self.spec).to(self.device))

    # --- epochs ---------------------------------------------------------------------------
    def lr_at(self, epoch: int) -> float:
        c = self.config
        if epoch < c.warmup_epochs:
            return c.warmup_lr
        if c.schedule == "cosine":
            progress = (epoch - c.warmup_epochs) / max(1, c.epochs - c.warmup_epochs)
            return 0.5 * c.lr * (1 + math.cos(math.pi * progress))
        return c.lr

    def run_epoch(self, epoch: int) -> dict:
        lr = self.lr_at(epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        batches = self.objective.batches(epoch, self.model)
        total, images, started = 0.0, 0, time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{self.config.epochs}", unit="batch",
                   disable=not self.progress, leave=False)
        for batch in bar:
            loss, count = self.objective.loss(self.model, batch)
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

    def validate(self) -> Calibration:
        # per-epoch figures: a small held-out set still ranks epochs; the checkpoint records
        # val_far_upper_95, and tools/recalibrate.py / export hold the FAR to the evidence rule
        return validation_calibration(self.model, self.val, self.spec, self.config.metric,
                                      self.device, self.config.target_far,
                                      require_evidence=False)

    # --- checkpoints ----------------------------------------------------------------------
    def checkpoint(self, epoch: int, calibration: Calibration) -> Checkpoint:
        objective = self.objective.state()
        rng = {**objective["rng"], "torch": torch.get_rng_state()}
        return Checkpoint(
            config=self.config, preprocess=self.spec, calibration=calibration,
            weights=self.model.state_dict(), epoch=epoch, train_people=self.train.identities,
            val_people=self.val_people, source=self.source, history=self.history,
            training=TrainingState(self.optimizer.state_dict(), objective["head"], rng,
                                   objective["hard_triplets"], self.best_auc))

    def resume(self, path: Path) -> None:
        checkpoint = Checkpoint.load(path, str(self.device))
        if replace(checkpoint.config, epochs=self.config.epochs) != self.config:
            log.warning("resuming with a config that differs beyond epochs; training goes on "
                        "with the new one")
        if checkpoint.training is None:
            raise ModelError(f"{path} has no training state (a slimmed checkpoint) to resume")
        state = checkpoint.training
        self.model.load_state_dict(checkpoint.weights)
        self.optimizer.load_state_dict(state.optimizer)
        self.objective.restore(state.head, state.rng, state.hard_triplets)
        torch.set_rng_state(state.rng["torch"].cpu())
        self.history = checkpoint.history
        self.best_auc = state.best_auc
        self.start_epoch = checkpoint.epoch

    def run(self) -> RunResult:
        last, best = self.out_dir / "last.pt", self.out_dir / "best.pt"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.out_dir / "config.json",
                          json.dumps(self.config.to_dict(), indent=2))
        self.epochs_done = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.config.epochs):
                self._epoch(epoch, last, best)
                self.epochs_done = epoch + 1
        except KeyboardInterrupt:
            self._keep_on_interrupt(last, best)
            raise
        return RunResult(best, last, self.history)

    def _keep_on_interrupt(self, last: Path, best: Path) -> None:
        """Ctrl-C: last.pt of the completed epochs stays; with none completed yet, the weights
        so far are validated and saved (last.pt, and best.pt when there is none)."""
        if self.epochs_done > 0 and last.is_file():  # saved after the last completed epoch
            self.interrupted_checkpoint = best if best.is_file() else last
            return
        checkpoint = self.checkpoint(self.epochs_done, self.validate())
        checkpoint.save(last)
        if not best.is_file():
            checkpoint.save(best)
        self.interrupted_checkpoint = best
        log.info("interrupted: weights after %d epoch(s) and a partial one saved",
                 self.epochs_done)

    def _epoch(self, epoch: int, last: Path, best: Path) -> None:
        record = self.run_epoch(epoch)
        started = time.perf_counter()
        calibration = self.validate()
        record.update(val_auc=calibration.val_auc,
                      val_tar_at_far=calibration.val_tar_at_threshold,
                      val_seconds=time.perf_counter() - started)
        self.history.append(record)
        log.info("epoch %(epoch)d loss %(loss).4f val AUC %(val_auc).4f", record)
        if self.progress:
            tqdm.write(f"epoch {record['epoch']}: loss {record['loss']:.4f}, "
                       f"{record['images_per_s']:.0f} img/s, val AUC {record['val_auc']:.4f}")
        improved = calibration.val_auc > self.best_auc
        if improved:
            self.best_auc = calibration.val_auc
        checkpoint = self.checkpoint(epoch + 1, calibration)
        checkpoint.save(last)
        if improved:
            checkpoint.save(best)
