"""Score the distillation teacher itself under the students' protocol: thresholds from the
held-out DevTrain people (as siamese-train picks them), View 1 pairs and all DevTest pairs.

    python tools/teacher_embeddings.py CACHE devtest.npz --people LFW/peopleDevTest.txt
    python tools/eval_teacher.py teacher.npz devtest.npz --lfw-root LFW
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.train import metrics
from siamese.train.calibration import calibrate
from siamese.train.datasets import split_people
from siamese.train.evaluate import score_lfw
from siamese.train.lfw import LFW


def _centred(vectors: np.ndarray, centre: np.ndarray) -> np.ndarray:
    vectors = vectors - centre
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@click.command(cls=SiameseCommand)
@click.argument("train_npz", type=click.Path(exists=True, path_type=Path))
@click.argument("test_npz", type=click.Path(exists=True, path_type=Path))
@click.option("--lfw-root", type=click.Path(path_type=Path), required=True)
@click.option("--val-fraction", default=0.1, show_default=True)
@click.option("--seed", default=0, show_default=True, help="siamese-train's --seed.")
@click.option("--allow-unproven-far", is_flag=True,
              help="Keep a FAR 1e-3 threshold too few held-out pairs cannot show (tiny sets).")
def main(train_npz: Path, test_npz: Path, lfw_root: Path, val_fraction: float,
         seed: int, allow_unproven_far: bool) -> None:
    """TRAIN_NPZ: the teacher on DevTrain (centre and thresholds); TEST_NPZ: on DevTest."""
    train, test = np.load(train_npz), np.load(test_npz)
    centre = train["embeddings"].astype(np.float64).mean(0)
    identities = np.array([str(p).split("/")[0] for p in train["paths"]])
    _, val_people = split_people(sorted(set(identities)), val_fraction, seed)
    val = np.isin(identities, sorted(val_people))
    labels = np.unique(identities[val], return_inverse=True)[1]
    genuine, impostor = metrics.all_pair_scores(_centred(train["embeddings"][val], centre),
                                                labels, "cosine")
    calibration = calibrate(genuine, impostor, 1e-3, metrics.genuine_pair_weights(labels),
                            require_evidence=not allow_unproven_far)

    paths = [str(p) for p in test["paths"]]
    vectors = dict(zip(paths, _centred(test["embeddings"], centre), strict=True))
    report = score_lfw(vectors, paths, "cosine", calibration, LFW(lfw_root), set())
    view1, all_pairs = report["view1"], report["devtest_all_pairs"]
    cal = all_pairs["calibrated"]
    click.echo(f"held-out AUC {calibration.val_auc:.4f}; LFW View 1: "
               f"{100 * view1['accuracy']:.2f}% at the held-out threshold (oracle "
               f"{100 * view1['best_threshold_accuracy']:.2f}%)")
    click.echo(f"DevTest all pairs ({all_pairs['genuine_pairs']} genuine, "
               f"{all_pairs['impostor_pairs']} impostor): AUC {all_pairs['auc']:.4f}, EER "
               f"{100 * all_pairs['eer']:.2f}%, TAR@FAR "
               + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in all_pairs["tar_at_far"].items()))
    click.echo(f"calibrated threshold {cal['threshold']:.4f}: FAR {cal['far']:.2e}, "
               f"TAR {100 * cal['tar']:.1f}%")


if __name__ == "__main__":
    main()
