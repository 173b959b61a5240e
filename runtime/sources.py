"""Frame sources: a live camera or stream read on a background thread (newest frame wins,
reconnect with backoff), or a video file read in order with no frame dropped."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.errors import SiameseError

log = logging.getLogger(__name__)

# FFmpeg (inside OpenCV) prints to stderr on every failed connection; our own log says it once.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(SiameseError):
    """A camera, stream or video cannot be opened."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    index: int  # position in the source (frames read, live sources skip the stale ones)
    timestamp: float  # time.monotonic() when read


class VideoFile:
    """Every frame of a video file, in order; the end of the file ends the iteration."""

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.capture = cv2.VideoCapture(str(self.path))
        if not self.capture.isOpened():
            raise SourceError(f"cannot open video file {self.path}")
        self.corrupt_frames = 0

    def frames(self) -> Iterator[Frame]:
        index = 0
        try:
            while True:
                ok, image = self.capture.read()
                if not ok:
                    return
                if image is None or image.size == 0:
                    self.corrupt_frames += 1
                    continue
                yield Frame(image, index, time.monotonic())
                index += 1
        finally:
            self.capture.release()

    def close(self) -> None:
        self.capture.release()


class LiveSource:
    """A camera index or stream URL read by a background thread.

    The consumer always gets the newest frame (no backlog). When reads fail the source is
    reopened with exponential backoff; `reconnects` counts how often.
    """

    live = True

    def __init__(self, spec: int | str, open_timeout: float = 10.0, max_backoff: float = 4.0,
                 stall_timeout: float = 5.0) -> None:
        self.spec = spec
        self.max_backoff, self.stall_timeout = max_backoff, stall_timeout
        self.reconnects = 0
        self._frame: Frame | None = None
        self._condition = threading.Condition()
        self._stop = threading.Event()
        self._capture = self._open()
        deadline = time.monotonic() + open_timeout
        while self._capture is None and time.monotonic() < deadline:
            time.sleep(0.5)
            self._capture = self._open()
        if self._capture is None:
            raise SourceError(f"cannot open camera or stream {spec!r}")
        self._thread = threading.Thread(target=self._read_loop, name="frame-reader", daemon=True)
        self._thread.start()

    def _open(self) -> cv2.VideoCapture | None:
        capture = cv2.VideoCapture(self.spec)
        if capture.isOpened():
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            return capture
        capture.release()
        return None

    def _read_loop(self) -> None:
        index, backoff = 0, 0.25
        capture = self._capture
        while not self._stop.is_set():
            ok, image = capture.read() if capture is not None else (False, None)
            if ok and image is not None and image.size:
                backoff = 0.25
                with self._condition:
                    self._frame = Frame(image, index, time.monotonic())
                    self._condition.notify_all()
                index += 1
                continue
            if capture is not None:
                capture.release()
                log.warning("lost %r; reconnecting in %.2f s", self.spec, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff)
            capture = self._open()
            if capture is not None:
                self.reconnects += 1
                log.info("reconnected to %r", self.spec)
        if capture is not None:
            capture.release()

    def frames(self) -> Iterator[Frame]:
        """Newest frames as they arrive; ends only on close()."""
        last = -1
        while not self._stop.is_set():
            with self._condition:
                self._condition.wait_for(
                    lambda last=last: self._stop.is_set()
                    or (self._frame is not None and self._frame.index != last),
                    timeout=self.stall_timeout)
                frame = self._frame
            if frame is None or frame.index == last:
                continue  # stalled: the reader thread keeps reconnecting
            last = frame.index
            yield frame

    def close(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=5)


def open_source(spec: str, open_timeout: float = 10.0) -> VideoFile | LiveSource:
    """A device index ('0'), a stream URL, or a video file path."""
    if spec.isdigit():
        return LiveSource(int(spec), open_timeout)
    if spec.lower().startswith(STREAM_PREFIXES):
        return LiveSource(spec, open_timeout)
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"no such video file, camera index or stream URL: {spec}")
    return VideoFile(path)
