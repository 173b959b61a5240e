"""Adapt the packaged edge model to a site (`siamese-adapt`); the gate is train/adapt_gate.py.

Default recipe (chosen on held-out adaptation people by tools/adapt_search.py; the table is in
docs/OWN_FACES.md): the student is the packaged edge model rebuilt in PyTorch
(train/packaged.py), batch norms frozen at general-face statistics, stem frozen. Each step
mixes (1) replay: LFW View 1 training people, half of the views degraded as a door camera in bad
light (train/degrade.py), pulled to the packaged model's embedding of the clean face (a clean
teacher for a degraded student) and separated by person with a batch-hard triplet loss; and
(2) site crops: a batch-hard triplet loss on the site's people when the folder is
<person>/<images>, and an anchor to the packaged model's embedding of each crop. No names are
needed (then only the replay and the anchor train). The packaged SFace as the teacher of site
crops (`teacher="sface"`) and AdaBN (`batch_norm="site"`) were measured and lost.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from siamese.runtime import model_zoo
from siamese.runtime.errors import DatasetError
from siamese.train.augment import AugmentConfig, augment
from siamese.train.data import model_input
from siamese.train.degrade import degrade_batch
from siamese.train.packaged import RebuiltModel, load_onnx, set_statistics

log = logging.getLogger(__name__)

# stronger light and blur than training's defaults: a site's camera differs mostly there
SITE_AUGMENT = AugmentConfig(brightness=0.35, contrast=0.45, blur_prob=0.4, grey_prob=0.5)
# geometry only: the light is in the degradation (general faces) or already in the site's crops
GEOMETRY = AugmentConfig(brightness=0.0, contrast=0.0, blur_prob=0.0, grey_prob=0.0)


@dataclass(frozen=True)
class AdaptConfig:
    """The recipe (defaults chosen by tools/adapt_search.py, docs/OWN_FACES.md) and the gate."""

    teacher: str = "edge"  # edge: clean general faces, degraded student views; sface: SFace
    steps: int = 400
    batch_size: int = 64
    replay_fraction: float = 0.5  # of each batch, general faces (against forgetting)
    lr: float = 3e-5
    freeze: int = 1  # frozen modules: the stem and the first `freeze - 1` residual blocks
    triplet_weight: float = 0.5  # batch-hard on the site's people, when labelled
    replay_degrade: float = 0.5  # of the replay views (teacher edge), degraded as at a door
    distill_weight: float = 1.0  # replay views kept near the teacher's embedding
    replay_triplet: float = 1.0  # batch-hard on the replay's people
    anchor_weight: float = 1.0  # site crops kept near the packaged model's embedding of them
    blend: float = 1.0  # final weights packaged + blend * (adapted - packaged)
    batch_norm: str = "frozen"  # frozen: eval-mode statistics; site: AdaBN then train mode
    held_out_fraction: float = 0.4  # of the labelled site's people, for the gate
    target_far: float = 1e-3
    tar_margin: float = 0.02  # the adapted TAR must beat the packaged one by this
    max_far_ratio: float = 2.0  # its cross-validated FAR at most this times target_far
    max_lfw_drop: float = 0.005
    seed: int = 0


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
    return model_input(views, rebuilt.info.preprocess)


def _batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2):
    distance = 1 - embeddings @ embeddings.t()
    same = labels[:, None] == labels[None, :]
    hardest_positive = (distance * same).max(1).values
    hardest_negative = (distance + 4 * same).min(1).values
    return F.relu(hardest_positive - hardest_negative + margin).mean()


def _people_batch(count: int, labels: np.ndarray, rng: np.random.Generator,
                  per_person: int = 4) -> np.ndarray:
    """Indices of labelled crops, P people x K images (so batch-hard has positives)."""
    people = np.unique(labels)
    chosen = rng.choice(people, size=min(len(people), max(2, count // per_person)), replace=False)
    index = [rng.choice(np.flatnonzero(labels == p), size=per_person) for p in chosen]
    return np.concatenate(index)


def _distance(embedding: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - (embedding * target).sum(1)).mean()


@torch.no_grad()
def _packaged_targets(model: torch.nn.Module, crops: np.ndarray, rebuilt: RebuiltModel,
                      batch_size: int = 128) -> torch.Tensor:
    """The packaged (flip-averaged) model's embeddings of clean crops: fixed targets."""
    model.eval()
    return torch.cat([model(_student_input(_views(crops[i:i + batch_size]), rebuilt))
                      for i in range(0, len(crops), batch_size)])


