"""What one server runs with: files, listening address, limits (every one has a bound)."""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from siamese.runtime.errors import ConfigError
from siamese.runtime.liveness.policy import LivenessPolicy

MB = 1 << 20


@dataclass
class ServiceConfig:
    keys: Path
    gallery: Path | str  # a SQLite file, or a postgresql:// URL (central)
    audit: Path
    audit_key: Path | None = None  # default: AUDIT.key (keep it apart from the log)
    model: Path | None = None
    threshold: float | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    cert: Path | None = None
    key: Path | None = None
    insecure: bool = False
    cors: tuple[str, ...] = ()
    workers: int = field(default_factory=lambda: max(1, len(os.sched_getaffinity(0))))
    queue: int = 32  # requests waiting for a worker beyond those running; more -> 429
    rate_per_s: float = 50.0  # sustained requests per second per key
    burst: int = 100  # requests a key may make at once
    max_body_bytes: int = 20 * MB  # a request body (all its files together); more -> 413
    max_pixels: int = 20_000_000  # declared by one image's header; more -> 413
    max_faces: int = 20  # faces identify names in one image; more -> 422
    max_images: int = 10  # photos in one enrolment
    request_timeout_s: float = 15.0  # a request's work; longer -> 503
    body_timeout_s: float = 10.0  # a request's body must arrive within this; later -> 408
    auth_timeout_s: float = 5.0  # a WebSocket's start message (its key) within this
    max_sessions: int = 64  # WebSocket sessions at once; more are closed with 1013
    session_frames: int = 450  # frames one session may send (30 s at 15 fps: a challenge)
    session_timeout_s: float = 30.0  # a session's life
    max_frame_bytes: int = 2 * MB
    signing_key: Path | None = None  # the center's Ed25519 key for door snapshots
    # the site's liveness policy for sessions; a key cannot weaken it (docs/SERVE.md)
    liveness: LivenessPolicy = field(default_factory=lambda: LivenessPolicy("active"))

    @property
    def audit_key_path(self) -> Path:
        from siamese.runtime.service.audit import default_key_path

        return self.audit_key or default_key_path(self.audit)

    def check(self) -> None:
        """ConfigError for a server that must not start as configured: every file checked
        before any is created (keys, audit log and key, gallery)."""
        from siamese.runtime.service.audit import load_key, verify_log
        from siamese.runtime.service.keys import load_entries

        if not self.keys.exists():
            raise ConfigError(f"no keys file at {self.keys}: there is no default key; create "
                              f"one with `siamese-serve keys add NAME --scope admin --keys "
                              f"{self.keys}`")
        if not load_entries(self.keys):
            raise ConfigError(f"keys file {self.keys} holds no key: add one with "
                              f"`siamese-serve keys add`")
        if isinstance(self.gallery, Path):  # a URL is a central store, checked when opened
            _check_writable("gallery", self.gallery)
        _check_writable("audit log", self.audit)
        if self.audit.exists():
            verify_log(self.audit, load_key(self.audit_key_path))
        elif self.audit_key_path.exists():
            load_key(self.audit_key_path)
        else:
            _check_writable("audit key", self.audit_key_path)
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--cert and --key go together")
        if not is_loopback(self.host) and self.cert is None and not self.insecure:
            raise ConfigError(f"listening on {self.host} (beyond loopback) needs TLS "
                              f"(--cert and --key) or an explicit --insecure")
        for name in ("workers", "queue", "burst", "max_body_bytes", "max_pixels", "max_faces",
                     "max_images", "max_sessions", "session_frames", "max_frame_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not self.rate_per_s > 0 or not self.request_timeout_s > 0 \
                or not self.body_timeout_s > 0 or not self.auth_timeout_s > 0:
            raise ConfigError("rate and timeouts must be positive")


def _check_writable(what: str, path: Path) -> None:
    """A file path (never a URL) whose folder exists and can be written."""
    if "://" in str(path):
        raise ConfigError(f"{what} {path} is a URL: give a file path")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{what} {path} is not a regular file")
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{what} {path}: folder {folder} does not exist")
    target = path if path.exists() else folder
    if not os.access(target, os.W_OK):
        raise ConfigError(f"{what} {path} cannot be written")


def check_port(host: str, port: int) -> None:
    """ConfigError when `host:port` cannot be bound (in use, or not an address of ours)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
