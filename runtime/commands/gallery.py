"""`siamese-gallery` (enrol many people into one SQLite gallery) and `siamese-identify` (who is
this? every face of an image, a folder, a video or a camera against a gallery)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click
from siamese.runtime.commands.liveness_options import liveness_options, warn_if_off
from siamese.runtime.commands.options import (
    build_verifier,
    emit,
    key_option,
    lookalike_option,
    min_photos_option,
    model_option,
    model_options,
    open_timeout_option,
    precision_option,
    quality_options,
    site_option,
    strict_quality_option,
    threshold_option,
    timeout_option,
    verbose_option,
)
from siamese.runtime.commands.support import (
    EXIT_NOT_VERIFIED,
    EXIT_OK,
    EXIT_USAGE,
    SiameseCommand,
    SiameseGroup,
    setup_logging,
)
from siamese.runtime.errors import ConfigError, IntegrityError, SiameseError

gallery_argument = click.argument("gallery", type=click.Path(path_type=Path))


def enrolment_options(command):
    """The options `gallery add` and `gallery import` share."""
    for option in reversed((lookalike_option, model_options, site_option, quality_options,
                            min_photos_option, precision_option, verbose_option)):
        command = option(command)
    return command


def _open(gallery, model, providers, cache_dir, key_file, create=False, site=None,
          threshold=None, quality=None, read_only=False):
    """The verifier on the gallery's own model (or --model for a new one), and the gallery."""
    from siamese.runtime.model_zoo import gallery_model
    from siamese.runtime.storage.gallery import Gallery
    from siamese.runtime.verifier import VerifyConfig
    from siamese.runtime.vision.quality import QualityConfig

    config = VerifyConfig(threshold=threshold, quality=quality or QualityConfig())
    verifier = build_verifier(gallery_model(gallery, model, "photos"), providers, cache_dir,
                              key_file, config, site)
    return verifier, Gallery.open(gallery, verifier, create=create, read_only=read_only)


def _warn_lookalikes(index, names: set[str], threshold: float, margin: float,
                     precision: int) -> None:
    for first, second, score in index.lookalikes(threshold - margin):
        if first in names or second in names:
            emit({"warning": "lookalike", "names": [first, second],
                  "score": round(score, precision), "threshold": round(threshold, 4),
                  "message": f"{first} and {second} score {score:.3f} against each other, within "
                             f"{margin:g} of the threshold: either may be taken for the other"})


@click.group(cls=SiameseGroup)
def gallery_main() -> None:
    """Manage a gallery of enrolled people (one SQLite file)."""


@gallery_main.command()
@gallery_argument
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--replace", is_flag=True, help="Replace NAME if already enrolled.")
@enrolment_options
def add(gallery, name, images, replace, lookalike_margin, model, providers, cache_dir, key_file,
        site, quality, min_photos, precision, verbose):
    """Enrol NAME from IMAGES (files or folders of one person) into GALLERY.

    Bad photos are skipped (one JSON line each) while --min-photos remain.
    """
    from siamese.runtime.enrolment import enroll_skipping

    setup_logging(verbose)
    verifier, store = _open(gallery, model, providers, cache_dir, key_file, True, site,
                            quality=quality)
    with store:
        result = enroll_skipping(verifier, name, images, min_photos)
        _emit_skipped(name, result.skipped)
        store.add(result.template, replace=replace)
        emit({"name": name, "status": "enrolled", "images": len(result.template.embeddings),
              "skipped_images": len(result.skipped)})
        _warn_lookalikes(store.index(), {name}, verifier.threshold, lookalike_margin, precision)


def _emit_skipped(name: str, skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        emit({"name": name, "status": "skipped_image", "image": path, "reason": reason})


@gallery_main.command(name="import")
@gallery_argument
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--replace", is_flag=True, help="Replace people already enrolled with other "
                                              "photos.")
