"""`siamese-export`: a thin click layer over export_checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from siamese.export.recipes import FLOAT_KEEP_RECIPES
from siamese.runtime.commands.support import FiniteFloat, SiameseCommand, setup_logging

TRAIN_MODULES = ("torch", "onnx")  # checked before anything runs, --help included


@click.command(cls=SiameseCommand, needs=TRAIN_MODULES)
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="[default: exports/<run folder name>]")
@click.option("--fp16", is_flag=True, help="Add an FP16 ONNX (a GPU artefact).")
@click.option("--int8", is_flag=True, help="Add a static per-channel QDQ INT8 ONNX.")
@click.option("--torchscript", is_flag=True, help="Add a traced TorchScript file.")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(17, 23))
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path),
              help="Real faces (ROOT/<person>/<images>) for calibration and parity "
                   "[default: the checkpoint's training folder or LFW].")
@click.option("--lfw-root", type=click.Path(path_type=Path), envvar="SIAMESE_LFW_ROOT",
              help="LFW for calibration, parity and View 1 accuracy "
                   "[default: the checkpoint's training LFW].")
@click.option("--cache-dir", type=click.Path(path_type=Path))
@click.option("--int8-min-mean-cosine", type=float, default=0.99, show_default=True)
@click.option("--int8-min-agreement", type=float, default=0.99, show_default=True)
@click.option("--int8-max-accuracy-drop", type=float, default=0.01, show_default=True)
@click.option("--fp16-min-cosine", type=float, default=0.999, show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def main(checkpoint, out_dir, fp16, int8, torchscript, opset, calib_dir, lfw_root, cache_dir,
         int8_min_mean_cosine, int8_min_agreement, int8_max_accuracy_drop, fp16_min_cosine,
         verbose):
    """Export CHECKPOINT [default: the latest runs/**/best.pt] to ONNX (and variants), each gated
    on parity with PyTorch. Exits 1 when a variant fails its gate (the file is removed)."""
    from dataclasses import replace

    from siamese.export.config import ExportConfig
    from siamese.export.exporter import export_checkpoint, format_table, latest_checkpoint
    from siamese.export.formats import FORMATS

    setup_logging(verbose)
    if checkpoint is None:
        checkpoint = latest_checkpoint()
        click.echo(f"exporting the latest checkpoint: {checkpoint}")
    gates = {"int8": replace(FORMATS["int8"].gate, mean_cosine=int8_min_mean_cosine,
                             decision_agreement=int8_min_agreement,
                             max_accuracy_drop=int8_max_accuracy_drop),
             "fp16": replace(FORMATS["fp16"].gate, min_cosine=fp16_min_cosine)}
    requested = {"fp16": fp16, "int8": int8, "torchscript": torchscript}
    formats = ("fp32", *(name for name, wanted in requested.items() if wanted))
    out_dir = out_dir or Path("exports") / Path(checkpoint).resolve().parent.name
    config = ExportConfig(checkpoint=Path(checkpoint), out_dir=out_dir, formats=formats,
                          opset=opset, calib_dir=calib_dir, lfw_root=lfw_root,
                          cache_dir=cache_dir, gates=gates)
    report = export_checkpoint(config)
    click.echo(format_table(report))
    for result in report.results:
        if not result.parity.passed:
            click.echo(f"{result.name} FAILED its gate and was removed: "
                       f"{'; '.join(result.parity.failures)}", err=True)
    click.echo(f"report: {out_dir / 'export_report.json'}")
    sys.exit(0 if report.passed else 1)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(parse_number(v)) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers") from None


def parse_number(text: str) -> float:
    """A number, or a fraction written as A/B (e.g. 1/255)."""
    top, _, bottom = text.strip().partition("/")
    return float(top) / float(bottom) if bottom else float(top)


@click.command(cls=SiameseCommand, needs=TRAIN_MODULES)
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for model.onnx (e.g. exports/sface).")
@click.option("--name", required=True, help="Model name recorded as its arch, e.g. sface.")
@click.option("--provenance", required=True,
              help="Where the model comes from and its licence (stored in the metadata).")
@click.option("--size", default=112, show_default=True, type=click.IntRange(8, 1024))
@click.option("--color", type=click.Choice(["rgb", "gray"]), default="rgb", show_default=True)
@click.option("--mean", default="0.5,0.5,0.5", show_default=True,
              help="Per channel, on pixels scaled to 0-1.")
@click.option("--std", default="0.5,0.5,0.5", show_default=True,
              help="Per channel, on pixels scaled to 0-1 (1/255 gives raw 0-255 pixels).")
@click.option("--layout", type=click.Choice(["NCHW", "NHWC"]), default="NCHW",
              show_default=True)
@click.option("--far", type=FiniteFloat(0, 1, low_open=True), default=1e-3, show_default=True)
@click.option("--lfw-root", type=click.Path(path_type=Path), envvar="SIAMESE_LFW_ROOT",
              help="Calibrate on LFW's training people (peopleDevTrain).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path),
              help="Or on your own faces, ROOT/<person>/<images>.")
@click.option("--cache-dir", type=click.Path(path_type=Path))
@click.option("--int8", is_flag=True, help="Add model.int8.onnx: static per-channel QDQ, gated "
              "against the FP32 import (mean cosine >= 0.99, decision agreement >= 99.5%, LFW "
              "View 1 drop <= 0.2 points), tried with every node quantised, then with depthwise "
              "convolutions kept float, then also the first convolution: the first that passes "
              "is written; exit 1 and no file when none does.")
@click.option("--int8-keep-float", type=click.Choice(("auto", *FLOAT_KEEP_RECIPES)),
              default="auto", show_default=True,
              help="Which nodes INT8 keeps float; auto tries each in turn.")
@click.option("--no-fold", is_flag=True, help="Keep constant subgraphs (e.g. the dequantisation "
              "of block-quantised weights) in the graph: a smaller file that runs slower.")
@click.option("-v", "--verbose", is_flag=True)
def import_main(model, out_dir, name, provenance, size, color, mean, std, layout, far, lfw_root,
                calib_dir, cache_dir, int8, int8_keep_float, no_fold, verbose):
    """Wrap a third-party ONNX embedder (MODEL) with siamese-edge metadata, so siamese-verify
    --model, siamese-eval and siamese-bench use it like our own exports."""
    from siamese.export.faces import held_out_faces
    from siamese.export.import_model import ImportConfig, import_onnx
    from siamese.runtime.vision.preprocess import Preprocess

    setup_logging(verbose)
    spec = Preprocess(size=size, color=color, mean=_floats(mean), std=_floats(std),
                      layout=layout)
    crops, labels = held_out_faces(lfw_root, calib_dir, cache_dir)
    config = ImportConfig(Path(model), Path(out_dir), name, spec, provenance, far,
                          fold=not no_fold)
    path, calibration = import_onnx(config, crops, labels)
    click.echo(f"{path}: FAR {far:g} threshold {calibration.far_threshold:.4f}, balanced "
               f"accuracy threshold {calibration.accuracy_threshold:.4f}, held-out AUC "
               f"{calibration.val_auc:.4f} over {calibration.val_genuine_pairs:,} genuine "
               f"and {calibration.val_impostor_pairs:,} impostor pairs")
    if int8:
        recipes = FLOAT_KEEP_RECIPES if int8_keep_float == "auto" else (int8_keep_float,)
        _import_int8(path, lfw_root, calib_dir, cache_dir, crops, labels, recipes)


def _import_int8(fp32_path, lfw_root, calib_dir, cache_dir, crops, labels, recipes):
    from siamese.export.faces import load_face_sets
    from siamese.export.import_model import quantise_import
    from siamese.train.lfw import LFW

    train_people = set(LFW(lfw_root).view1_train_people) if lfw_root else set()
    sets = load_face_sets(lfw_root, calib_dir, cache_dir, train_people, 300, 500)
    out = fp32_path.with_name("model.int8.onnx")
    attempts = quantise_import(fp32_path, out, sets, crops, labels, recipes=recipes)
    for recipe, parity in attempts:
        view1 = (f", LFW View 1 {100 * parity.reference_accuracy:.2f}% -> "
                 f"{100 * parity.accuracy:.2f}%" if parity.accuracy is not None else "")
        click.echo(f"int8 (kept float: {recipe}) parity against FP32: mean cosine "
                   f"{parity.mean_cosine:.5f}, min {parity.min_cosine:.5f}, decision agreement "
                   f"{100 * parity.decision_agreement:.3f}% over {parity.pairs:,} pairs{view1}"
                   f"{'' if parity.passed else ': failed (' + '; '.join(parity.failures) + ')'}")
    if not attempts[-1][1].passed:
        click.echo("int8 gate failed with every recipe: no file written", err=True)
        sys.exit(1)
    click.echo(f"{out}: passed the gate")

