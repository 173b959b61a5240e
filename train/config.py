"""Training configuration and presets."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from siamese.runtime.errors import ConfigError

# the names train.models registers, listed here so that --help needs no torch (a test checks)
ARCHITECTURES = ("edge-resnet", "edge-resnet-l", "edge-resnet-m", "edge-resnet-s", "seed")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved in every checkpoint."""

    arch: str = "seed"
    embedding_dim: int = 128
    l2_normalize: bool = False
    loss: str = "triplet"  # triplet (seed's fixed triplets) | batch-hard | semi-hard | none
    margin: float = 1.0
    negatives_per_positive: int = 1  # positive:negative ratio of fixed triplets, 1:N
    head: str | None = None  # margin-softmax head: cosface | arcface
    head_weight: float = 1.0
    epochs: int = 50
    batch_size: int = 32  # triplets per batch for fixed triplets
    p: int = 32  # identities per P x K batch
    k: int = 4  # images per identity in a P x K batch
    optimizer: str = "adam"  # adam | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (after warm-up)
    warmup_epochs: int = 5
    warmup_lr: float = 1e-4
    hard_mining_every: int = 0  # seed trick: re-score triplets every N epochs (0: off)
    distill: str | None = None  # teacher embeddings (.npz with paths, embeddings) to distil from
    distill_weight: float = 1.0
    distill_centre: str = "train"  # train: targets centred on the training mean (dlib) | none
    distill_online: str | None = None  # ONNX teacher embedding every augmented view on the fly
    distill_morphs: str | None = None  # teacher embeddings of morphs (.npz) to distil from too
    morph_weight: float = 1.0
    extra_faces: str | None = None  # prepared cache of unlabelled faces distilled alongside
    extra_distill: str | None = None  # the teacher's embeddings of those faces (.npz)
    extra_weight: float = 1.0
    extra_augment: bool = True  # False: extra faces are used as cached (views whose targets fit)
    augment: bool = False
    init: str | None = None  # packaged name, FP32 ONNX or checkpoint (same arch), fresh schedule
    val_fraction: float = 0.1  # training-side people held out for thresholds, never trained on
    target_far: float = 1e-3
    seed: int = 0
    device: str = "auto"

    @property
    def metric(self) -> str:
        """How embeddings are compared: cosine for unit embeddings, else Euclidean."""
        return "cosine" if self.l2_normalize else "euclidean"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def updated(self, **changes) -> TrainConfig:
        """A copy with the given fields changed; None values leave a field as it is."""
        return replace(self, **{key: value for key, value in changes.items() if value is not None})

    def validate(self) -> None:
        choices = {"loss": ("triplet", "batch-hard", "semi-hard", "none"),
                   "head": (None, "cosface", "arcface"), "optimizer": ("adam", "sgd"),
                   "schedule": ("constant", "cosine"), "distill_centre": ("train", "none")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {allowed}, not {getattr(self, name)!r}")
        if self.distill is not None and self.distill_online is not None:
            raise ConfigError("give precomputed teacher embeddings (--distill) or an online "
                              "teacher (--distill-online), not both")
        if self.distill_online is not None and self.loss == "triplet":
            raise ConfigError("online distillation needs batches of images, not fixed triplets")
        if self.loss == "none" and self.head is None and self.distill is None \
                and self.distill_online is None:
            raise ConfigError("loss 'none' needs a margin-softmax head or a teacher to distil")
        if self.distill_morphs is not None and self.distill is None:
            raise ConfigError("morph targets need the teacher's embeddings of the training images "
                             "too (--distill)")
        if self.distill_morphs is not None and self.loss == "triplet":
            raise ConfigError("morph distillation needs batches of images, not fixed triplets")
        if (self.extra_faces is None) != (self.extra_distill is None):
            raise ConfigError("extra faces need their teacher embeddings: give both "
                              "--extra-faces and --extra-distill")
        if self.extra_faces is not None and (self.distill is None or self.loss == "triplet"):
            raise ConfigError("extra faces are distilled alongside --distill, in batches of "
                              "images (not fixed triplets)")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("val_fraction must lie between 0 and 1")
        for item in fields(self):  # every number finite and in range (nan, inf, 1e-320 ...)
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{item.name} must be a finite number, not {value}")
            if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{item.name} must not be negative ({value})")
        if not 1e-9 <= self.target_far < 1 or not 0 < self.lr <= 10:
            raise ConfigError(f"target_far must lie in [1e-9, 1) and lr in (0, 10] (got "
                              f"{self.target_far:g}, {self.lr:g})")


# Edge recipe distilled from dlib's ResNet descriptor (tools/teacher_embeddings.py): every
# training image, singletons too, in random batches.
_EDGE_DISTILL = TrainConfig(arch="edge-resnet", l2_normalize=True, loss="none", epochs=60, p=32,
                            k=4, optimizer="sgd", lr=0.1, weight_decay=5e-4, schedule="cosine",
                            warmup_epochs=2, warmup_lr=0.01, augment=True, distill_weight=1.0)

PRESETS: dict[str, TrainConfig] = {
    # The tutorial: EmbeddingNet, triplet loss margin 1.0, Adam, batch 32, 5 warm-up epochs at
    # 1e-4 then 1e-3, 50 epochs.
    "seed": TrainConfig(),  # 2.3 h on a 2-core CPU with LFW: not a first run (see "first")
    # The seed's network with its own tricks switched on: hard mining and L2 embeddings.
    "seed-tricks": TrainConfig(l2_normalize=True, margin=0.5, hard_mining_every=10,
                               negatives_per_positive=2),
    # Edge recipe: plain-conv ResNet, unit embeddings, batch-hard triplets plus CosFace,
    # augmentation, cosine schedule.
    "edge": replace(_EDGE_DISTILL, loss="batch-hard", margin=0.3, head="cosface", epochs=40),
    "edge-distill": _EDGE_DISTILL,
    # The default: a first run on your own folder on a 2-core CPU. The edge recipe (its network,
    # batch-hard triplets plus CosFace), no teacher, 30 epochs with a 2-epoch warm-up; P x K
    # batches shrink to the folder's people when it has fewer than 32. Times: docs/OWN_FACES.md.
    "first": replace(_EDGE_DISTILL, loss="batch-hard", margin=0.3, head="cosface", epochs=30),
    # The packaged default model: edge-distill on the larger edge-resnet-l at 112 px; give it
    # morph targets too (--distill-morphs). 151 epochs took 240 s on one H200.
    "edge-distill-l": replace(_EDGE_DISTILL, arch="edge-resnet-l", epochs=151),
}
