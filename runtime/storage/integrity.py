"""Authentication of templates and cached embeddings: HMAC-SHA256 under a per-installation key.

The key is 32 random bytes (hex) created with mode 0600 on first use, in a folder of its own
(`$SIAMESE_KEY_FILE`, default ~/.config/siamese/template.key), never beside the templates; an
operator can supply one instead. A template whose name, embeddings or model fingerprint was
edited, or whose embeddings were swapped for another person's, no longer matches its tag and is
refused. Key files readable by group or others are refused, as ssh refuses loose private keys.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from siamese.runtime.errors import IntegrityError, StorageError
from siamese.runtime.storage.fileio import make_private_dirs, read_regular_file

KEY_BYTES = 32
KEY_ENV = "SIAMESE_KEY_FILE"


def default_key_path() -> Path:
    """$SIAMESE_KEY_FILE, else ~/.config/siamese/template.key."""
    configured = os.environ.get(KEY_ENV)
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "siamese" / "template.key"


def _parse_key(data: bytes, path: Path) -> bytes:
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise IntegrityError(f"key file {path} is not hex text") from None
    if len(key) < KEY_BYTES:
        raise IntegrityError(f"key file {path} holds {len(key)} bytes; at least {KEY_BYTES} "
                             f"are needed")
    return key


def read_key(path: Path) -> bytes:
    """An existing key; refused when group or others may read or write it."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise StorageError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(mode) and mode & 0o077:
        raise IntegrityError(f"key file {path} is accessible to group or others "
                             f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it")
    return _parse_key(read_regular_file(path, 4096, StorageError, "key file"), path)


def load_or_create_key(path: Path | None = None) -> bytes:
    """The installation's key at `path` (default: `default_key_path()`), created if absent.

    Creation is safe against a concurrent first use: the key is written in full to a private
    temporary file and hard-linked into place, so a reader never sees a partial key and the
    first writer wins.
    """
    path = Path(path) if path is not None else default_key_path()
    if path.exists():
        return read_key(path)
    make_private_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        handle = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(KEY_BYTES) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    except OSError as exc:
        raise StorageError(f"cannot create key file {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return read_key(path)


def tag(key: bytes, *parts: bytes) -> str:
    """HMAC-SHA256 (hex) over length-prefixed parts, so no two part lists collide."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def verify_tag(key: bytes, expected: object, what: str, *parts: bytes) -> None:
    """Raise IntegrityError unless `expected` is the tag of `parts` (constant-time compare)."""
    if not isinstance(expected, str) or not hmac.compare_digest(expected, tag(key, *parts)):
        raise IntegrityError(f"{what} failed its integrity check: it was edited, or made under "
                             f"another key; enroll again")