@enrolment_options
def import_folder(gallery, folder, replace, lookalike_margin, model, providers, cache_dir,
                  key_file, site, quality, min_photos, precision, verbose):
    """Enrol every FOLDER/<person>/<images> into GALLERY (one JSON line per person).

    A bad photo is skipped (its own JSON line, with the reason) and the person enrolled while
    --min-photos good photos remain. A person already enrolled from the same photos is
    "unchanged": importing the same folder again (or rerunning a killed import) is safe.
    Exit 0: done, every person enrolled or unchanged, no photo skipped; 1: done with skips
    (photos or people skipped, each reported); 2: failed (bad input, or nobody enrolled);
    3: internal error.
    """
    from siamese.runtime.enrolment import enroll_skipping, same_photos

    setup_logging(verbose)
    if not folder.is_dir():
        raise ConfigError(f"no such folder: {folder}")
    verifier, store = _open(gallery, model, providers, cache_dir, key_file, True, site,
                            quality=quality)
    done, changed, skipped_people, skipped_images = 0, set(), 0, 0
    with store:
        existing = {template.name: template for template in store.templates()}
        for person in sorted(p for p in folder.iterdir() if p.is_dir()):
            try:
                result = enroll_skipping(verifier, person.name, [person], min_photos)
                before = existing.get(person.name)
                if before is not None and same_photos(before, result.template):
                    done += 1  # nothing to do: its skipped photos were reported when added
                    emit({"name": person.name, "status": "unchanged",
                          "skipped_images": len(result.skipped)})
                    continue
                _emit_skipped(person.name, result.skipped)
                skipped_images += len(result.skipped)
                store.add(result.template, replace=replace)
            except IntegrityError:
                raise
            except SiameseError as exc:
                skipped_people += 1
                emit({"name": person.name, "status": "skipped", "reason": str(exc)})
                continue
            done += 1
            changed.add(person.name)
            emit({"name": person.name, "status": "enrolled",
                  "images": len(result.template.embeddings),
                  "skipped_images": len(result.skipped)})
        if changed:
            _warn_lookalikes(store.index(), changed, verifier.threshold, lookalike_margin,
                             precision)
    total = done + skipped_people
    if not done:
        click.echo(f"error: nobody enrolled: {skipped_people} of {total} people skipped "
                   f"(reasons above)", err=True)
        sys.exit(EXIT_USAGE)
    if skipped_people or skipped_images:
        click.echo(f"done with skips: {done} of {total} people enrolled or unchanged, "
                   f"{skipped_people} people and {skipped_images} photos skipped (reasons "
                   f"above)", err=True)
        sys.exit(EXIT_NOT_VERIFIED)


@gallery_main.command(name="list")
@gallery_argument
@model_option
@key_option
@verbose_option
def list_people(gallery, model, key_file, verbose):
    """The people in GALLERY (each row's signature is checked)."""
    setup_logging(verbose)
    _, store = _open(gallery, model, None, None, key_file, read_only=True)
    with store:
        for template in store.templates():
            emit({"name": template.name, "images": len(template.embeddings)})


@gallery_main.command()
@gallery_argument
@click.argument("name")
@model_option
@key_option
@verbose_option
def remove(gallery, name, model, key_file, verbose):
    """Remove NAME from GALLERY (exit 1 when NAME was not enrolled)."""
    setup_logging(verbose)
    _, store = _open(gallery, model, None, None, key_file)
    with store:
        found = store.remove(name)
    emit({"name": name, "status": "removed" if found else "not_found"})
    sys.exit(EXIT_OK if found else 1)


@gallery_main.command()
@click.argument("url")
@click.option("--key", "door_key", required=True, envvar="SIAMESE_DOOR_KEY",
              help="This door's API key (scope door; env SIAMESE_DOOR_KEY).")
