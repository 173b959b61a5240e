"""The own-faces benchmark row of one evaluation set (docs/OWN_FACES.md): each model's threshold
calibrated at FAR 1e-3 on the adaptation people, then TAR and FAR at it on the test people.

    python tools/adapt_benchmark.py /work/data/door/att/adapt /work/data/door/att/test \
        edge sface /work/data/door/att_out/model.int8.onnx
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from siamese.export.adapt import _folder_crops
from siamese.runtime.embedder import Embedder
from siamese.runtime.model_zoo import resolve
from siamese.train import metrics
from siamese.train.calibration import embedding_calibration


def _codes(names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.array([index[name] for name in names], np.int64)


@click.command()
@click.argument("adapt_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("test_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("models", nargs=-1, required=True)
@click.option("--far", "target_far", type=float, default=1e-3, show_default=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
def main(adapt_dir, test_dir, models, target_far, cache_dir):
    calib_crops, calib_names = _folder_crops(adapt_dir, cache_dir)
    test_crops, test_names = _folder_crops(test_dir, cache_dir)
    calib_labels, test_labels = _codes(calib_names), _codes(test_names)
    click.echo("| model | threshold (adaptation people) | TAR at it (test) | FAR at it (test) "
               "| AUC (test) |\n|---|---|---|---|---|")
    for name in models:
        embed = Embedder(resolve(name)).embed
        calibration = embedding_calibration(embed(calib_crops), calib_labels, "cosine",
                                            target_far, require_evidence=False)
        genuine, impostor = metrics.all_pair_scores(embed(test_crops), test_labels, "cosine")
        far, tar = (float((impostor >= calibration.far_threshold).mean()),
                    float((genuine >= calibration.far_threshold).mean()))
        click.echo(f"| {name} | {calibration.far_threshold:.4f} | {tar:.3f} | {far:.4f} "
                   f"({len(impostor)} pairs) | {metrics.roc_auc(genuine, impostor):.4f} |")


if __name__ == "__main__":
    main()
