"""The own-faces benchmark rows of one evaluation set (docs/OWN_FACES.md): each model's threshold
calibrated at FAR 1e-3 on the adaptation people, then TAR and FAR at it on the test people; with
--shipped, also each model file's own threshold (siamese-adapt's, calibrated on the adaptation
people it held out); with --lfw-root, LFW View 1 accuracy (threshold chosen on the pairs).

    python tools/adapt_benchmark.py /work/data/door/att/adapt /work/data/door/att/test \
        edge sface /work/data/door/att_out/model.int8.onnx --shipped --lfw-root LFW
"""

from __future__ import annotations

from pathlib import Path

import click
from siamese.export.adapt import _codes, _folder_crops, _general_check, _view1
from siamese.runtime.embedder import Embedder
from siamese.runtime.model_zoo import PACKAGED, resolve
from siamese.train import metrics
from siamese.train.calibration import embedding_calibration


@click.command()
@click.argument("adapt_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("test_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("models", nargs=-1, required=True)
@click.option("--far", "target_far", type=float, default=1e-3, show_default=True)
@click.option("--shipped", is_flag=True,
              help="Also score each model file (not a packaged name) at its own threshold.")
@click.option("--lfw-root", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
def main(adapt_dir, test_dir, models, target_far, shipped, lfw_root, cache_dir):
    calib_crops, calib_names = _folder_crops(adapt_dir, cache_dir)
    test_crops, test_names = _folder_crops(test_dir, cache_dir)
    calib_labels, test_labels = _codes(calib_names), _codes(test_names)
    lfw = _general_check(lfw_root, cache_dir)[2:] if lfw_root else None
    click.echo("| model | threshold | from | TAR at it (test) | FAR at it (test) | AUC (test) "
               "| LFW View 1 |\n|---|---|---|---|---|---|---|")
    for name in models:
        embedder = Embedder(resolve(name))
        genuine, impostor = metrics.all_pair_scores(embedder.embed(test_crops), test_labels,
                                                    "cosine")
        calibration = embedding_calibration(embedder.embed(calib_crops), calib_labels,
                                            "cosine", target_far, require_evidence=False)
        thresholds = [(calibration.far_threshold, "adaptation people")]
        if shipped and name not in PACKAGED:
            thresholds.append((embedder.info.threshold, "its own"))
        view1 = "-" if lfw is None else f"{100 * _view1(embedder.embed, *lfw):.2f}%"
        for threshold, source in thresholds:
            tar, far = metrics.rates(genuine, impostor, threshold)
            click.echo(f"| {name} | {threshold:.4f} | {source} | {tar:.3f} | {far:.4f} "
                       f"({len(impostor)} pairs) | {metrics.roc_auc(genuine, impostor):.4f} | "
                       f"{view1} |")


if __name__ == "__main__":
    main()
