"""Open-set identification on LFW DevTest people, through the runtime's own pipeline.

Gallery: one photo of each DevTest person with two or more (the first that enrols, after the
enrolment quality gate). Probes: their other photos (mated), plus every photo of the DevTest
people with a single photo, who are not enrolled (non-mated distractors). Each probe's
dominant face is searched as `siamese-identify` does (a face failing the quality gate is never
named). Reported: rank-1 accuracy (mated probes whose best match is right, any score), and at
each threshold FNIR (mated probes not named correctly) and FPIR (distractors named at all).

    python tools/eval_identification.py --lfw-root path/to/lfw [--model m.onnx]
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.errors import SiameseError
from siamese.runtime.storage.gallery import GalleryIndex
from siamese.runtime.verifier import Verifier
from siamese.runtime.vision.align import align_face
from siamese.runtime.vision.imageio import read_image
from siamese.runtime.vision.quality import assess
from siamese.train.lfw import LFW, read_people_file


def probe_embedding(verifier: Verifier, path: Path) -> tuple[np.ndarray | None, bool]:
    """(embedding of the dominant face or None, whether it passes the quality gate)."""
    image = read_image(path)
    try:
        face = verifier.dominant_face(image, str(path))
    except SiameseError:
        return None, False
    crop = align_face(image, face.landmarks)
    return verifier.embedder.embed(crop)[0], assess(face, crop, verifier.config.quality).ok


@click.command(cls=SiameseCommand)
@click.option("--lfw-root", required=True, type=click.Path(path_type=Path))
@click.option("--model", type=click.Path(path_type=Path), help="[default: the packaged model]")
@click.option("--cache-dir", type=click.Path(path_type=Path))
def main(lfw_root: Path, model: Path | None, cache_dir: Path | None) -> None:
    """Print rank-1 accuracy and FPIR / FNIR at the model's thresholds as a table."""
    lfw = LFW(lfw_root)
    verifier = Verifier.from_model(model, cache_dir=cache_dir)
    people = read_people_file(lfw.root / "peopleDevTest.txt")
    photos = {name: [lfw.image_root / name / f"{name}_{i:04d}.jpg" for i in range(1, n + 1)]
              for name, n in people.items()}
    names, means, mated, skipped = [], [], [], 0
    for name, paths in photos.items():
        if len(paths) < 2:
            continue
        for number, path in enumerate(paths):
            try:
                means.append(verifier.reference_embedding(path)[0])
            except SiameseError:
                skipped += 1
                continue
            names.append(name)
            mated += [(name, p) for p in paths[number + 1:]]
            break
    index = GalleryIndex(names, np.stack(means), verifier.embedder.info.metric)
    distractors = [paths[0] for paths in photos.values() if len(paths) == 1]
    rows = []
    for truth, path in [*mated, *((None, p) for p in distractors)]:
        embedding, ok = probe_embedding(verifier, path)
        best = index.search(embedding, 1)[0][0] if embedding is not None else None
        rows.append((truth, best.name if best else None, best.score if best else -np.inf, ok))
    mated_rows = [r for r in rows if r[0] is not None]
    other_rows = [r for r in rows if r[0] is None]
    rank1 = np.mean([r[0] == r[1] for r in mated_rows])
    click.echo(f"gallery {len(names)} people ({skipped} enrolment photos refused), "
               f"{len(mated_rows)} mated probes, {len(other_rows)} non-mated distractors; "
               f"rank-1 accuracy {100 * rank1:.2f}%")
    info = verifier.embedder.info
    click.echo("| threshold | value | FNIR | FPIR |\n| --- | --- | --- | --- |")
    for label, value in ((f"model, FAR {info.threshold_far:g}", info.threshold),
                         ("model, balanced accuracy", info.accuracy_threshold)):
        if value is None:
            continue
        fnir = np.mean([not (r[3] and r[2] >= value and r[0] == r[1]) for r in mated_rows])
        fpir = np.mean([r[3] and r[2] >= value for r in other_rows])
        click.echo(f"| {label} | {value:.4f} | {100 * fnir:.2f}% | {100 * fpir:.2f}% |")


if __name__ == "__main__":
    main()
