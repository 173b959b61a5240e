"""Adapt the packaged edge model to a site (`siamese-adapt`), and the gate that never ships a
worse model.

Recipe: the student is the packaged edge model rebuilt in PyTorch (train/packaged.py). Its batch
norms get the statistics of general faces (the replay set) and then of the site (AdaBN); then a
few steps of distillation, the packaged SFace (train/onnx_teacher.py) describing each augmented
view of a site crop and of a replay crop, with the stem and first stages frozen. Labels are not
needed; when the folder is <person>/<images>, some people are held out for the gate and a
batch-hard triplet loss on the others may add to the distillation.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from siamese.runtime import model_zoo
from siamese.runtime.errors import DatasetError
from siamese.train import metrics
from siamese.train.augment import AugmentConfig, augment
from siamese.train.calibration import Calibration, embedding_calibration
from siamese.train.data import normalize
from siamese.train.packaged import RebuiltModel, load_onnx, set_statistics

log = logging.getLogger(__name__)

# stronger light and blur than training's defaults: a site's camera differs mostly there
SITE_AUGMENT = AugmentConfig(brightness=0.35, contrast=0.45, blur_prob=0.4, grey_prob=0.5)


@dataclass(frozen=True)
class AdaptConfig:
    steps: int = 60
    batch_size: int = 32
    replay_fraction: float = 0.5  # of each batch, general faces (against forgetting)
    lr: float = 3e-4
    freeze: int = 3  # frozen modules: the stem and the first `freeze - 1` residual blocks
    triplet_weight: float = 0.5  # with labelled site folders
    held_out_fraction: float = 0.4  # of the labelled site's people, for the gate
    target_far: float = 1e-3
    tar_margin: float = 0.02  # the adapted TAR must beat the packaged one by this
    max_lfw_drop: float = 0.005
    seed: int = 0


@dataclass
class ModelFigures:
    """One model on the held-out site people (and the general check)."""

    tar_at_far: float
    far_at_threshold: float
    threshold: float
    auc: float
    general_accuracy: float | None
    roc: dict = field(default_factory=dict)


@dataclass
class GateResult:
    packaged: ModelFigures
    adapted: ModelFigures
    passed: bool
    reasons: list[str]

    def to_dict(self) -> dict:
        return {"packaged": asdict(self.packaged), "adapted": asdict(self.adapted),
                "passed": self.passed, "reasons": self.reasons}


@dataclass
class SiteFaces:
    """Aligned 112 px BGR crops: adaptation crops, and labelled held-out crops for the gate."""

    adapt: np.ndarray
    adapt_labels: np.ndarray | None  # None when the folder has no names
    check: np.ndarray | None
    check_labels: np.ndarray | None


def _views(crops: np.ndarray) -> torch.Tensor:
    """BGR uint8 crops (N, H, W, 3) as [0, 1] RGB tensors (N, 3, H, W)."""
    rgb = np.ascontiguousarray(crops[..., ::-1].transpose(0, 3, 1, 2))
    return torch.from_numpy(rgb).float() / 255.0


def _student_input(views: torch.Tensor, rebuilt: RebuiltModel) -> torch.Tensor:
    spec = rebuilt.info.preprocess
    if views.shape[-1] != spec.size:
        views = F.interpolate(views, size=(spec.size, spec.size), mode="bilinear",
                              align_corners=False, antialias=True)
    return normalize(views, spec)


def _batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2):
    distance = 1 - embeddings @ embeddings.t()
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distance * same).max(1).values
    hardest_negative = (distance + 4 * same).min(1).values
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def adapt_model(site: SiteFaces, replay: np.ndarray, config: AdaptConfig,
                teacher_path: Path | None = None, progress=None) -> RebuiltModel:
    """The packaged edge model adapted to `site.adapt` crops (see the module doc)."""
    from siamese.train.onnx_teacher import OnnxTeacher

    torch.manual_seed(config.seed)
    rebuilt = load_onnx("edge")
    student = rebuilt.embedding_model
    teacher = OnnxTeacher(teacher_path or model_zoo.PACKAGED["sface"].path)
    site_views, replay_views = _views(site.adapt), _views(replay)
    general = replay_views if len(replay_views) else site_views
    set_statistics(student, _student_input(general, rebuilt))  # source statistics
    _adabn(student, _student_input(site_views, rebuilt))  # then the site's
    modules = [student.backbone.stem, *student.backbone.stages]
    for module in modules[:config.freeze]:
        module.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    n_replay = round(config.batch_size * config.replay_fraction) if len(replay) else 0
    n_site = config.batch_size - n_replay
    labels = (torch.from_numpy(site.adapt_labels) if site.adapt_labels is not None else None)
    student.train()
    for module in modules[:config.freeze]:
        module.eval()  # frozen: their statistics stay the site's
    for step in range(config.steps):
        site_index = torch.randint(len(site_views), (n_site,), generator=generator)
        replay_index = torch.randint(max(1, len(replay_views)), (n_replay,), generator=generator)
        views = torch.cat([site_views[site_index], replay_views[replay_index]])
        views = augment(views, SITE_AUGMENT, generator)
        target = teacher(views)
        embedding = student(_student_input(views, rebuilt))
        loss = (1 - (embedding * target).sum(1)).mean()
        if labels is not None and config.triplet_weight:
            loss = loss + config.triplet_weight * _batch_hard(embedding[:n_site],
                                                              labels[site_index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, float(loss.detach()))
    student.eval()
    rebuilt.model.eval()
    return rebuilt


@torch.no_grad()
def _adabn(model: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 64) -> None:
    """Re-estimate every batch norm's running statistics on `pixels` (cumulative average)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for start in range(0, len(pixels), batch_size):
        if len(pixels[start:start + batch_size]) > 1:
            model(pixels[start:start + batch_size])
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


