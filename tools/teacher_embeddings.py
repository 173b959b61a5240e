"""Distillation targets: a teacher's embeddings of every crop of an aligned-face cache (and of
their mirror images), or of morphs (pixel blends) of two training people's crops.

Teachers:
- `--teacher dlib` (default): dlib's ResNet face descriptor. Needs the optional teacher packages
  (`pip install -e ".[teacher]"`: dlib-bin and face_recognition_models, CC0 weights). dlib
  aligns with its own 5-point predictor, here run on our aligned crop (upscaled 2x, with the
  template's face box as its rectangle), then takes its 150x150 chip.
- `--teacher PATH.onnx`: any embedder in siamese-edge format, e.g. SFace wrapped by
  `siamese-import`; it takes our aligned crops as they are, in batches, through the runtime.

    python tools/teacher_embeddings.py CACHE_DIR teacher.npz --people lfw/peopleDevTrain.txt
    python tools/teacher_embeddings.py CACHE_DIR sface.npz --teacher exports/sface/model.onnx \
        --mirror
    python tools/teacher_embeddings.py CACHE_DIR morphs.npz --people lfw/peopleDevTrain.txt \
        --morphs 30000
    python tools/teacher_embeddings.py CACHE_DIR views.npz --people lfw/peopleDevTrain.txt \
        --teacher exports/sface/model.onnx --views 4 --views-dir VIEWS_CACHE

The output holds `paths` and `embeddings`; with `--mirror` also `mirror_embeddings`, the
teacher's embedding of each crop flipped left-right, for analysis: siamese-train reads only
`embeddings` (a flipped crop keeps its original's target; SFace's mirror embeddings have a
cosine of 0.968 with the originals on LFW).
Morphs of two aligned faces look like new people: the teacher's descriptor of each is a target
the student cannot memorise from the training identities. They are drawn only from the people
`siamese-train` trains on (its held-out validation people, for --val-seed, are left out).
`--views K` describes K augmented views of every training crop instead (train.augment's shifts,
zooms, rotations and photometric changes, no flip), computed once and written as a prepared face
cache (`--views-dir`), so that `siamese-train --extra-faces VIEWS_CACHE --extra-distill
views.npz` learns the teacher's embedding of each view, not of the unaugmented crop only.
Training only; never used by the runtime.
"""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import asdict
from pathlib import Path

import click
import cv2
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.errors import DatasetError
from siamese.runtime.storage.fileio import check_output_path
from siamese.train.datasets import split_people
from siamese.train.face_cache import AlignedFaces, CacheRecord, PrepareSummary, open_prepared
from siamese.train.lfw import read_people_file
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


def morph(a: np.ndarray, b: np.ndarray, weight: float) -> np.ndarray:
    """weight * a + (1 - weight) * b, rounded to uint8 (the trainer blends the same way)."""
    return np.rint(weight * a.astype(np.float32) + (1 - weight) * b).astype(np.uint8)


