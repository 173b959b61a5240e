"""Two siamese-serve processes on one PostgreSQL, and doors that pull signed snapshots: consistent
under concurrent load, revocation on the next pull, no rollback, no forgery, a door key held to
its own door, 503 when the database goes away mid-enrolment, doors deciding with the center down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import LFW_MINI
from tests.postgres_support import postgres  # noqa: F401  (the session fixture)

httpx = pytest.importorskip("httpx", reason="the service tests need httpx (the dev extra)")
pytest.importorskip("fastapi", reason="the service needs the serve extra")
from siamese.runtime.commands.gallery import gallery_main, identify_main  # noqa: E402
from siamese.runtime.errors import IntegrityError  # noqa: E402
from siamese.runtime.service.keys import add_key  # noqa: E402
from siamese.runtime.storage.gallery import Gallery  # noqa: E402
from siamese.runtime.storage.snapshot import (  # noqa: E402
    apply_snapshot,
    key_id,
    load_public_key,
    verify_snapshot,
)
from siamese.runtime.verifier import Verifier  # noqa: E402

from tests.serve_support import free_port  # noqa: E402

PHOTOS = LFW_MINI / "lfw-deepfunneled"
SERVE = "from siamese.runtime.commands.serve import serve_main; serve_main()"


def photos(person: str, numbers) -> list:
    return [("images", (f"{n}.jpg", (PHOTOS / person / f"{person}_{n:04d}.jpg").read_bytes(),
                        "image/jpeg")) for n in numbers]


def query(person: str, number: int) -> dict:
    return {"image": ("q.jpg", (PHOTOS / person / f"{person}_{number:04d}.jpg").read_bytes(),
                      "image/jpeg")}


@dataclass
class Center:
    db: str
    folder: Path
    urls: list[str]
    processes: list[subprocess.Popen]
    admin: str
    front: str
    back: str

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def center(postgres, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("center")
    keys = folder / "keys.json"
    admin = add_key(keys, "ops", "admin")
    front, back = add_key(keys, "front", "door"), add_key(keys, "back", "door")
    db = postgres.new_database()
    urls, processes = [], []
    for number in (1, 2):
        port = free_port()
        log = open(folder / f"serve-{number}.log", "w")  # noqa: SIM115  (closed with the process)
        processes.append(subprocess.Popen(
            [sys.executable, "-c", SERVE, "run", "--gallery", db, "--keys", str(keys),
             "--port", str(port), "--audit", str(folder / f"audit-{number}.jsonl"),
             "--signing-key", str(folder / "center.key"), "--workers", "2",
             "--rate", "1000"], stdout=log, stderr=subprocess.STDOUT))
        log.close()
        urls.append(f"http://127.0.0.1:{port}")
    running = Center(db, folder, urls, processes, admin, front, back)
    try:
        for url, process in zip(urls, processes, strict=True):
            for _ in range(600):
                if process.poll() is not None:
                    pytest.fail((folder / f"serve-{urls.index(url) + 1}.log").read_text())
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        yield running
    finally:
        running.stop()


def names_at(url: str, key: str) -> list[str]:
    return [p["name"] for p in httpx.get(f"{url}/v1/people", headers=auth(key),
                                         timeout=30).json()["people"]]


def identify(url: str, key: str, person: str, number: int) -> str:
    answer = httpx.post(f"{url}/v1/identify", files=query(person, number), headers=auth(key),
                        timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["faces"][0]["identity"]


def test_two_servers_enrol_and_identify_consistently_under_concurrent_load(center):
    one, two = center.urls
    people = {"Yashwant Sinha": "Yashwant_Sinha", "Valentino Rossi": "Valentino_Rossi",
              "Tim Henman": "Tim_Henman", "Mary Carey": "Mary_Carey"}

    def enrol(item) -> float:
        number, (name, folder) = item
        url = center.urls[number % 2]
        made = httpx.post(f"{url}/v1/people/{name}", files=photos(folder, (1, 2)),
                          headers=auth(center.admin), timeout=120)
        assert made.status_code == 201, made.text
        other = center.urls[(number + 1) % 2]  # the other process learns it (NOTIFY)
        started = time.monotonic()
        while identify(other, center.front, folder, 4) != name:
            assert time.monotonic() - started < 30, f"{name} never reached {other}"
        return time.monotonic() - started

    def load(_: int) -> None:  # identifications meanwhile, on both processes
        for url in center.urls:
            identify(url, center.front, "Madonna", 1)

    with ThreadPoolExecutor(6) as pool:
        background = [pool.submit(load, i) for i in range(4)]
        waits = list(pool.map(enrol, enumerate(people.items())))
        for job in background:
            job.result()
    assert names_at(one, center.front) == names_at(two, center.front) == sorted(people)
    assert all(wait >= 0 for wait in waits)
    removed = httpx.delete(f"{two}/v1/people/Mary Carey", headers=auth(center.admin))
    assert removed.status_code == 200
    started = time.monotonic()
    while "Mary Carey" in names_at(one, center.front):
        assert time.monotonic() - started < 30
        time.sleep(0.05)


def test_a_door_key_reads_only_its_own_door(center):
    url = center.urls[0]
    for route in ("/v1/doors/back/people", "/v1/doors/back/snapshot", "/v1/groups"):
        assert httpx.get(url + route, headers=auth(center.front)).status_code == 403, route
    for route in ("/v1/doors/front/people/Tim Henman", "/v1/groups/staff/people/Tim Henman"):
        assert httpx.put(url + route, headers=auth(center.front)).status_code == 403, route
    assert httpx.get(url + "/v1/doors/front/people",
                     headers=auth(center.front)).status_code == 200
    assert httpx.get(url + "/v1/snapshot", headers=auth(center.admin)).status_code == 403


def pull(center, out: Path):
    return CliRunner().invoke(gallery_main, [
        "pull", center.urls[1], "--key", center.front, "--out", str(out),
        "--center-key", str(center.folder / "center.key.pub")])


def identify_at_door(door: Path, person: str, number: int) -> dict:
    image = PHOTOS / person / f"{person}_{number:04d}.jpg"
    result = CliRunner().invoke(identify_main, ["--gallery", str(door), "--model", "edge",
                                                str(image)])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output.splitlines()[-1])


def test_the_database_lost_mid_enrolment_is_503_and_no_half_person(center):
    import psycopg

    url = center.urls[0]
    answers = []
    with psycopg.connect(center.db) as blocker:
        blocker.execute("SELECT 1 FROM state FOR UPDATE")  # the enrolment will wait inside

        def enrol() -> None:
            answers.append(httpx.post(f"{url}/v1/people/Pedro Malan",
                                      files=photos("Pedro_Malan", (1, 2)),
                                      headers=auth(center.admin), timeout=120))
        thread = threading.Thread(target=enrol)
        thread.start()
        with psycopg.connect(center.db, autocommit=True) as admin:
            for _ in range(1200):
                waiting = admin.execute("SELECT pid FROM pg_stat_activity WHERE "
                                        "wait_event_type = 'Lock' AND pid <> %s",
                                        (blocker.info.backend_pid,)).fetchall()
                if waiting:
                    break
                time.sleep(0.05)
            assert waiting, "the enrolment never reached the database"
            admin.execute("SELECT pg_terminate_backend(%s)", (waiting[0][0],))
        thread.join(120)
    assert answers[0].status_code == 503 and "unavailable" in answers[0].json()["error"]
    assert "Pedro Malan" not in names_at(url, center.front)
    again = httpx.post(f"{url}/v1/people/Pedro Malan", files=photos("Pedro_Malan", (1, 2)),
                       headers=auth(center.admin), timeout=120)
    assert again.status_code == 201, again.text  # the next request reconnects


def test_a_door_pulls_a_revocation_and_keeps_deciding_offline(center, tmp_path):
    admin, url = auth(center.admin), center.urls[0]
    for name in ("Yashwant Sinha", "Valentino Rossi"):
        assert httpx.put(f"{url}/v1/groups/staff/people/{name}", headers=admin).status_code == 200
    assert httpx.put(f"{url}/v1/doors/front/groups/staff", headers=admin).status_code == 200
    assert httpx.put(f"{url}/v1/doors/front/people/Tim Henman", headers=admin).json()["changed"]
    door = tmp_path / "door.db"
    first = pull(center, door)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["delta"] is False
    line = identify_at_door(door, "Tim_Henman", 4)
    assert line["identity"] == "Tim Henman" and line["snapshot"]["age_s"] >= 0
    old = httpx.get(f"{url}/v1/snapshot", headers=auth(center.front), timeout=60).content

    # revocation: removed from the door's list, and one of its group's people removed outright
    assert httpx.delete(f"{url}/v1/doors/front/people/Tim Henman", headers=admin).json()[
        "changed"]
    assert httpx.delete(f"{url}/v1/people/Valentino Rossi", headers=admin).status_code == 200
    verifier = Verifier.from_model("edge")
    reader = Gallery.open(door, verifier, read_only=True)  # a door process reading meanwhile
    held = reader.names()
    second = pull(center, door)
    assert second.exit_code == 0, second.output
    assert reader.names() == held == ["Tim Henman", "Valentino Rossi", "Yashwant Sinha"]
    reader.close()  # it read its whole old file throughout; the swap was one rename
    pulled = json.loads(second.output)
    assert pulled["delta"] is True and pulled["changed"] == 2
    assert identify_at_door(door, "Tim_Henman", 4)["identity"] == "unknown"
    assert identify_at_door(door, "Valentino_Rossi", 4)["identity"] == "unknown"
    now = identify_at_door(door, "Yashwant_Sinha", 3)
    assert now["identity"] == "Yashwant Sinha"
    assert now["snapshot"]["generation"] == pulled["generation"]

    # replayed, tampered, truncated, another center's: refused, the door's file unchanged
    public = load_public_key(center.folder / "center.key.pub")
    before = door.read_bytes()
    with pytest.raises(IntegrityError, match="not newer"):
        apply_snapshot(verify_snapshot(old, public, verifier), key_id(public), door, verifier)
    envelope = json.loads(old)
    envelope["snapshot"] = envelope["snapshot"].replace('"Yashwant Sinha"', '"Yashwant Sinhb"')
    for bad in (json.dumps(envelope).encode(), old[: len(old) // 2]):
        with pytest.raises(IntegrityError):
            verify_snapshot(bad, public, verifier)
    forger = center.folder / "forger.pub"
    forger.write_text(os.urandom(32).hex())
    with pytest.raises(IntegrityError, match="signature"):
        verify_snapshot(old, load_public_key(forger), verifier)
    assert door.read_bytes() == before

    # the center down: pulling fails with a clear line, the door still decides, saying its age
    center.stop()
    offline = pull(center, door)
    assert offline.exit_code == 2 and "unreachable" in offline.output
    still = identify_at_door(door, "Yashwant_Sinha", 3)
    assert still["identity"] == "Yashwant Sinha"
    assert still["snapshot"]["generation"] == pulled["generation"]
