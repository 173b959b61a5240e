"""`siamese-export`: a thin click layer over export_checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from siamese.runtime.cli_support import SiameseCommand, setup_logging


@click.command(cls=SiameseCommand)
@click.argument("checkpoint", required=False, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path),
              help="[default: exports/<run folder name>]")
@click.option("--fp16", is_flag=True, help="Add an FP16 ONNX (a GPU artefact).")
@click.option("--int8", is_flag=True, help="Add a static per-channel QDQ INT8 ONNX.")
@click.option("--torchscript", is_flag=True, help="Add a traced TorchScript file.")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(17, 23))
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path),
              help="Real faces (ROOT/<person>/<images>) for calibration and parity.")
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

    from siamese.export.config import DEFAULT_GATES, ExportConfig
    from siamese.export.exporter import export_checkpoint, format_table, latest_checkpoint

    setup_logging(verbose)
    if checkpoint is None:
        checkpoint = latest_checkpoint()
        click.echo(f"exporting the latest checkpoint: {checkpoint}")
    gates = dict(DEFAULT_GATES)
    gates["int8"] = replace(gates["int8"], mean_cosine=int8_min_mean_cosine,
                            decision_agreement=int8_min_agreement,
                            max_accuracy_drop=int8_max_accuracy_drop)
    gates["fp16"] = replace(gates["fp16"], min_cosine=fp16_min_cosine)
    out_dir = out_dir or Path("exports") / Path(checkpoint).resolve().parent.name
    config = ExportConfig(checkpoint=Path(checkpoint), out_dir=out_dir, fp16=fp16, int8=int8,
                          torchscript=torchscript, opset=opset, calib_dir=calib_dir,
                          lfw_root=lfw_root, cache_dir=cache_dir, gates=gates)
    report = export_checkpoint(config)
    click.echo(format_table(report))
    for result in report.results:
        if not result.parity.passed:
            click.echo(f"{result.name} FAILED its gate and was removed: "
                       f"{'; '.join(result.parity.failures)}", err=True)
    click.echo(f"report: {out_dir / 'export_report.json'}")
    sys.exit(0 if report.passed else 1)
