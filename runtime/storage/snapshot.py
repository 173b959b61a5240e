"""Door snapshots: the people one door may admit, signed by the center with Ed25519.

The center signs (its private key file is 0600 and never leaves it); a door holds only the
public key, so it verifies and cannot forge. Every snapshot names its door, the model, the
center's generation (which only grows), when it was issued and, for a delta, the generation it
starts from. A door refuses a snapshot signed by another key, edited, truncated, for another
door or model, or not newer than what it has (no rollback); it applies one to a copy of its
file and swaps it in with os.replace, so a process reading the old file never sees half of one.
The door's file is a plain SQLite gallery (its rows signed under the door's own key) with the
snapshot's record, so `siamese-identify --gallery door.db` works as before and says how old its
snapshot is.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
from siamese.runtime.errors import (
    ConfigError,
    IntegrityError,
    MissingExtraError,
    ReferenceError,
    StorageError,
)
from siamese.runtime.storage.fileio import (
    _fsync_dir,
    check_output_path,
    make_private_dirs,
    read_regular_file,
    write_text_atomic,
)
from siamese.runtime.storage.gallery import Gallery
from siamese.runtime.storage.integrity import tag, verify_tag
from siamese.runtime.storage.references import Template

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

SNAPSHOT_FORMAT = "siamese-door-snapshot-1"
RECORD_MAC = b"siamese-door-record-1"
MAX_SNAPSHOT_BYTES = 4 << 30


def _ed25519():
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise MissingExtraError("door snapshots need the cryptography package: "
                                "pip install cryptography") from None
    return ed25519


# --- keys -------------------------------------------------------------------------------------
def default_signing_key_path() -> Path:
    """The center's key beside the template key (~/.config/siamese/center_ed25519.key)."""
    from siamese.runtime.storage.integrity import default_key_path

    return default_key_path().with_name("center_ed25519.key")


def load_or_create_signing_key(path: Path):
    """The center's Ed25519 private key (raw 32 bytes, hex, mode 0600), created when absent,
    with its public key written beside it as PATH.pub (give that file to the doors)."""
    ed25519 = _ed25519()
    from cryptography.hazmat.primitives import serialization

    if not path.exists():
        make_private_dirs(path.parent)
        secret = ed25519.Ed25519PrivateKey.generate()
        raw = secret.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        try:
            with os.fdopen(handle, "w") as out:
                out.write(raw.hex() + "\n")
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # complete or absent; the first wins
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    from siamese.runtime.storage.integrity import read_key

    try:
        secret = ed25519.Ed25519PrivateKey.from_private_bytes(read_key(path)[:32])
    except ValueError:
        raise IntegrityError(f"signing key {path} is not an Ed25519 key") from None
    public = path.with_name(path.name + ".pub")
    if not public.exists():
        write_text_atomic(public, public_hex(secret.public_key()) + "\n")
    return secret


def public_hex(public_key) -> str:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw,
                                   serialization.PublicFormat.Raw).hex()


def load_public_key(path: Path):
    """A center's public key file (64 hex characters) for a door."""
    ed25519 = _ed25519()
    text = read_regular_file(path, 4096, ConfigError, "center key").decode("ascii", "replace")
    try:
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except ValueError:
        raise ConfigError(f"center key {path} is not an Ed25519 public key (64 hex "
                          f"characters)") from None


def key_id(public_key) -> str:
    return hashlib.sha256(bytes.fromhex(public_hex(public_key))).hexdigest()[:16]


# --- the center -------------------------------------------------------------------------------
def sign_snapshot(secret, door: str, generation: int, since: int | None, names: list[str],
                  people: dict[str, Template], model_fingerprint: str) -> bytes:
    """The signed snapshot as bytes (JSON: the body as text and its signature)."""
    body = json.dumps({
        "format": SNAPSHOT_FORMAT, "door": door, "generation": generation, "since": since,
        "issued_at": time.time(), "model_fingerprint": model_fingerprint, "names": names,
        "people": {name: {"embeddings": base64.b64encode(np.ascontiguousarray(
            t.embeddings, "<f4").tobytes()).decode(), "shape": list(t.embeddings.shape),
            "image_sha256": list(t.image_sha256)} for name, t in people.items()}})
    signature = secret.sign(body.encode())
    return json.dumps({"snapshot": body, "signature": base64.b64encode(signature).decode(),
                       "key_id": key_id(secret.public_key())}).encode()


# --- the door ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    door: str
    generation: int
    since: int | None
    issued_at: float
    names: list[str]
    people: dict[str, Template]


@dataclass(frozen=True)
class Record:
    """What a door's file says about the snapshot it holds (signed under the door's key)."""

    door: str
    generation: int
    issued_at: float
    center: str

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.issued_at)

    def summary(self) -> dict:
        return {"generation": self.generation, "age_s": round(self.age_s(), 1)}


