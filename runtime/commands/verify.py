"""`siamese-verify` and `siamese-enroll`: thin click layers over Verifier and its session.

Exit status: 0 verified / done, 1 not verified (mismatch or timeout), 2 bad input or usage,
3 internal error; one line on stderr for 2 and 3 (details with -v).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from siamese.runtime.commands.liveness_options import liveness_options, warn_if_off
from siamese.runtime.commands.options import (
    build_verifier,
    emit,
    min_photos_option,
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
    SiameseCommand,
    setup_logging,
)
from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.prompts import prompt_text


@click.command(cls=SiameseCommand)
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--store", type=click.Path(path_type=Path),
              help="Template file to write [default: NAME.json in the current folder].")
@model_options
@quality_options
@min_photos_option
@verbose_option
def enroll_main(name, images, store, model, providers, cache_dir, key_file, quality, min_photos,
                verbose):
    """Enroll NAME from IMAGES (files or folders of one person; one face per image).

    A photo without a usable face is skipped (named on stderr, with its reason) while at
    least --min-photos remain. Exit 0: enrolled; 2: not enough usable photos or bad input.
    """
    from siamese.runtime.enrolment import enroll_skipping
    from siamese.runtime.storage.references import check_name, save_template
    from siamese.runtime.verifier import VerifyConfig

    setup_logging(verbose)
    check_name(name)
    verifier = build_verifier(model, providers, cache_dir, key_file, VerifyConfig(quality=quality))
    result = enroll_skipping(verifier, name, images, min_photos)
    _note_skipped(result.skipped)
    store = store or Path(f"{name}.json")
    save_template(result.template, store, verifier.key)
    click.echo(f"enrolled {name!r} from {len(result.template.embeddings)} image(s) -> {store}"
               + (f" ({len(result.skipped)} skipped)" if result.skipped else ""))


def _note_skipped(skipped: list[tuple[str, str]]) -> None:
    for path, reason in skipped:
        click.echo(f"skipped {path}: {reason}", err=True)


def _reference(verifier, ref: Path, min_photos: int):
    """--ref: a template, an image, or a folder whose bad photos are skipped (named)."""
    from siamese.runtime.enrolment import enroll_skipping, reference_name
    from siamese.runtime.storage.references import is_template

    if not ref.is_dir() or is_template(ref):
        return verifier.load_reference(ref)
    result = enroll_skipping(verifier, reference_name(ref), [ref], min_photos)
    _note_skipped(result.skipped)
    return result.template


@click.command(cls=SiameseCommand)
@click.option("--ref", required=True, type=click.Path(path_type=Path),
              help="Reference: an image, a folder of images, or a template from siamese-enroll.")
@click.option("--camera", "source", help="Camera index, video file, or stream URL (RTSP, HTTP).")
@click.option("--image", type=click.Path(path_type=Path), help="Verify one still image.")
@model_options
@threshold_option
@site_option
@click.option("--votes", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="K: matching frames needed among the last N scored frames.")
@click.option("--window", type=click.IntRange(1, 1000), default=5, show_default=True, help="N.")
@timeout_option
@open_timeout_option
@quality_options
@min_photos_option
@precision_option
@click.option("--show", is_flag=True, help="Draw a window with box, score and decision.")
@liveness_options
@verbose_option
def verify_main(ref, source, image, model, providers, cache_dir, key_file, threshold, site,
                votes, window, timeout, open_timeout, quality, min_photos, precision, show,
                liveness, verbose):
    """Is the person in front of the camera (or in the image) the reference person?

    One JSON line per frame on stdout (and one per challenge prompt with --liveness active),
    then a final line. A video file stops at the first verified vote. Exit 0: verified; 1: not
    verified (mismatch, liveness failed, timeout); 2: bad input or usage; 3: internal error.
    """
    from siamese.runtime.liveness.check import check_mode_for_still
    from siamese.runtime.session import small_face_hint, timeout_for
    from siamese.runtime.verifier import VerifyConfig
    from siamese.runtime.vision.imageio import read_image
    from siamese.runtime.vision.sources import is_live_spec, open_source

    setup_logging(verbose)
    if (source is None) == (image is None):
        raise ConfigError("give exactly one of --camera SOURCE or --image FILE")
    live = source is not None and is_live_spec(source)
    liveness, policy = liveness.resolve(live)
    warn_if_off(liveness.mode, live)
    config = VerifyConfig(threshold=threshold, votes_needed=votes, window=window,
                          quality=quality)
    if image is not None and check_mode_for_still(liveness.mode):
        reason = check_mode_for_still(liveness.mode)
        _final("not_verified", None, precision, liveness={
            "mode": liveness.mode, "result": "failed", "reason": reason, **policy.to_dict()})
        click.echo(f"not verified: {reason}", err=True)
        sys.exit(EXIT_NOT_VERIFIED)
    verifier = build_verifier(model, providers, cache_dir, key_file, config, site)
    template = _reference(verifier, ref, min_photos)
    if image is not None:
        decision = verifier.verify(read_image(image), template)
        decision.verified = decision.match
        emit(decision.to_dict(precision))
        small = decision.quality is not None and "small" in decision.quality.flags
        _final("verified" if decision.match else "not_verified", verifier.threshold, precision,
               small_face_hint(decision.quality.face_px, quality.min_face_px) if small
               else None)
        sys.exit(EXIT_OK if decision.match else EXIT_NOT_VERIFIED)

    display = None
    with open_source(source, open_timeout) as stream:
        session = verifier.session(stream, template, timeout_for(stream, timeout), liveness)
        if show:
            from siamese.runtime.vision.display import Display

            display = Display.open()
        try:
            for decision in session:
                for prompt in session.events:
                    emit(prompt)
                event = decision.to_dict(precision)
                if stream.reconnects:
                    event["reconnects"] = stream.reconnects
                emit(event)
                if display is not None:
                    display.draw(session.frame.image, decision, verifier.threshold,
                                 prompt_text(session.liveness))
                session.events.clear()
        finally:
            if display is not None:
                display.close()
    result = session.liveness.result()
    if session.liveness.failed:
        click.echo(f"not verified: liveness failed: {session.liveness.reason}", err=True)
    _final(session.outcome, verifier.threshold, precision, session.hint(),
           {**result, **policy.to_dict()})
    sys.exit(EXIT_OK if session.verified else EXIT_NOT_VERIFIED)


def _final(outcome: str, threshold: float | None, precision: int, hint: str | None = None,
           liveness: dict | None = None) -> None:
    event = {"time": round(time.time(), 3), "final": True, "decision": outcome}
    if threshold is not None:
        event["threshold"] = round(threshold, max(precision, 4))
    if liveness is not None:
        event["liveness"] = liveness
    if hint:
        event["hint"] = hint
        click.echo(f"note: {hint}", err=True)
    emit(event)


@click.command(cls=SiameseCommand)
@click.argument("first", type=click.Path(path_type=Path))
@click.argument("second", type=click.Path(path_type=Path))
@model_options
@threshold_option
@site_option
@quality_options
@strict_quality_option
@precision_option
@verbose_option
def compare_main(first, second, model, providers, cache_dir, key_file, threshold, site,
                 quality, strict_quality, precision, verbose):
    """Do the photos FIRST and SECOND show the same person (one face each)?

    Prints one JSON line (score, same_person, threshold, quality_flags of each face: turned,
    small or blurred faces are compared and flagged; --strict-quality refuses them). Exit 0:
    same person; 1: not; 2: bad input or usage; 3: internal error.
    """
    from siamese.runtime.verifier import VerifyConfig

    setup_logging(verbose)
    verifier = build_verifier(model, providers, cache_dir, key_file,
                              VerifyConfig(threshold=threshold, quality=quality), site,
                              use="photos")
    result = verifier.compare(first, second, strict=strict_quality)
    emit(result.to_dict(precision))
    sys.exit(EXIT_OK if result.same_person else EXIT_NOT_VERIFIED)
