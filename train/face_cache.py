"""The aligned-face cache: every image of a dataset detected and aligned once, stored as crops.

Layout of one cache directory: `crops.npy` (N, 112, 112, 3) uint8 BGR crops and
`manifest.json` (fingerprint, one record per crop, skipped files, summary). The fingerprint
covers the source files (path, size, mtime) and the alignment settings, so a changed source or
alignment rebuilds the cache; anything else reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.errors import DatasetError, ImageError
from siamese.runtime.vision.align import ALIGNED_SIZE, TEMPLATE_112, align_face
from siamese.runtime.vision.detector import (
    YUNET_PATH,
    DetectorConfig,
    FaceDetector,
    most_central_face,
)
from siamese.runtime.vision.imageio import read_image
from siamese.train.datasets import FaceImage
from tqdm import tqdm

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
DEFAULT_CACHE_ROOT = Path.home() / ".cache" / "siamese"


def default_cache_root() -> Path:
    """$SIAMESE_CACHE when set, else ~/.cache/siamese."""
    return Path(os.environ.get("SIAMESE_CACHE", DEFAULT_CACHE_ROOT))


@dataclass(frozen=True)
class CacheRecord:
    """One aligned crop: where it came from and how it was found."""

    path: str
    identity: str
    detected: bool  # False: no face found, aligned with the dataset's typical landmarks
    score: float
    faces: int
    row: int


@dataclass
class PrepareSummary:
    images: int
    identities: int
    detected: int
    fallback: int
    skipped: int
    seconds: float
    reused: bool = False
    skipped_files: list[str] = field(default_factory=list)

    @property
    def detection_rate(self) -> float:
        aligned = self.detected + self.fallback
        return self.detected / aligned if aligned else 0.0

    def describe(self) -> str:
        state = "reused cache" if self.reused else f"prepared in {self.seconds:.1f} s"
        return (f"{self.images} images, {self.identities} identities, face found in "
                f"{self.detected}/{self.detected + self.fallback} "
                f"({100 * self.detection_rate:.2f}%), {self.fallback} centre fallbacks, "
                f"{self.skipped} unreadable skipped; {state}")


class AlignedFaces:
    """A prepared cache: `crops[record.row]` is the aligned crop of `record`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        manifest = json.loads((self.directory / "manifest.json").read_text())
        self.fingerprint: str = manifest["fingerprint"]
        self.image_root = Path(manifest["image_root"])
        self.records = [CacheRecord(*row) for row in manifest["records"]]
        self.skipped: list[dict] = manifest["skipped"]
        self.summary = PrepareSummary(**manifest["summary"])
        self.crops: np.ndarray = np.load(self.directory / "crops.npy", mmap_mode="r")
        self._by_path = {record.path: record for record in self.records}

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, path: str) -> bool:
        return path in self._by_path

    def crop(self, path: str) -> np.ndarray:
        """The aligned crop of an image, by its dataset-relative path."""
        try:
            return np.asarray(self.crops[self._by_path[path].row])
        except KeyError:
            raise DatasetError(f"{path} is not in the face cache {self.directory}") from None

    def select(self, identities: set[str] | None = None) -> list[CacheRecord]:
        """Records of the given identities (all when None), in cache order."""
        if identities is None:
            return list(self.records)
        return [record for record in self.records if record.identity in identities]


def open_prepared(directory: str | Path) -> AlignedFaces:
    """Open a prepared cache folder as it is, without checking it against its source."""
    directory = Path(directory)
    if not (directory / "manifest.json").is_file() or not (directory / "crops.npy").is_file():
        raise DatasetError(f"not a prepared face cache (no manifest.json and crops.npy): "
                           f"{directory}")
    try:
        return AlignedFaces(directory)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"unreadable face cache {directory}: {exc}") from None


def alignment_signature(config: DetectorConfig) -> dict:
    """Everything that changes the crops; part of the cache fingerprint."""
    return {
        "format": CACHE_FORMAT,
        "size": ALIGNED_SIZE,
        "template": TEMPLATE_112.round(4).tolist(),
        "detector_sha256": hashlib.sha256(YUNET_PATH.read_bytes()).hexdigest(),
        "detector": asdict(config),
        "selection": "most-central",
        "fallback": "median-landmarks",
    }


def fingerprint(image_root: Path, images: list[FaceImage], config: DetectorConfig) -> str:
    digest = hashlib.sha256(json.dumps(alignment_signature(config), sort_keys=True).encode())
    for image in images:
        stat = (image_root / image.path).stat()
        digest.update(f"{image.path}\t{image.identity}\t{stat.st_size}\t{stat.st_mtime_ns}\n"
                      .encode())
    return digest.hexdigest()


