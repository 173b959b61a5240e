"""`siamese-train` and `siamese-eval`: thin click layers over Trainer and evaluate_lfw."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import click
from siamese.runtime.commands.support import SiameseCommand, setup_logging
from siamese.runtime.errors import DatasetError
from siamese.train.config import PRESETS, TrainConfig

lfw_option = click.option("--lfw-root", type=click.Path(path_type=Path), envvar="SIAMESE_LFW_ROOT",
                          help="Extracted LFW tree [env SIAMESE_LFW_ROOT].")
cache_option = click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                            help="Aligned-face cache root [default: ~/.cache/siamese].")
faces_option = click.option("--faces", "faces_dir", type=click.Path(path_type=Path),
                            help="Use this prepared cache folder as it is (e.g. one copied from "
                                 "another machine); with --lfw-root only the protocol files are "
                                 "read.")


def open_faces(lfw_root: Path | None, folder: Path | None, cache_dir: Path | None,
               quiet: bool, faces_dir: Path | None = None) -> tuple:
    """(aligned faces, training records, TrainingSource, LFW or None)."""
    from siamese.train import face_cache
    from siamese.train.checkpoint import TrainingSource
    from siamese.train.datasets import read_folder
    from siamese.train.lfw import LFW

    if (lfw_root is None) == (folder is None):
        raise DatasetError("give exactly one of --lfw-root DIR or --folder DIR")
    if faces_dir is not None:
        faces = face_cache.open_prepared(faces_dir)
        if lfw_root is None:
            return faces, faces.select(), TrainingSource("folder", str(faces.image_root)), None
    if lfw_root is not None:
        lfw = LFW(lfw_root)
        if faces_dir is None:
            faces, _ = face_cache.prepare("lfw", lfw.image_root, lfw.images, cache_dir,
                                          progress=not quiet)
        records = faces.select(set(lfw.view1_train_people))
        return faces, records, TrainingSource("lfw", str(lfw.root.resolve()),
                                              "peopleDevTrain"), lfw
    images = read_folder(folder)
    faces, _ = face_cache.prepare("folder", folder, images, cache_dir, progress=not quiet)
    return faces, faces.select(), TrainingSource("folder", str(Path(folder).resolve())), None


def preset_config(preset: str, **overrides) -> TrainConfig:
    """A preset with command-line overrides (None leaves a setting; head "none" drops it)."""
    for name in ("distill", "distill_morphs", "extra_faces", "extra_distill", "init"):
        if overrides.get(name) is not None:
            overrides[name] = str(overrides[name])
    head = overrides.pop("head", None)
    config = PRESETS[preset].updated(**overrides)
    if head is not None:
        config = replace(config, head=None if head == "none" else head)
    return config


@click.command(cls=SiameseCommand)
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="seed", show_default=True)
@lfw_option
@click.option("--folder", type=click.Path(path_type=Path), help="Faces as ROOT/<person>/<images>.")
@cache_option
@faces_option
@click.option("--out", type=click.Path(path_type=Path),
              help="Run folder [default: runs/PRESET-TIME].")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue the run in this folder from its last.pt.")
@click.option("--epochs", type=click.IntRange(1))
@click.option("--arch", type=str)
@click.option("--loss", type=click.Choice(["triplet", "batch-hard", "semi-hard", "none"]))
@click.option("--margin", type=float)
@click.option("--head", type=click.Choice(["cosface", "arcface", "none"]),
              help="Margin-softmax head; none drops the preset's.")
@click.option("--augment/--no-augment", default=None)
@click.option("--l2/--no-l2", "l2_normalize", default=None, help="L2-normalise embeddings.")
@click.option("--hard-mining", "hard_mining_every", type=click.IntRange(0),
              help="Re-mine hard triplets every N epochs (0: off).")
@click.option("--ratio", "negatives_per_positive", type=click.IntRange(1, 10),
              help="Negatives per positive (1:N) for fixed triplets.")
@click.option("--distill", type=click.Path(path_type=Path),
              help="Teacher embeddings .npz (tools/teacher_embeddings.py) to distil from.")
@click.option("--distill-morphs", type=click.Path(path_type=Path),
              help="Teacher embeddings of morphs (tools/teacher_embeddings.py --morphs), "
                   "distilled alongside --distill.")
@click.option("--extra-faces", type=click.Path(path_type=Path),
              help="A prepared cache of unlabelled faces (siamese-data prepare --unlabelled) "
                   "distilled alongside --distill.")
@click.option("--extra-distill", type=click.Path(path_type=Path),
              help="The teacher's embeddings of those faces (e.g. tools/dedupe_extra_faces.py "
                   "output).")
@click.option("--distill-centre", type=click.Choice(["train", "none"]),
              help="Centre teacher targets on the training mean (dlib) or not (SFace).")
@click.option("--init", type=click.Path(path_type=Path),
              help="Start from this checkpoint's weights (same arch; a new schedule).")
@click.option("--batch-size", type=click.IntRange(1))
@click.option("--lr", type=float)
@click.option("--warmup-epochs", type=click.IntRange(0))
@click.option("--val-fraction", type=float)
@click.option("--seed", type=int)
@click.option("--device", type=str, help="auto, cpu or cuda[:N].")
@click.option("--quiet", is_flag=True)
@click.option("-v", "--verbose", is_flag=True)
def train_main(preset, lfw_root, folder, cache_dir, faces_dir, out, resume_dir, quiet, verbose,
               **overrides):
    """Train a Siamese embedding network on LFW View 1's training people or on a folder."""
    from siamese.train.checkpoint import Checkpoint
    from siamese.train.trainer import Trainer

    setup_logging(verbose)
    if resume_dir is not None:
        config = Checkpoint.load(resume_dir / "last.pt").config.updated(
            epochs=overrides.get("epochs"))
        out = resume_dir
    else:
        config = preset_config(preset, **overrides)
        out = out or Path("runs") / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"
    config.validate()
    faces, records, source, _ = open_faces(lfw_root, folder, cache_dir, quiet, faces_dir)
    trainer = Trainer(config, faces, records, out, source, progress=not quiet)
    if resume_dir is not None:
        trainer.resume(resume_dir / "last.pt")
    click.echo(f"training {config.arch} on {len(trainer.train)} images of "
               f"{len(trainer.train.identities)} people ({len(trainer.val)} images of "
               f"{len(trainer.val_people)} held-out people for thresholds) on {trainer.device}")
    started = time.perf_counter()
    result = trainer.run()
    best = max(result.history, key=lambda r: r["val_auc"]) if result.history else None
    click.echo(f"done in {time.perf_counter() - started:.0f} s; best val AUC "
               f"{best['val_auc']:.4f} at epoch {best['epoch']}" if best else "nothing to train")
    click.echo(f"checkpoint: {result.best_checkpoint}")


