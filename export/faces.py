"""Real aligned faces for INT8 calibration and parity checks, aligned by the runtime's code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from siamese.runtime.errors import DatasetError
from siamese.train import face_cache
from siamese.train.datasets import read_folder
from siamese.train.lfw import LFW, Pair


@dataclass
class FaceSets:
    calibration: np.ndarray  # (N, 112, 112, 3) BGR crops, training-side people
    parity: np.ndarray  # (M, 112, 112, 3) crops the calibration did not use
    lfw_pairs: list[Pair] | None = None  # View 1 test pairs, when LFW is given
    lfw_crops: dict[str, np.ndarray] | None = None


def _sample(rng: np.random.Generator, items: list, count: int) -> list:
    if len(items) <= count:
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), size=count, replace=False))]


def _lfw_faces(lfw_root: Path, cache_dir: Path | None) -> tuple[LFW, face_cache.AlignedFaces]:
    lfw = LFW(lfw_root)
    faces, _ = face_cache.prepare("lfw", lfw.image_root, lfw.images, cache_dir, progress=False)
    return lfw, faces


def _folder_faces(folder: Path, cache_dir: Path | None) -> face_cache.AlignedFaces:
    faces, _ = face_cache.prepare("folder", folder, read_folder(folder), cache_dir,
                                  progress=False)
    return faces


def load_face_sets(lfw_root: Path | None, calib_dir: Path | None, cache_dir: Path | None,
                   train_people: set[str], calib_count: int, parity_count: int,
                   seed: int = 0) -> FaceSets:
    """LFW: calibration from the model's training people, parity from DevTest people, plus the
    View 1 test pairs. A folder: its faces split into calibration and parity halves."""
    rng = np.random.default_rng(seed)
    if lfw_root is not None:
        lfw, faces = _lfw_faces(lfw_root, cache_dir)
        calib = _sample(rng, faces.select(train_people), calib_count)
        parity = _sample(rng, faces.select(set(lfw.view1_test_people)), parity_count)
        pairs = lfw.view1_test_pairs
        paths = {p for pair in pairs for p in (pair.left, pair.right)}
        return FaceSets(np.stack([faces.crop(r.path) for r in calib]),
                        np.stack([faces.crop(r.path) for r in parity]), pairs,
                        {path: faces.crop(path) for path in paths})
    if calib_dir is not None:
        faces = _folder_faces(calib_dir, cache_dir)
        records = faces.select()
        if len(records) < 4:
            raise DatasetError(f"{calib_dir}: need at least 4 face images for calibration and "
                               f"parity, found {len(records)}")
        order = rng.permutation(len(records))
        half = len(records) // 2
        calib = [records[i] for i in order[:half]][:calib_count]
        parity = [records[i] for i in order[half:]][:parity_count]
        return FaceSets(np.stack([faces.crop(r.path) for r in calib]),
                        np.stack([faces.crop(r.path) for r in parity]))
    raise DatasetError("real faces are needed for calibration and parity: give --lfw-root DIR "
                       "or --calib DIR (faces as ROOT/<person>/<images>)")


def held_out_faces(lfw_root: Path | None, calib_dir: Path | None,
                   cache_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(crops, integer person labels) to calibrate an imported model's thresholds on: LFW's training
    side (peopleDevTrain, never its test people) or a folder ROOT/<person>/<images>."""
    if lfw_root is not None:
        lfw, faces = _lfw_faces(lfw_root, cache_dir)
        records = faces.select(set(lfw.view1_train_people))
    elif calib_dir is not None:
        faces = _folder_faces(calib_dir, cache_dir)
        records = faces.select()
    else:
        raise DatasetError("held-out faces are needed for the thresholds: give --lfw-root DIR "
                           "or --calib DIR (faces as ROOT/<person>/<images>)")
    labels = np.array([r.identity for r in records])
    if len(set(labels.tolist())) < 2 or len(labels) == len(set(labels.tolist())):
        raise DatasetError("the held-out faces need two or more people and some person with "
                           "two or more photos")
    return (np.stack([faces.crop(r.path) for r in records]),
            np.unique(labels, return_inverse=True)[1])
