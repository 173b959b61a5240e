"""Listing image files, for references, enrollment, calibration and batch embedding.

Walks are iterative (no recursion, whatever the depth) and stop with ImageError past
`MAX_DEPTH` folders or `MAX_ENTRIES` entries; symlinked folders are not followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from siamese.runtime.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif",
                            ".tiff"})
MAX_DEPTH = 32
MAX_ENTRIES = 1_000_000


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        raise ImageError(f"cannot list folder {folder}: {exc.strerror or exc}") from None


def list_images(path: Path) -> list[Path]:
    """`path` itself when it is a file, else the image files directly inside the folder."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return [Path(e.path) for e in _entries(path)
                if Path(e.name).suffix.lower() in IMAGE_SUFFIXES and e.is_file()]
    if path.exists():
        raise ImageError(f"image {path} is not a regular file")
    raise ImageError(f"no such image or folder: {path}")


def person_folders(folder: Path) -> list[Path]:
    """The folders directly inside `folder` (one per person), sorted; symlinks not followed."""
    return [Path(e.path) for e in _entries(Path(folder)) if e.is_dir(follow_symlinks=False)]


def images_under(folder: Path, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Image files anywhere under `folder`, in a stable order (depth first, names sorted;
    symlinked folders not followed). ImageError past `max_depth` levels or MAX_ENTRIES."""
    stack: list[tuple[Path, int]] = [(Path(folder), 0)]
    seen = 0
    while stack:
        current, depth = stack.pop()
        entries = _entries(current)
        seen += len(entries)
        if seen > MAX_ENTRIES:
            raise ImageError(f"{folder} holds over {MAX_ENTRIES:,} entries")
        below = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if depth + 1 > max_depth:
                    raise ImageError(f"{folder} is nested deeper than {max_depth} folders "
                                     f"(at {entry.path[:200]}...)")
                below.append((Path(entry.path), depth + 1))
            elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
                yield Path(entry.path)
        stack.extend(reversed(below))