def draw_morphs(labels: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` (i, j) index pairs of different people, and blend weights in [0.3, 0.7]."""
    rng = np.random.default_rng(seed)
    pairs = rng.integers(len(labels), size=(count, 2))
    clash = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    while clash.any():
        pairs[clash, 1] = rng.integers(len(labels), size=int(clash.sum()))
        clash = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    return pairs, rng.uniform(0.3, 0.7, size=count).astype(np.float32)


def describe_dlib(images, total: int, workers: int) -> np.ndarray:
    with multiprocessing.get_context("spawn").Pool(workers, _init) as pool:
        return np.stack(list(tqdm(pool.imap(_describe, images, chunksize=32), total=total,
                                  desc="dlib descriptors", mininterval=10)))


def describe_onnx(model: Path, images, total: int, batch: int = 64) -> np.ndarray:
    """Embeddings of crops by an embedder in siamese-edge format (runtime.Embedder)."""
    from siamese.runtime.embedder import Embedder

    embedder = Embedder(model)
    out, chunk = [], []
    with tqdm(total=total, desc=f"{embedder.info.arch} embeddings", mininterval=10) as bar:
        for image in images:
            chunk.append(image)
            if len(chunk) == batch:
                out.append(embedder.embed(np.stack(chunk)))
                bar.update(len(chunk))
                chunk = []
        if chunk:
            out.append(embedder.embed(np.stack(chunk)))
            bar.update(len(chunk))
    return np.concatenate(out)


def write_views(faces: AlignedFaces, records: list[CacheRecord], views: int, seed: int,
                directory: Path) -> AlignedFaces:
    """K augmented views of each record's crop as a prepared cache in `directory` (record-major
    rows; paths `<path>#view<k>`, identities kept)."""
    import torch
    from siamese.train.augment import AugmentConfig, augment

    generator = torch.Generator().manual_seed(seed)
    config = AugmentConfig(flip=False)
    if directory.exists():
        raise DatasetError(f"{directory} exists: give --views-dir a new folder")
    directory.mkdir(parents=True)
    crops = np.lib.format.open_memmap(directory / "crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(records) * views, *faces.crops.shape[1:]))
    for start in range(0, len(records), 256):
        chunk = records[start:start + 256]
        batch = torch.from_numpy(np.stack([faces.crops[r.row] for r in chunk]))
        batch = batch.permute(0, 3, 1, 2).float() / 255
        rows = np.arange(start, start + len(chunk)) * views
        for k in range(views):
            out = augment(batch, config, generator).clamp(0, 1).mul(255).round().byte()
            crops[rows + k] = out.permute(0, 2, 3, 1).numpy()
    crops.flush()
    new = [CacheRecord(f"{r.path}#view{k}", r.identity, r.detected, r.score, r.faces,
                       i * views + k) for i, r in enumerate(records) for k in range(views)]
    detected = sum(r.detected for r in new)
    summary = PrepareSummary(images=len(new), identities=len({r.identity for r in new}),
                             detected=detected, fallback=len(new) - detected, skipped=0,
                             seconds=0.0)
    (directory / "manifest.json").write_text(json.dumps({
        "fingerprint": f"views-{faces.fingerprint}-{views}-{seed}",
        "image_root": str(faces.image_root), "skipped": [], "summary": asdict(summary),
        "records": [list(asdict(r).values()) for r in new]}))
    return AlignedFaces(directory)


@click.command(cls=SiameseCommand)
@click.argument("cache", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--teacher", default="dlib", show_default=True,
              help="dlib, or the path of an ONNX embedder in siamese-edge format.")
@click.option("--people", type=click.Path(exists=True, path_type=Path),
              help="Only these people (an LFW people file, e.g. peopleDevTrain.txt).")
@click.option("--keep", type=click.Path(exists=True, path_type=Path),
              help="Only the cache paths listed in this file, one per line (e.g. the output of "
                   "tools/dedupe_extra_faces.py).")
@click.option("--mirror", is_flag=True, help="Also embed every crop flipped left-right.")
@click.option("--morphs", default=0, show_default=True,
              help="Describe this many morphs of two training people instead of the crops.")
@click.option("--views", default=0, show_default=True,
              help="Describe this many augmented views of every training crop instead, written "
                   "as a prepared cache to --views-dir.")
@click.option("--views-dir", type=click.Path(path_type=Path),
              help="Where --views writes its prepared cache of the views.")
@click.option("--val-fraction", default=0.1, show_default=True,
              help="siamese-train's held-out fraction of people (left out of morphs and views).")
@click.option("--val-seed", default=0, show_default=True,
              help="siamese-train's --seed (it picks the held-out people).")
@click.option("--workers", default=2, show_default=True, help="Processes (dlib).")
def main(cache: Path, out: Path, teacher: str, people: Path | None, keep: Path | None,
         mirror: bool, morphs: int, views: int, views_dir: Path | None, val_fraction: float,
         val_seed: int, workers: int) -> None:
    """Write OUT.npz: `paths` and `embeddings` (N, D) of the teacher (and `mirror_embeddings`);
    with --morphs, `paths_a`, `paths_b`, `weights` and `embeddings` of the blends."""
    faces = open_prepared(cache)
    records = faces.records
    if people is not None:
        names = set(read_people_file(people))
        records = [r for r in records if r.identity in names]
    if keep is not None:
        kept = set(keep.read_text().split("\n"))
        records = [r for r in records if r.path in kept]
    if morphs and views:
        raise click.UsageError("--morphs and --views are separate runs")
    if views and views_dir is None:
        raise click.UsageError("--views needs --views-dir (where the views' cache goes)")
    if morphs or views:
        train_people, _ = split_people(sorted({r.identity for r in records}), val_fraction,
                                       val_seed)
        records = [r for r in records if r.identity in train_people]
    if views:
        faces = write_views(faces, records, views, val_seed, views_dir)
        records = faces.records
    if morphs:
        labels = np.array([r.identity for r in records])
        pairs, weights = draw_morphs(labels, morphs, seed=val_seed)

        def images():
            return (morph(np.asarray(faces.crops[records[i].row]),
                          np.asarray(faces.crops[records[j].row]), w)
                    for (i, j), w in zip(pairs, weights, strict=True))
        total = morphs
    else:
        def images():
            return (np.asarray(faces.crops[r.row]) for r in records)
        total = len(records)

    def describe(source) -> np.ndarray:
        if teacher == "dlib":
            return describe_dlib(source, total, workers)
        return describe_onnx(Path(teacher), source, total)

    vectors = describe(images())
    extra = {}
    if mirror and not morphs:
        extra["mirror_embeddings"] = describe(image[:, ::-1] for image in images())
    paths = np.array([r.path for r in records])
    if morphs:
        np.savez(check_output_path(out), paths_a=paths[pairs[:, 0]],
                 paths_b=paths[pairs[:, 1]], weights=weights, embeddings=vectors)
    else:
        np.savez(check_output_path(out), paths=paths, embeddings=vectors, **extra)
    click.echo(f"{total} teacher embeddings{' and their mirrors' if extra else ''} -> {out}")


if __name__ == "__main__":
    main()
