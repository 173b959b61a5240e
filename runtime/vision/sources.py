"""Frame sources, read on a background thread so that no source can block the caller.

A live camera or stream keeps only the newest frame and reconnects with backoff; a video file
delivers every frame in order through a small bounded queue. Either way the caller asks for the
next frame with `read(timeout)` and gets it, or None when none came in time: the caller's clock
rules, never the source's. Opening has its own deadline (enforced here, whatever the backend
does), a stalled stream cannot hold a read past its timeout, and a reader thread that dies
turns into a SourceError on the next read.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from siamese.runtime.errors import SourceError
from siamese.runtime.redact import redact
from siamese.runtime.vision.imageio import declared_size

log = logging.getLogger(__name__)

STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


@dataclass(frozen=True)
class Frame:
    image: np.ndarray
    index: int  # position in the source (frames read; live sources skip the stale ones)
    timestamp: float  # seconds on the camera's clock: capture time (monotonic) for a live
    # source, the frame's position in the recording for a video file


def open_capture(spec: int | str, timeout: float,
                 read_timeout: float = 5.0) -> cv2.VideoCapture | None:
    """A cv2.VideoCapture opened within `timeout` seconds, or None.

    Streams get FFmpeg's own open and read timeouts; in case a backend ignores them, the open
    runs on a helper thread and is abandoned (and released once it returns) at the deadline.
    """
    done = threading.Event()
    box: dict = {}
    lock = threading.Lock()

    def attempt() -> None:
        try:
            if isinstance(spec, str):
                capture = cv2.VideoCapture(spec, cv2.CAP_FFMPEG, [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(timeout * 1000)),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1, int(read_timeout * 1000))])
            else:
                capture = cv2.VideoCapture(spec)
        except cv2.error:
            capture = None
        with lock:
            abandoned = box.get("abandoned", False)
            if capture is not None and (abandoned or not capture.isOpened()):
                capture.release()
                capture = None
            box["capture"] = capture
        done.set()

    threading.Thread(target=attempt, name="source-open", daemon=True).start()
    done.wait(max(timeout, 0.0))
    with lock:
        if not done.is_set():
            box["abandoned"] = True
            return None
        return box["capture"]


class ThreadedSource:
    """A reader thread feeding frames to `read(timeout)`; subclasses implement `_produce`."""

    live: bool

    def __init__(self, description: str) -> None:
        self.description = description
        self.reconnects = 0
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="frame-reader", daemon=True)

    def _start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # noqa: BLE001 (reported to the reader by read())
            self._error = exc
        finally:
            self._finished.set()

    def _produce(self) -> None:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        """True once a finite source has delivered its last frame (never for a live one)."""
        return self._finished.is_set() and self._error is None and not self._pending()

    def _pending(self) -> bool:
        return False

    def _check_reader(self) -> None:
        if self._error is not None:
            raise SourceError(f"reading {self.description} failed: "
                              f"{type(self._error).__name__}: {self._error}")
        if self.live and self._finished.is_set() and not self._stop.is_set():
            raise SourceError(f"the frame reader of {self.description} stopped")

    def read(self, timeout: float) -> Frame | None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the reader; a reader stuck inside a backend call is left to exit on its own."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoFile(ThreadedSource):
    """Every frame of a video file, in order; `finished` once the last one has been read."""

    live = False

    def __init__(self, path: str | Path, read_timeout: float = 10.0) -> None:
        super().__init__(f"video file {path}")
        self.path = Path(path)
        self.read_timeout = read_timeout
        self.corrupt_frames = 0
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=8)
        self._capture = open_capture_file(self.path)
        self._start()

    def _produce(self) -> None:
        capture, index = self._capture, 0
        clock = MediaClock(capture.get(cv2.CAP_PROP_FPS))
        try:
            while not self._stop.is_set():
                ok, image = capture.read()
                if not ok:
                    return
                if image is None or image.size == 0:
                    self.corrupt_frames += 1
                    continue
                frame = Frame(image, index, clock.tick(capture.get(cv2.CAP_PROP_POS_MSEC)))
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                index += 1
        finally:
            capture.release()

    def _pending(self) -> bool:
        return not self._queue.empty()

    def read(self, timeout: float) -> Frame | None:
        """The next frame, or None when none arrived within `timeout` or the file has ended."""
        deadline = time.monotonic() + max(timeout, 0.0)
        while True:
            try:
                return self._queue.get(timeout=min(0.05, max(deadline - time.monotonic(), 0)))
            except queue.Empty:
                pass
            self._check_reader()
            if self._finished.is_set() and self._queue.empty():
                return None
            if time.monotonic() >= deadline:
                return None


class MediaClock:
    """A recording's own time base: each frame's position (ms) when the container gives one
    that moves forward, else the previous frame's time plus one frame at the file's rate."""

    DEFAULT_FPS = 15.0

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / (fps if 0 < fps < 1000 else self.DEFAULT_FPS)
        self.last: float | None = None

    def tick(self, position_ms: float) -> float:
        seconds = position_ms / 1000.0
        if self.last is None:
            now = seconds if 0 <= seconds < 1e6 else 0.0
        elif self.last < seconds < self.last + 10.0:
            now = seconds
        else:
            now = self.last + self.period
        self.last = now
        return now


def is_live_spec(spec: str) -> bool:
    """A camera index or a stream URL (what a door sees), not a recorded file."""
    return spec.isdigit() or spec.lower().startswith(STREAM_PREFIXES)


def open_capture_file(path: Path) -> cv2.VideoCapture:
    """Open a video file, refusing still images (a photo held up is not a video)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
    except OSError as exc:
        raise SourceError(f"cannot read video file {path}: {exc.strerror or exc}") from None
    if declared_size(head) is not None:
        raise SourceError(f"{path} is a still image, not a video: use --image to check a photo")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"cannot open video file {path}")
    return capture


