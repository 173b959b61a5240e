"""Knowledge distillation targets: a teacher's embeddings of training crops and of morphs.

dlib's descriptors share a large common component (mean pairwise cosine 0.84 on LFW): left in,
a student matches it and learns nothing about identity. Targets are therefore centred on the
mean of the training crops' descriptors and made unit-length (mean pairwise cosine 0.03, the
teacher's verification AUC unchanged): `centre="train"`.

SFace has no such component (mean pairwise cosine 0.04-0.09), and centring it on LFW's mean
shifts other faces: FairFace val targets centred on LFW's mean have a mean pairwise cosine of
0.085 and a FAR 1e-3 point of 0.433, against 0.002 and 0.289 for LFW test impostors (raw: 0.408
against 0.359). A student copies that shift, and its LFW threshold then fails on other faces.
`centre="none"` keeps the teacher's own space (unit-length only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from siamese.runtime.errors import DatasetError
from siamese.runtime.vision.preprocess import Preprocess
from siamese.train.data import FaceTensors
from siamese.train.face_cache import CacheRecord, open_prepared


@dataclass
class Teacher:
    """Unit, centred targets row-aligned with the training records, and the centre used."""

    targets: torch.Tensor
    centre: torch.Tensor

    def centred(self, vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(vectors - self.centre, dim=1)


@dataclass
class Morphs:
    """Blends `weight * first + (1 - weight) * second` of training images and their targets."""

    first: torch.Tensor
    second: torch.Tensor
    weights: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.weights)


def _load(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DatasetError(f"teacher embeddings not found: {path}")
    try:
        with np.load(path) as data:
            return {key: data[key] for key in keys}
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"unreadable teacher embeddings {path} (need {', '.join(keys)}): "
                           f"{exc}") from None


def _vectors(data: dict[str, np.ndarray], records: list[CacheRecord]) -> torch.Tensor:
    """The rows of `data["embeddings"]` for `records`, matched by path (all must be there)."""
    index = {str(p): i for i, p in enumerate(data["paths"])}
    return torch.from_numpy(data["embeddings"][[index[r.path] for r in records]]).float()


def load_teacher(path: Path, records: list[CacheRecord], device: torch.device,
                 centre: str = "train") -> Teacher:
    """The teacher's embeddings of `records` (tools/teacher_embeddings.py), centred on their
    mean (`centre="train"`) or not (`"none"`), unit length."""
    data = _load(path, ("paths", "embeddings"))
    known = {str(p) for p in data["paths"]}
    missing = [r.path for r in records if r.path not in known]
    if missing:
        raise DatasetError(f"{path} has no teacher embedding for {len(missing)} training images, "
                           f"e.g. {missing[0]}")
    vectors = _vectors(data, records)
    mean = vectors.mean(0) if centre == "train" else torch.zeros(vectors.shape[1])
    return Teacher(F.normalize(vectors - mean, dim=1).to(device), mean.to(device))


def load_morphs(path: Path, records: list[CacheRecord], teacher: Teacher,
                device: torch.device) -> Morphs:
    """Morph targets (tools/teacher_embeddings.py --morphs) whose two sources are both among
    `records`; others (e.g. of held-out people) are dropped, so validation stays unseen."""
    data = _load(path, ("paths_a", "paths_b", "weights", "embeddings"))
    index = {r.path: i for i, r in enumerate(records)}
    first = np.array([index.get(str(p), -1) for p in data["paths_a"]])
    second = np.array([index.get(str(p), -1) for p in data["paths_b"]])
    keep = (first >= 0) & (second >= 0)
    if not keep.any():
        raise DatasetError(f"{path}: no morph has both of its images among the training images")
    vectors = torch.from_numpy(data["embeddings"][keep]).float().to(device)
    return Morphs(torch.from_numpy(first[keep]).to(device),
                  torch.from_numpy(second[keep]).to(device),
                  torch.from_numpy(data["weights"][keep]).float().to(device),
                  teacher.centred(vectors))


@dataclass
class ExtraFaces:
    """Unlabelled faces (e.g. FairFace) whose only supervision is the teacher's embedding."""

    pixels: torch.Tensor  # (N, C, H, W) uint8, model-sized
    targets: torch.Tensor  # (N, D) unit, centred like the training targets

    def __len__(self) -> int:
        return len(self.targets)


def load_extra_faces(cache: Path, teacher_path: Path, spec: Preprocess, teacher: Teacher,
                     device: torch.device) -> ExtraFaces:
    """The faces of a prepared cache that `teacher_path` (paths, embeddings) has targets for,
    e.g. the output of tools/dedupe_extra_faces.py."""
    faces = open_prepared(cache)
    data = _load(teacher_path, ("paths", "embeddings"))
    known = {str(p) for p in data["paths"]}
    records = [r for r in faces.records if r.path in known]
    if not records:
        raise DatasetError(f"{teacher_path} has no embedding for any face of {cache}")
    tensors = FaceTensors.from_cache(faces, records, spec, device)
    return ExtraFaces(tensors.pixels, teacher.centred(_vectors(data, records).to(device)))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cosine distance to the teacher's embedding plus agreement of in-batch similarities."""
    student = F.normalize(student, dim=1)
    pointwise = (1 - (student * teacher).sum(1)).mean()
    relational = (student @ student.T - teacher @ teacher.T).pow(2).mean()
    return pointwise + relational