def figures(embed, crops: np.ndarray, labels: np.ndarray, target_far: float,
            general: float | None) -> tuple[ModelFigures, Calibration]:
    """TAR at the target FAR, FAR at the threshold chosen by the security rule, ROC."""
    vectors = embed(crops)
    calibration = embedding_calibration(vectors, labels, "cosine", target_far,
                                        require_evidence=False)
    genuine, impostor = metrics.all_pair_scores(vectors, labels, "cosine")
    far, tar = metrics.roc_curve(genuine, impostor)
    keep = np.unique(np.linspace(0, len(far) - 1, min(len(far), 200)).astype(int))
    return ModelFigures(
        tar_at_far=float(metrics.tar_at_far(genuine, impostor, target_far)),
        far_at_threshold=float(calibration.val_far_at_threshold),
        threshold=float(calibration.far_threshold), auc=float(metrics.roc_auc(genuine, impostor)),
        general_accuracy=general,
        roc={"far": far[keep].tolist(), "tar": tar[keep].tolist()}), calibration


def gate(packaged: ModelFigures, adapted: ModelFigures, config: AdaptConfig) -> GateResult:
    """Ship the adapted model only when it is measurably better and no less safe."""
    reasons = []
    if adapted.tar_at_far < packaged.tar_at_far + config.tar_margin:
        reasons.append(f"TAR at FAR {config.target_far:g} on the held-out site people "
                       f"{adapted.tar_at_far:.3f} does not beat the packaged model's "
                       f"{packaged.tar_at_far:.3f} by {config.tar_margin:g}")
    if adapted.far_at_threshold > config.target_far:
        reasons.append(f"FAR at its threshold {adapted.far_at_threshold:.4f} exceeds the design "
                       f"{config.target_far:g}")
    if packaged.general_accuracy is not None and adapted.general_accuracy is not None \
            and adapted.general_accuracy < packaged.general_accuracy - config.max_lfw_drop:
        reasons.append(f"general-face accuracy drops from {packaged.general_accuracy:.4f} to "
                       f"{adapted.general_accuracy:.4f} (at most {config.max_lfw_drop:g})")
    return GateResult(packaged, adapted, not reasons, reasons)


def split_site(crops: np.ndarray, identities: list[str] | None, config: AdaptConfig,
               check: tuple[np.ndarray, list[str]] | None) -> SiteFaces:
    """Adaptation and check crops: a named --check folder, else held-out site people."""
    from siamese.train.datasets import split_people

    def codes(names: list[str]) -> np.ndarray:
        index = {name: i for i, name in enumerate(sorted(set(names)))}
        return np.array([index[name] for name in names], np.int64)

    if check is not None:
        labels = codes(identities) if identities is not None else None
        return SiteFaces(crops, labels, check[0], codes(check[1]))
    if identities is None:
        raise DatasetError("the folder has no names (<person>/<images>), so no site people can "
                           "be held out for the gate: name a labelled --check folder")
    if len(set(identities)) < 4:
        raise DatasetError(f"{len(set(identities))} people: the gate needs at least 4 named "
                           "people (2 to adapt on, 2 held out), or a --check folder")
    adapt_people, held = split_people(sorted(set(identities)), config.held_out_fraction,
                                      config.seed)
    names = np.array(identities)
    mask = np.isin(names, sorted(adapt_people))
    return SiteFaces(crops[mask], codes(names[mask].tolist()), crops[~mask],
                     codes(names[~mask].tolist()))
