"""`siamese-verify` and `siamese-enroll`: thin click layers over Verifier."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from siamese.runtime.cli_support import setup_logging, user_errors
from siamese.runtime.errors import SiameseError
from siamese.runtime.quality import QualityConfig

EXIT_VERIFIED, EXIT_NOT_VERIFIED = 0, 1

model_option = click.option("--model", type=click.Path(path_type=Path),
                            help="ONNX embedding model [default: the packaged model].")
providers_option = click.option("--providers", help="onnxruntime providers, comma-separated "
                                "(e.g. CUDAExecutionProvider,CPUExecutionProvider).")
cache_option = click.option("--cache-dir", type=click.Path(path_type=Path),
                            help="Reference-embedding cache [default: ~/.cache/siamese/refs].")


def _providers(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _emit(event: dict) -> None:
    click.echo(json.dumps(event), nl=True)
    sys.stdout.flush()


@click.command()
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--store", type=click.Path(path_type=Path),
              help="Template file to write [default: NAME.json].")
@model_option
@providers_option
@cache_option
@user_errors
def enroll_main(name, images, store, model, providers, cache_dir):
    """Enroll NAME from IMAGES (files or folders; each image must show exactly one face)."""
    from siamese.runtime.references import save_template
    from siamese.runtime.verifier import Verifier

    verifier = Verifier.from_model(model, _providers(providers), cache_dir=cache_dir)
    template = verifier.enroll(name, images)
    store = store or Path(f"{name}.json")
    save_template(template, store)
    click.echo(f"enrolled {name!r} from {len(template.embeddings)} image(s) -> {store}")


@click.command()
@click.option("--ref", required=True, type=click.Path(path_type=Path),
              help="Reference: an image, a folder of images, or a template from siamese-enroll.")
@click.option("--camera", "source", help="Camera index, video file, or stream URL (RTSP, HTTP).")
@click.option("--image", type=click.Path(path_type=Path), help="Verify one still image.")
@model_option
@providers_option
@cache_option
@click.option("--threshold", type=float, help="Override the model's calibrated threshold.")
@click.option("--votes", type=click.IntRange(1), default=3, show_default=True,
              help="K: matching frames needed among the last N scored frames.")
@click.option("--window", type=click.IntRange(1), default=5, show_default=True, help="N.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True),
              help="Give up after this many seconds [default: 30 for cameras and streams, "
                   "none for video files].")
@click.option("--open-timeout", type=click.FloatRange(0), default=10.0, show_default=True,
              help="Seconds to keep trying to open a camera or stream before giving up.")
@click.option("--min-face", type=float, default=QualityConfig.min_face_px, show_default=True,
              help="Minimum face size in pixels.")
@click.option("--show", is_flag=True, help="Draw a window with box, score and decision.")
@click.option("-v", "--verbose", is_flag=True)
@user_errors
def verify_main(ref, source, image, model, providers, cache_dir, threshold, votes, window, timeout,
                open_timeout, min_face, show, verbose):
    """Is the person in front of the camera (or in the image) the reference person?

    One JSON line per frame on stdout. Exit 0: verified; 1: not verified (mismatch or
    timeout); 2: error.
    """
    from siamese.runtime.imageio import read_image
    from siamese.runtime.sources import open_source
    from siamese.runtime.verifier import Verifier, VerifyConfig

    setup_logging(verbose)
    if (source is None) == (image is None):
        raise SiameseError("give exactly one of --camera SOURCE or --image FILE")
    if votes > window:
        raise SiameseError(f"--votes ({votes}) cannot exceed --window ({window})")
    config = VerifyConfig(threshold=threshold, votes_needed=votes, window=window,
                          quality=QualityConfig(min_face_px=min_face))
    verifier = Verifier.from_model(model, _providers(providers), config, cache_dir)
    template = verifier.load_reference(ref)
    if image is not None:
        decision = verifier.verify(read_image(image), template)
        decision.verified = decision.match
        _emit(decision.to_dict())
        sys.exit(EXIT_VERIFIED if decision.match else EXIT_NOT_VERIFIED)

    stream = open_source(source, open_timeout)
    timeout = timeout if timeout is not None else (30.0 if stream.live else None)
    display = None
    if show:
        from siamese.runtime.display import Display

        display = Display.open()
    started = time.monotonic()
    seen: dict = {}
    verified = False
    try:
        decisions = verifier.stream(_until(stream.frames(), started, timeout, seen), template)
        for decision in decisions:
            event = decision.to_dict()
            if getattr(stream, "reconnects", 0):
                event["reconnects"] = stream.reconnects
            _emit(event)
            if display is not None:
                display.draw(seen["frame"].image, decision, verifier.threshold)
            if decision.verified:
                verified = True
                break
        if not verified and not stream.live:
            verified = verifier.last_vote.final()
    finally:
        stream.close()
        if display is not None:
            display.close()
    timed_out = timeout is not None and time.monotonic() - started >= timeout
    _emit({"time": round(time.time(), 3), "final": True,
           "decision": "verified" if verified else ("timeout" if timed_out else "not_verified"),
           "threshold": verifier.threshold})
    sys.exit(EXIT_VERIFIED if verified else EXIT_NOT_VERIFIED)


def _until(frames, started: float, timeout: float | None, seen: dict):
    """Frames until the timeout passes; the latest one is kept in seen["frame"]."""
    for frame in frames:
        if timeout is not None and time.monotonic() - started >= timeout:
            return
        seen["frame"] = frame
        yield frame

