"""Score the distillation teacher itself under the students' protocol: thresholds from the
held-out DevTrain people (as siamese-train picks them), View 1 pairs and all DevTest pairs.

    python tools/teacher_embeddings.py CACHE devtest.npz --people LFW/peopleDevTest.txt
    python tools/eval_teacher.py teacher.npz devtest.npz --lfw-root LFW
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from siamese.runtime.cli_support import user_errors
from siamese.train import metrics
from siamese.train.datasets import split_people
from siamese.train.lfw import LFW
from siamese.train.trainer import calibrate


def _centred(vectors: np.ndarray, centre: np.ndarray) -> np.ndarray:
    vectors = vectors - centre
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@click.command()
@click.argument("train_npz", type=click.Path(exists=True, path_type=Path))
@click.argument("test_npz", type=click.Path(exists=True, path_type=Path))
@click.option("--lfw-root", type=click.Path(path_type=Path), required=True)
@click.option("--val-fraction", default=0.1, show_default=True)
@click.option("--seed", default=0, show_default=True, help="siamese-train's --seed.")
@user_errors
def main(train_npz: Path, test_npz: Path, lfw_root: Path, val_fraction: float,
         seed: int) -> None:
    """TRAIN_NPZ: the teacher on DevTrain (centre and thresholds); TEST_NPZ: on DevTest."""
    train, test = np.load(train_npz), np.load(test_npz)
    centre = train["embeddings"].astype(np.float64).mean(0)
    identities = np.array([str(p).split("/")[0] for p in train["paths"]])
    _, val_people = split_people(sorted(set(identities)), val_fraction, seed)
    val = np.isin(identities, sorted(val_people))
    labels = np.unique(identities[val], return_inverse=True)[1]
    genuine, impostor = metrics.all_pair_scores(_centred(train["embeddings"][val], centre),
                                                labels, "cosine")
    calibration = calibrate(genuine, impostor, 1e-3, metrics.genuine_pair_weights(labels))

    vectors = _centred(test["embeddings"], centre)
    index = {str(p): i for i, p in enumerate(test["paths"])}
    pairs = LFW(lfw_root).view1_test_pairs
    scores = np.array([vectors[index[p.left]] @ vectors[index[p.right]] for p in pairs])
    same = np.array([p.same for p in pairs])
    accuracy = metrics.accuracy(scores, same, calibration["accuracy_threshold"])
    oracle = metrics.accuracy(scores, same, metrics.best_threshold(scores, same))
    test_labels = np.unique([str(p).split("/")[0] for p in test["paths"]], return_inverse=True)[1]
    genuine, impostor = metrics.all_pair_scores(vectors, test_labels, "cosine")
    tar, far = metrics.rates(genuine, impostor, calibration["far_threshold"])
    click.echo(f"held-out AUC {calibration['val_auc']:.4f}; LFW View 1: {100 * accuracy:.2f}% "
               f"at the held-out threshold (oracle {100 * oracle:.2f}%)")
    click.echo(f"DevTest all pairs ({len(genuine)} genuine, {len(impostor)} impostor): AUC "
               f"{metrics.roc_auc(genuine, impostor):.4f}, EER "
               f"{100 * metrics.equal_error_rate(genuine, impostor):.2f}%, TAR@FAR "
               + ", ".join(f"{far_:g}: {100 * metrics.tar_at_far(genuine, impostor, far_):.1f}%"
                           for far_ in (1e-2, 1e-3, 1e-4)))
    click.echo(f"calibrated threshold {calibration['far_threshold']:.4f}: FAR {far:.2e}, "
               f"TAR {100 * tar:.1f}%")


if __name__ == "__main__":
    main()
