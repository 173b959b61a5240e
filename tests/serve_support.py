"""A siamese-serve instance in a thread of the test process, on 127.0.0.1 and a free port."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the service needs the serve extra: "
                    "pip install '.[serve]'")
import uvicorn  # noqa: E402
from siamese.runtime.service.config import ServiceConfig  # noqa: E402
from siamese.runtime.service.keys import add_key  # noqa: E402
from siamese.runtime.service.server import uvicorn_config  # noqa: E402
from siamese.runtime.service.state import Service  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Running:
    url: str
    port: int
    state: Service
    admin: str
    door: str
    folder: Path
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_server(folder: Path, **overrides) -> Running:
    folder.mkdir(parents=True, exist_ok=True)
    keys = folder / "keys.json"
    admin, door = add_key(keys, "ops", "admin"), add_key(keys, "door-1", "door")
    port = free_port()
    config = ServiceConfig(keys=keys, gallery=folder / "people.db",
                           audit=folder / "audit.jsonl", port=port, **overrides)
    state = Service.start(config)
    server = uvicorn.Server(uvicorn_config(state, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return Running(f"http://127.0.0.1:{port}", port, state, admin, door, folder, server,
                   thread)
