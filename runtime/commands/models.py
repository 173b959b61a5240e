"""`siamese-models`: the packaged embedding models, each with its figures from its own metadata."""

from __future__ import annotations

import json

import click
from siamese.runtime.commands.support import SiameseCommand


def model_rows() -> list[dict]:
    """One row per installed packaged model: name, file, size, what its metadata says."""
    from siamese.runtime import model_zoo
    from siamese.runtime.embedder import Embedder

    rows = []
    for model in model_zoo.installed():
        info = Embedder(model.path).info
        measured = info.measured or {}
        rows.append({
            "name": model.name, "file": model.file, "size_mb": model.path.stat().st_size / 1e6,
            "arch": info.arch, "variant": info.variant, "summary": model.summary,
            "default_for": [use for use, name in model_zoo.DEFAULTS.items() if name == model.name],
            "threshold": info.threshold, "threshold_far": info.threshold_far,
            "accuracy_threshold": info.accuracy_threshold,
            "ms_per_face": measured.get("ms_per_face"), "threads": measured.get("threads"),
            "lfw_view1": measured.get("lfw_view1"),
            "tar_at_far_1e-3": measured.get("tar_at_far_0.001"),
            "measured_on": measured.get("measured_on")})
    return rows


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_models(rows: list[dict]) -> str:
    header = (f"{'name':<10} {'file':<24} {'size MB':>7} {'ms/face':>8} {'View 1':>7} "
              f"{'TAR@1e-3':>8} {'threshold (FAR)':>17} {'acc. thr.':>9}  default for")
    lines = [header, "-" * len(header)]
    for r in rows:
        threshold = f"{r['threshold']:.4f} ({r['threshold_far']:g})"
        view1 = r["lfw_view1"] and 100 * r["lfw_view1"]
        tar = r["tar_at_far_1e-3"] and 100 * r["tar_at_far_1e-3"]
        lines.append(f"{r['name']:<10} {r['file']:<24} {r['size_mb']:>7.2f} "
                     f"{_cell(r['ms_per_face'], '.2f'):>8} {_cell(view1, '.2f'):>7} "
                     f"{_cell(tar, '.2f'):>8} {threshold:>17} "
                     f"{_cell(r['accuracy_threshold'], '.4f'):>9}  "
                     f"{', '.join(r['default_for']) or '-'}")
    threads = sorted({r["threads"] for r in rows if r["threads"]})
    lines.append(f"ms/face: batch 1 on {', '.join(map(str, threads)) or '?'} onnxruntime "
                 f"thread(s) where it was measured (siamese-bench --record); View 1 and TAR at "
                 f"FAR 1e-3 (every DevTest pair) in percent; all read from each file's metadata.")
    return "\n".join(lines)


@click.command(cls=SiameseCommand)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per model.")
def models_main(as_json):
    """List the packaged embedding models (use one with --model NAME)."""
    rows = model_rows()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, allow_nan=False))
    else:
        click.echo(format_models(rows))
