"""A door pulls its snapshot from the center: a delta when it has one, else the whole set.

>>> result = pull_once("https://center:8000", door_key, center_public_key, Path("door.db"),
...                    verifier)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from siamese.runtime.errors import ConfigError, SourceError
from siamese.runtime.storage.snapshot import (
    MAX_SNAPSHOT_BYTES,
    Record,
    apply_snapshot,
    current_record,
    key_id,
    verify_snapshot,
)

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PullResult:
    record: Record
    people: int | None  # in the door's file now (None when unknown)
    changed: int
    delta: bool

    def to_dict(self) -> dict:
        return {"status": "pulled", "generation": self.record.generation,
                "delta": self.delta, "changed": self.changed,
                "snapshot": self.record.summary()}


def check_center_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{url} is not an http(s):// URL of a siamese-serve center (a door "
                          f"pulls from the center; a file path goes to --out)")
    return url.rstrip("/")


def fetch(url: str, door_key: str) -> bytes:
    """GET `url` with the door's key; SourceError when the center cannot be reached."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {door_key}"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310
            data = response.read(MAX_SNAPSHOT_BYTES + 1)
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read(65536)).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise ConfigError(f"the center refused the pull ({exc.code}): {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SourceError(f"the center {url.split('/v1/')[0]} is unreachable: {reason}") from None
    if len(data) > MAX_SNAPSHOT_BYTES:
        raise ConfigError("the snapshot is over the size limit")
    return data


def pull_once(center: str, door_key: str, public_key, out: Path, verifier: Verifier
              ) -> PullResult:
    """One pull: verify the center's signature, refuse a rollback, swap the file in."""
    current = current_record(out, verifier)
    since = f"?since={current.generation}" if current is not None else ""
    data = fetch(f"{check_center_url(center)}/v1/snapshot{since}", door_key)
    snapshot = verify_snapshot(data, public_key, verifier)
    record, changed = apply_snapshot(snapshot, key_id(public_key), out, verifier)
    return PullResult(record, len(snapshot.names), changed, snapshot.since is not None)
