"""The audit log: one JSON line per decision or admin change, each chained to the one before
with a key the log does not hold.

Every line carries `seq` (its line number from 1), `prev` (the previous line's MAC, 64 zeros
for the first) and `mac` = HMAC-SHA256(key, the line's canonical JSON without `mac`). The key
(32 random bytes, hex, in a 0600 file the operator keeps apart from the log: `--audit-key`)
never enters the log, so whoever can write the log but not read the key cannot edit a line,
insert one or rebuild the chain after an edit: every MAC would have to be recomputed, which
needs the key. What they can do is cut lines from the end (a shorter chain stays valid) or
delete the file: compare the head (GET /v1/audit/head, `audit verify`'s output) with a copy
kept elsewhere, and a running server answers 503 for every decision once its log is gone.

Lines are written and fsynced BEFORE the change they record is committed (enrol, remove) and
before a decision is answered; a line that cannot be written stops the decision (503).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from siamese.runtime.errors import ConfigError, IntegrityError, StorageError
from siamese.runtime.storage.fileio import write_text_atomic

GENESIS = "0" * 64


def default_key_path(log: str | Path) -> Path:
    """Where the audit key lives unless `--audit-key` says otherwise: beside the log."""
    return Path(str(log) + ".key")


def create_key(path: str | Path) -> bytes:
    """A new random audit key in `path` (mode 0600); refuses to replace one."""
    path = Path(path)
    if path.exists():
        raise ConfigError(f"audit key {path} exists: a new key would orphan its log")
    key = secrets.token_bytes(32)
    write_text_atomic(path, key.hex() + "\n", mode=0o600)
    return key


def load_key(path: str | Path) -> bytes:
    """The audit key of a private (0600) file; ConfigError naming what is wrong."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        raise ConfigError(f"no audit key at {path} (--audit-key)") from None
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
        raise ConfigError(f"audit key {path} must be a regular file only its owner can read "
                          f"(chmod 600)")
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError, UnicodeDecodeError):
        raise ConfigError(f"audit key {path} is not a hex key") from None
    if len(key) < 16:
        raise ConfigError(f"audit key {path} is too short")
    return key


def _canonical(entry: dict) -> bytes:
    body = {k: v for k, v in entry.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: bytes, entry: dict) -> str:
    return hmac.new(key, _canonical(entry), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    lines: int
    hash: str


def verify_log(path: str | Path, key: bytes) -> ChainHead:
    """The head of a valid chain, or IntegrityError naming the first bad line."""
    path = Path(path)
    prev, seq = GENESIS, 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise StorageError(f"cannot read audit log {path}: {exc.strerror}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            where = f"audit log {path} line {number}"
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                raise IntegrityError(f"{where} is not a JSON object: edited") from None
            if "mac" not in entry and "hash" in entry:
                raise IntegrityError(f"{where} is an unkeyed line (an audit log from before "
                                     f"keyed chains): archive the log and start a new one")
            if not hmac.compare_digest(str(entry.get("mac")), _mac(key, entry)):
                raise IntegrityError(f"{where} was edited (its MAC does not match the key)")
            if entry.get("seq") != seq + 1 or entry.get("prev") != prev:
                raise IntegrityError(f"{where} does not follow line {number - 1}: a line was "
                                     f"inserted or removed before it (its seq is "
                                     f"{entry.get('seq')}, expected {seq + 1})")
            prev, seq = entry["mac"], entry["seq"]
    return ChainHead(seq, prev)


class AuditLog:
    """Appends chained lines to `path` (mode 0600), one writer per process, fsynced per line;
    refuses to write (StorageError) once the file at `path` is not the one it opened."""

    def __init__(self, path: str | Path, key: bytes) -> None:
        self.path, self._key = Path(path), key
        self._lock = threading.Lock()
        self.head = verify_log(self.path, key) if self.path.exists() else ChainHead(0, GENESIS)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open audit log {self.path}: {exc.strerror}") from None
        self._fd = fd
        info = os.fstat(fd)
        self._identity = (info.st_dev, info.st_ino)

    def _check_file(self) -> None:
        """The log must still be the file we append to (not deleted, moved or replaced)."""
        try:
            now = os.stat(self.path)
        except OSError:
            raise StorageError(f"audit log {self.path} is gone: no decision is answered "
                               f"until the server restarts on a verified log") from None
        if (now.st_dev, now.st_ino) != self._identity or os.fstat(self._fd).st_nlink == 0:
            raise StorageError(f"audit log {self.path} was replaced: no decision is answered "
                               f"until the server restarts on a verified log")

    def append(self, **fields) -> dict:
        with self._lock:
            self._check_file()
            entry = {"time": round(time.time(), 3), **fields, "seq": self.head.lines + 1,
                     "prev": self.head.hash}
            entry["mac"] = _mac(self._key, entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            try:
                os.write(self._fd, (line + "\n").encode("ascii"))
                os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(f"cannot write audit log {self.path}: {exc.strerror}") \
                    from None
            self.head = ChainHead(entry["seq"], entry["mac"])
            return entry

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
