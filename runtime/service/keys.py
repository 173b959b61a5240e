"""API keys: random secrets shown once, stored only as salted SHA-256 hashes in a 0600 file.

A key is 32 random bytes (URL-safe base64 with a "sk-" prefix); with that much entropy one
salted SHA-256 is as strong as a slow hash, and checking every stored hash per request costs
microseconds. The server re-reads the file when it changes, so `keys revoke` takes effect
without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from siamese.runtime.errors import ConfigError, StorageError
from siamese.runtime.storage.fileio import write_text_atomic
from siamese.runtime.storage.references import check_name

KEYS_FORMAT = "siamese-keys-1"
SCOPES = ("admin", "door")
PREFIX = "sk-"


@dataclass(frozen=True)
class KeyEntry:
    name: str
    scope: str
    salt: str
    hash: str
    created: float

    def matches(self, key: str) -> bool:
        digest = hashlib.sha256(bytes.fromhex(self.salt) + key.encode("utf-8")).hexdigest()
        return hmac.compare_digest(digest, self.hash)


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        raise ConfigError(f"keys file {path} is not a regular file")
    if mode & 0o077:
        raise ConfigError(f"keys file {path} is readable by others (mode {mode & 0o777:o}): "
                          f"chmod 600 it")


def load_entries(path: Path) -> list[KeyEntry]:
    """The entries of a keys file; ConfigError when it is missing, loose or malformed."""
    if not path.exists():
        raise ConfigError(f"no keys file at {path}: create a key with "
                          f"`siamese-serve keys add NAME --scope admin --keys {path}`")
    _check_private(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != KEYS_FORMAT:
            raise ValueError("not a siamese-edge keys file")
        entries = [KeyEntry(**row) for row in data["keys"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigError(f"keys file {path} is unreadable: {exc}") from None
    for entry in entries:
        if entry.scope not in SCOPES:
            raise ConfigError(f"keys file {path}: key {entry.name!r} has unknown scope "
                              f"{entry.scope!r}")
    return entries


def _save(path: Path, entries: list[KeyEntry]) -> None:
    text = json.dumps({"format": KEYS_FORMAT, "keys": [asdict(e) for e in entries]}, indent=1)
    write_text_atomic(path, text + "\n", mode=0o600)


def add_key(path: str | Path, name: str, scope: str) -> str:
    """Create a key named `name` with `scope` in `path` (created 0600); return the secret."""
    path = Path(path)
    check_name(name)
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    entries = load_entries(path) if path.exists() else []
    if any(e.name == name for e in entries):
        raise ConfigError(f"a key named {name!r} exists in {path}: revoke it first")
    key = PREFIX + secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    entries.append(KeyEntry(name, scope, salt.hex(),
                            hashlib.sha256(salt + key.encode()).hexdigest(), time.time()))
    _save(path, entries)
    return key


def revoke_key(path: str | Path, name: str) -> None:
    path = Path(path)
    entries = load_entries(path)
    kept = [e for e in entries if e.name != name]
    if len(kept) == len(entries):
        raise ConfigError(f"no key named {name!r} in {path}")
    _save(path, kept)


class KeyStore:
    """The server's view of a keys file, re-read whenever the file changes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[KeyEntry] = []
        self.refresh()
        if not self._entries:
            raise ConfigError(f"keys file {self.path} holds no key: add one with "
                              f"`siamese-serve keys add`")

    def refresh(self) -> None:
        try:
            info = os.stat(self.path)
        except OSError as exc:
            raise StorageError(f"keys file {self.path}: {exc.strerror}") from None
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp != self._stamp:
            self._entries, self._stamp = load_entries(self.path), stamp

    def authenticate(self, key: str) -> KeyEntry | None:
        """The entry whose hash `key` matches, else None (every entry is checked)."""
        try:
            self.refresh()
        except (ConfigError, StorageError):
            return None  # a broken or loosened file authorises nobody
        found = None
        for entry in self._entries:
            if entry.matches(key):
                found = entry
        return found