class LiveSource(ThreadedSource):
    """A camera index or stream URL read by a background thread.

    The caller always gets the newest frame (no backlog). When reads fail or stall for
    `read_timeout` seconds the source is reopened with exponential backoff; `reconnects`
    counts how often.
    """

    live = True

    def __init__(self, spec: int | str, open_timeout: float = 10.0, read_timeout: float = 5.0,
                 max_backoff: float = 4.0) -> None:
        super().__init__(f"camera or stream {redact(str(spec))!r}")
        self.spec = spec
        self.read_timeout, self.max_backoff = read_timeout, max_backoff
        self._frame: Frame | None = None
        self._last_index = -1
        self._condition = threading.Condition()
        deadline = time.monotonic() + open_timeout
        capture = open_capture(spec, open_timeout, read_timeout)
        while capture is None and time.monotonic() + 0.5 < deadline:
            time.sleep(0.5)
            capture = open_capture(spec, deadline - time.monotonic(), read_timeout)
        if capture is None:
            raise SourceError(f"cannot open {self.description} within {open_timeout:g} s")
        self._capture = capture
        capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._start()

    def _produce(self) -> None:
        index, backoff = 0, 0.25
        capture = self._capture
        try:
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
                    log.info("lost %s; reconnecting in %.2f s", self.description, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                capture = None if self._stop.is_set() else open_capture(
                    self.spec, self.read_timeout, self.read_timeout)
                if capture is not None:
                    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
                    self.reconnects += 1
                    log.info("reconnected to %s", self.description)
        finally:
            if capture is not None:
                capture.release()

    def read(self, timeout: float) -> Frame | None:
        """The newest frame not yet returned, or None when none arrived within `timeout`."""
        last = self._last_index
        with self._condition:
            self._condition.wait_for(
                lambda: self._stop.is_set() or self._finished.is_set()
                or (self._frame is not None and self._frame.index != last),
                timeout=max(timeout, 0.0))
            frame = self._frame
        self._check_reader()
        if frame is None or frame.index == last:
            return None
        self._last_index = frame.index
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._condition:
            self._condition.notify_all()
        super().close()


VIDEO_DEVICES = Path("/dev")


def video_devices(root: Path = VIDEO_DEVICES) -> list[str]:
    """The video device nodes of this machine (/dev/video*), sorted by index."""
    found = [p for p in root.glob("video*") if p.name[5:].isdigit()]
    return [str(p) for p in sorted(found, key=lambda p: int(p.name[5:]))]


def check_camera_device(index: int, root: Path = VIDEO_DEVICES) -> None:
    """SourceError at once when camera `index` has no device node (Linux only: elsewhere
    OpenCV's own probing decides), naming the devices that do exist."""
    if not sys.platform.startswith("linux") or not root.is_dir():
        return
    if (root / f"video{index}").exists():
        return
    devices = video_devices(root)
    raise SourceError(f"cannot open camera or stream '{index}': no video device "
                      f"{root / f'video{index}'}; "
                      + (f"this machine has {', '.join(devices)}" if devices
                         else "this machine has no camera (no /dev/video* device)"))


def open_source(spec: str, open_timeout: float = 10.0) -> VideoFile | LiveSource:
    """A device index ('0'), a stream URL, or a video file path."""
    if spec.isdigit():
        check_camera_device(int(spec))
        return LiveSource(int(spec), open_timeout)
    if spec.lower().startswith(STREAM_PREFIXES):
        return LiveSource(spec, open_timeout)
    path = Path(spec)
    if not path.is_file():
        raise SourceError(f"no such video file, camera index or stream URL: {redact(spec)}")
    return VideoFile(path)
