"""INT8 again from a packaged FP32 model of ours, behind the export's INT8 gate, thresholds kept.

    python tools/requantise.py runtime/models/siamese_edge.onnx --lfw-root LFW \\
        --out runtime/models/siamese_edge.int8.onnx
    siamese-bench runtime/models/siamese_edge.int8.onnx --lfw-root LFW --threads 2 --record

Calibration on 300 faces of LFW View 1's training people, parity against the FP32 file on 500
DevTest faces (every pair at its FAR threshold) and View 1's test pairs
(export.import_model.requantise). Used when the INT8 recipe changes (7-bit weights since
2026-12-04); the new weights give the file a new fingerprint, so templates, caches and
galleries made with the old one are refused. Exit 1 when the gate fails (nothing written).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from siamese.export.faces import load_face_sets
from siamese.export.formats import FORMATS
from siamese.export.import_model import requantise
from siamese.runtime.commands.support import SiameseCommand
from siamese.train.lfw import LFW


@click.command(cls=SiameseCommand)
@click.argument("fp32", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--lfw-root", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Aligned-face cache.")
def main(fp32: Path, lfw_root: Path, out: Path, cache_dir: Path | None) -> None:
    """Quantise FP32 to OUT; print the parity figures."""
    sets = load_face_sets(lfw_root, None, cache_dir, set(LFW(lfw_root).view1_train_people),
                          300, 500)
    parity = requantise(fp32, out, sets, FORMATS["int8"].gate)
    view1 = (f"; View 1 {100 * parity.reference_accuracy:.2f}% -> {100 * parity.accuracy:.2f}%"
             if parity.accuracy is not None else "")
    click.echo(f"int8 against fp32: mean cosine {parity.mean_cosine:.5f}, min "
               f"{parity.min_cosine:.5f}, decision agreement "
               f"{100 * parity.decision_agreement:.3f}% over {parity.pairs:,} pairs{view1}")
    if not parity.passed:
        click.echo(f"int8 failed its gate: {'; '.join(parity.failures)}", err=True)
        sys.exit(1)
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