def adapt_model(site: SiteFaces, replay: np.ndarray, config: AdaptConfig,
                replay_labels: np.ndarray | None = None, teacher_path: Path | None = None,
                progress=None) -> RebuiltModel:
    """The packaged edge model adapted to `site.adapt` crops (see the module doc)."""
    from siamese.train.onnx_teacher import OnnxTeacher

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    rebuilt = start_model(replay if len(replay) else site.adapt)
    student = rebuilt.embedding_model
    packaged = copy.deepcopy(rebuilt.model).eval()
    if config.batch_norm == "site":
        _adabn(student, _student_input(_views(site.adapt), rebuilt))
    sface = (OnnxTeacher(teacher_path or model_zoo.PACKAGED["sface"].path)
             if config.teacher == "sface" else None)
    replay_targets = (_packaged_targets(packaged, replay, rebuilt)
                      if config.teacher == "edge" and len(replay) else None)
    site_targets = (_packaged_targets(packaged, site.adapt, rebuilt)
                    if config.anchor_weight else None)
    modules = [student.backbone.stem, *student.backbone.stages]
    for module in modules[:config.freeze]:
        module.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in student.parameters() if p.requires_grad],
                                 lr=config.lr)
    n_replay = round(config.batch_size * config.replay_fraction) if len(replay) else 0
    n_site = config.batch_size - n_replay
    labels = site.adapt_labels
    student.train(config.batch_norm != "frozen")
    for module in modules[:config.freeze]:
        module.eval()
    for step in range(config.steps):
        loss = torch.zeros(())
        if n_replay:
            index = (_people_batch(n_replay, replay_labels, rng)
                     if replay_labels is not None and config.replay_triplet
                     else rng.integers(len(replay), size=n_replay))
            if sface is None:
                crops = replay[index].copy()
                dark = rng.random(n_replay) < config.replay_degrade
                if dark.any():
                    crops[dark] = degrade_batch(crops[dark], rng)
                views = augment(_views(crops), GEOMETRY, generator)
                target = replay_targets[index]
            else:
                views = augment(_views(replay[index]), SITE_AUGMENT, generator)
                target = sface(views)
            embedding = student(_student_input(views, rebuilt))
            loss = loss + config.distill_weight * _distance(embedding, target)
            if replay_labels is not None and config.replay_triplet:
                loss = loss + config.replay_triplet * _batch_hard(
                    embedding, torch.from_numpy(replay_labels[index]))
        index = _people_batch(n_site, labels, rng) if labels is not None else \
            rng.integers(len(site.adapt), size=n_site)
        views = augment(_views(site.adapt[index]),
                        SITE_AUGMENT if sface is not None else GEOMETRY, generator)
        embedding = student(_student_input(views, rebuilt))
        if sface is not None:
            loss = loss + _distance(embedding, sface(views))
        if site_targets is not None:
            loss = loss + config.anchor_weight * _distance(embedding, site_targets[index])
        if labels is not None and config.triplet_weight:
            loss = loss + config.triplet_weight * _batch_hard(
                embedding, torch.from_numpy(labels[index]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress is not None:
            progress(step + 1, float(loss.detach()))
    student.eval()
    rebuilt.model.eval()
    blend_weights(rebuilt.model, packaged, config.blend)
    return rebuilt


def start_model(general: np.ndarray) -> RebuiltModel:
    """The packaged edge model with real batch-norm statistics of `general` crops (the same
    function as the packaged file)."""
    rebuilt = load_onnx("edge")
    set_statistics(rebuilt.embedding_model, _student_input(_views(general), rebuilt))
    return rebuilt


@torch.no_grad()
def blend_weights(model: torch.nn.Module, start: torch.nn.Module, alpha: float) -> None:
    """`model`'s weights moved back towards `start`'s: start + alpha * (model - start), as in
    WiSE-FT (arXiv 2109.01903), which keeps much of fine-tuning's gain on the new data and of
    the starting point's accuracy elsewhere."""
    if alpha == 1.0:
        return
    reference = start.state_dict()
    for name, value in model.state_dict().items():
        if value.is_floating_point():
            value.copy_(reference[name] + alpha * (value - reference[name]))


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
    people = sorted(set(identities))
    if len(people) < 6:
        raise DatasetError(f"{len(people)} people: the gate needs at least 6 named people (2 "
                           "to adapt on, 4 held out), or a --check folder")
    adapt_people, held = split_people(people, max(config.held_out_fraction, 4 / len(people)),
                                      config.seed)
    names = np.array(identities)
    mask = np.isin(names, sorted(adapt_people))
    return SiteFaces(crops[mask], codes(names[mask].tolist()), crops[~mask],
                     codes(names[~mask].tolist()))
