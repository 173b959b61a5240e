"""Choose siamese-adapt's recipe by measurement (docs/OWN_FACES.md): each recipe adapts the
packaged edge model on the adaptation people that siamese-adapt itself would adapt on (60%),
is chosen on the other 40% (validation: TAR at FAR 1e-3 and 1e-2, AUC over all their pairs) and
on LFW View 1, and is scored on the test people with the threshold calibrated (FAR 1e-3) on the
validation people. One JSON line per recipe is appended to --results.

    python tools/adapt_search.py /work/data/door/att/adapt /work/data/door/att/test \
        --lfw-root ../shared/data/lfw --cache-dir /work/data/door/cache \
        --results /work/data/door/search.jsonl --run packaged:steps=0 \
        --run edge60:teacher=edge,steps=60
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import click
import torch
from siamese.export.adapt import _codes, _folder_crops, _general_check, _view1
from siamese.train import metrics
from siamese.train.adapt import AdaptConfig, adapt_model, blend_weights, split_site, start_model
from siamese.train.adapt_gate import cross_validated_rates
from siamese.train.calibration import embedding_calibration
from siamese.train.embedding import crop_embedder
from siamese.train.packaged import load_onnx


def _recipe(text: str) -> tuple[str, AdaptConfig]:
    name, _, settings = text.partition(":")
    kinds = {f.name: f.type for f in fields(AdaptConfig)}
    values = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        kind = kinds[key]
        values[key] = (int(value) if kind == "int" else float(value) if kind == "float"
                       else value)
    return name, replace(AdaptConfig(), **values)


def _scores(embed, crops, labels):
    genuine, impostor = metrics.all_pair_scores(embed(crops), labels, "cosine")
    return genuine, impostor


def evaluate(embed, site, test, lfw) -> dict:
    """Validation, LFW View 1 (best threshold) and test figures of one embedder."""
    val_vectors = embed(site.check)
    genuine, impostor = metrics.all_pair_scores(val_vectors, site.check_labels, "cosine")
    calibration = embedding_calibration(val_vectors, site.check_labels, "cosine", 1e-3,
                                        require_evidence=False)
    cv_tar, cv_far = cross_validated_rates(val_vectors, site.check_labels, 1e-3)
    test_genuine, test_impostor = _scores(embed, *test)
    tar, far = metrics.rates(test_genuine, test_impostor, calibration.far_threshold)
    return {
        "val_tar_1e-3": metrics.tar_at_far(genuine, impostor, 1e-3),
        "val_tar_1e-2": metrics.tar_at_far(genuine, impostor, 1e-2),
        "val_auc": metrics.roc_auc(genuine, impostor),
        "val_cv_tar": cv_tar, "val_cv_far": cv_far,
        "lfw_view1": _view1(embed, *lfw),
        "threshold": calibration.far_threshold,
        "test_tar": tar, "test_far": far,
        "test_tar_1e-3_roc": metrics.tar_at_far(test_genuine, test_impostor, 1e-3),
        "test_auc": metrics.roc_auc(test_genuine, test_impostor),
    }


@click.command()
@click.argument("adapt_dir", type=click.Path(exists=True, path_type=Path))
@click.argument("test_dir", type=click.Path(exists=True, path_type=Path))
@click.option("--lfw-root", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--results", type=click.Path(path_type=Path), required=True)
@click.option("--blends", default="1", show_default=True,
              help="Comma-separated blends, each scored (train/adapt.py blend_weights).")
@click.option("--run", "runs", multiple=True, required=True,
              help="NAME:key=value,... (AdaptConfig fields); steps=0 is the packaged model.")
def main(adapt_dir, test_dir, lfw_root, cache_dir, results, blends, runs):
    torch.set_num_threads(1)
    crops, names = _folder_crops(adapt_dir, cache_dir)
    test_crops, test_names = _folder_crops(test_dir, cache_dir)
    test = (test_crops, _codes(test_names))
    replay, replay_labels, lfw_crops, lfw_pairs = _general_check(lfw_root, cache_dir)
    for text in runs:
        name, config = _recipe(text)
        site = split_site(crops, names, config, None)
        started = time.perf_counter()
        rebuilt = (adapt_model(site, replay, config, replay_labels) if config.steps
                   else load_onnx("edge"))
        seconds = time.perf_counter() - started
        adapted = copy.deepcopy(rebuilt.model)
        start = start_model(replay).model
        for alpha in map(float, blends.split(",")) if config.steps else [1.0]:
            rebuilt.model.load_state_dict(adapted.state_dict())
            blend_weights(rebuilt.model, start, alpha)
            embed = crop_embedder(rebuilt.model, rebuilt.info.preprocess, "cpu")
            row = {"name": name if alpha == 1.0 else f"{name}-b{alpha:g}",
                   "config": asdict(replace(config, blend=alpha)), "seconds": seconds,
                   **evaluate(embed, site, test, (lfw_crops, lfw_pairs))}
            with results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            click.echo(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in row.items() if k != "config"))


if __name__ == "__main__":
    main()
