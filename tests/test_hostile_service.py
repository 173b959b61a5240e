"""The service's front door and audit trail, attacked (issue 30): nothing lost, nothing free.

Each test names the guarantee it shows (docs/RELIABILITY.md lists them). Servers run in this
process on 127.0.0.1 (tests/serve_support.py) with short deadlines where a test waits for one.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import LFW_MINI
from tests.serve_support import free_port, start_server

httpx = pytest.importorskip("httpx", reason="the service tests need httpx (the dev extra)")
websockets = pytest.importorskip("websockets.sync.client",
                                 reason="the WebSocket tests need websockets (the serve extra)")
from siamese.runtime.service.audit import load_key, verify_log  # noqa: E402
from siamese.runtime.service.keys import add_key  # noqa: E402

PHOTOS = LFW_MINI / "lfw-deepfunneled"


def photo(person: str, number: int) -> bytes:
    return (PHOTOS / person / f"{person}_{number:04d}.jpg").read_bytes()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def compare(server, key: str | None = None) -> httpx.Response:
    files = {"a": ("a.jpg", photo("Madonna", 1), "image/jpeg"),
             "b": ("b.jpg", photo("Madonna", 2), "image/jpeg")}
    return httpx.post(f"{server.url}/v1/compare", files=files,
                      headers=bearer(key or server.door), timeout=60)


@pytest.fixture
def server(tmp_path):
    running = start_server(tmp_path / "serve", body_timeout_s=1.0, auth_timeout_s=1.0,
                           max_sessions=3)
    yield running
    running.stop()


def raw(server, data: bytes, wait_s: float) -> tuple[bytes, float]:
    """Send `data` on a raw connection; what came back within `wait_s`, and when."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait_s) as conn:
        conn.sendall(data)
        received = b""
        try:
            while chunk := conn.recv(4096):
                received += chunk
        except TimeoutError:
            pass
    return received, time.monotonic() - started


# --- the audit trail -----------------------------------------------------------------------
def test_a_deleted_audit_log_stops_every_decision_with_503(server):
    assert compare(server).status_code == 200
    server.state.config.audit.unlink()
    answer = compare(server)
    assert answer.status_code == 503 and "audit log" in answer.json()["error"]


def test_a_replaced_audit_log_stops_decisions(server):
    assert compare(server).status_code == 200
    log = server.state.config.audit
    copy = log.with_name("copy.jsonl")
    copy.write_bytes(log.read_bytes())
    os.replace(copy, log)  # same contents, another file
    assert compare(server).status_code == 503


def test_the_enrolment_line_is_on_disk_before_the_gallery_commit(server):
    engine, log = server.state.engine, server.state.config.audit
    seen = {}
    add = engine._add

    def spy(template, replace):  # the gallery's commit, on its own thread
        seen["last"] = json.loads(log.read_text().splitlines()[-1])
        return add(template, replace)

    engine._add = spy
    files = [("images", (f"{n}.jpg", photo("Yashwant_Sinha", n), "image/jpeg")) for n in (1, 2)]
    made = httpx.post(f"{server.url}/v1/people/Yashwant", files=files,
                      headers=bearer(server.admin), timeout=60)
    assert made.status_code == 201, made.text
    assert seen["last"]["route"] == "enrol" and seen["last"]["person"] == "Yashwant"


def test_a_failed_commit_after_its_line_is_recorded_as_failed(server):
    def broken(template, replace):
        raise OSError("disk full")

    server.state.engine._add = broken
    files = [("images", (f"{n}.jpg", photo("Yashwant_Sinha", n), "image/jpeg")) for n in (1, 2)]
    made = httpx.post(f"{server.url}/v1/people/Yashwant", files=files,
                      headers=bearer(server.admin), timeout=60)
    assert made.status_code == 500
    lines = [json.loads(x) for x in server.state.config.audit.read_text().splitlines()]
    assert [(x["decision"], x.get("reason")) for x in lines[-2:]] == \
        [("enrolled", None), ("failed", "OSError")]
    key = load_key(server.state.config.audit_key_path)
    assert verify_log(server.state.config.audit, key).lines == len(lines)
    assert "Yashwant" not in server.state.engine.templates


# --- authentication before any body ----------------------------------------------------------
def test_a_keyless_15_mb_upload_is_refused_from_its_headers(server):
    head = (b"POST /v1/compare HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=b\r\nContent-Length: 15000000\r\n\r\n")
    answer, seconds = raw(server, head, wait_s=3)
    assert answer.startswith(b"HTTP/1.1 401") and seconds < 2, (answer[:80], seconds)


