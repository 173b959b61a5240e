"""`siamese-train` and `siamese-eval`: thin click layers over Trainer and evaluate_lfw."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import click
from siamese.runtime.commands.support import SiameseCommand, setup_logging
from siamese.runtime.errors import DatasetError
from siamese.train.config import ARCHITECTURES, PRESETS, TrainConfig

DEFAULT_PRESET = "first"
POOR_AUC = 0.9  # below this validation AUC a model confuses or rejects people: say so


def _default(name: str) -> str:
    """The help text's default: the default preset's value of a TrainConfig field."""
    return f"[default: the preset's; {DEFAULT_PRESET}: {getattr(PRESETS[DEFAULT_PRESET], name)}]"

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
    for name in ("distill", "distill_online", "distill_morphs", "extra_faces", "extra_distill",
                 "init"):
        if overrides.get(name) is not None:
            overrides[name] = str(overrides[name])
    head = overrides.pop("head", None)
    config = PRESETS[preset].updated(**overrides)
    if head is not None:
        config = replace(config, head=None if head == "none" else head)
    return config


TRAIN_HELP = f"""Train a Siamese embedding network on LFW View 1's training people or on a folder.

Architectures (--arch): {", ".join(ARCHITECTURES)}. Ctrl-C keeps a checkpoint of the
epochs so far (last.pt, and best.pt when none was written yet) and exits 130. A run that
ends inside its warm-up, or whose validation AUC is below {POOR_AUC:g}, is warned about.
"""


@click.command(cls=SiameseCommand, help=TRAIN_HELP)
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET,
              show_default=True, help="Recipe. first: a first run on your own folder on a "
              "2-core CPU (docs/OWN_FACES.md); seed: the tutorial (2.3 h on LFW on 2 cores); "
              "edge, edge-distill, edge-distill-l, seed-tricks: docs/TRAINING.md.")
@lfw_option
@click.option("--folder", type=click.Path(path_type=Path), help="Faces as ROOT/<person>/<images>.")
@cache_option
@faces_option
@click.option("--out", type=click.Path(path_type=Path),
              help="Run folder [default: runs/PRESET-TIME].")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path),
              help="Continue the run in this folder from its last.pt.")
@click.option("--epochs", type=click.IntRange(1), help=_default("epochs"))
@click.option("--arch", type=click.Choice(ARCHITECTURES), help=_default("arch"))
@click.option("--loss", type=click.Choice(["triplet", "batch-hard", "semi-hard", "none"]),
              help=_default("loss"))
@click.option("--margin", type=float, help=_default("margin"))
@click.option("--head", type=click.Choice(["cosface", "arcface", "none"]),
              help="Margin-softmax head; none drops the preset's " + _default("head"))
@click.option("--augment/--no-augment", default=None, help=_default("augment"))
@click.option("--l2/--no-l2", "l2_normalize", default=None,
              help="L2-normalise embeddings " + _default("l2_normalize"))
@click.option("--hard-mining", "hard_mining_every", type=click.IntRange(0),
              help="Re-mine hard triplets every N epochs (0: off) " + _default("hard_mining_every"))
@click.option("--ratio", "negatives_per_positive", type=click.IntRange(1, 10),
              help="Negatives per positive (1:N) for fixed triplets "
                   + _default("negatives_per_positive"))
@click.option("--distill", type=click.Path(path_type=Path),
              help="Teacher embeddings .npz (tools/teacher_embeddings.py) to distil from.")
@click.option("--distill-online", type=click.Path(path_type=Path),
              help="An ONNX embedder in siamese-edge format (e.g. runtime/models/sface.onnx) "
                   "run by torch on the training device: its embedding of every augmented view "
                   "is the target (no --distill file; targets are not centred).")
@click.option("--distill-morphs", type=click.Path(path_type=Path),
              help="Teacher embeddings of morphs (tools/teacher_embeddings.py --morphs), "
                   "distilled alongside --distill.")
@click.option("--extra-faces", type=click.Path(path_type=Path),
              help="A prepared cache of unlabelled faces (siamese-data prepare --unlabelled) "
                   "distilled alongside --distill.")
@click.option("--extra-distill", type=click.Path(path_type=Path),
              help="The teacher's embeddings of those faces (e.g. tools/dedupe_extra_faces.py "
                   "output).")
@click.option("--extra-augment/--no-extra-augment", default=None,
              help="Augment the extra faces too, or use them as cached (augmented views with "
                   "their own targets: tools/teacher_embeddings.py --views) "
                   + _default("extra_augment"))
@click.option("--distill-centre", type=click.Choice(["train", "none"]),
              help="Centre teacher targets on the training mean (dlib) or not (SFace) "
                   + _default("distill_centre"))
@click.option("--init", type=click.Path(path_type=Path),
              help="Start from a packaged model (edge), an FP32 ONNX export of an edge-resnet, "
                   "or a checkpoint (same arch; a new schedule).")
@click.option("--batch-size", type=click.IntRange(1),
              help="Triplets per batch (fixed triplets) " + _default("batch_size"))
@click.option("--lr", type=float, help=_default("lr"))
@click.option("--warmup-epochs", type=click.IntRange(0), help=_default("warmup_epochs"))
@click.option("--val-fraction", type=float,
              help="People held out for thresholds " + _default("val_fraction"))
@click.option("--seed", type=int, help=_default("seed"))
@click.option("--device", type=str, help="auto, cpu or cuda[:N] " + _default("device"))
@click.option("--quiet", is_flag=True)
@click.option("-v", "--verbose", is_flag=True)
def train_main(preset, lfw_root, folder, cache_dir, faces_dir, out, resume_dir, quiet, verbose,
               **overrides):
    from siamese.train.checkpoint import Checkpoint
    from siamese.train.trainer import Trainer

    setup_logging(verbose)
    if resume_dir is not None:
        last = Checkpoint.load(resume_dir / "last.pt")
        config = last.config.updated(epochs=overrides.get("epochs"))
        out = resume_dir
        if lfw_root is None and folder is None and faces_dir is None and last.source:
            # the run remembers its data: `--resume runs/X` alone continues it
            lfw_root, folder = ((Path(last.source.root), None) if last.source.kind == "lfw"
                                else (None, Path(last.source.root)))
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
    if config.epochs <= config.warmup_epochs:
        click.echo(f"warning: {config.epochs} epoch(s) end inside the {config.warmup_epochs}-epoch "
                   f"warm-up (learning rate {config.warmup_lr:g}): the model will barely learn; "
                   f"give --epochs well above {config.warmup_epochs} (docs/OWN_FACES.md)",
                   err=True)
    started = time.perf_counter()
    try:
        result = trainer.run()
    except KeyboardInterrupt:
        kept = trainer.interrupted_checkpoint
        click.echo("interrupted: " + (f"checkpoint of {trainer.epochs_done} epoch(s) kept: "
                                      f"{kept} (continue with --resume {out})" if kept
                                      else "no checkpoint written"), err=True)
        sys.exit(130)
    best = max(result.history, key=lambda r: r["val_auc"]) if result.history else None
    click.echo(f"done in {time.perf_counter() - started:.0f} s; best val AUC "
               f"{best['val_auc']:.4f} at epoch {best['epoch']}" if best else "nothing to train")
    click.echo(f"checkpoint: {result.best_checkpoint}")
    if best and best["val_auc"] < POOR_AUC:
        click.echo(f"warning: validation AUC {best['val_auc']:.3f} is poor (< {POOR_AUC:g}): "
                   f"this model will reject or confuse people; train longer (--epochs) or on "
                   f"more people before exporting it", err=True)


@click.command(cls=SiameseCommand)
@click.argument("checkpoint", metavar="CHECKPOINT|MODEL")
@lfw_option
@click.option("--folder", type=click.Path(path_type=Path, file_okay=False),
              help="Evaluate on this folder's people the model did not train on [default, "
                   "without --lfw-root: a checkpoint's own training folder (its held-out "
                   "people)].")
@cache_option
@faces_option
@click.option("--out", type=click.Path(path_type=Path), help="[default: beside a checkpoint, "
              "in its eval/ folder; for an ONNX model runs/eval-NAME/ here]")
@click.option("--view2", is_flag=True, help="Also LFW View 2 (flagged when people overlap).")
@click.option("--device", default="auto", show_default=True)
@click.option("--quiet", is_flag=True)
def eval_main(checkpoint, lfw_root, folder, cache_dir, faces_dir, out, view2, device, quiet):
    """Evaluate a checkpoint, an exported .onnx model or a packaged model by name (edge, sface;
    see siamese-models) on LFW: View 1 accuracy, ROC AUC, EER, TAR@FAR; or on a folder's people
    (a checkpoint's: those it did not train on): every pair among them. Report and plots
    (report.json, roc.png, tsne.png), their paths printed."""
    from siamese.runtime import model_zoo
    from siamese.train.calibration import Calibration
    from siamese.train.checkpoint import Checkpoint
    from siamese.train.embedding import crop_embedder, resolve_device
    from siamese.train.evaluate import evaluate_lfw, write_report

    if lfw_root is not None and folder is not None:
        raise DatasetError("give --lfw-root DIR or --folder DIR, not both")
    packaged = checkpoint in model_zoo.PACKAGED  # a name: edge, sface, ...
    label = checkpoint if packaged else Path(checkpoint).stem
    checkpoint = model_zoo.resolve(checkpoint) if packaged else Path(checkpoint)
    if checkpoint.suffix == ".onnx":
        from siamese.runtime.embedder import Embedder

        embedder = Embedder(checkpoint)
        out = out or Path("runs") / f"eval-{label}"  # never into the installed package
        info = embedder.info
        embed, metric, trained = embedder.embed, info.metric, set()
        calibration = Calibration(accuracy_threshold=info.accuracy_threshold,
                                  far_threshold=info.threshold, target_far=info.threshold_far)
        # an ONNX file does not list its training people: overlap cannot be checked
        details = dict(model=str(checkpoint), arch=info.arch, variant=info.variant,
                       calibration=calibration.to_dict(), training_people="unknown (ONNX model)")
        title, source = f"{info.arch} {info.variant}", None
    else:
        state = Checkpoint.load(checkpoint)
        torch_device = resolve_device(device)
        model = state.build_model().to(torch_device)
        embed = crop_embedder(model, state.preprocess, torch_device)
        metric, calibration, trained = state.metric, state.calibration, set(state.train_people)
        details = dict(checkpoint=str(checkpoint), arch=state.arch, epoch=state.epoch,
                       calibration=state.calibration.to_dict())
        title, source = state.arch, state.source
    if lfw_root is None and folder is None:
        if source is None or source.kind != "folder":
            raise DatasetError("give --lfw-root DIR (or set SIAMESE_LFW_ROOT) or --folder DIR")
        folder = Path(source.root)
        if not folder.is_dir():
            raise DatasetError(f"the training folder {folder} is gone: give --folder DIR")
    out = out or Path(checkpoint).parent / "eval"
    if folder is not None:
        _eval_folder(embed, metric, calibration, trained, folder, cache_dir, faces_dir, quiet,
                     details, title, out, held_out=checkpoint.suffix != ".onnx")
        return
    faces, _, _, lfw = open_faces(lfw_root, None, cache_dir, quiet, faces_dir)
    report = evaluate_lfw(embed, metric, calibration, lfw, faces, trained, view2=view2)
    report.update(details)
    path = write_report(report, out, title)
    v1, ap = report["view1"], report["devtest_all_pairs"]
    click.echo(f"LFW View 1: accuracy {100 * v1['accuracy']:.2f}% at the held-out threshold "
               f"(oracle best {100 * v1['best_threshold_accuracy']:.2f}%)")
    _echo_all_pairs("DevTest all pairs", ap)
    if "view2" in report:
        v2 = report["view2"]
        click.echo(f"LFW View 2: {100 * v2['accuracy_mean']:.2f} +- {100 * v2['accuracy_std']:.2f}%"
                   + (f"  [{v2['warning']}]" if v2["warning"] else ""))
    _echo_paths(path)


def _eval_folder(embed, metric, calibration, trained, folder, cache_dir, faces_dir, quiet,
                 details, title, out, held_out: bool) -> None:
    """Every pair among the folder's people; `held_out`: the model's training people are known
    and left out (a checkpoint), else (an ONNX file) all are evaluated and not called held-out."""
    from siamese.train.evaluate import write_report
    from siamese.train.folder_eval import evaluate_folder

    faces, _, _, _ = open_faces(None, folder, cache_dir, quiet, faces_dir)
    report = evaluate_folder(embed, metric, calibration, faces, trained)
    if held_out:
        note = ("the held-out people of the training folder are also the people its thresholds "
                "were chosen on: a first check, not an independent test")
    else:
        report["people"] = report.pop("held_out_people")
        note = ("an ONNX file does not list its training people: every person of the folder is "
                "evaluated; if the model trained on them, this is not a test")
    report.update(details, folder=str(folder), note=note)
    path = write_report(report, out, title, people="held-out" if held_out else "the folder's")
    pairs, ap = report["folder_pairs"], report["folder_all_pairs"]
    people = "held-out people" if held_out else "people (training people unknown)"
    click.echo(f"{folder}: {ap['people']} {people}, {ap['images']} images; accuracy "
               f"{100 * pairs['accuracy']:.2f}% on {pairs['pairs']} balanced pairs at the "
               f"model's threshold (oracle best {100 * pairs['best_threshold_accuracy']:.2f}%)")
    _echo_all_pairs("all pairs", ap)
    _echo_paths(path)


def _echo_all_pairs(label: str, ap: dict) -> None:
    click.echo(f"{label} ({ap['genuine_pairs']} genuine, {ap['impostor_pairs']} impostor): AUC "
               f"{ap['auc']:.4f}, EER {100 * ap['eer']:.2f}%, TAR@FAR "
               + ", ".join(f"{k}: {100 * v:.1f}%" for k, v in ap["tar_at_far"].items()))
    cal = ap["calibrated"]
    click.echo(f"calibrated threshold {cal['threshold']:.4f} (target FAR {cal['target_far']:g}): "
               f"measured FAR {cal['far']:.2e}, TAR {100 * cal['tar']:.1f}%")


def _echo_paths(report: Path) -> None:
    click.echo(f"report: {report}")
    for name in ("roc.png", "tsne.png"):
        if (report.parent / name).is_file():
            click.echo(f"{name.split('.')[0]}: {report.parent / name}")
