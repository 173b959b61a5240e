"""The library behind the routes: a worker pool sized to the cores, admission with a bound.

The models are loaded once (one Embedder, whose onnxruntime session is shared); each worker
thread has its own face detector (OpenCV's is not thread-safe). The gallery lives on one
thread of its own (SQLite connections are per thread); the search index is rebuilt there after
each change and read by the workers. A request beyond `workers + queue` in flight is refused
at once (Busy -> 429 with Retry-After) instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from siamese.runtime.enrolment import Enrolment, enroll_photos
from siamese.runtime.errors import SiameseError
from siamese.runtime.identify import Identity, identify_faces
from siamese.runtime.liveness.check import LivenessCheck
from siamese.runtime.session import liveness_step
from siamese.runtime.storage.galleries import open_gallery
from siamese.runtime.storage.gallery import Gallery, GalleryIndex, index_of
from siamese.runtime.storage.postgres import CentralGallery
from siamese.runtime.storage.references import Template, check_name
from siamese.runtime.verifier import DETECT_SIDE, Comparison, Decision, Verifier, Vote
from siamese.runtime.vision.detector import DetectorConfig, FaceDetector
from siamese.runtime.vision.imageio import declared_size, decode_image

T = TypeVar("T")


class ServiceError(SiameseError):
    """An error with the HTTP status it maps to (and headers, e.g. Retry-After)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.headers = status, headers or {}


@dataclass
class Upload:
    """One uploaded image: its bytes and the name the client gave it (for messages only)."""

    data: bytes
    name: str


LEGACY_UPLOADS = "siamese-enrol-*"  # temporary photo folders of versions before issue 30


def sweep_legacy_uploads(folder: Path | None = None) -> list[Path]:
    """Remove the face photos an older version left in `siamese-enrol-*` temporary folders
    (owned by this user) when it was killed during an enrolment; the folders removed."""
    removed = []
    for leftover in Path(folder or tempfile.gettempdir()).glob(LEGACY_UPLOADS):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and not leftover.is_symlink() \
                    and leftover.stat().st_uid == os.getuid():
                shutil.rmtree(leftover)
                removed.append(leftover)
    return removed


