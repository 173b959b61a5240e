"""Keep LFW's test people out of extra training faces: drop every extra face (e.g. FairFace)
that the teacher matches to a person of LFW DevTest or of View 2's pairs.

Each test person is one template (the mean of the teacher's embeddings of their photos); the
match threshold is the teacher's FAR 1e-5 point (`--far`) on impostor pairs among LFW's
training people (peopleDevTrain), so a stranger is dropped by chance with probability about
1e-5 per test person (View 2 covers all 5,749 LFW people). Faces under `--exclude`
(FairFace's val/, kept for the demographic evaluation) are left out of the output too.

    python tools/dedupe_extra_faces.py sface_fairface.npz sface_lfw.npz --lfw-root LFW \\
        --out fairface_train_kept.npz
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.errors import DatasetError
from siamese.runtime.storage.fileio import check_output_path
from siamese.train import metrics
from siamese.train.lfw import LFW


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read teacher embeddings {path}: {exc}") from None


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)


@click.command(cls=SiameseCommand)
@click.argument("extra", type=click.Path(exists=True, path_type=Path))
@click.argument("lfw_teacher", type=click.Path(exists=True, path_type=Path))
@click.option("--lfw-root", required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--far", default=1e-5, show_default=True)
@click.option("--exclude", default="val/", show_default=True,
              help="Leave out extra faces whose path starts with this.")
def main(extra: Path, lfw_teacher: Path, lfw_root: Path, out: Path, far: float,
         exclude: str) -> None:
    """Write OUT.npz: the extra faces kept (paths, embeddings), and print what was dropped."""
    lfw = LFW(lfw_root)
    faces, known = _load(extra), _load(lfw_teacher)
    person = np.array([p.split("/")[0] for p in known["paths"]])
    vectors = _unit(known["embeddings"].astype(np.float32))
    train = np.isin(person, list(lfw.view1_train_people))
    labels = np.unique(person[train], return_inverse=True)[1]
    _, impostor = metrics.all_pair_scores(vectors[train], labels, "cosine")
    threshold = metrics.threshold_at_far(impostor, far)
    test_people = set(lfw.view1_test_people)
    for fold in lfw.view2_people_folds:
        test_people |= set(fold)
    names = sorted(test_people & set(person.tolist()))
    index = {name: i for i, name in enumerate(names)}
    members = np.array([index.get(name, -1) for name in person])
    sums = np.zeros((len(names), vectors.shape[1]), np.float32)
    np.add.at(sums, members[members >= 0], vectors[members >= 0])
    test = _unit(sums)  # one template per test person: the mean of their images
    paths = faces["paths"]
    candidates = np.array([not str(p).startswith(exclude) for p in paths])
    extra_vectors = _unit(faces["embeddings"][candidates].astype(np.float32))
    best = np.concatenate([(extra_vectors[i:i + 4096] @ test.T).max(axis=1)
                           for i in range(0, len(extra_vectors), 4096)])
    matched = best >= threshold
    keep = np.flatnonzero(candidates)[~matched]
    np.savez(check_output_path(out), **{key: value[keep] for key, value in faces.items()
                     if len(value) == len(paths)})
    click.echo(f"teacher FAR {far:g} threshold {threshold:.4f} (from {len(impostor):,} LFW "
               f"training impostor pairs); templates of {len(test):,} LFW test people "
               f"(DevTest and View 2); {int((~candidates).sum()):,} faces under {exclude!r} "
               f"left out; "
               f"{int(matched.sum()):,} of {len(extra_vectors):,} extra faces matched a test "
               f"person and were dropped; {len(keep):,} kept -> {out}")


if __name__ == "__main__":
    main()
