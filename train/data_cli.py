"""`siamese-data`: prepare the aligned-face cache of LFW or of a folder of faces."""

from __future__ import annotations

from pathlib import Path

import click
from siamese.runtime.commands.support import SiameseGroup, setup_logging
from siamese.runtime.errors import DatasetError


@click.group(cls=SiameseGroup)
def main() -> None:
    """Prepare face datasets for training and evaluation."""


@main.command()
@click.option("--lfw-root", type=click.Path(path_type=Path), help="Extracted LFW tree.")
@click.option("--folder", type=click.Path(path_type=Path), help="Faces as ROOT/<person>/<images>.")
@click.option("--unlabelled", type=click.Path(path_type=Path),
              help="A folder of face images without identities (e.g. FairFace): every image, "
                   "recursively, is its own identity; a teacher labels them.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Cache root [default: $SIAMESE_CACHE or ~/.cache/siamese].")
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes [default: cores].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True)
def prepare(lfw_root: Path | None, folder: Path | None, unlabelled: Path | None,
            cache_dir: Path | None, workers: int | None, quiet: bool, verbose: bool) -> None:
    """Detect and align every image once and store the crops in the cache."""
    from siamese.train import face_cache
    from siamese.train.datasets import read_folder, read_unlabelled
    from siamese.train.lfw import LFW

    setup_logging(verbose)
    if sum(option is not None for option in (lfw_root, folder, unlabelled)) != 1:
        raise DatasetError("give exactly one of --lfw-root, --folder or --unlabelled DIR")
    if lfw_root is not None:
        lfw = LFW(lfw_root)
        kind, image_root, images = "lfw", lfw.image_root, lfw.images
    elif folder is not None:
        kind, image_root, images = "folder", folder, read_folder(folder)
    else:
        kind, image_root, images = "unlabelled", unlabelled, read_unlabelled(unlabelled)
    faces, summary = face_cache.prepare(kind, image_root, images, cache_dir, workers,
                                        progress=not quiet)
    for path in summary.skipped_files:
        click.echo(f"skipped unreadable image: {path}", err=True)
    click.echo(summary.describe())
    click.echo(f"cache: {faces.directory}")


if __name__ == "__main__":
    main()
