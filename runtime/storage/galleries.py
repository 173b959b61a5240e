"""One door to both galleries: a postgresql:// URL opens the central store, a path the SQLite
file (the default for a single door)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from siamese.runtime.storage.gallery import Gallery
from siamese.runtime.storage.postgres import CentralGallery, is_url

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier


def open_gallery(spec: str | Path, verifier: Verifier, create: bool = False,
                 read_only: bool = False) -> Gallery | CentralGallery:
    """The gallery `spec` names; a URL is never taken for a file name (nor a file for a URL)."""
    if isinstance(spec, str) and is_url(spec):
        return CentralGallery.open(spec, verifier, create=create, read_only=read_only)
    return Gallery.open(spec, verifier, create=create, read_only=read_only)


def gallery_spec(text: str) -> str | Path:
    """A command line's --gallery: a postgresql:// URL as it is, anything else a file path;
    another URL (or a mangled one, `postgresql:/x`) is a clear error, never a file name."""
    from siamese.runtime.errors import ConfigError
    from siamese.runtime.storage.gallery import URL_SCHEMES

    if is_url(text):
        return text
    if "://" in text or text.startswith(URL_SCHEMES):
        raise ConfigError(f"--gallery {text}: a gallery is a SQLite file path or a "
                          f"postgresql://... URL")
    return Path(text)