def cache_dir_for(cache_root: Path, kind: str, image_root: Path) -> Path:
    """One directory per source tree, named for people and unique per absolute path."""
    key = hashlib.sha256(str(image_root.resolve()).encode()).hexdigest()[:12]
    return cache_root / "faces" / f"{kind}-{image_root.resolve().name}-{key}"


def prepare(kind: str, image_root: Path, images: list[FaceImage], cache_root: Path | None = None,
            workers: int | None = None, progress: bool = True,
            config: DetectorConfig | None = None) -> tuple[AlignedFaces, PrepareSummary]:
    """Detect and align every image once; reuse the cache when its fingerprint matches.

    Several faces: the one nearest the image centre. No face: the crop is aligned with the
    median landmarks (relative to image size) of this dataset's detected faces and flagged.
    Unreadable images are reported and skipped.
    """
    config = config or DetectorConfig()
    image_root = Path(image_root)
    directory = cache_dir_for(cache_root or default_cache_root(), kind, image_root)
    expected = fingerprint(image_root, images, config)
    if (directory / "manifest.json").is_file():
        try:
            cached = AlignedFaces(directory)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("rebuilding unreadable cache %s: %s", directory, exc)
        else:
            if cached.fingerprint == expected:
                cached.summary.reused = True
                return cached, cached.summary
            log.info("source or alignment changed: rebuilding %s", directory)
    started = time.perf_counter()
    tmp = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        summary = _build(tmp, image_root, images, workers, progress, config, expected, started)
        _replace_dir(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return AlignedFaces(directory), summary


def _build(tmp: Path, image_root: Path, images: list[FaceImage], workers: int | None,
           progress: bool, config: DetectorConfig, expected: str,
           started: float) -> PrepareSummary:
    crops = np.lib.format.open_memmap(tmp / "crops.npy", mode="w+", dtype=np.uint8,
                                      shape=(len(images), ALIGNED_SIZE, ALIGNED_SIZE, 3))
    results: list[tuple | None] = [None] * len(images)
    paths = [str(image_root / image.path) for image in images]
    workers = max(1, workers or os.cpu_count() or 1)
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (config,)) as pool:
        jobs = pool.imap(_detect_and_align, paths, chunksize=16)
        for row, result in enumerate(tqdm(jobs, total=len(paths), desc="aligning faces",
                                          unit="img", disable=not progress)):
            crop, *outcome = result
            results[row] = tuple(outcome)
            if crop is not None:
                crops[row] = crop
    typical = _typical_landmarks(results)
    records, skipped = [], []
    for row, (image, outcome) in enumerate(zip(images, results, strict=True)):
        landmarks, score, faces, error = outcome
        if error is not None:
            skipped.append({"path": image.path, "error": error})
            log.warning("skipped %s", error)
            continue
        if landmarks is None:
            picture = read_image(image_root / image.path)
            size = np.array([picture.shape[1], picture.shape[0]], dtype=np.float32)
            crops[row] = align_face(picture, typical * size)
        records.append(CacheRecord(image.path, image.identity, landmarks is not None, score,
                                   faces, row))
    crops.flush()
    detected = sum(record.detected for record in records)
    summary = PrepareSummary(
        images=len(images), identities=len({record.identity for record in records}),
        detected=detected, fallback=len(records) - detected, skipped=len(skipped),
        seconds=round(time.perf_counter() - started, 2),
        skipped_files=[item["path"] for item in skipped])
    manifest = {"fingerprint": expected, "image_root": str(image_root.resolve()),
                "records": [list(asdict(record).values()) for record in records],
                "skipped": skipped, "summary": asdict(summary)}
    (tmp / "manifest.json").write_text(json.dumps(manifest))
    return summary


def _typical_landmarks(results: list[tuple]) -> np.ndarray:
    """Median landmarks relative to image size over detected faces; a centred template if none."""
    found = [landmarks for landmarks, *_ in results if landmarks is not None]
    if found:
        return np.median(np.stack(found), axis=0).astype(np.float32)
    return (TEMPLATE_112 / 112.0 - 0.5) * 0.6 + 0.5


def _replace_dir(new: Path, target: Path) -> None:
    """Swap a finished directory into place; the old one is removed only after the swap."""
    old = target.with_name(f"{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


_detector: FaceDetector | None = None


def _init_worker(config: DetectorConfig) -> None:
    global _detector
    cv2.setNumThreads(1)
    _detector = FaceDetector(config=config)


def _detect_and_align(path: str) -> tuple:
    """(crop, relative landmarks, score, face count, error) for one image file."""
    try:
        image = read_image(path)
    except ImageError as exc:
        return None, None, 0.0, 0, str(exc)
    faces = _detector.detect(image)
    face = most_central_face(faces, image.shape)
    if face is None:
        return None, None, 0.0, 0, None
    size = np.array([image.shape[1], image.shape[0]], dtype=np.float32)
    return align_face(image, face.landmarks), face.landmarks / size, face.score, len(faces), None
