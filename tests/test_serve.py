"""siamese-serve on loopback: keys, scopes, routes, limits, concurrency, audit chain."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import LFW_MINI
from tests.serve_support import start_server

httpx = pytest.importorskip("httpx", reason="the service tests need httpx (the dev extra)")
from click.testing import CliRunner  # noqa: E402
from siamese.runtime.commands.serve import serve_main  # noqa: E402
from siamese.runtime.errors import ConfigError, IntegrityError  # noqa: E402
from siamese.runtime.service.audit import AuditLog, verify_log  # noqa: E402
from siamese.runtime.service.config import ServiceConfig  # noqa: E402
from siamese.runtime.service.engine import ServiceError  # noqa: E402
from siamese.runtime.service.guards import RateLimiter  # noqa: E402

PHOTOS = LFW_MINI / "lfw-deepfunneled"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def photo(person: str, number: int) -> bytes:
    return (PHOTOS / person / f"{person}_{number:04d}.jpg").read_bytes()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("serve"), rate_per_s=1000, burst=1000)
    yield running
    running.stop()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def enrol(server, name: str, person: str, numbers=(1, 2)):
    files = [("images", (f"{n}.jpg", photo(person, n), "image/jpeg")) for n in numbers]
    return httpx.post(f"{server.url}/v1/people/{name}", files=files,
                      headers=bearer(server.admin), timeout=60)


def test_keys_are_shown_once_and_stored_as_salted_hashes(tmp_path):
    keys = tmp_path / "keys.json"
    runner = CliRunner()
    added = runner.invoke(serve_main, ["keys", "add", "front", "--scope", "door",
                                       "--keys", str(keys)])
    assert added.exit_code == 0, added.output
    key = added.output.strip().splitlines()[-1]
    assert key.startswith("sk-") and len(key) > 40
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    text = keys.read_text()
    assert key not in text and key[3:] not in text
    entry = json.loads(text)["keys"][0]
    assert entry["name"] == "front" and entry["scope"] == "door" and len(entry["salt"]) == 32
    again = runner.invoke(serve_main, ["keys", "add", "back", "--scope", "door",
                                       "--keys", str(keys)])
    assert json.loads(keys.read_text())["keys"][1]["salt"] != entry["salt"]
    assert again.output.strip().splitlines()[-1] != key
    listed = runner.invoke(serve_main, ["keys", "list", "--keys", str(keys)])
    assert listed.exit_code == 0 and "front\tdoor" in listed.output and key not in listed.output
    assert runner.invoke(serve_main, ["keys", "revoke", "front", "--keys", str(keys)]
                         ).exit_code == 0
    assert [e["name"] for e in json.loads(keys.read_text())["keys"]] == ["back"]
    assert runner.invoke(serve_main, ["keys", "revoke", "front", "--keys", str(keys)]
                         ).exit_code == 2
    assert runner.invoke(serve_main, ["keys", "add", "x", "--scope", "root",
                                      "--keys", str(keys)]).exit_code == 2


def test_server_refuses_to_start_without_keys_or_tls(tmp_path):
    base = {"gallery": tmp_path / "g.db", "audit": tmp_path / "a.jsonl"}
    with pytest.raises(ConfigError, match="no keys file"):
        ServiceConfig(keys=tmp_path / "none.json", **base).check()
    keys = tmp_path / "keys.json"
    CliRunner().invoke(serve_main, ["keys", "add", "a", "--scope", "admin", "--keys", str(keys)])
    with pytest.raises(ConfigError, match="needs TLS"):
        ServiceConfig(keys=keys, host="0.0.0.0", **base).check()
    ServiceConfig(keys=keys, host="0.0.0.0", insecure=True, **base).check()
    ServiceConfig(keys=keys, host="::1", **base).check()
    keys.chmod(0o644)
    from siamese.runtime.service.keys import KeyStore

    with pytest.raises(ConfigError, match="readable by others"):
        KeyStore(keys)
    result = CliRunner().invoke(serve_main, ["run", "--keys", str(tmp_path / "none.json"),
                                             "--gallery", str(base["gallery"])])
    assert result.exit_code == 2 and "no keys file" in result.output


def test_keys_and_scopes(server):
    url = server.url
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    missing = httpx.get(f"{url}/v1/people")
    assert missing.status_code == 401 and "error" in missing.json()
    assert httpx.get(f"{url}/v1/people", headers=bearer("sk-not-a-key")).status_code == 401
    assert httpx.get(f"{url}/v1/people", headers={"Authorization": server.admin}
                     ).status_code == 401
    files = [("images", ("1.jpg", photo("Madonna", 1), "image/jpeg"))]
    door = httpx.post(f"{url}/v1/people/Madonna", files=files, headers=bearer(server.door))
    assert door.status_code == 403 and "admin" in door.json()["error"]
    assert httpx.delete(f"{url}/v1/people/Madonna", headers=bearer(server.door)
                        ).status_code == 403
    assert httpx.get(f"{url}/metrics", headers=bearer(server.door)).status_code == 403
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    # revoking a key takes effect on the next request, without a restart
    from siamese.runtime.service.keys import add_key, revoke_key

    spare = add_key(server.state.config.keys, "spare", "door")
    assert httpx.get(f"{url}/v1/people", headers=bearer(spare)).status_code == 200
    revoke_key(server.state.config.keys, "spare")
    assert httpx.get(f"{url}/v1/people", headers=bearer(spare)).status_code == 401


def test_admin_enrols_lists_and_removes(server):
    made = enrol(server, "Andy Roddick", "Andy_Roddick")
    assert made.status_code == 201, made.text
    assert made.json() == {"name": "Andy Roddick", "images": 2, "used": ["image 1", "image 2"],
                           "skipped": []}
    assert enrol(server, "Andy Roddick", "Andy_Roddick").status_code == 409
    people = httpx.get(f"{server.url}/v1/people", headers=bearer(server.door)).json()
    assert {"name": "Andy Roddick", "images": 2} in people["people"]
    assert enrol(server, "Temp", "Madonna", (1,)).status_code == 201
    gone = httpx.delete(f"{server.url}/v1/people/Temp", headers=bearer(server.admin))
    assert gone.status_code == 200 and gone.json() == {"removed": "Temp"}
    assert httpx.delete(f"{server.url}/v1/people/Temp", headers=bearer(server.admin)
                        ).status_code == 404
    mixed = enrol(server, "Mixed", "Madonna", (1,))
    assert mixed.status_code == 201
    bad = httpx.post(f"{server.url}/v1/people/..%2Fetc", headers=bearer(server.admin),
                     files=[("images", ("1.jpg", photo("Madonna", 1), "image/jpeg"))])
    assert bad.status_code in (400, 404) and "error" in bad.json()


def compare(server, first: bytes, second: bytes, key: str | None = None):
    files = {"a": ("a.jpg", first, "image/jpeg"), "b": ("b.jpg", second, "image/jpeg")}
    return httpx.post(f"{server.url}/v1/compare", files=files,
                      headers=bearer(key or server.door), timeout=60)


def test_compare_same_and_different_people(server):
    same = compare(server, photo("Joan_Laporta", 1), photo("Joan_Laporta", 2))
    assert same.status_code == 200, same.text
    assert same.json()["same_person"] is True and same.json()["score"] >= same.json()["threshold"]
    other = compare(server, photo("Joan_Laporta", 1), photo("Madonna", 1)).json()
    assert other["same_person"] is False and other["score"] < other["threshold"]
    # whoever decided (the photos cascade's edge screen or SFace), the answer says which
    assert isinstance(other["screened"], bool) and set(other) == set(same.json())


def test_identify_and_verify_name_the_enrolled_person(server):
    made = enrol(server, "Yashwant Sinha", "Yashwant_Sinha")
    assert made.status_code == 201, made.text
    files = {"image": ("q.jpg", photo("Yashwant_Sinha", 4), "image/jpeg")}
    found = httpx.post(f"{server.url}/v1/identify", files=files, headers=bearer(server.door),
                       timeout=60)
    assert found.status_code == 200, found.text
    faces = found.json()["faces"]
    assert faces and faces[0]["identity"] == "Yashwant Sinha"
    stranger = {"image": ("q.jpg", photo("Joe_Nichols", 1), "image/jpeg")}
    unknown = httpx.post(f"{server.url}/v1/identify", files=stranger,
                         headers=bearer(server.door), timeout=60).json()["faces"]
    assert unknown[0]["identity"] == "unknown"
    yes = httpx.post(f"{server.url}/v1/verify/Yashwant Sinha", files=files,
                     headers=bearer(server.door), timeout=60).json()
    no = httpx.post(f"{server.url}/v1/verify/Yashwant Sinha", files=stranger,
                    headers=bearer(server.door), timeout=60).json()
    assert yes["match"] is True and no["match"] is False and no["face_found"] is True
    # one still cannot open a door under the default liveness policy (active)
    assert yes["verified"] is False and no["verified"] is False
    assert yes["liveness"]["mode"] == "active" and yes["liveness"]["result"] == "not_checked"
    absent = httpx.post(f"{server.url}/v1/verify/Nobody", files=files,
                        headers=bearer(server.door))
    assert absent.status_code == 404 and "not enrolled" in absent.json()["error"]


def test_bad_uploads_are_json_errors_with_cli_statuses(server):
    garbage = compare(server, b"not an image", photo("Madonna", 1))
    assert garbage.status_code == 400 and "error" in garbage.json()
    import cv2
    import numpy as np

    blank = cv2.imencode(".png", np.full((200, 200, 3), 127, np.uint8))[1].tobytes()
    faceless = compare(server, blank, photo("Madonna", 1))
    assert faceless.status_code == 422 and "face" in faceless.json()["error"]
    missing = httpx.post(f"{server.url}/v1/compare", headers=bearer(server.door),
                         files={"a": ("a.jpg", photo("Madonna", 1), "image/jpeg")})
    assert missing.status_code == 400 and "b" in missing.json()["error"]
    assert httpx.get(f"{server.url}/nowhere", headers=bearer(server.door)).json() == \
        {"error": "Not Found"}
    assert httpx.get(f"{server.url}/nowhere").status_code == 401  # no key: nothing is told
    # a PNG header declaring 30000 x 30000 pixels: refused before decoding
    huge = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    huge[16:24] = (30000).to_bytes(4, "big") * 2
    assert compare(server, bytes(huge), photo("Madonna", 1)).status_code == 413


def test_30_mb_upload_is_413_and_the_server_stays_healthy(server):
    big = b"\xff\xd8\xff" + bytes(30 << 20)
    declared = compare(server, big, photo("Madonna", 1))
    assert declared.status_code == 413 and "limit" in declared.json()["error"]

    def stream():
        yield (b'--x\r\nContent-Disposition: form-data; name="a"; filename="a.jpg"\r\n'
               b"Content-Type: image/jpeg\r\n\r\n")
        for _ in range(30):
            yield bytes(1 << 20)

    chunked = httpx.post(f"{server.url}/v1/compare", content=stream(), timeout=60,
                         headers={**bearer(server.door),
                                  "Content-Type": "multipart/form-data; boundary=x"})
    assert chunked.status_code == 413
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert compare(server, photo("Joan_Laporta", 1), photo("Joan_Laporta", 2)).status_code == 200


def test_200_compares_from_20_concurrent_clients(server):
    first, second = photo("John_McCain", 1), photo("John_McCain", 2)

    def client(_: int) -> list[int]:
        with httpx.Client(timeout=120) as session:
            return [session.post(f"{server.url}/v1/compare", headers=bearer(server.door),
                                 files={"a": ("a.jpg", first), "b": ("b.jpg", second)}
                                 ).status_code for _ in range(10)]

    with ThreadPoolExecutor(20) as pool:
        statuses = [s for batch in pool.map(client, range(20)) for s in batch]
    assert len(statuses) == 200
    assert statuses.count(200) == 200, sorted(set(statuses))


def test_rate_limit_and_full_queue_answer_429_with_retry_after(server):
    limiter = RateLimiter(rate=0.5, burst=2)
    limiter.take("k")
    limiter.take("k")
    with pytest.raises(ServiceError) as refused:
        limiter.take("k")
    assert refused.value.status == 429 and int(refused.value.headers["Retry-After"]) >= 1
    limiter.take("other")  # per key
    saved, server.state.limiter = server.state.limiter, RateLimiter(0.01, 1)
    try:
        headers = bearer(server.door)
        assert httpx.get(f"{server.url}/v1/people", headers=headers).status_code == 200
        limited = httpx.get(f"{server.url}/v1/people", headers=headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    finally:
        server.state.limiter = saved
    engine = server.state.engine
    saved_capacity, engine.capacity = engine.capacity, 0
    try:
        busy = compare(server, photo("Joan_Laporta", 1), photo("Joan_Laporta", 2))
        assert busy.status_code == 429 and busy.headers["Retry-After"] == "1"
    finally:
        engine.capacity = saved_capacity
    saved_timeout, engine.timeout_s = engine.timeout_s, 1e-4
    try:
        slow = compare(server, photo("Joan_Laporta", 1), photo("Joan_Laporta", 2))
        assert slow.status_code == 503 and "longer than" in slow.json()["error"]
    finally:
        engine.timeout_s = saved_timeout


def test_openapi_metrics_and_cors_off(server):
    spec = httpx.get(f"{server.url}/openapi.json", headers=bearer(server.door)).json()
    assert {"/v1/compare", "/v1/identify", "/v1/people/{name}", "/healthz"} <= set(spec["paths"])
    metrics = httpx.get(f"{server.url}/metrics", headers=bearer(server.admin))
    assert metrics.status_code == 200 and "siamese_requests_total{" in metrics.text
    preflight = httpx.options(f"{server.url}/v1/compare", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    page = httpx.get(f"{server.url}/kiosk")
    assert page.status_code == 200 and "sk-" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


def _session(server, frames: list, key: str, person: str, start: dict | None = None
             ) -> list[dict]:
    """Stream `frames` over /v1/sessions, one per answer, until the final message."""
    websockets = pytest.importorskip("websockets.sync.client")
    import cv2
    from websockets.exceptions import ConnectionClosed

    events = []
    with websockets.connect(f"ws://127.0.0.1:{server.port}/v1/sessions") as socket:
        socket.send(json.dumps({"type": "start", "person": person, "key": key,
                                **(start or {})}))
        events.append(json.loads(socket.recv(timeout=30)))
        if events[-1]["type"] != "ready":
            return events
        for frame in frames:
            try:
                socket.send(cv2.imencode(".jpg", frame)[1].tobytes())
            except ConnectionClosed:  # the server ended the session (its deadline) meanwhile
                return events + _drain(socket)
            while True:  # prompts come before their frame's answer
                events.append(json.loads(socket.recv(timeout=30)))
                if events[-1]["type"] != "challenge":
                    break
            if events[-1]["type"] == "frame" and events[-1].get("verified"):
                events.append(json.loads(socket.recv(timeout=30)))
            if events[-1]["type"] in ("final", "error"):
                return events
        socket.send(json.dumps({"type": "end"}))  # not a frame: the server ends the session
        events.append(json.loads(socket.recv(timeout=30)))
    return events


def _drain(socket) -> list[dict]:
    """The messages a closed socket received before it closed."""
    from websockets.exceptions import ConnectionClosed

    events = []
    while True:
        try:
            events.append(json.loads(socket.recv(timeout=5)))
        except (ConnectionClosed, TimeoutError):
            return events


def test_websocket_session_refuses_a_filmed_photo_and_records_the_liveness(server):
    files = [("images", (p.name, p.read_bytes(), "image/jpeg"))
             for p in sorted((EXAMPLES / "Abdullah_Gul").glob("*.jpg"))]
    made = httpx.post(f"{server.url}/v1/people/Abdullah Gul", files=files,
                      headers=bearer(server.admin), timeout=60)
    assert made.status_code in (201, 409), made.text
    from tests.live_clip import read_video

    photo_video = read_video(EXAMPLES / "Abdullah_Gul.avi") * 3  # a still photo filmed, 6 s
    events = _session(server, photo_video, server.door, "Abdullah Gul")
    assert events[0]["type"] == "ready" and events[0]["liveness"] == "active"
    final = events[-1]
    assert final["type"] in ("final", "error") and not final.get("verified")
    assert any(e["type"] == "frame" and e["match"] for e in events)  # the right person...
    if final["type"] == "final":  # ...refused for liveness
        assert final["liveness"]["mode"] == "active"
        assert final["liveness"]["result"] == "failed" and final["liveness"]["reason"]
    audit = json.loads(server.state.config.audit.read_text().splitlines()[-1])
    assert audit["route"] == "session" and audit["decision"] == "rejected"
    assert audit["liveness"]["mode"] == "active" and audit["liveness"]["result"] == "failed"
    weaker = _session(server, [], server.door, "Abdullah Gul", {"liveness": "off"})
    assert weaker[0]["type"] == "error" and weaker[0]["status"] == 403
    refused = _session(server, [], "sk-wrong", "Abdullah Gul")
    assert refused[0] == {"type": "error", "status": 401, "error": "missing or unknown API key"}


def test_websocket_session_verifies_a_live_head_turn_as_asked(server):
    import random

    from siamese.runtime.liveness.challenge import ChallengeConfig

    from tests.live_clip import ACTION, ENROL, live_turn

    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in ENROL]
    made = httpx.post(f"{server.url}/v1/people/Live Person", files=files,
                      headers=bearer(server.admin), timeout=60)
    assert made.status_code in (201, 409), made.text
    # the test-only hook: Python sets the challenge, no command line can
    server.state.challenge = ChallengeConfig(actions=(ACTION,), steps=1,
                                             prompt_delay_s=(0.3, 0.3))
    server.state.challenge_rng = random.Random(0)
    try:
        events = _session(server, live_turn(hold_s=1.0) * 3, server.door, "Live Person")
    finally:
        server.state.challenge, server.state.challenge_rng = ChallengeConfig(), None
    prompts = [e for e in events if e["type"] == "challenge"]
    assert prompts and prompts[0]["challenge"] == ACTION and prompts[0]["prompt"]
    final = events[-1]
    assert final["type"] == "final" and final["verified"] is True, final
    assert final["liveness"]["result"] == "passed" and final["liveness"]["signals"]
    audit = json.loads(server.state.config.audit.read_text().splitlines()[-1])
    assert audit["decision"] == "verified" and audit["liveness"]["result"] == "passed"


def test_audit_log_is_chained_and_tampering_is_named(server, tmp_path):
    import hashlib

    from siamese.runtime.service.audit import create_key, load_key

    assert compare(server, photo("Madonna", 1), photo("Madonna", 2)).status_code == 200
    key = load_key(server.state.config.audit_key_path)
    head = verify_log(server.state.config.audit, key)
    assert head.lines >= 1
    lines = server.state.config.audit.read_text().splitlines()
    entry = json.loads(lines[0])
    assert {"time", "key", "route", "person", "score", "decision", "liveness", "mac"} <= \
        set(entry)
    own = create_key(tmp_path / "a.key")
    log = AuditLog(tmp_path / "a.jsonl", own)
    for number in range(5):
        log.append(key="k", route="compare", person=None, score=0.5 + number / 10,
                   decision="same", liveness=None)
    log.close()
    original = (tmp_path / "a.jsonl").read_text().splitlines()
    assert verify_log(tmp_path / "a.jsonl", own).lines == 5
    cases = {
        "edited": original[:2] + [original[2].replace('"score":0.7', '"score":0.9')]
        + original[3:],
        "removed": original[:2] + original[3:],
        "inserted": original[:3] + [original[1]] + original[3:],
    }
    for kind, rows in cases.items():
        path = tmp_path / f"{kind}.jsonl"
        path.write_text("\n".join(rows) + "\n")
        with pytest.raises(IntegrityError, match="line [34]") as caught:
            verify_log(path, own)
        assert ("edited" in str(caught.value)) == (kind == "edited"), (kind, caught.value)
    # an attacker who can write the log but not read the key edits a decision and rebuilds
    # the chain with every digest a keyless tool can compute: still named
    forged, prev = [], "0" * 64
    for row in original:
        line = json.loads(row.replace('"decision":"same"', '"decision":"different"'))
        line["prev"] = prev
        body = {k: v for k, v in line.items() if k != "mac"}
        line["mac"] = prev = hashlib.sha256(json.dumps(
            body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
        forged.append(json.dumps(line))
    (tmp_path / "forged.jsonl").write_text("\n".join(forged) + "\n")
    with pytest.raises(IntegrityError, match="line 1 was edited"):
        verify_log(tmp_path / "forged.jsonl", own)
    path = tmp_path / "edited.jsonl"
    result = CliRunner().invoke(serve_main, ["audit", "verify", str(path), "--key",
                                             str(tmp_path / "a.key")])
    assert result.exit_code == 1 and "line 3 was edited" in result.output
    good = CliRunner().invoke(serve_main, ["audit", "verify", str(tmp_path / "a.jsonl"),
                                           "--key", str(tmp_path / "a.key")])
    assert good.exit_code == 0 and "5 lines intact" in good.output
