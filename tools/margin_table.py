"""Rerun the seed tutorial's margin table (triplet margin 0.5, 1.0, 2.0) and write it to docs/.

For each margin: the seed preset trained on LFW View 1's training people, then evaluated on
View 1 with the threshold from held-out training-side people. Columns: convergence (first epoch
whose validation AUC reaches 95% of the run's best), final training loss, View 1 accuracy,
all-pairs ROC AUC and d' (separation of genuine and impostor scores).

    python tools/margin_table.py --lfw-root ../shared/data/lfw --epochs 50
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import click
import torch
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.storage.fileio import write_text_atomic
from siamese.train.checkpoint import Checkpoint
from siamese.train.cli import open_faces
from siamese.train.config import PRESETS
from siamese.train.embedding import crop_embedder
from siamese.train.evaluate import evaluate_lfw
from siamese.train.trainer import Trainer


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


@click.command(cls=SiameseCommand)
@click.option("--lfw-root", type=click.Path(path_type=Path), required=True)
@click.option("--faces", "faces_dir", type=click.Path(path_type=Path))
@click.option("--cache-dir", type=click.Path(path_type=Path))
@click.option("--margins", default="0.5,1.0,2.0", show_default=True)
@click.option("--epochs", default=50, show_default=True)
@click.option("--warmup-epochs", type=int, help="[default: a tenth of the epochs, as the seed's "
              "5 of 50]")
@click.option("--device", default="auto", show_default=True)
@click.option("--runs", type=click.Path(path_type=Path), default=Path("runs/margins"))
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/margin_table.md"))
def main(lfw_root, faces_dir, cache_dir, margins, epochs, warmup_epochs, device, runs, out):
    """Train and evaluate the seed preset once per margin; write a markdown table."""
    faces, records, source, lfw = open_faces(lfw_root, None, cache_dir, True, faces_dir)
    rows = []
    for margin in (float(m) for m in margins.split(",")):
        warmup = warmup_epochs if warmup_epochs is not None else max(1, round(epochs / 10))
        config = PRESETS["seed"].updated(margin=margin, epochs=epochs, device=device,
                                         warmup_epochs=warmup)
        started = time.perf_counter()
        trainer = Trainer(config, faces, records, runs / f"margin-{margin:g}", source,
                          progress=False)
        result = trainer.run()
        seconds = time.perf_counter() - started
        best = Checkpoint.load(result.best_checkpoint)
        model = best.build_model().to(trainer.device)
        report = evaluate_lfw(crop_embedder(model, best.preprocess, trainer.device),
                              best.metric, best.calibration, lfw, faces, set(best.train_people))
        aucs = [r["val_auc"] for r in result.history]
        converged = next(r["epoch"] for r in result.history if r["val_auc"] >= 0.95 * max(aucs))
        rows.append((margin, converged, result.history[-1]["loss"], report, seconds,
                     hardware(trainer.device)))
        click.echo(f"margin {margin:g}: View 1 {100 * report['view1']['accuracy']:.2f}% "
                   f"in {seconds:.0f} s")
    lines = [
        f"# Seed margin table (measured {time.strftime('%Y-%m-%d')})", "",
        f"Seed preset (EmbeddingNet, triplet loss, Adam, batch 32, warm-up), {epochs} epochs "
        f"({max(1, round(epochs / 10)) if warmup_epochs is None else warmup_epochs} warm-up) "
        f"on LFW View 1 training people; hardware: {rows[0][5]}. Accuracy on pairsDevTest at "
        "the threshold chosen on held-out training-side people; AUC and d' over all pairs "
        "among the DevTest people's images. Produced by `tools/margin_table.py`.", "",
        "| margin | epochs to 95% of best val AUC | final train loss | View 1 accuracy | "
        "oracle accuracy | all-pairs AUC | d' | wall time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for margin, converged, loss, report, seconds, _ in rows:
        v1, ap = report["view1"], report["devtest_all_pairs"]
        lines.append(f"| {margin:g} | {converged} | {loss:.4f} | {100 * v1['accuracy']:.2f}% | "
                     f"{100 * v1['best_threshold_accuracy']:.2f}% | {ap['auc']:.4f} | "
                     f"{ap['d_prime']:.2f} | {seconds:.0f} s |")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(lines) + "\n")
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    main()
