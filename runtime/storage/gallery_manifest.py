"""The signed manifest of a gallery's people: every name with its row's SHA-256, and a
generation number that every change raises by one.

Rows are signed one by one (runtime.references); the manifest signs the set, so a removed
person's row put back, a row removed behind the gallery's back, or two rows swapped no longer
match it. Rolling back the whole file (rows and manifest together) cannot be seen from inside
the file: a site that keeps the last generation outside it (`expected_generation`) can see it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from siamese.runtime.errors import IntegrityError, ReferenceError
from siamese.runtime.storage.integrity import tag, verify_tag

MANIFEST_FORMAT = "siamese-gallery-manifest-1"


def row_digest(name: str, template_text: str) -> str:
    return hashlib.sha256(json.dumps([name, template_text]).encode()).hexdigest()


@dataclass(frozen=True)
class Manifest:
    generation: int
    digests: dict[str, str] = field(default_factory=dict)  # name -> row digest

    def _parts(self) -> tuple[bytes, ...]:
        body = json.dumps({"generation": self.generation, "people": self.digests},
                          sort_keys=True)
        return MANIFEST_FORMAT.encode(), body.encode()

    def to_json(self, key: bytes) -> str:
        return json.dumps({"format": MANIFEST_FORMAT, "generation": self.generation,
                           "people": self.digests, "mac": tag(key, *self._parts())},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: object, source: str, key: bytes) -> Manifest:
        """Parse and authenticate; IntegrityError when signed under another key or edited."""
        try:
            data = json.loads(text)  # type: ignore[arg-type]
            if data["format"] != MANIFEST_FORMAT:
                raise ValueError
            generation, people, mac = data["generation"], data["people"], data["mac"]
            if (type(generation) is not int or generation < 0 or not isinstance(people, dict)
                    or not all(isinstance(v, str) for v in people.values())):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ReferenceError(f"{source} is not a siamese gallery (its manifest is "
                                 f"unreadable)") from None
        manifest = cls(generation, dict(people))
        verify_tag(key, mac, f"gallery {source} manifest", *manifest._parts())
        return manifest

    def check(self, rows: dict[str, str], source: str,
              expected_generation: int | None = None) -> None:
        """IntegrityError unless `rows` (name -> template text) are exactly the signed set."""
        names = set(rows)
        if names != set(self.digests):
            extra, missing = sorted(names - set(self.digests)), sorted(set(self.digests) - names)
            raise IntegrityError(f"gallery {source} does not match its signed manifest "
                                 f"(rows not in it: {extra[:3]}, missing rows: {missing[:3]}): "
                                 f"it was edited outside siamese-gallery")
        for name, text in rows.items():
            if row_digest(name, text) != self.digests[name]:
                raise IntegrityError(f"gallery {source} entry {name!r} differs from its signed "
                                     f"manifest: it was edited outside siamese-gallery")
        if expected_generation is not None and self.generation < expected_generation:
            raise IntegrityError(f"gallery {source} is at generation {self.generation}, older "
                                 f"than the {expected_generation} last seen: it was rolled back")

    def changed(self, name: str, text: str | None) -> Manifest:
        """The next generation, with `name` set to `text`'s digest (None: removed)."""
        digests = dict(self.digests)
        if text is None:
            digests.pop(name, None)
        else:
            digests[name] = row_digest(name, text)
        return Manifest(self.generation + 1, digests)
