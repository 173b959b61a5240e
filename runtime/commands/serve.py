"""`siamese-serve`: run the HTTP service, manage its API keys, check its audit log."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from siamese.runtime.commands.support import (
    EXIT_NOT_VERIFIED,
    FiniteFloat,
    SiameseGroup,
    setup_logging,
)
from siamese.runtime.errors import IntegrityError
from siamese.runtime.liveness.check import MODES

keys_option = click.option("--keys", "keys_file", required=True,
                           type=click.Path(path_type=Path, dir_okay=False),
                           help="The API keys file (salted hashes only, mode 0600).")


@click.group(cls=SiameseGroup)
def serve_main() -> None:
    """An authenticated HTTP service over the runtime (needs the `serve` extra)."""


@serve_main.command("run")
@keys_option
@click.option("--gallery", required=True,
              help="The gallery the people routes use: a SQLite file (created when absent) or "
                   "a central postgresql://... URL shared by several servers.")
@click.option("--signing-key", type=click.Path(path_type=Path, dir_okay=False),
              help="The center's Ed25519 key for door snapshots (created 0600 when absent, its "
                   "public key beside it as .pub; default: beside the template key).")
@click.option("--audit", type=click.Path(path_type=Path, dir_okay=False),
              help="The audit log (default: GALLERY.audit.jsonl).")
@click.option("--audit-key", type=click.Path(path_type=Path, dir_okay=False),
              help="The audit chain's HMAC key, 0600, kept apart from the log (default: "
                   "AUDIT.key; created with a new log).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--cert", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="TLS certificate (PEM); with --key.")
@click.option("--key", "tls_key", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="TLS private key (PEM).")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP beyond loopback.")
@click.option("--cors", multiple=True, help="An origin allowed cross-site (repeatable).")
@click.option("--model", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="ONNX embedding model (default: the one the gallery was made with; for a "
                   "new gallery the packaged door model, edge).")
@click.option("--threshold", type=FiniteFloat(), help="Decision threshold (default: the model's).")
@click.option("--workers", type=click.IntRange(1, 256), help="Worker threads (default: cores).")
@click.option("--queue", default=32, show_default=True, type=click.IntRange(0, 10_000),
              help="Requests that may wait for a worker; beyond it: 429.")
@click.option("--rate", default=50.0, show_default=True, type=FiniteFloat(0, 1e6, True),
              help="Requests per second per key (burst: twice that).")
@click.option("--max-body-mb", default=20.0, show_default=True, type=FiniteFloat(0, 1024, True))
@click.option("--timeout", "timeout_s", default=15.0, show_default=True,
              type=FiniteFloat(0, 3600, True), help="Seconds of work per request; beyond: 503.")
@click.option("--liveness", "liveness_mode", type=click.Choice(MODES), default=None,
              help="The site's liveness policy for sessions (default: active, or the env "
                   "SIAMESE_LIVENESS); a key cannot weaken it, and single-still routes make no "
                   "door decision under it (docs/SERVE.md).")
@click.option("--override-site-liveness", "override_site", is_flag=True,
              help="Run a --liveness weaker than SIAMESE_LIVENESS (logged at start).")
@click.option("-v", "--verbose", is_flag=True)
def run(keys_file, gallery, signing_key, audit, audit_key, host, port, cert, tls_key, insecure,
        cors, model, threshold, workers, queue, rate, max_body_mb, timeout_s, liveness_mode,
        override_site, verbose) -> None:
    """Serve until SIGINT/SIGTERM (requests in flight finish first)."""
    setup_logging(verbose)
    from siamese.runtime.liveness.policy import SITE_ENV, resolve_policy
    from siamese.runtime.service.config import ServiceConfig, check_port
    from siamese.runtime.service.server import serve
    from siamese.runtime.service.state import Service
    from siamese.runtime.storage.galleries import gallery_spec

    policy = resolve_policy(liveness_mode, os.environ.get(SITE_ENV), live=True,
                            override=override_site)
    gallery = gallery_spec(gallery)
    if audit is None:
        audit = (gallery.with_name(gallery.name + ".audit.jsonl") if isinstance(gallery, Path)
                 else Path(f"siamese-serve-{port}.audit.jsonl"))
    config = ServiceConfig(keys=keys_file, gallery=gallery, audit=audit, audit_key=audit_key,
                           model=model, threshold=threshold, host=host, port=port, cert=cert,
                           key=tls_key, insecure=insecure, cors=tuple(cors), queue=queue,
                           rate_per_s=rate, burst=max(1, int(2 * rate)),
                           max_body_bytes=int(max_body_mb * (1 << 20)),
                           request_timeout_s=timeout_s, signing_key=signing_key,
                           liveness=policy)
    if workers:
        config.workers = workers
    config.check()  # every file, before anything is created or printed
    check_port(host, port)
    if not isinstance(gallery, Path):  # a center: its doors need the public key at once
        from siamese.runtime.storage.snapshot import (
            default_signing_key_path,
            load_or_create_signing_key,
        )

        config.signing_key = signing_key or default_signing_key_path()
        load_or_create_signing_key(config.signing_key)
        click.echo(f"door snapshots signed with {config.signing_key} (give the doors "
                   f"{config.signing_key}.pub)", err=True)
    state = Service.start(config)
    click.echo(f"siamese-serve on {'https' if cert else 'http'}://{host}:{port} "
               f"({config.workers} workers, liveness {policy.mode}"
               + (f", overriding the site's {policy.site}" if policy.override else "") + ")",
               err=True)
    serve(state)


@serve_main.group("keys")
def keys_group() -> None:
    """Create, list and revoke API keys."""


@keys_group.command("add")
@click.argument("name")
@click.option("--scope", required=True, type=click.Choice(["admin", "door"]),
              help="admin: everything; door: compare, identify, verify, sessions, list.")
@click.option("--expires", help="When the key stops working: a duration (90d, 12h, 2w) or a "
                                "UTC date (2027-01-31). Default: never.")
@keys_option
def keys_add(name, scope, expires, keys_file) -> None:
    """Create a key; it is printed once (the last line), only its salted hash is stored."""
    from siamese.runtime.service.keys import add_key, parse_expiry

    moment = None if expires is None else parse_expiry(expires)
    key = add_key(keys_file, name, scope, moment)
    until = "" if moment is None else f", expires {_utc(moment)}"
    click.echo(f"key {name!r} ({scope}{until}) added to {keys_file}; it is shown once, store "
               f"it now:")
    click.echo(key)


def _utc(moment: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


@keys_group.command("list")
@keys_option
def keys_list(keys_file) -> None:
    """Name, scope, creation time and expiry of each key (never a secret)."""
    from siamese.runtime.service.keys import load_entries

    for entry in load_entries(keys_file):
        expiry = "never" if entry.expires is None else _utc(entry.expires) + (
            " (expired)" if entry.expired() else "")
        click.echo(f"{entry.name}\t{entry.scope}\t{_utc(entry.created)}\texpires {expiry}")


@keys_group.command("revoke")
@click.argument("name")
@keys_option
def keys_revoke(name, keys_file) -> None:
    """Remove a key; a running server refuses it from its next request."""
    from siamese.runtime.service.keys import revoke_key

    revoke_key(keys_file, name)
    click.echo(f"key {name!r} revoked")


@serve_main.group("audit")
def audit_group() -> None:
    """The hash-chained audit log."""


@audit_group.command("verify")
@click.argument("log", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_file", type=click.Path(path_type=Path, dir_okay=False),
              help="The audit key (default: LOG.key).")
def audit_verify(log, key_file) -> None:
    """Exit 0 when the chain is intact (prints its length and head), 1 naming the first bad
    line when a line was edited, inserted or removed (or its MAC was recomputed without the
    key)."""
    from siamese.runtime.service.audit import default_key_path, load_key, verify_log

    key = load_key(key_file or default_key_path(log))
    try:
        head = verify_log(log, key)
    except IntegrityError as exc:
        click.echo(f"not verified: {exc}", err=True)
        sys.exit(EXIT_NOT_VERIFIED)
    click.echo(f"audit log {log}: {head.lines} lines intact, head {head.hash}")
