"""Misbehaving stream servers on 127.0.0.1 for the hostile tests; each is bounded and stops
when its `with` block ends."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import cv2
import numpy as np


class _Server:
    """A TCP server on 127.0.0.1 that runs `handle(connection)` per client on a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.stop = threading.Event()
        self.connections = 0
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            self.clients.append(client)
            threading.Thread(target=self._guarded, args=(client,), daemon=True).start()

    def _guarded(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.handle(client)

    def handle(self, client: socket.socket) -> None:
        raise NotImplementedError

    def hold(self, seconds: float = 120.0) -> None:
        """Keep a connection open, silent, until the server stops (bounded)."""
        self.stop.wait(seconds)

    def kill(self) -> None:
        """Drop every connection and stop accepting: the server died."""
        self.stop.set()
        for client in self.clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
                client.close()
            except OSError:
                pass
        self.sock.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.stop.is_set():
            self.kill()


class SilentServer(_Server):
    """Accepts connections and never answers."""

    def handle(self, client):
        self.hold()


def _mjpeg_header() -> bytes:
    return (b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n"
            b"\r\n")


def _part(image: np.ndarray) -> bytes:
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    return (b"--frame\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")


class StallingServer(_Server):
    """Sends `frames_before_stall` frames on every connection, then holds it silently."""

    def __init__(self, frame: np.ndarray, frames_before_stall: int = 1) -> None:
        super().__init__()
        self.part, self.count = _part(frame), frames_before_stall

    def handle(self, client):
        client.recv(4096)
        client.sendall(_mjpeg_header())
        for _ in range(self.count):
            client.sendall(self.part)
            time.sleep(0.05)
        self.hold()


class SlowServer(_Server):
    """Sends one frame every `period` seconds (bounded to 200 frames)."""

    def __init__(self, frame: np.ndarray, period: float = 1.0) -> None:
        super().__init__()
        self.part, self.period = _part(frame), period

    def handle(self, client):
        client.recv(4096)
        client.sendall(_mjpeg_header())
        for _ in range(200):
            if self.stop.is_set():
                return
            client.sendall(self.part)
            self.stop.wait(self.period)


class GarbageServer(_Server):
    """Answers 200 with random bytes, bounded to 4 MB per connection."""

    def handle(self, client):
        client.recv(4096)
        client.sendall(_mjpeg_header())
        rng = np.random.default_rng(0)
        for _ in range(64):
            if self.stop.is_set():
                return
            client.sendall(rng.integers(0, 256, 65536, dtype=np.uint8).tobytes())
            time.sleep(0.02)
        self.hold()