def verify_snapshot(data: bytes, public_key, verifier: Verifier) -> Snapshot:
    """The snapshot, once its signature (this center), format and model are checked."""
    try:
        envelope = json.loads(data)
        body_text, signature = envelope["snapshot"], base64.b64decode(
            envelope["signature"], validate=True)
        if not isinstance(body_text, str):
            raise TypeError
    except (ValueError, KeyError, TypeError, RecursionError):
        raise IntegrityError("the snapshot is unreadable (truncated or not a snapshot)") from None
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(signature, body_text.encode())
    except InvalidSignature:
        raise IntegrityError("the snapshot's signature does not verify under the center key: "
                             "it was edited or not signed by this center") from None
    body = json.loads(body_text)
    if body.get("format") != SNAPSHOT_FORMAT:
        raise IntegrityError("the snapshot has an unknown format")
    if body["model_fingerprint"] != verifier.embedder.fingerprint:
        raise ReferenceError("the snapshot was made for another model than this door's")
    people = {}
    for name, row in body["people"].items():
        vectors = np.frombuffer(base64.b64decode(row["embeddings"]), "<f4")
        people[name] = Template(name, vectors.reshape(row["shape"]).astype(np.float32),
                                body["model_fingerprint"], tuple(row["image_sha256"]))
    if not set(people) <= set(body["names"]):
        raise IntegrityError("the snapshot carries people it does not admit")
    return Snapshot(body["door"], body["generation"], body["since"], body["issued_at"],
                    list(body["names"]), people)


def read_record(gallery: Gallery) -> Record | None:
    """The door record in a gallery file (None for a gallery that is not a door's)."""
    text, mac = gallery.meta("door_snapshot"), gallery.meta("door_snapshot_mac")
    if text is None:
        return None
    verify_tag(gallery.verifier.key, str(mac), f"gallery {gallery.path} door record",
               RECORD_MAC, text.encode())
    data = json.loads(text)
    record = Record(data["door"], data["generation"], data["issued_at"], data["center"])
    if record.generation != gallery.generation:
        raise IntegrityError(f"gallery {gallery.path}: its door record does not match its "
                             f"people (generation {record.generation} against "
                             f"{gallery.generation})")
    return record


def apply_snapshot(snapshot: Snapshot, center: str, out: Path, verifier: Verifier
                   ) -> tuple[Record, int]:
    """Apply `snapshot` to the door file `out` (created for a full one) atomically; refuse a
    rollback, a replay, another door's or a delta from another generation. Returns the new
    record and how many people changed."""
    check_output_path(out)
    current = current_record(out, verifier)
    if current is not None:
        if current.door != snapshot.door:
            raise IntegrityError(f"{out} holds door {current.door!r}; this snapshot is for "
                                 f"{snapshot.door!r}")
        if current.center != center:
            raise IntegrityError(f"{out} was signed by another center key")
        if snapshot.generation < current.generation or (
                snapshot.generation == current.generation
                and (snapshot.since is None or snapshot.issued_at <= current.issued_at)):
            raise IntegrityError(f"snapshot generation {snapshot.generation} is not newer than "
                                 f"{out}'s {current.generation}: refused (rollback or replay)")
        if snapshot.since is not None and snapshot.since != current.generation:
            raise IntegrityError(f"the delta starts at generation {snapshot.since}, but {out} "
                                 f"is at {current.generation}")
    elif snapshot.since is not None:
        raise ReferenceError(f"a delta cannot start {out}: pull a full snapshot first")
    record = Record(snapshot.door, snapshot.generation, snapshot.issued_at, center)
    text = json.dumps(record.__dict__, sort_keys=True)
    meta = {"door_snapshot": text,
            "door_snapshot_mac": tag(verifier.key, RECORD_MAC, text.encode())}
    make_private_dirs(out.parent)
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.{os.getpid()}.",
                                   suffix=".tmp")
    os.close(handle)
    tmp_path = Path(tmp)
    try:
        if current is not None:
            _copy(out, tmp_path)
        else:
            os.unlink(tmp_path)  # Gallery.open creates it (mode 0600)
        with Gallery.open(tmp_path, verifier, create=True) as gallery:
            before = set(gallery.names())
            changes: dict[str, Template | None] = dict.fromkeys(before - set(snapshot.names))
            changes.update(snapshot.people)
            gallery.sync(changes, snapshot.generation, meta)
            gallery.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        with open(tmp_path, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(tmp_path, out)
        _fsync_dir(out.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        for leftover in (tmp_path, Path(tmp + "-wal"), Path(tmp + "-shm"),
                         Path(tmp + "-journal")):
            with contextlib.suppress(OSError):
                os.unlink(leftover)
    return record, len(changes)


def current_record(out: Path, verifier: Verifier) -> Record | None:
    """The snapshot record of the door file `out` (None when there is none yet)."""
    if not out.exists():
        return None
    with Gallery.open(out, verifier, read_only=True) as gallery:
        record = read_record(gallery)
    if record is None:
        raise ReferenceError(f"{out} is a gallery but not a door's (no snapshot record): "
                             f"pull into a new file")
    return record


def _copy(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file (the backup API: a reader's view, never half)."""
    src = sqlite3.connect(f"file:{quote(str(source.resolve()))}?mode=ro", uri=True)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    os.chmod(target, 0o600)
