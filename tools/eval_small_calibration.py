"""What thresholds site calibration can produce from small folders, and how many LFW impostor
pairs pass at each (the closing figures of issue 16).

    python tools/eval_small_calibration.py /work/shared/data/lfw --sizes 2x2 8x2 13x2 30x4 \
        --far 1e-2 1e-3 --impostor-images 600

Site folders are drawn from DevTrain people (PEOPLExPHOTOS); the impostor pass rate is measured
on every pair of different people among `--impostor-images` photos of DevTest people (one
photo per person), so the folders and the measurement share no one.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click
import numpy as np
from siamese.runtime.calibration import calibrate_folder
from siamese.runtime.errors import SiameseError
from siamese.runtime.verifier import Verifier


def _people(root: Path, protocol: str, photos: int) -> list[tuple[str, int]]:
    lines = (root / protocol).read_text().splitlines()[1:]
    rows = [(name, int(count)) for name, count in (line.split("\t") for line in lines)]
    return [row for row in rows if row[1] >= photos]


@click.command()
@click.argument("lfw", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--sizes", multiple=True, default=("2x2", "8x2", "13x2", "30x4"))
@click.option("--far", "fars", multiple=True, type=float, default=(1e-2, 1e-3))
@click.option("--impostor-images", type=click.IntRange(10, 5000), default=600)
@click.option("--seed", type=int, default=0)
def main(lfw: Path, sizes: tuple[str, ...], fars: tuple[float, ...], impostor_images: int,
         seed: int) -> None:
    images = lfw / "lfw-deepfunneled"
    verifier = Verifier.from_model(cache_dir=Path(tempfile.mkdtemp(prefix="small-cal-")))
    rng = np.random.default_rng(seed)
    test_people = _people(lfw, "peopleDevTest.txt", 1)
    chosen = rng.choice(len(test_people), min(impostor_images, len(test_people)), replace=False)
    vectors = []
    for index in chosen:
        name = test_people[index][0]
        try:
            vectors.append(verifier.reference_embedding(images / name / f"{name}_0001.jpg")[0])
        except SiameseError:
            continue
    matrix = np.stack(vectors)
    impostor = (matrix @ matrix.T)[np.triu_indices(len(matrix), 1)]
    click.echo(f"LFW DevTest impostor pairs: {len(impostor):,} ({len(matrix)} people); model "
               f"threshold {verifier.embedder.info.threshold:.4f} passes "
               f"{100 * (impostor >= verifier.embedder.info.threshold).mean():.3f}%")
    click.echo("| folder | --far | result | threshold | LFW impostor pass rate |")
    click.echo("|---|---|---|---|---|")
    for size in sizes:
        people, photos = (int(part) for part in size.split("x"))
        pool = _people(lfw, "peopleDevTrain.txt", photos)
        picked = [pool[i][0] for i in rng.choice(len(pool), people, replace=False)]
        with tempfile.TemporaryDirectory() as tmp:
            for name in picked:
                (Path(tmp) / name).mkdir()
                for number in range(1, photos + 1):
                    photo = f"{name}_{number:04d}.jpg"
                    (Path(tmp) / name / photo).symlink_to(images / name / photo)
            for far in fars:
                for allow in (False, True):
                    try:
                        site = calibrate_folder(verifier, Path(tmp), far, allow)
                    except SiameseError as exc:
                        if allow or "below the model" not in str(exc):
                            click.echo(f"| {size} | {far:g} | refused: {str(exc)[-90:]} | | |")
                            break
                        continue
                    rate = 100 * (impostor >= site.threshold).mean()
                    flag = " (--allow-below-model)" if allow else ""
                    click.echo(f"| {size} | {far:g} | written{flag} | {site.threshold:.4f} | "
                               f"{rate:.3f}% |")
                    break


if __name__ == "__main__":
    main()
