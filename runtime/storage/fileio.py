"""Writing files so that a crash, a kill or a full disk never leaves a half-written or lost file.

A write goes to `.NAME.PID.RANDOM.tmp` beside the target, is flushed and fsync'd, gets its mode,
and is renamed over the target; then the folder is fsync'd so the rename survives a power cut.
Temporary files left by a killed writer (its process is gone, or the file is over an hour old)
are removed by the next write to the same folder. Folders this module creates are mode 0700.

Every writer goes through `check_output_path` (write_bytes_atomic calls it): a write goes only
to a regular file or a new path; a device, FIFO, socket, symlink or folder there is refused
with StorageError and left untouched (a rename would otherwise replace e.g. /dev/null).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

from siamese.runtime.errors import StorageError

STALE_AFTER_S = 3600.0


def make_private_dirs(path: Path) -> None:
    """Create `path` and any missing parents with mode 0700 (whatever the umask)."""
    missing = []
    current = Path(path)
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if current.exists() and not current.is_dir():
        raise StorageError(f"{current} is not a folder")
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):
            os.chmod(folder, 0o700)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> int:
    """Remove `.*.tmp` files in `folder` whose writer died or that are over an hour old."""
    removed = 0
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        parts = name[:-4].rsplit(".", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        with contextlib.suppress(OSError):
            stale = now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if stale or (pid is not None and pid != os.getpid() and not _pid_alive(pid)):
                os.unlink(entry.path)
                removed += 1
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot open or sync folders
        handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def check_output_path(path: str | Path) -> Path:
    """`path` when it is a regular file or does not exist; StorageError for anything else
    there (folder, symlink, device, FIFO, socket), which is left as it is."""
    path = Path(path)
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a new path (a parent may be a file:
        return path  # make_private_dirs says so)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    if stat.S_ISREG(info.st_mode):
        return path
    kind = ("a folder" if stat.S_ISDIR(info.st_mode) else "a symlink" if stat.S_ISLNK(info.st_mode)
            else "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a socket"
            if stat.S_ISSOCK(info.st_mode) else "a device" if stat.S_ISCHR(info.st_mode)
            or stat.S_ISBLK(info.st_mode) else "not a regular file")
    raise StorageError(f"cannot write {path}: it is {kind} (outputs go to regular files or new "
                       f"paths only)")


def write_bytes_atomic(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Write `data` to `path` atomically and durably; the old file survives any failure.

    `mode` (e.g. 0o600 for private files) is set before the rename, so the file never exists
    with looser permissions. Raises StorageError naming the path on any OS failure.
    """
    path = check_output_path(path)
    make_private_dirs(path.parent)
    remove_stale_temporaries(path.parent)
    tmp = None
    try:
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                       suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    """`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"), mode)


def read_regular_file(path: str | Path, max_bytes: int, error: type[Exception],
                      what: str) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or `error` naming the file.

    FIFOs, devices and folders are refused without blocking (the file is opened non-blocking
    and checked with fstat before any read); the size is checked before and after reading.
    """
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is not a regular file")
        if info.st_size > max_bytes:
            raise error(f"{what} {path} is too large ({info.st_size:,} bytes; the limit is "
                        f"{max_bytes:,})")
        with os.fdopen(handle, "rb", closefd=False) as stream:
            data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(handle)
    if len(data) > max_bytes:
        raise error(f"{what} {path} is too large (over {max_bytes:,} bytes)")
    return data