@click.option("--out", required=True, help="The door's gallery file (replaced atomically).")
@click.option("--center-key", required=True,
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The center's Ed25519 public key (the .pub beside its --signing-key).")
@click.option("--every", type=click.FloatRange(1, 86400), help="Keep pulling every SECONDS.")
@model_option
@key_option
@verbose_option
def pull(url, door_key, out, center_key, every, model, key_file, verbose):
    """Pull this door's signed snapshot from the center at URL into --out.

    A delta when --out holds an earlier one, else the whole set; one JSON line per pull. A
    snapshot not signed by --center-key, edited, truncated, or not newer is refused and --out
    kept. With --every, an unreachable center is reported and the door keeps its last good
    snapshot (its age is in every line).
    """
    import time

    from siamese.runtime.pull import check_center_url, pull_once
    from siamese.runtime.storage.fileio import check_output_path
    from siamese.runtime.storage.gallery import URL_SCHEMES
    from siamese.runtime.storage.snapshot import current_record, load_public_key

    setup_logging(verbose)
    check_center_url(url)
    if out.startswith(URL_SCHEMES):
        raise ConfigError(f"--out {out} is a URL; it must be the door's gallery file path")
    out = check_output_path(Path(out))
    public_key = load_public_key(center_key)
    verifier = build_verifier(model, None, None, key_file)
    while True:
        try:
            emit(pull_once(url, door_key, public_key, out, verifier).to_dict())
        except SiameseError as exc:
            if every is None:
                raise
            current = current_record(out, verifier)
            emit({"status": "failed", "reason": str(exc),
                  "snapshot": current.summary() if current else None})
        if every is None:
            return
        time.sleep(every)


@click.command(cls=SiameseCommand)
@click.option("--gallery", required=True, type=click.Path(path_type=Path),
              help="Gallery from siamese-gallery.")
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--camera", "source", help="Camera index, video file or stream URL.")
@click.option("--top-k", type=click.IntRange(1, 100), default=1, show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of JSON lines.")
@timeout_option
@open_timeout_option
@model_options
@threshold_option
@site_option
@quality_options
@strict_quality_option
@precision_option
@liveness_options
@verbose_option
def identify_main(gallery, inputs, source, top_k, as_csv, timeout, open_timeout, model,
                  providers, cache_dir, key_file, threshold, site, quality, strict_quality,
                  precision, liveness, verbose):
    """Who is in INPUTS (images or folders, searched recursively) or in --camera?

    Every face is searched in the gallery; one row per face: its box, the best match or
    "unknown" (below the FAR-calibrated threshold), the top-k candidates and the face's
    quality flags (turned, small, blurry, tilted: named all the same; --strict-quality makes
    them "unknown"). Exit 0 when at least one face was named, 1 when none was. With --liveness
    (camera only) the largest face must also pass the check, holding one identity; challenge
    prompts and a final line with the liveness result are printed as JSON.
    """
    from siamese.runtime.identify import UNKNOWN, identify_faces
    from siamese.runtime.storage.datasets_io import images_under
    from siamese.runtime.vision.imageio import read_image

    setup_logging(verbose)
    from siamese.runtime.vision.sources import is_live_spec

    if bool(inputs) == bool(source):
        raise ConfigError("give images or folders, or --camera SOURCE (not both)")
    is_live = bool(source) and is_live_spec(source)
    liveness, policy = liveness.resolve(is_live)
    warn_if_off(liveness.mode, is_live)
    if inputs and liveness.mode != "off":
        from siamese.runtime.liveness.check import check_mode_for_still

        reason = check_mode_for_still(liveness.mode)
        emit({"final": True, "decision": "not_identified", "liveness": {
            "mode": liveness.mode, "result": "failed", "reason": reason,
            **policy.to_dict()}})
        click.echo(f"not identified: {reason}", err=True)
        sys.exit(1)
    verifier, store = _open(gallery, model, providers, cache_dir, key_file, site=site,
                            threshold=threshold, quality=quality, read_only=True)
    from siamese.runtime.storage.snapshot import read_record

    with store:
        index, record = store.index(), read_record(store)
    if not len(index):
        raise ConfigError(f"gallery {gallery} has nobody enrolled")
    writer = _Rows(as_csv, precision, record)
    named = False

    def report(name: str, frame: int, image) -> None:
        nonlocal named
        for identity in identify_faces(verifier, image, index, top_k, strict=strict_quality):
            named |= identity.identity != UNKNOWN
            writer.row(name, frame, identity)

    if source:
        from siamese.runtime.session import TimedFrames, timeout_for
        from siamese.runtime.vision.sources import open_source

        with open_source(source, open_timeout) as stream:
            frames = TimedFrames(stream, timeout_for(stream, timeout))
            if liveness.mode != "off":
                from siamese.runtime.liveness.identity import identify_live

                live = identify_live(
                    verifier.detector.detect,
                    lambda image, faces: identify_faces(verifier, image, index, top_k,
                                                        faces=faces),
                    frames, liveness, lambda number, found: [
                        writer.row(source, number, i) for i in found], emit, UNKNOWN,
                    floor=verifier.consistency.pair_limit)
                emit({**live.final(), **writer.snapshot(),
                      "liveness": {**live.check.result(), **policy.to_dict()}})
                if live.check.failed:
                    click.echo(f"not identified: liveness failed: {live.check.reason}",
                               err=True)
                sys.exit(EXIT_OK if live.identified else 1)
            for frame in frames:
                report(source, frame.index, frame.image)
        if is_live:  # a door without liveness says so in its final line
            emit({"final": True, "decision": "identified" if named else "not_identified",
                  "liveness": {"mode": "off", **policy.to_dict()}})
    else:
        for item in inputs:
            paths = list(images_under(item)) if item.is_dir() else [item]
            for path in paths:
                try:
                    report(str(path), 0, read_image(path))
                except SiameseError as exc:
                    if not item.is_dir():
                        raise
                    click.echo(f"skipped {path}: {exc}", err=True)
    sys.exit(EXIT_OK if named else 1)


class _Rows:
    """JSON lines or CSV rows, one per face."""

    def __init__(self, as_csv: bool, precision: int, record=None) -> None:
        self.precision, self.record = precision, record  # record: a door's snapshot, or None
        self.csv = csv.writer(sys.stdout) if as_csv else None
        if self.csv:
            self.csv.writerow(["source", "frame", "face", "x", "y", "w", "h", "identity", "score",
                               "candidates", "quality_flags"])

    def snapshot(self) -> dict:
        """A door's snapshot generation and age, for every JSON line (empty elsewhere)."""
        return {"snapshot": self.record.summary()} if self.record is not None else {}

    def row(self, source: str, frame: int, identity) -> None:
        data = identity.to_dict(self.precision)
        if self.csv is None:
            emit({"source": source, "frame": frame, **data, **self.snapshot()})
            return
        candidates = ";".join(f"{c['name']}:{c['score']}" for c in data["candidates"])
        self.csv.writerow([source, frame, data["face"], *data["box"], data["identity"],
                           data["score"], candidates, ";".join(data["quality_flags"])])
        sys.stdout.flush()
