"""Distillation targets: dlib's ResNet face descriptor for every crop of an aligned-face cache.

Needs the optional teacher packages (`pip install -e ".[teacher]"`: dlib-bin and
face_recognition_models, CC0 weights); used at training time only, never by the runtime.
dlib aligns with its own 5-point predictor, here run on our aligned crop (upscaled 2x, with the
template's face box as its rectangle), then takes its 150x150 chip.

    python tools/teacher_embeddings.py CACHE_DIR teacher.npz --people lfw/peopleDevTrain.txt
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.train.face_cache import open_prepared
from tqdm import tqdm

_models: tuple | None = None


def _init() -> None:
    global _models
    import dlib
    import face_recognition_models as frm

    cv2.setNumThreads(1)
    _models = (dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
               dlib.face_recognition_model_v1(frm.face_recognition_model_location()), dlib)


def _describe(crop: np.ndarray) -> np.ndarray:
    predictor, encoder, dlib = _models
    rgb = cv2.cvtColor(cv2.resize(crop, (224, 224), interpolation=cv2.INTER_CUBIC),
                       cv2.COLOR_BGR2RGB)
    shape = predictor(rgb, dlib.rectangle(36, 40, 188, 212))
    return np.array(encoder.compute_face_descriptor(rgb, shape, 0), dtype=np.float32)


@click.command()
@click.argument("cache", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--people", type=click.Path(exists=True, path_type=Path),
              help="Only these people (an LFW people file, e.g. peopleDevTrain.txt).")
@click.option("--workers", default=2, show_default=True)
def main(cache: Path, out: Path, people: Path | None, workers: int) -> None:
    """Write OUT.npz with `paths` and `embeddings` (N, 128) of dlib's descriptor."""
    faces = open_prepared(cache)
    records = faces.records
    if people is not None:
        names = {line.split()[0] for line in people.read_text().splitlines()[1:] if line.strip()}
        records = [r for r in records if r.identity in names]
    crops = (np.asarray(faces.crops[r.row]) for r in records)
    with multiprocessing.get_context("spawn").Pool(workers, _init) as pool:
        vectors = list(tqdm(pool.imap(_describe, crops, chunksize=32), total=len(records),
                            desc="dlib descriptors", mininterval=10))
    np.savez(out, paths=np.array([r.path for r in records]), embeddings=np.stack(vectors))
    click.echo(f"{len(records)} teacher embeddings -> {out}")


if __name__ == "__main__":
    main()
