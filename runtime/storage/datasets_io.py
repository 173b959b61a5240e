"""Listing image files, for references, enrollment, calibration and batch embedding.

Walks are iterative (no recursion, whatever the depth) and stop with ImageError past
`MAX_DEPTH` folders or `MAX_ENTRIES` entries; symlinked folders are not followed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from siamese.runtime.errors import ConfigError, ImageError

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


def _is_image(entry: os.DirEntry) -> bool:
    """An entry named like an image that is not a folder. One that cannot be examined (a
    symlink loop, a dangling link, no permission) counts: reading it names the fault, and
    enrolment skips it like any other bad photo."""
    if Path(entry.name).suffix.lower() not in IMAGE_SUFFIXES:
        return False
    try:
        return not entry.is_dir()
    except OSError:
        return True


def list_images(path: Path) -> list[Path]:
    """`path` itself when it is a file, else the images directly inside the folder (see
    `_is_image`)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return [Path(e.path) for e in _entries(path) if _is_image(e)]
    if path.exists():
        raise ImageError(f"image {path} is not a regular file")
    raise ImageError(f"no such image or folder: {path}")


def image_paths(images: Iterable[str | Path] | str | Path) -> list[Path]:
    """The image files of `images`: one file or folder (a str or Path), or several; each
    folder gives the images directly inside it."""
    if isinstance(images, (str, Path)):
        images = [images]
    elif not isinstance(images, Iterable):
        raise ConfigError(f"images must be a path or a list of paths, not "
                          f"{type(images).__name__}")
    return [p for item in images for p in list_images(Path(item))]


def person_folders(folder: Path) -> list[Path]:
    """The folders directly inside `folder` (one per person), sorted; symlinks not followed."""
    return [Path(e.path) for e in _entries(Path(folder)) if e.is_dir(follow_symlinks=False)]


def images_under(folder: Path, max_depth: int = MAX_DEPTH) -> Iterator[Path]:
    """Image files anywhere under `folder`, in a stable order (depth first, names sorted;
    symlinked folders not followed; an entry or folder below that cannot be examined is yielded
    as well, for its reader to name). ImageError past `max_depth` levels or MAX_ENTRIES."""
    stack: list[tuple[Path, int]] = [(Path(folder), 0)]
    seen = 0
    while stack:
        current, depth = stack.pop()
        try:
            entries = _entries(current)
        except ImageError:
            if depth == 0:
                raise
            yield current  # a folder that cannot be listed: reading it names the fault
            continue
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
            elif _is_image(entry):
                yield Path(entry.path)
        stack.extend(reversed(below))
