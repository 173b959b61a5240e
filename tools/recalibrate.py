"""Choose a checkpoint's thresholds again on its own held-out people, with the current
calibration (e.g. after a change of method), and save the checkpoint in place, atomically.

    python tools/recalibrate.py runs/RUN/best.pt --faces ~/.cache/siamese/faces/lfw-...
    python tools/recalibrate.py model.onnx --faces LFW_CACHE --people LFW/peopleDevTrain.txt \
        --varied-faces FAIRFACE_CACHE --varied-prefix val/ --varied-half even

An ONNX model (an export or a siamese-import) has no held-out people of its own: `--people`
names them (an import's are LFW's training people), and its metadata's thresholds are
rewritten in place.

`--flip-average` makes the model average each face's embedding with its mirror image's (the
exported graph then runs the network twice per face); its thresholds are chosen for that.

`--varied-faces CACHE` adds unlabelled faces of more varied people (a prepared cache, e.g.
FairFace val; `--varied-prefix val/ --varied-half even` takes every other image of that folder,
leaving the odd half to measure on with tools/demographics.py): every pair of them is an
impostor pair, and the FAR threshold becomes the higher of the two sets' thresholds, so the
design FAR holds on both.

The FAR threshold needs impostor pairs that show the FAR with 95% confidence (runtime.far_bounds;
about 3/FAR pairs): too few exit 2, unless --allow-unproven-far (tiny test sets only).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import onnx
from siamese.export.onnx_export import save_atomic, write_metadata
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.embedder import Embedder
from siamese.runtime.errors import DatasetError
from siamese.train.calibration import (
    Calibration,
    embedding_calibration,
    validation_calibration,
)
from siamese.train.checkpoint import Checkpoint
from siamese.train.data import FaceTensors
from siamese.train.datasets import alternate_half
from siamese.train.embedding import resolve_device
from siamese.train.face_cache import AlignedFaces, CacheRecord, open_prepared
from siamese.train.lfw import read_people_file


def varied_records(faces: AlignedFaces, prefix: str, half: str,
                   target_far: float) -> list[CacheRecord]:
    """Faces found by the detector under `prefix`, every other one for half even/odd; enough
    of them that `target_far` of their pairs is at least one pair."""
    by_path = {r.path: r for r in faces.records if r.detected and r.path.startswith(prefix)}
    chosen = [by_path[path] for path in alternate_half(list(by_path), half)]
    if len(chosen) * (len(chosen) - 1) / 2 * target_far < 1:
        raise DatasetError(f"{faces.directory}: {len(chosen)} detected faces under "
                           f"{prefix or 'the root'} ({half}) are too few to measure a FAR of "
                           f"{target_far:g}")
    return chosen


def recalibrate_onnx(path: Path, faces: AlignedFaces, people: set[str],
                     varied: tuple[AlignedFaces, list[CacheRecord]] | None = None,
                     description: str | None = None) -> Calibration:
    """The same rule for an ONNX model: thresholds on `people`'s faces (and on every pair of
    the `varied` faces, the higher FAR threshold winning), written into its metadata."""
    embedder = Embedder(path)
    info = embedder.info
    records = faces.select(people)
    labels = np.unique([r.identity for r in records], return_inverse=True)[1]
    varied_embeddings = None
    if varied is not None:
        extra, chosen = varied
        varied_embeddings = embedder.embed(np.stack([extra.crop(r.path) for r in chosen]))
    calibration = embedding_calibration(
        embedder.embed(np.stack([faces.crop(r.path) for r in records])), labels, info.metric,
        info.threshold_far, varied_embeddings, description)
    model = onnx.load(str(path))
    write_metadata(model, replace(info, threshold=calibration.far_threshold,
                                  accuracy_threshold=calibration.accuracy_threshold))
    save_atomic(model, path)
    return calibration


@click.command(cls=SiameseCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--faces", "faces_dir", type=click.Path(path_type=Path), required=True,
              help="The prepared face cache the checkpoint was trained from.")
@click.option("--people", "people_file", type=click.Path(exists=True, path_type=Path),
              help="ONNX models only: an LFW people file naming the held-out people.")
@click.option("--flip-average/--no-flip-average", default=None,
              help="Average with the mirror image from now on (or stop) [default: unchanged].")
@click.option("--varied-faces", type=click.Path(path_type=Path),
              help="A prepared cache of unlabelled faces, each a different person.")
@click.option("--varied-prefix", default="", help="Only its images under this folder (val/).")
@click.option("--varied-half", type=click.Choice(["all", "even", "odd"]), default="all",
              show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--allow-unproven-far", is_flag=True,
              help="Keep a FAR threshold its impostor pairs cannot show at 95% (tiny test sets; "
                   "the checkpoint records the bound).")
def main(checkpoint: Path, faces_dir: Path, people_file: Path | None, flip_average: bool | None,
         varied_faces: Path | None, varied_prefix: str, varied_half: str, device: str,
         allow_unproven_far: bool) -> None:
    """Recalibrate CHECKPOINT's thresholds (a .pt checkpoint's on its held-out validation
    people; an .onnx model's on --people)."""
    if checkpoint.suffix == ".onnx":
        _recalibrate_onnx_command(checkpoint, faces_dir, people_file, varied_faces,
                                  varied_prefix, varied_half)
        return
    state = Checkpoint.load(checkpoint)
    if flip_average is not None:
        state.flip_average = flip_average
    faces = open_prepared(faces_dir)
    records = faces.select(set(state.val_people))
    if len({r.identity for r in records}) != len(state.val_people):
        raise DatasetError(f"{faces_dir} lacks some of the checkpoint's held-out people")
    torch_device = resolve_device(device)
    model = state.build_model().to(torch_device)
    before, target_far = state.calibration, state.calibration.target_far
    val = FaceTensors.from_cache(faces, records, state.preprocess, torch_device)
    varied = description = None
    if varied_faces is not None:
        extra = open_prepared(varied_faces)
        chosen = varied_records(extra, varied_prefix, varied_half, target_far)
        varied = FaceTensors.from_cache(extra, chosen, state.preprocess, torch_device)
        description = (f"{extra.image_root.name}/{varied_prefix} {varied_half} half: "
                       f"{len(chosen):,} faces")
    state.calibration = after = validation_calibration(
        model, val, state.preprocess, state.metric, torch_device, target_far, varied,
        description, require_evidence=not allow_unproven_far)
    state.save(checkpoint)
    click.echo(f"{'with' if state.flip_average else 'without'} mirror averaging: "
               f"held-out AUC {before.val_auc:.4f} -> {after.val_auc:.4f}; "
               f"accuracy threshold {before.accuracy_threshold:.4f} -> "
               f"{after.accuracy_threshold:.4f}; FAR {target_far:g} threshold "
               f"{before.far_threshold:.4f} -> {after.far_threshold:.4f}")
    if varied is not None:
        click.echo(f"  FAR {target_far:g} threshold on {description}: "
                   f"{after.varied_far_threshold:.4f}; held-out TAR at the FAR threshold "
                   f"{100 * after.val_tar_at_threshold:.1f}%")