class Engine:
    def __init__(self, verifier: Verifier, gallery_path: Path | str, workers: int, queue: int,
                 max_pixels: int, timeout_s: float) -> None:
        sweep_legacy_uploads()
        self.base, self.workers, self.capacity = verifier, workers, workers + queue
        self.max_pixels, self.timeout_s = max_pixels, timeout_s
        self.in_flight = 0
        self._local = threading.local()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="serve-worker")
        self._store = ThreadPoolExecutor(1, thread_name_prefix="serve-gallery")
        self.gallery: Gallery | CentralGallery = self._store.submit(
            open_gallery, gallery_path, verifier, create=True).result()
        self.templates: dict[str, Template] = {}
        self.index: GalleryIndex
        self.generation = -1
        self._store.submit(self._reload).result()
        self._stop, self._pending = threading.Event(), threading.Lock()
        if isinstance(self.gallery, CentralGallery):  # other processes change it too
            self.gallery.listener(self._changed_elsewhere, self._stop)

    # --- plumbing ---------------------------------------------------------------------------
    def _verifier(self) -> Verifier:
        verifier = getattr(self._local, "verifier", None)
        if verifier is None:
            base = self.base
            verifier = Verifier(base.embedder, FaceDetector(config=DetectorConfig(
                max_side=DETECT_SIDE)), base.config, base.cache.root, base.key)
            self._local.verifier = verifier
        return verifier

    async def run(self, job: Callable[..., T], *args, pool: ThreadPoolExecutor | None = None
                  ) -> T:
        """`job(*args)` on a worker; Busy when full, 503 past the request time limit."""
        if self.in_flight >= self.capacity:
            raise ServiceError(429, f"server busy: {self.in_flight} requests in flight",
                               {"Retry-After": "1"})
        self.in_flight += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(pool or self.pool, job, *args)
        future.add_done_callback(self._finished)  # the slot is freed when the work ends
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
        except TimeoutError:
            raise ServiceError(503, f"the request took longer than {self.timeout_s:g} s",
                               {"Retry-After": "5"}) from None

    def _finished(self, _future) -> None:
        self.in_flight -= 1

    def check_pixels(self, upload: Upload) -> None:
        """413 for an upload that declares more pixels than the service takes."""
        size = declared_size(upload.data)
        if size is not None and size[0] * size[1] > self.max_pixels:
            raise ServiceError(413, f"image {upload.name} declares {size[0]}x{size[1]} pixels; "
                                    f"the limit is {self.max_pixels:,}")

    def decode(self, upload: Upload) -> np.ndarray:
        self.check_pixels(upload)
        return decode_image(upload.data, upload.name)

    def close(self) -> None:
        self._stop.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._store.submit(self.gallery.close).result()
        self._store.shutdown(wait=True)

    # --- faces (worker threads) -------------------------------------------------------------
    def compare(self, a: Upload, b: Upload) -> Comparison:
        return self._verifier().compare(self.decode(a), self.decode(b))

    def identify(self, image: Upload, max_faces: int) -> list[Identity]:
        verifier = self._verifier()
        identities = identify_faces(verifier, self.decode(image), self.index)
        if len(identities) > max_faces:
            raise ServiceError(422, f"{len(identities)} faces in {image.name}; the limit is "
                                    f"{max_faces}")
        return identities

    def template(self, name: str) -> Template:
        template = self.templates.get(check_name(name))
        if template is None:
            raise ServiceError(404, f"{name!r} is not enrolled")
        return template

    def verify(self, name: str, image: Upload) -> Decision:
        template = self.template(name)
        return self._verifier().verify(self.decode(image), template)

    def decide_live(self, frame: bytes, template: Template, vote: Vote, index: int,
                    check: LivenessCheck, now: float) -> tuple[Decision, list[dict]]:
        """One session frame: the vote's decision and the liveness check's prompt events (the
        same step as the CLI's session, runtime.session.liveness_step)."""
        image = self.decode(Upload(frame, f"frame {index}"))
        decision = self._verifier().decide(image, template, vote, index)
        events = liveness_step(check, decision, image, now, self.base.consistency.pair_limit)
        decision.verified = decision.verified and check.passed
        return decision, events

    def new_vote(self) -> Vote:
        return self.base.new_vote()

    def enroll(self, name: str, images: list[Upload]) -> Enrolment:
        """A template from uploads, decoded and embedded in memory (no photo is ever written to
        disk); a photo without a usable face is skipped and named, as siamese-gallery add does.
        An upload over the pixel limit is refused (413); none usable: ReferenceError (422)."""
        for image in images:
            self.check_pixels(image)
        return enroll_photos(self._verifier(), name, [(i.name, i.data) for i in images])

    # --- gallery (its own thread) -----------------------------------------------------------
    def _reload(self) -> None:
        """Every person again (SQLite; the central store's first read, its set checked), or
        only the central rows changed since the last read."""
        if not isinstance(self.gallery, CentralGallery):
            templates = {t.name: t for t in self.gallery.templates()}
        elif self.generation < 0:
            self.generation, templates = self.gallery.snapshot()
        else:
            generation, changes = self.gallery.changes_since(self.generation)
            if generation == self.generation:
                return
            templates = dict(self.templates)
            for name, template in changes.items():
                if template is None:
                    templates.pop(name, None)
                else:
                    templates[name] = template
            self.generation = generation
        self.templates = templates
        ordered = sorted(templates.values(), key=lambda t: t.name)
        self.index = index_of(ordered, self.base)  # zero rows until someone is enrolled

    def _changed_elsewhere(self) -> None:
        """From the listener: reload on the gallery's thread (one queued reload at most)."""
        if self._pending.acquire(blocking=False):
            def reload() -> None:
                self._pending.release()
                with contextlib.suppress(SiameseError):  # unreachable now: the next try
                    self._reload()
            with contextlib.suppress(RuntimeError):  # shut down
                self._store.submit(reload)

    def _add(self, template: Template, replace: bool) -> None:
        self.gallery.add(template, replace=replace)
        self._reload()

    def _remove(self, name: str) -> bool:
        removed = self.gallery.remove(check_name(name))
        self._reload()
        return removed

    async def add(self, template: Template, replace: bool) -> None:
        await self.run(self._add, template, replace, pool=self._store)

    async def remove(self, name: str) -> None:
        if not await self.run(self._remove, name, pool=self._store):
            raise ServiceError(404, f"{name!r} is not enrolled")

    def people(self) -> list[dict]:
        return [{"name": t.name, "images": len(t.embeddings)}
                for t in sorted(self.templates.values(), key=lambda t: t.name)]

