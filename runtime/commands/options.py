"""Options shared by the runtime's commands, and the verifier they build."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from siamese.runtime.commands.support import FiniteFloat


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
                                 "ONNX file [default: the packaged edge model].")
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