def _recalibrate_onnx_command(path: Path, faces_dir: Path, people_file: Path | None,
                              varied_faces: Path | None, varied_prefix: str,
                              varied_half: str) -> None:
    if people_file is None:
        raise click.UsageError("an ONNX model needs --people (its held-out people)")
    before = Embedder(path).info
    varied = description = None
    if varied_faces is not None:
        extra = open_prepared(varied_faces)
        chosen = varied_records(extra, varied_prefix, varied_half, before.threshold_far)
        varied, description = (extra, chosen), (f"{extra.image_root.name}/{varied_prefix} "
                                                f"{varied_half} half: {len(chosen):,} faces")
    after = recalibrate_onnx(path, open_prepared(faces_dir), set(read_people_file(people_file)),
                             varied, description)
    varied_threshold = ("none" if after.varied_far_threshold is None
                        else f"{after.varied_far_threshold:.4f}")
    click.echo(f"{path}: FAR {before.threshold_far:g} threshold {before.threshold:.4f} -> "
               f"{after.far_threshold:.4f} (held-out people: {after.val_impostor_pairs:,} "
               f"impostor pairs; varied faces: {varied_threshold}); accuracy "
               f"threshold {before.accuracy_threshold:.4f} -> {after.accuracy_threshold:.4f}")


if __name__ == "__main__":
    main()
