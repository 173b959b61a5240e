"""Choose a checkpoint's thresholds again on its own held-out people, with the current
calibration (e.g. after a change of method), and save the checkpoint in place, atomically.

    python tools/recalibrate.py runs/RUN/best.pt --faces ~/.cache/siamese/faces/lfw-...

`--flip-average` makes the model average each face's embedding with its mirror image's (the
exported graph then runs the network twice per face); its thresholds are chosen for that.
"""

from __future__ import annotations

from pathlib import Path

import click
from siamese.runtime.cli_support import SiameseCommand
from siamese.runtime.errors import DatasetError
from siamese.train.calibration import validation_calibration
from siamese.train.checkpoint import Checkpoint
from siamese.train.data import FaceTensors
from siamese.train.embedding import resolve_device
from siamese.train.face_cache import open_prepared


@click.command(cls=SiameseCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--faces", "faces_dir", type=click.Path(path_type=Path), required=True,
              help="The prepared face cache the checkpoint was trained from.")
@click.option("--flip-average/--no-flip-average", default=None,
              help="Average with the mirror image from now on (or stop) [default: unchanged].")
@click.option("--device", default="auto", show_default=True)
def main(checkpoint: Path, faces_dir: Path, flip_average: bool | None, device: str) -> None:
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
    state.calibration = after = validation_calibration(model, val, state.preprocess,
                                                       state.metric, torch_device, target_far)
    state.save(checkpoint)
    click.echo(f"{'with' if state.flip_average else 'without'} mirror averaging: "
               f"held-out AUC {before.val_auc:.4f} -> {after.val_auc:.4f}; "
               f"accuracy threshold {before.accuracy_threshold:.4f} -> "
               f"{after.accuracy_threshold:.4f}; FAR {target_far:g} threshold "
               f"{before.far_threshold:.4f} -> {after.far_threshold:.4f}")


if __name__ == "__main__":
    main()
