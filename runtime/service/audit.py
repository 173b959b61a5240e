"""The audit log: one JSON line per decision or admin change, each chained to the one before.

Every line carries `seq` (its line number from 1), `prev` (the previous line's hash, 64 zeros
for the first) and `hash` = SHA-256 of the line's canonical JSON without `hash`. Editing a line
breaks its hash; inserting or removing one breaks `seq` and `prev` of the line after it.
Removing lines from the end leaves a shorter valid chain: compare the head (GET /v1/audit/head,
or `audit verify`'s output) with a copy kept elsewhere to catch that.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from siamese.runtime.errors import IntegrityError, StorageError

GENESIS = "0" * 64


def _digest(entry: dict) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ChainHead:
    lines: int
    hash: str


def verify_log(path: str | Path) -> ChainHead:
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
            if entry.get("hash") != _digest(entry):
                raise IntegrityError(f"{where} was edited (its hash does not match)")
            if entry.get("seq") != seq + 1 or entry.get("prev") != prev:
                raise IntegrityError(f"{where} does not follow line {number - 1}: a line was "
                                     f"inserted or removed before it (its seq is "
                                     f"{entry.get('seq')}, expected {seq + 1})")
            prev, seq = entry["hash"], entry["seq"]
    return ChainHead(seq, prev)


class AuditLog:
    """Appends chained lines to `path` (mode 0600), one writer per process, fsynced per line."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if self.path.exists():
            self.head = verify_log(self.path)
        else:
            self.head = ChainHead(0, GENESIS)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot open audit log {self.path}: {exc.strerror}") from None
        self._fd = fd

    def append(self, **fields) -> dict:
        with self._lock:
            entry = {"time": round(time.time(), 3), **fields, "seq": self.head.lines + 1,
                     "prev": self.head.hash}
            entry["hash"] = _digest(entry)
            line = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
            try:
                os.write(self._fd, (line + "\n").encode("ascii"))
                os.fsync(self._fd)
            except OSError as exc:
                raise StorageError(f"cannot write audit log {self.path}: {exc.strerror}") \
                    from None
            self.head = ChainHead(entry["seq"], entry["hash"])
            return entry

    def close(self) -> None:
        with self._lock:
            os.close(self._fd)
