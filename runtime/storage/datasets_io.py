"""Listing image files, for references and enrollment."""

from __future__ import annotations

from pathlib import Path

from siamese.runtime.errors import ImageError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".webp", ".tif",
                            ".tiff"})


def list_images(path: Path) -> list[Path]:
    """`path` itself when it is a file, else the image files directly inside the folder."""
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.exists():
        raise ImageError(f"image {path} is not a regular file")
    raise ImageError(f"no such image or folder: {path}")