def test_a_trickled_body_with_a_key_is_cut_off_with_408(server):
    head = (f"POST /v1/compare HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.door}\r\n"
            f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
    answer, seconds = raw(server, head + b"--b\r\n", wait_s=5)
    assert answer.startswith(b"HTTP/1.1 408") and seconds < 4, (answer[:80], seconds)


def test_trickled_headers_are_cut_off(server, monkeypatch):
    from siamese.runtime.service.server import HeaderDeadline

    monkeypatch.setattr(HeaderDeadline, "header_timeout_s", 1.0)
    with socket.create_connection(("127.0.0.1", server.port), timeout=6) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never the blank line
        started = time.monotonic()
        assert conn.recv(100) == b""  # closed by the server
        assert time.monotonic() - started < 4


def test_failed_keys_from_one_address_are_rate_limited(server):
    answers = [compare(server, key="sk-wrong").status_code for _ in range(12)]
    assert answers[:10] == [401] * 10 and answers[10:] == [429, 429]
    blocked = compare(server, key="sk-wrong")
    assert int(blocked.headers["retry-after"]) >= 1


# --- WebSockets ------------------------------------------------------------------------------
def _open(server):
    return websockets.connect(f"ws://127.0.0.1:{server.port}/v1/sessions", open_timeout=5)


def test_idle_keyless_websockets_never_lock_a_door_out(server):
    with contextlib.ExitStack() as idle:
        for _ in range(6):  # twice the cap of 3
            idle.enter_context(_open(server))
        with _open(server) as door:
            door.send(json.dumps({"type": "start", "person": "Nobody", "key": server.door}))
            answer = json.loads(door.recv(timeout=10))
    assert answer == {"type": "error", "status": 404, "error": "'Nobody' is not enrolled"}


def test_a_websocket_must_start_within_the_auth_deadline(server):
    with _open(server) as sock:
        answer = json.loads(sock.recv(timeout=5))
    assert answer["status"] == 408


def test_a_binary_first_message_is_a_400_not_a_crash(server):
    with _open(server) as sock:
        sock.send(b"\x00\x01binary")
        answer = json.loads(sock.recv(timeout=5))
    assert answer["status"] == 400 and "first message" in answer["error"]
    assert compare(server).status_code == 200  # the server is fine


# --- keys ------------------------------------------------------------------------------------
def test_a_keys_file_made_readable_while_running_authorises_nobody(server):
    keys = server.state.config.keys
    assert compare(server).status_code == 200
    keys.chmod(0o644)
    assert compare(server).status_code == 401
    keys.chmod(0o600)
    assert compare(server).status_code == 200


def test_an_expired_key_is_refused_and_listed_as_expired(server):
    keys = server.state.config.keys
    key = add_key(keys, "temp", "door", expires=time.time() + 1.0)
    assert compare(server, key=key).status_code == 200
    time.sleep(1.2)
    assert compare(server, key=key).status_code == 401
    listed = subprocess.run([str(Path(sys.executable).with_name("siamese-serve")), "keys",
                             "list", "--keys", str(keys)], capture_output=True, text=True)
    assert "temp\tdoor" in listed.stdout and "(expired)" in listed.stdout


# --- start-up: every check before anything is printed or created -------------------------------
def _run(folder: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("siamese-serve")), "run", "--keys",
               str(folder / "keys.json"), "--gallery", str(folder / "people.db"), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_busy_port_is_one_line_exit_2_and_creates_nothing(tmp_path):
    add_key(tmp_path / "keys.json", "ops", "admin")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        refused = _run(tmp_path, "--port", str(busy.getsockname()[1]))
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1, refused.stderr
    assert "cannot listen" in refused.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_a_loose_keys_file_or_a_tampered_log_refuses_before_the_banner(tmp_path):
    add_key(tmp_path / "keys.json", "ops", "admin")
    (tmp_path / "keys.json").chmod(0o644)
    loose = _run(tmp_path, "--port", str(free_port()))
    assert loose.returncode == 2 and len(loose.stderr.splitlines()) == 1
    assert "siamese-serve on" not in loose.stderr and "readable by others" in loose.stderr
    (tmp_path / "keys.json").chmod(0o600)
    (tmp_path / "people.db.audit.jsonl").write_text('{"seq": 1}\n')
    tampered = _run(tmp_path, "--port", str(free_port()))
    assert tampered.returncode == 2 and len(tampered.stderr.splitlines()) == 1
    assert "audit" in tampered.stderr and not (tmp_path / "people.db").exists()
