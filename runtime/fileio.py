"""Writing files so that a crash or an error never leaves a half-written or lost file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | Path, text: str, mode: int | None = None) -> None:
    """Write `text` to a temporary file beside `path`, then rename it over `path`.

    `mode` (e.g. 0o600 for private files) is set before the rename, so the file never exists
    with looser permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
