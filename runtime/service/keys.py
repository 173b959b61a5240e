"""API keys: random secrets shown once, stored only as salted SHA-256 hashes in a 0600 file.

A key is 32 random bytes (URL-safe base64 with a "sk-" prefix); with that much entropy one
salted SHA-256 is as strong as a slow hash, and checking every stored hash per request costs
microseconds. The server re-reads the file when it changes (contents, inode or mode: a file
made readable by others authorises nobody until it is private again), so `keys revoke` takes
effect without a restart. A key may expire (`expires`, seconds since the epoch).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from siamese.runtime.errors import ConfigError, StorageError
from siamese.runtime.storage.fileio import write_text_atomic
from siamese.runtime.storage.references import check_name

log = logging.getLogger("siamese.serve")

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
    expires: float | None = None

    def expired(self, now: float | None = None) -> bool:
        return self.expires is not None and (time.time() if now is None else now) >= self.expires

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


DURATION = re.compile(r"^(\d+)([smhdw])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_expiry(text: str, now: float | None = None) -> float:
    """`--expires`: a duration from now (90d, 12h, 30m, 2w) or a UTC date (2027-01-31 or
    2027-01-31T18:00); the moment in seconds since the epoch, which must lie ahead."""
    import datetime

    now = time.time() if now is None else now
    match = DURATION.match(text.strip())
    if match:
        moment = now + int(match.group(1)) * UNITS[match.group(2)]
    else:
        try:
            when = datetime.datetime.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(f"--expires {text!r}: give a duration (90d, 12h) or a date "
                              f"(2027-01-31)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        moment = when.timestamp()
    if moment <= now:
        raise ConfigError(f"--expires {text!r} is not in the future")
    return moment


def add_key(path: str | Path, name: str, scope: str, expires: float | None = None) -> str:
    """Create a key named `name` with `scope` in `path` (created 0600); return the secret.
    `expires`: when it stops working (seconds since the epoch), None for never."""
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
                            hashlib.sha256(salt + key.encode()).hexdigest(), time.time(),
                            expires))
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
        # chmod changes neither mtime, size nor inode: the mode and ctime are in the stamp
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino, info.st_mode, info.st_ctime_ns)
        if stamp != self._stamp:  # a file that fails its checks authorises nobody
            self._entries, self._stamp = [], stamp
            try:
                self._entries = load_entries(self.path)
            except ConfigError as exc:
                log.error("every key refused until the keys file is fixed: %s", exc)
                raise

    def authenticate(self, key: str) -> KeyEntry | None:
        """The entry whose hash `key` matches, else None (every entry is checked)."""
        try:
            self.refresh()
        except (ConfigError, StorageError):
            return None  # a broken or loosened file authorises nobody
        found, now = None, time.time()
        for entry in self._entries:
            if entry.matches(key) and not entry.expired(now):
                found = entry
        return found
