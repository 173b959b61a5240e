"""Enrolment from real photo folders: a bad photo is skipped (named, with its reason) and the
person kept while enough good photos remain; importing the same folder again changes nothing.

>>> result = enroll_skipping(verifier, "alice", ["photos/alice"], min_photos=2)
>>> result.template, result.skipped       # [(path, reason), ...]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.errors import ConfigError, ImageError, IntegrityError, ReferenceError
from siamese.runtime.storage.datasets_io import image_paths
from siamese.runtime.storage.references import Template, check_name

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier


@dataclass
class Enrolment:
    """The template of the photos that passed, and those skipped as (path, reason)."""

    template: Template
    skipped: list[tuple[str, str]] = field(default_factory=list)


def enroll_skipping(verifier: Verifier, name: str, images: Iterable[str | Path] | str | Path,
                    min_photos: int = 1) -> Enrolment:
    """Verifier.enroll, except that a photo without a usable face (none, ambiguous, failing the
    quality gate, undecodable, unreadable) is skipped; ReferenceError when fewer than
    `min_photos` remain. The remaining photos must still look like one person (Verifier.enroll's
    rule)."""
    check_name(name)
    paths = image_paths(images)
    return _enrol_usable(verifier, name, [(path, verifier.reference_embedding) for path in paths],
                         min_photos)


def enroll_photos(verifier: Verifier, name: str, photos: list[tuple[str, bytes]],
                  min_photos: int = 1) -> Enrolment:
    """`enroll_skipping` of photos held in memory as (name, bytes), e.g. uploads: decoded and
    embedded without writing a file; the skipped are named by their given names."""
    check_name(name)
    return _enrol_usable(verifier, name, [
        (Path(source), lambda path, data=data: verifier.photo_embedding(data, str(path)))
        for source, data in photos], min_photos)


def _enrol_usable(verifier: Verifier, name: str,
                  photos: list[tuple[Path, Callable[[Path], tuple[np.ndarray, str]]]],
                  min_photos: int) -> Enrolment:
    if isinstance(min_photos, bool) or not isinstance(min_photos, int) or min_photos < 1:
        raise ConfigError(f"min_photos must be a positive integer, not {min_photos!r}")
    if not photos:
        raise ReferenceError(f"no images given to enroll {name!r}")
    kept, results, skipped = [], [], []
    for path, embed in photos:
        try:
            results.append(embed(path))
        except IntegrityError:
            raise
        except (ReferenceError, ImageError) as exc:
            skipped.append((str(path), str(exc)))
            continue
        kept.append(path)
    if len(kept) < min_photos:
        first = f"; {skipped[0][1]}" if skipped else ""
        raise ReferenceError(f"{name!r}: {len(kept)} of {len(photos)} photo(s) usable, "
                             f"--min-photos {min_photos} needed{first}")
    return Enrolment(verifier.template_of(name, results, kept), skipped)


def same_photos(existing: Template, template: Template) -> bool:
    """The same person enrolled from the same photos: re-importing it is nothing to do."""
    return (existing.name == template.name and bool(existing.image_sha256)
            and sorted(existing.image_sha256) == sorted(template.image_sha256)
            and existing.model_fingerprint == template.model_fingerprint)


def reference_name(folder: Path) -> str:
    """The folder's name when it is a valid enrolment name, else "reference"."""
    try:
        return check_name(folder.name)
    except ReferenceError:
        return "reference"
