"""`siamese-adapt IMAGES --model edge --out OUT`: adapt the packaged edge model to a site
(train/adapt.py), gate it against the packaged model, and write OUT/ (model, threshold, report).

Exit 0 when a model is written, 1 when the gate refuses, 2 on bad input.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand, setup_logging
from siamese.runtime.errors import DatasetError
from siamese.runtime.storage.fileio import write_text_atomic

TESTS_LFW = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lfw_mini"
REFUSED = ("keep the packaged model: enrol your people with it (siamese-enroll) and set the "
           "site's threshold with siamese-calibrate")


def _folder_crops(root: Path, cache_dir: Path | None) -> tuple[np.ndarray, list[str] | None]:
    """Aligned crops of a folder, with person names when it is <person>/<images>."""
    from siamese.train import face_cache
    from siamese.train.datasets import read_folder, read_unlabelled

    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    labelled = any(p.is_dir() for p in root.iterdir())
    images = read_folder(root) if labelled else read_unlabelled(root)
    faces, _ = face_cache.prepare("folder", root, images, cache_dir, progress=False)
    records = faces.select()
    if not records:
        raise DatasetError(f"no face found in the images under {root}")
    crops = np.stack([faces.crop(r.path) for r in records])
    return crops, [r.identity for r in records] if labelled else None


def _general_check(lfw_root: Path | None, cache_dir: Path | None, per_person: int = 6):
    """(replay crops, their person codes, View 1 test crops by path, View 1 test pairs): LFW's
    View 1 when given, else the packaged small LFW sample (tests/fixtures/lfw_mini) of a source
    tree. The replay set is up to `per_person` images of each View 1 training person with at
    least 4 (so batches can hold several images of a person)."""
    from siamese.train import face_cache
    from siamese.train.lfw import LFW

    root = lfw_root or (TESTS_LFW if TESTS_LFW.is_dir() else None)
    if root is None:
        return np.zeros((0, 112, 112, 3), np.uint8), np.zeros(0, np.int64), {}, []
    lfw = LFW(root)
    faces, _ = face_cache.prepare("lfw", lfw.image_root, lfw.images, cache_dir, progress=False)
    by_person: dict[str, list] = {}
    for record in faces.select(set(lfw.view1_train_people)):
        by_person.setdefault(record.identity, []).append(record)
    replay = [r for name in sorted(by_person) if len(by_person[name]) >= 4
              for r in by_person[name][:per_person]]
    pairs = lfw.view1_test_pairs
    paths = {p for pair in pairs for p in (pair.left, pair.right) if p in faces}
    crops = {p: faces.crop(p) for p in paths}
    pairs = [pair for pair in pairs if pair.left in crops and pair.right in crops]
    return (np.stack([faces.crop(r.path) for r in replay]), _codes([r.identity for r in replay]),
            crops, pairs)


def _codes(names: list[str]) -> np.ndarray:
    index = {name: i for i, name in enumerate(sorted(set(names)))}
    return np.array([index[name] for name in names], np.int64)


def _view1(embed, crops: dict, pairs: list) -> float | None:
    from siamese.train import metrics

    if not pairs:
        return None
    paths = sorted(crops)
    vectors = dict(zip(paths, embed(np.stack([crops[p] for p in paths])), strict=True))
    scores = np.array([float(vectors[p.left] @ vectors[p.right]) for p in pairs])
    same = np.array([p.same for p in pairs])
    return float(metrics.accuracy(scores, same, metrics.best_threshold(scores, same)))


def _markdown(report: dict) -> str:
    g, far = report["gate"], report["config"]["target_far"]
    rows = [f"| model | TAR at calibrated FAR {far:g} | FAR at it | ROC TAR at FAR {far:g} | "
            "AUC | threshold (all check people) | general acc. |", "|---|---|---|---|---|---|---|"]
    for name in ("packaged", "adapted"):
        f = g[name]
        acc = "-" if f["general_accuracy"] is None else f"{100 * f['general_accuracy']:.2f}%"
        rows.append(f"| {name} edge | {f['tar_at_far']:.3f} | {f['far_at_threshold']:.4f} | "
                    f"{f['tar_at_far_roc']:.3f} | {f['auc']:.4f} | {f['threshold']:.4f} | "
                    f"{acc} |")
    verdict = "shipped" if g["passed"] else "refused: " + "; ".join(g["reasons"])
    return "\n".join([
        f"# siamese-adapt report\n\nImages: {report['images']}; check people: "
        f"{report['check_people']}; {report['seconds']:.0f} s.\n\nTAR and FAR at the "
        "calibrated FAR are cross-validated: the threshold calibrated on half of the check "
        "people, counted on the other half, both ways.\n", *rows, f"\nGate: {verdict}.\n"])


def run_adapt(images: Path, out: Path, config, check: Path | None = None,
              lfw_root: Path | None = None, cache_dir: Path | None = None) -> dict:
    """Adapt, gate and write OUT/; returns the report (its gate says whether a model shipped)."""
    from siamese.export.onnx_export import export_fp32
    from siamese.export.parity import compare
    from siamese.export.variants import export_int8
    from siamese.runtime.embedder import Embedder
    from siamese.runtime.model_zoo import PACKAGED
    from siamese.train.adapt import adapt_model, split_site
    from siamese.train.adapt_gate import figures, gate
    from siamese.train.embedding import crop_embedder

    started = time.perf_counter()
    crops, identities = _folder_crops(images, cache_dir)
    check_set = _folder_crops(check, cache_dir) if check is not None else None
    if check_set is not None and check_set[1] is None:
        raise DatasetError(f"--check {check} must be <person>/<images>")
    site = split_site(crops, identities, config, check_set)
    replay, replay_labels, lfw_crops, lfw_pairs = _general_check(lfw_root, cache_dir)
    packaged_embed = Embedder(PACKAGED["edge-fp32"].path).embed
    packaged, _ = figures(packaged_embed, site.check, site.check_labels, config.target_far,
                          _view1(packaged_embed, lfw_crops, lfw_pairs))
    rebuilt = adapt_model(site, replay, config, replay_labels)
    adapted_embed = crop_embedder(rebuilt.model, rebuilt.info.preprocess, "cpu")
    adapted, calibration = figures(adapted_embed, site.check, site.check_labels,
                                   config.target_far, _view1(adapted_embed, lfw_crops, lfw_pairs))
    result = gate(packaged, adapted, config.target_far, config.tar_margin, config.max_far_ratio,
                  config.max_lfw_drop)
    out.mkdir(parents=True, exist_ok=True)
    report = {"images": str(images), "config": asdict(config),
              "adapt_images": int(len(site.adapt)), "check_people": int(len(set(
                  site.check_labels.tolist()))), "gate": result.to_dict(), "model": None}
    if result.passed:
        info = replace(rebuilt.info, threshold=calibration.far_threshold,
                       threshold_far=config.target_far,
                       accuracy_threshold=calibration.accuracy_threshold, measured=None,
                       provenance="siamese-adapt of the packaged edge model")
        fp32 = out / "model.onnx"
        export_fp32(rebuilt.model, info, fp32, 18)
        shipped = fp32
        try:
            # the site's own crops set the activation ranges: mixed with bright general faces,
            # the door-light AT&T model's INT8 missed parity (mean cosine 0.98996 < 0.99)
            calibration_crops = site.adapt if len(site.adapt) >= 64 else np.concatenate(
                [site.adapt, replay])
            int8 = export_int8(fp32, info, out / "model.int8.onnx",
                               info.preprocess(calibration_crops[:256]))
            from siamese.export.formats import FORMATS
            parity = compare(Embedder(fp32).embed(site.check), Embedder(int8).embed(site.check),
                             "cosine", info.threshold, FORMATS["int8"].gate)
            report["int8_parity"] = parity.to_dict()
            if parity.passed:
                shipped = int8
            else:
                int8.unlink()
        except Exception as exc:  # quantisation failing leaves the FP32 model shipped
            report["int8_error"] = str(exc).splitlines()[0]
        report["model"] = str(shipped)
        report["threshold"] = calibration.far_threshold
    report["seconds"] = time.perf_counter() - started
    write_text_atomic(out / "adapt_report.json", json.dumps(report, indent=2))
    write_text_atomic(out / "adapt_report.md", _markdown(report))
    return report


@click.command(cls=SiameseCommand)
@click.argument("images", type=click.Path(path_type=Path))
@click.option("--model", type=click.Choice(["edge"]), default="edge", show_default=True,
              help="The packaged model to adapt.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--check", type=click.Path(path_type=Path),
              help="A labelled <person>/<images> folder of site people not in IMAGES, for the "
                   "gate [default: people held out of IMAGES].")
@click.option("--replay", "--lfw-root", "lfw_root", type=click.Path(path_type=Path),
              envvar="SIAMESE_LFW_ROOT",
              help="LFW tree: its View 1 training people are replayed and its View 1 test "
                   "pairs checked [default: the packaged LFW sample].")
@click.option("--steps", type=click.IntRange(0), default=None,
              help="Training steps [default: the recipe's, train/adapt.py AdaptConfig].")
@click.option("--far", "target_far", type=click.FloatRange(1e-6, 0.5), default=1e-3,
              show_default=True, help="Design false accept rate: the shipped threshold's, and "
              "the gate's (at most 2x on the check people).")
@click.option("--margin", type=float, default=0.02, show_default=True,
              help="TAR points by which the adapted model must beat the packaged one.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def adapt_main(images, model, out, check, lfw_root, steps, target_far, margin, cache_dir, seed,
               verbose):
    """Adapt the packaged edge model to a site's light and camera; ship it only when it beats
    the packaged model on held-out site people (exit 0), else exit 1."""
    import torch
    from siamese.train.adapt import AdaptConfig

    setup_logging(verbose)
    torch.set_num_threads(1)
    config = AdaptConfig(seed=seed, tar_margin=margin, target_far=target_far)
    if steps is not None:
        config = replace(config, steps=steps)
    report = run_adapt(images, out, config, check, lfw_root, cache_dir)
    gate = report["gate"]
    if not gate["passed"]:
        click.echo(f"not shipped: {'; '.join(gate['reasons'])}; {REFUSED}", err=True)
        sys.exit(1)
    click.echo(f"wrote {report['model']} (threshold {report['threshold']:.4f}, TAR "
               f"{gate['adapted']['tar_at_far']:.3f} vs packaged "
               f"{gate['packaged']['tar_at_far']:.3f}); report {out / 'adapt_report.md'}")
