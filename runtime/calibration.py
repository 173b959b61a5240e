"""Site calibration: a decision threshold measured on the site's own labelled faces.

`siamese-calibrate --folder DIR --far 1e-3` scores every pair of faces in DIR/<person>/<images>
(same person: genuine; different people: impostor) and picks the lowest threshold whose
measured false accept rate does not exceed the target. The result is signed like a template
(an edited threshold is refused) and tied to the model; `--site FILE` makes the runtime use it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.errors import ConfigError, IntegrityError, ReferenceError, SiameseError
from siamese.runtime.model_info import check_threshold
from siamese.runtime.storage.fileio import read_regular_file, write_text_atomic
from siamese.runtime.storage.integrity import tag, verify_tag

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

SITE_FORMAT = "siamese-site-1"
MIN_GENUINE_PAIRS = 100


@dataclass(frozen=True)
class SiteCalibration:
    """A site threshold and the evidence behind it."""

    threshold: float
    target_far: float
    measured_far: float
    tar: float  # genuine pairs accepted at the threshold
    genuine_pairs: int
    impostor_pairs: int
    people: int
    images: int
    skipped_images: int
    model_fingerprint: str
    metric: str
    warning: str = ""

    def _parts(self) -> tuple[bytes, ...]:
        return (SITE_FORMAT.encode(), json.dumps(asdict(self), sort_keys=True).encode())

    def to_json(self, key: bytes) -> str:
        return json.dumps({"format": SITE_FORMAT, **asdict(self), "mac": tag(key, *self._parts())},
                          indent=2)

    @classmethod
    def from_json(cls, text: bytes | str, source: str, key: bytes) -> SiteCalibration:
        try:
            data = json.loads(text)
            if data.pop("format") != SITE_FORMAT:
                raise ValueError
            mac = data.pop("mac")
            site = cls(**{f.name: data[f.name] for f in fields(cls)})
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ReferenceError(f"{source} is not a siamese-edge site calibration") from None
        verify_tag(key, mac, f"site calibration {source}", *site._parts())
        check_threshold(site.threshold, site.metric, f"{source} threshold", ReferenceError)
        return site


def threshold_at_far(genuine: np.ndarray, impostor: np.ndarray,
                     target_far: float) -> tuple[float, float, float]:
    """(threshold, measured FAR, TAR): the lowest threshold with FAR <= target_far."""
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    allowed = int(math.floor(target_far * len(impostor)))
    threshold = float(np.nextafter(impostor[allowed], np.inf)) if allowed < len(impostor) \
        else float(impostor[-1])
    far = float((impostor >= threshold).mean())
    tar = float((np.asarray(genuine) >= threshold).mean()) if len(genuine) else 0.0
    return threshold, far, tar


def calibrate_folder(verifier: Verifier, folder: Path, target_far: float) -> SiteCalibration:
    """Measure the site threshold on DIR/<person>/<images> (at least two people)."""
    from siamese.runtime.storage.datasets_io import list_images

    if not 0 < target_far < 1 or not math.isfinite(target_far):
        raise ConfigError(f"--far must lie in (0, 1), not {target_far}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"no such folder: {folder}")
    embeddings, labels, skipped = [], [], 0
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in list_images(person):
            try:
                embeddings.append(verifier.reference_embedding(image)[0])
                labels.append(person.name)
            except IntegrityError:
                raise
            except SiameseError:
                skipped += 1
    if len(set(labels)) < 2:
        raise ConfigError(f"{folder} needs faces of at least two people (as <person>/<images>)")
    vectors, labels = np.stack(embeddings), np.asarray(labels)
    scores = (vectors @ vectors.T if verifier.embedder.info.metric == "cosine"
              else -np.linalg.norm(vectors[:, None] - vectors[None], axis=2))
    first, second = np.triu_indices(len(labels), 1)
    same = labels[first] == labels[second]
    pair_scores = scores[first, second]
    genuine, impostor = pair_scores[same], pair_scores[~same]
    threshold, far, tar = threshold_at_far(genuine, impostor, target_far)
    warnings = []
    if len(impostor) < 10 / target_far:
        warnings.append(f"only {len(impostor):,} impostor pairs: FAR {target_far:g} needs "
                        f"about {int(10 / target_far):,} to be measured, not extrapolated")
    if len(genuine) < MIN_GENUINE_PAIRS:
        warnings.append(f"only {len(genuine)} genuine pairs: the acceptance rate is rough "
                        f"(add more photos per person)")
    low, high = (0.0, 1.0) if verifier.embedder.info.metric == "cosine" else (-1e3, 0.0)
    threshold = min(max(threshold, np.nextafter(low, high)), np.nextafter(high, low))
    return SiteCalibration(float(threshold), target_far, far, tar, int(len(genuine)),
                           int(len(impostor)), len(set(labels.tolist())), len(labels), skipped,
                           verifier.embedder.fingerprint, verifier.embedder.info.metric,
                           "; ".join(warnings))


def save_site(site: SiteCalibration, path: Path, key: bytes) -> None:
    write_text_atomic(path, site.to_json(key), mode=0o600)


def load_site(path: Path, model_fingerprint: str, key: bytes) -> SiteCalibration:
    """A signed site calibration made with this model."""
    site = SiteCalibration.from_json(read_regular_file(path, 1 << 20, ReferenceError,
                                                       "site calibration"), str(path), key)
    if site.model_fingerprint != model_fingerprint:
        raise ReferenceError(f"site calibration {path} was measured with another model: "
                             f"run siamese-calibrate again")
    return site
