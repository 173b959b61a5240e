"""Options shared by the runtime's commands, and the verifier they build."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click
from siamese.runtime.commands.support import FiniteFloat
from siamese.runtime.vision.quality import QualityConfig


def _model(ctx, param, value):
    """A packaged model's name (siamese-models lists them) becomes its file; a path stays."""
    if value is None:
        return None
    from siamese.runtime.errors import ModelError
    from siamese.runtime.model_zoo import resolve

    try:
        return resolve(value)
    except ModelError as exc:
        raise click.BadParameter(str(exc)) from None


model_option = click.option("--model", callback=_model, metavar="NAME|PATH",
                            help="Packaged model name (edge, sface; see siamese-models) or an "
                                 "ONNX file [default: edge for the door commands (verify, enroll, "
                                 "calibrate), sface for the photo commands (compare, embed); "
                                 "gallery and identify use the model the gallery records (sface "
                                 "for a new one)].")
providers_option = click.option("--providers", help="onnxruntime providers, comma-separated "
                                "(e.g. CUDAExecutionProvider,CPUExecutionProvider).")
cache_option = click.option("--cache-dir", type=click.Path(path_type=Path),
                            help="Reference-embedding cache [default: $SIAMESE_CACHE/refs or "
                                 "~/.cache/siamese/refs].")
key_option = click.option("--key-file", type=click.Path(path_type=Path), envvar="SIAMESE_KEY_FILE",
                          help="Key that signs templates and cached embeddings [env "
                               "SIAMESE_KEY_FILE; default ~/.config/siamese/template.key, "
                               "created 0600 on first use].")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Log details; tracebacks.")
precision_option = click.option("--precision", type=click.IntRange(0, 8), default=4,
                                show_default=True, help="Decimal places of scores.")
site_option = click.option("--site", type=click.Path(path_type=Path), envvar="SIAMESE_SITE",
                           help="Site calibration from siamese-calibrate: its threshold replaces "
                                "the model's [env SIAMESE_SITE].")
threshold_option = click.option("--threshold", type=FiniteFloat(),
                                help="Override the threshold (cosine: between 0 and 1).")


lookalike_option = click.option(
    "--lookalike-margin", type=FiniteFloat(0, 1), default=0.05, show_default=True,
    help="Warn when two people score within this margin of the threshold.")
timeout_option = click.option(
    "--timeout", type=FiniteFloat(0, 86_400, low_open=True),
    help="Give up after this many seconds, whatever the source does [default: 30 for cameras "
         "and streams, none for video files].")
open_timeout_option = click.option(
    "--open-timeout", type=FiniteFloat(0, 3600), default=10.0, show_default=True,
    help="Seconds to keep trying to open a camera or stream before giving up.")


_QUALITY = QualityConfig()
QUALITY_OPTIONS = (
    click.option("--min-face", type=FiniteFloat(1, 10_000), default=_QUALITY.min_face_px,
                 show_default=True, help="Quality gate: smallest face, shorter side of the "
                                         "detector's box in pixels (AT&T's 92x112 photos: 40)."),
    click.option("--min-sharpness", type=FiniteFloat(0, 1e6), default=_QUALITY.min_sharpness,
                 show_default=True, help="Quality gate: least sharpness (variance of the "
                                         "Laplacian of the aligned crop)."),
    click.option("--max-yaw", type=FiniteFloat(0, 10), default=_QUALITY.max_yaw,
                 show_default=True, help="Quality gate: most head turn (nose offset from the "
                                         "eye midpoint, in eye distances)."),
    click.option("--max-roll", type=FiniteFloat(0, 180), default=_QUALITY.max_roll_deg,
                 show_default=True, help="Quality gate: most head tilt in degrees."),
)
strict_quality_option = click.option(
    "--strict-quality", is_flag=True,
    help="Refuse faces that fail the quality gate [default: answer, with their quality flags].")
min_photos_option = click.option(
    "--min-photos", type=click.IntRange(1, 10_000), default=1, show_default=True,
    help="Photos that must pass for a person to be enrolled; bad photos are skipped, each "
         "named with its reason.")


def quality_options(command):
    """--min-face, --min-sharpness, --max-yaw and --max-roll, passed on as one `quality`
    (a QualityConfig): the same gate and defaults on every command that detects faces."""

    @functools.wraps(command)
    def wrapper(*args, min_face, min_sharpness, max_yaw, max_roll, **kwargs):
        quality = QualityConfig(min_face_px=min_face, min_sharpness=min_sharpness,
                                max_yaw=max_yaw, max_roll_deg=max_roll)
        return command(*args, quality=quality, **kwargs)

    for option in reversed(QUALITY_OPTIONS):
        wrapper = option(wrapper)
    return wrapper


def model_options(command):
    """--model, --providers, --cache-dir and --key-file: what builds a Verifier."""
    for option in (key_option, cache_option, providers_option, model_option):
        command = option(command)
    return command


def _providers(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def build_verifier(model, providers, cache_dir, key_file, config=None, site=None, use="door"):
    """A Verifier (without --model, the packaged default for `use`: "door" or "photos"); a site
    calibration's threshold applies unless the config sets one."""
    from siamese.runtime.calibration import load_site
    from siamese.runtime.model_zoo import resolve
    from siamese.runtime.storage.integrity import load_or_create_key
    from siamese.runtime.verifier import Verifier

    key = load_or_create_key(key_file)
    verifier = Verifier.from_model(resolve(model, use), _providers(providers), config, cache_dir,
                                   key=key)
    if site is not None and verifier.config.threshold is None:
        calibration = load_site(site, verifier.embedder.fingerprint, key)
        verifier.use_threshold(calibration.threshold)
    return verifier


def emit(event: dict) -> None:
    click.echo(json.dumps(event, allow_nan=False))
    sys.stdout.flush()