@click.command(cls=SiameseCommand)
@click.argument("checkpoint", type=click.Path(path_type=Path))
@lfw_option
@cache_option
@faces_option
@click.option("--out", type=click.Path(path_type=Path), help="[default: beside the checkpoint]")
@click.option("--view2", is_flag=True, help="Also LFW View 2 (flagged when people overlap).")
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True)
def eval_main(checkpoint, lfw_root, cache_dir, faces_dir, out, view2, device, quiet):
    """Evaluate a checkpoint (or an exported .onnx model) on LFW: View 1 accuracy, ROC AUC, EER,
    TAR@FAR; report and plots."""
    from siamese.train.calibration import Calibration
    from siamese.train.checkpoint import Checkpoint
    from siamese.train.embedding import crop_embedder, resolve_device
    from siamese.train.evaluate import evaluate_lfw, write_report

    if lfw_root is None:
        raise DatasetError("give --lfw-root DIR (or set SIAMESE_LFW_ROOT)")
    if Path(checkpoint).suffix == ".onnx":
        from siamese.runtime.embedder import Embedder

        embedder = Embedder(checkpoint)
        info = embedder.info
        faces, _, _, lfw = open_faces(lfw_root, None, cache_dir, quiet, faces_dir)
        calibration = Calibration(accuracy_threshold=info.accuracy_threshold,
                                  far_threshold=info.threshold, target_far=info.threshold_far)
        # an ONNX file does not list its training people: overlap cannot be checked
        report = evaluate_lfw(embedder.embed, info.metric, calibration, lfw, faces, set(),
                              view2=view2)
        report.update(model=str(checkpoint), arch=info.arch, variant=info.variant,
                      calibration=calibration.to_dict(),
                      training_people="unknown (ONNX model)")
        title = f"{info.arch} {info.variant}"
    else:
        state = Checkpoint.load(checkpoint)
        torch_device = resolve_device(device)
        model = state.build_model().to(torch_device)
        faces, _, _, lfw = open_faces(lfw_root, None, cache_dir, quiet, faces_dir)
        report = evaluate_lfw(crop_embedder(model, state.preprocess, torch_device), state.metric,
                              state.calibration, lfw, faces, set(state.train_people),
                              view2=view2)
        report.update(checkpoint=str(checkpoint), arch=state.arch, epoch=state.epoch,
                      calibration=state.calibration.to_dict())
        title = state.arch
    out = out or Path(checkpoint).parent / "eval"
    path = write_report(report, out, title)
    v1, ap = report["view1"], report["devtest_all_pairs"]
    click.echo(f"LFW View 1: accuracy {100 * v1['accuracy']:.2f}% at the held-out threshold "
               f"(oracle best {100 * v1['best_threshold_accuracy']:.2f}%)")
    click.echo(f"DevTest all pairs ({ap['genuine_pairs']} genuine, {ap['impostor_pairs']} "
               f"impostor): AUC {ap['auc']:.4f}, EER {100 * ap['eer']:.2f}%, TAR@FAR "
               + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in ap["tar_at_far"].items()))
    cal = ap["calibrated"]
    click.echo(f"calibrated threshold {cal['threshold']:.4f} (target FAR {cal['target_far']:g}): "
               f"measured FAR {cal['far']:.2e}, TAR {100 * cal['tar']:.1f}%")
    if "view2" in report:
        v2 = report["view2"]
        click.echo(f"LFW View 2: {100 * v2['accuracy_mean']:.2f} +- {100 * v2['accuracy_std']:.2f}%"
                   + (f"  [{v2['warning']}]" if v2["warning"] else ""))
    click.echo(f"report: {path}")
