"""What one server runs with: files, listening address, limits (every one has a bound)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from siamese.runtime.errors import ConfigError

MB = 1 << 20


@dataclass
class ServiceConfig:
    keys: Path
    gallery: Path | str  # a SQLite file, or a postgresql:// URL (central)
    audit: Path
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
    max_sessions: int = 64  # WebSocket sessions at once; more are closed with 1013
    session_frames: int = 60  # frames one session may send
    session_timeout_s: float = 30.0  # a session's life
    max_frame_bytes: int = 2 * MB
    signing_key: Path | None = None  # the center's Ed25519 key for door snapshots

    def check(self) -> None:
        """ConfigError for a server that must not start as configured."""
        if not self.keys.exists():
            raise ConfigError(f"no keys file at {self.keys}: there is no default key; create "
                              f"one with `siamese-serve keys add NAME --scope admin --keys "
                              f"{self.keys}`")
        if (self.cert is None) != (self.key is None):
            raise ConfigError("--cert and --key go together")
        if not is_loopback(self.host) and self.cert is None and not self.insecure:
            raise ConfigError(f"listening on {self.host} (beyond loopback) needs TLS "
                              f"(--cert and --key) or an explicit --insecure")
        for name in ("workers", "queue", "burst", "max_body_bytes", "max_pixels", "max_faces",
                     "max_images", "max_sessions", "session_frames", "max_frame_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        if not self.rate_per_s > 0 or not self.request_timeout_s > 0:
            raise ConfigError("rate and request timeout must be positive")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
