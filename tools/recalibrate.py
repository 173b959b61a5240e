"""Choose a checkpoint's thresholds again on its own held-out people, with the current
calibration (e.g. after a change of method), and save the checkpoint in place, atomically.

    python tools/recalibrate.py runs/RUN/best.pt --faces ~/.cache/siamese/faces/lfw-...

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

from pathlib import Path

import click
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.errors import DatasetError
from siamese.train.calibration import validation_calibration
from siamese.train.checkpoint import Checkpoint
from siamese.train.data import FaceTensors
from siamese.train.datasets import alternate_half
from siamese.train.embedding import resolve_device
from siamese.train.face_cache import AlignedFaces, CacheRecord, open_prepared


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


@click.command(cls=SiameseCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--faces", "faces_dir", type=click.Path(path_type=Path), required=True,
              help="The prepared face cache the checkpoint was trained from.")
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
def main(checkpoint: Path, faces_dir: Path, flip_average: bool | None, varied_faces: Path | None,
         varied_prefix: str, varied_half: str, device: str, allow_unproven_far: bool) -> None:
    """Recalibrate CHECKPOINT's thresholds on its held-out validation people."""
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


if __name__ == "__main__":
    main()
