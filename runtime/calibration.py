"""Site calibration: a decision threshold measured on the site's own labelled faces.

`siamese-calibrate --folder DIR --far 1e-3` scores every pair of faces in DIR/<person>/<images>
(same person: genuine; different people: impostor) and picks the lowest threshold whose FAR the
impostor pairs show with 95% confidence (runtime.far_bounds: about 3/FAR pairs at least). Too
few pairs is a ConfigError saying how many pairs and people the FAR needs; a threshold below
the model's own needs `allow_below_model` (--allow-below-model). The result records the pair
counts, the measured FAR and its 95% upper bound, is signed like a template (an edited
threshold is refused) and tied to the model; `--site FILE` makes the runtime use it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.errors import ConfigError, IntegrityError, ReferenceError, SiameseError
from siamese.runtime.far_bounds import impostor_pairs_needed, people_needed, threshold_with_evidence
from siamese.runtime.model_info import check_threshold
from siamese.runtime.storage.fileio import read_regular_file, write_text_atomic
from siamese.runtime.storage.integrity import tag, verify_tag

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

SITE_FORMAT = "siamese-site-2"  # 1: thresholds without FAR evidence, refused
MIN_GENUINE_PAIRS = 100


@dataclass(frozen=True)
class SiteCalibration:
    """A site threshold and the evidence behind it."""

    threshold: float
    target_far: float
    measured_far: float
    far_upper_95: float  # one-sided 95% upper bound of the FAR at the threshold
    false_accepts: int  # impostor pairs at or above the threshold
    tar: float  # genuine pairs accepted at the threshold
    genuine_pairs: int
    impostor_pairs: int
    people: int
    images: int
    skipped_images: int
    model_fingerprint: str
    metric: str
    model_threshold: float
    below_model: bool  # the threshold is under the model's own (allowed explicitly)
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
            if data.get("format") == "siamese-site-1":
                raise ReferenceError(f"{source} was calibrated without FAR evidence (an older "
                                     f"format): run siamese-calibrate again")
            if data.pop("format") != SITE_FORMAT:
                raise ValueError
            mac = data.pop("mac")
            site = cls(**{f.name: data[f.name] for f in fields(cls)})
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ReferenceError(f"{source} is not a siamese-edge site calibration") from None
        verify_tag(key, mac, f"site calibration {source}", *site._parts())
        check_threshold(site.threshold, site.metric, f"{source} threshold", ReferenceError)
        return site


def calibrate_folder(verifier: Verifier, folder: Path, target_far: float,
                     allow_below_model: bool = False) -> SiteCalibration:
    """Measure the site threshold on DIR/<person>/<images> (at least two people)."""
    from siamese.runtime.storage.datasets_io import list_images, person_folders

    impostor_pairs_needed(target_far)  # range check before any work
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"no such folder: {folder}")
    embeddings, labels, skipped = [], [], 0
    for person in person_folders(folder):
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
    people = len(set(labels.tolist()))
    try:
        evidence = threshold_with_evidence(impostor, target_far)
    except ConfigError as exc:
        needed = impostor_pairs_needed(target_far)
        raise ConfigError(f"{folder}: {exc}, e.g. {people_needed(needed, len(labels) / people):,} "
                          f"people with {len(labels) / people:.0f} photos each (it has "
                          f"{people}): add people, or calibrate for a higher --far") from None
    threshold = evidence.threshold
    low, high = (0.0, 1.0) if verifier.embedder.info.metric == "cosine" else (-1e3, 0.0)
    threshold = float(min(max(threshold, np.nextafter(low, high)), np.nextafter(high, low)))
    model_threshold = float(verifier.embedder.info.threshold)
    below = threshold < model_threshold
    if below and not allow_below_model:
        raise ConfigError(f"the site threshold {threshold:.4f} at FAR {target_far:g} is below "
                          f"the model's own {model_threshold:.4f}: it would accept more "
                          f"impostors; pass --allow-below-model if that is intended")
    tar = float((genuine >= threshold).mean()) if len(genuine) else 0.0
    warning = (f"only {len(genuine)} genuine pairs: the acceptance rate is rough (add more "
               f"photos per person)") if len(genuine) < MIN_GENUINE_PAIRS else ""
    return SiteCalibration(threshold, target_far, evidence.measured_far, evidence.far_upper_95,
                           evidence.false_accepts, tar, int(len(genuine)), evidence.impostor_pairs,
                           people, len(labels), skipped, verifier.embedder.fingerprint,
                           verifier.embedder.info.metric, model_threshold, below, warning)


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
