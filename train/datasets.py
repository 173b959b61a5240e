"""Image lists of face datasets: one `FaceImage` per file, grouped by identity."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from siamese.runtime.errors import DatasetError
from siamese.runtime.storage.datasets_io import IMAGE_SUFFIXES


@dataclass(frozen=True)
class FaceImage:
    """One image of one person; `path` is relative to the dataset's image root."""

    path: str
    identity: str


def read_folder(root: str | Path) -> list[FaceImage]:
    """A user's faces laid out as ROOT/<person>/<images>, sorted by person then file name.

    Files that are not images by suffix are ignored; a root without any is an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"face folder not found: {root}")
    images = [
        FaceImage(path=f"{person.name}/{file.name}", identity=person.name)
        for person in sorted(p for p in root.iterdir() if p.is_dir())
        for file in sorted(person.iterdir())
        if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not images:
        raise DatasetError(f"no images found under {root} (expected ROOT/<person>/<image files>)")
    return images


def read_unlabelled(root: str | Path) -> list[FaceImage]:
    """Every image under ROOT (recursively), each its own identity (no labels: a teacher's
    embeddings are its only supervision). Identities are the relative paths without suffix."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"face folder not found: {root}")
    images = [FaceImage(path=str(file.relative_to(root)),
                        identity=str(file.relative_to(root).with_suffix("")))
              for file in sorted(root.rglob("*"))
              if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        raise DatasetError(f"no images found under {root}")
    return images


def alternate_half(paths: list[str], half: str) -> list[str]:
    """Sorted `paths`, then every other one from the first (even) or the second (odd); all of
    them for "all". Two halves of one set: one to calibrate on, the other to measure on."""
    ordered = sorted(paths)
    halves = {"all": ordered, "even": ordered[0::2], "odd": ordered[1::2]}
    if half not in halves:
        raise ValueError(f"half must be one of {', '.join(halves)}, not {half!r}")
    return halves[half]


def split_people(identities: list[str], fraction: float, seed: int) -> tuple[set[str], set[str]]:
    """(train, validation) people; at least two validation people so impostor pairs exist."""
    ordered = sorted(identities)
    count = min(len(ordered) - 2, max(2, round(fraction * len(ordered))))
    rng = np.random.default_rng(seed + 7919)
    val = set(rng.choice(ordered, size=count, replace=False).tolist())
    return set(ordered) - val, val
