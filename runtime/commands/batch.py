"""`siamese-calibrate` (a site threshold from your own labelled faces) and `siamese-embed`
(embeddings of a folder for your own pipelines)."""

from __future__ import annotations

import time
from pathlib import Path

import click
from siamese.runtime.commands.options import (
    build_verifier,
    cache_option,
    emit,
    key_option,
    model_option,
    providers_option,
    quality_options,
    strict_quality_option,
    verbose_option,
)
from siamese.runtime.commands.support import FiniteFloat, SiameseCommand, setup_logging


@click.command(cls=SiameseCommand)
@click.option("--folder", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Labelled faces as FOLDER/<person>/<images> (at least two people).")
@click.option("--far", type=FiniteFloat(1e-9, 0.5), default=1e-3, show_default=True,
              help="False accept rate the threshold is chosen for (shown with 95% confidence: "
                   "it needs about 3/FAR impostor pairs).")
@click.option("--allow-below-model", is_flag=True,
              help="Write a threshold below the model's own (it accepts more impostors).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("site.json"),
              show_default=True, help="Signed site calibration to write.")
@model_option
@providers_option
@cache_option
@key_option
@quality_options
@verbose_option
def calibrate_main(folder, far, allow_below_model, out, model, providers, cache_dir, key_file,
                   quality, verbose):
    """Measure a decision threshold on your own faces; use it with --site OUT.

    Every pair of photos is scored: same person (genuine) and different people (impostor).
    The threshold is the lowest whose false accept rate the impostor pairs show to be at most
    --far with 95% confidence; too few pairs exit 2 saying how many pairs and people it needs.
    A threshold below the model's own needs --allow-below-model.
    """
    from siamese.runtime.calibration import calibrate_folder, save_site
    from siamese.runtime.storage.fileio import check_output_path
    from siamese.runtime.verifier import VerifyConfig

    setup_logging(verbose)
    check_output_path(out)  # before the work, not after it
    verifier = build_verifier(model, providers, cache_dir, key_file,
                              VerifyConfig(quality=quality))
    site = calibrate_folder(verifier, folder, far, allow_below_model)
    save_site(site, out, verifier.key)
    emit({"site": str(out), "threshold": round(site.threshold, 4),
          "model_threshold": round(verifier.embedder.info.threshold, 4), "target_far": far,
          "measured_far": site.measured_far, "far_upper_95": site.far_upper_95,
          "false_accepts": site.false_accepts, "tar": round(site.tar, 4),
          "genuine_pairs": site.genuine_pairs, "impostor_pairs": site.impostor_pairs,
          "people": site.people, "images": site.images, "skipped_images": site.skipped_images,
          "warning": site.warning})
    if site.warning:
        click.echo(f"warning: {site.warning}", err=True)


@click.command(cls=SiameseCommand)
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="embeddings.npz (paths, faces, boxes, embeddings) or embeddings.csv.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Faces per onnxruntime call.")
@click.option("--all-faces", is_flag=True,
              help="Every face of each image [default: its dominant face].")
@model_option
@providers_option
@quality_options
@strict_quality_option
@verbose_option
def embed_main(folder, out, batch_size, all_faces, model, providers, quality, strict_quality,
               verbose):
    """Embeddings of every image under FOLDER (recursive), for your own pipelines.

    Each face carries its quality flags (turned, small, blurry, tilted; a column of the CSV,
    an array of the .npz); --strict-quality skips such faces instead.
    """
    from siamese.runtime.batch import embed_folder, write_table
    from siamese.runtime.storage.fileio import check_output_path
    from siamese.runtime.verifier import VerifyConfig

    setup_logging(verbose)
    check_output_path(out)
    verifier = build_verifier(model, providers, None, None, VerifyConfig(quality=quality),
                              use="photos")
    started = time.perf_counter()
    table = embed_folder(verifier, folder, batch_size, all_faces, strict_quality)
    seconds = time.perf_counter() - started
    write_table(table, out, verifier.dim, verifier.embedder.fingerprint)
    for path, reason in table.skipped:
        click.echo(f"skipped {path}: {reason}", err=True)
    emit({"out": str(out), "faces": len(table.embeddings), "skipped_images": len(table.skipped),
          "seconds": round(seconds, 2),
          "images_per_s": round((len(set(table.paths)) + len(table.skipped)) / max(seconds, 1e-9),
                                1)})
