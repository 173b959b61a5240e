"""The central gallery on a throwaway PostgreSQL: signed rows and set, migrations, concurrent
writers on one name, a connection lost mid-enrolment; URL/path confusion (no server needed)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from siamese.runtime.commands.gallery import gallery_main
from siamese.runtime.commands.serve import serve_main
from siamese.runtime.errors import ConfigError, IntegrityError, ReferenceError, StorageError
from siamese.runtime.storage.galleries import gallery_spec, open_gallery
from siamese.runtime.storage.gallery import Gallery
from siamese.runtime.storage.postgres import CentralGallery
from siamese.runtime.storage.references import Template
from siamese.runtime.verifier import Verifier

from tests.postgres_support import postgres  # noqa: F401  (the session fixture)


@pytest.fixture(scope="module")
def verifier() -> Verifier:
    return Verifier.from_model(key=os.urandom(32))


def person(verifier: Verifier, name: str, seed: int, images: int = 2) -> Template:
    vectors = np.random.default_rng(seed).standard_normal((images, verifier.dim))
    return Template(name, vectors.astype(np.float32), verifier.embedder.fingerprint)


def test_a_url_where_a_path_is_expected_and_the_reverse_are_clear_errors(
        tmp_path, monkeypatch, verifier):
    monkeypatch.chdir(tmp_path)
    for spec in ("postgresql:///x?host=/p", "postgresql:/x", "https://center/x"):
        with pytest.raises(ConfigError, match="URL"):
            Gallery.open(spec, verifier, create=True)
    for text in ("postgresql:/siamese", "mysql://host/x"):
        with pytest.raises(ConfigError, match="postgresql://"):
            gallery_spec(text)
    result = CliRunner().invoke(serve_main, ["run", "--gallery", "postgresql:/siamese?host=/p",
                                             "--keys", "keys.json"])
    assert result.exit_code == 2 and "postgresql://" in result.output
    pub = tmp_path / "center.pub"
    pub.write_text("00" * 32)
    for args in (["door.db", "--out", "door.db"],  # a path given as the center's URL
                 ["http://127.0.0.1:9", "--out", "postgresql://x/y"]):  # a URL as --out
        result = CliRunner().invoke(gallery_main, ["pull", *args, "--key", "k",
                                                   "--center-key", str(pub)])
        assert result.exit_code == 2 and "URL" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["center.pub"]  # nothing named a URL


def test_rows_and_the_set_are_signed_and_migrations_apply_once(postgres, verifier):  # noqa: F811
    url = postgres.new_database()
    with pytest.raises(ReferenceError, match="no gallery"):
        open_gallery(url, verifier)
    with open_gallery(url, verifier, create=True) as gallery:
        gallery.add(person(verifier, "alice", 1))
        gallery.add(person(verifier, "bob", 2))
        with pytest.raises(ReferenceError, match="already"):
            gallery.add(person(verifier, "bob", 3))
        gallery.add(person(verifier, "bob", 3), replace=True)
        assert gallery.names() == ["alice", "bob"] and gallery.generation == 3
        assert gallery.changes_since(2)[1].keys() == {"bob"}
        assert gallery.remove("bob") and not gallery.remove("bob")
        assert gallery.changes_since(3) == (4, {"bob": None})
        with gallery.db.cursor() as cursor:  # a removed row put back behind its back
            cursor.execute("SELECT template FROM people WHERE name = 'alice'")
            alice = cursor.fetchone()[0]
            cursor.execute("INSERT INTO people VALUES ('bob', %s, 1, 1)", (alice,))
        with pytest.raises(IntegrityError, match="signed set"):
            gallery.names()
        with gallery.db.cursor() as cursor:
            cursor.execute("DELETE FROM people WHERE name = 'bob'")
            cursor.execute("UPDATE people SET template = replace(template, '\"alice\"', "
                           "'\"alicf\"')")
        with pytest.raises(IntegrityError):
            gallery.templates()
    with open_gallery(url, verifier) as again, again.db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM schema_migrations")
        assert cursor.fetchone()[0] == 2
    with open_gallery(url, verifier, read_only=True) as reader, \
            pytest.raises(ConfigError, match="read-only"):
        reader.remove("alice")
    with CentralGallery.open(url, verifier, expected_generation=9) as rolled_back, \
            rolled_back.db.cursor() as cursor:
        cursor.execute("UPDATE people SET template = replace(template, '\"alicf\"', "
                       "'\"alice\"')")
        with pytest.raises(IntegrityError, match="rolled back"):
            rolled_back.names()  # generation 4 < 9 last seen
    other = Verifier(verifier.embedder, key=os.urandom(32))
    with pytest.raises(IntegrityError), open_gallery(url, other) as foreign:
        foreign.names()


def test_concurrent_enrol_and_remove_of_one_name_lose_no_update(postgres, verifier):  # noqa: F811
    url = postgres.new_database()
    open_gallery(url, verifier, create=True).close()
    changes, failures = [], []

    def writer(seed: int) -> None:
        try:
            write(seed)
        except BaseException as exc:  # noqa: BLE001  (reported below, in the test's thread)
            failures.append(exc)

    def write(seed: int) -> None:
        with open_gallery(url, verifier) as gallery:
            for step in range(25):
                if step % 3 == 2:
                    changes.append(gallery.remove("carol"))
                else:
                    gallery.add(person(verifier, "carol", seed * 100 + step), replace=True)
                    changes.append(True)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    with open_gallery(url, verifier) as gallery:
        assert gallery.generation == sum(changes)  # every change counted once: none lost
        names = gallery.names()  # the rows still add up to the signed set
        assert names in ([], ["carol"])
        if names:
            assert gallery.templates()[0].embeddings.shape == (2, verifier.dim)


def test_a_connection_lost_mid_enrolment_leaves_no_half_person(postgres, verifier):  # noqa: F811
    import psycopg

    url = postgres.new_database()
    gallery = open_gallery(url, verifier, create=True)
    gallery.add(person(verifier, "alice", 1))
    pid = gallery.db.info.backend_pid
    outcome: list[BaseException | None] = []
    with psycopg.connect(url) as blocker:  # holds the set's lock: the enrolment waits inside
        blocker.execute("SELECT 1 FROM state FOR UPDATE")

        def enrol() -> None:
            try:
                gallery.add(person(verifier, "dave", 4))
                outcome.append(None)
            except StorageError as exc:
                outcome.append(exc)
        thread = threading.Thread(target=enrol)
        thread.start()
        with psycopg.connect(url, autocommit=True) as admin:
            for _ in range(200):  # until the enrolment has written its row and waits
                waiting = admin.execute("SELECT wait_event_type FROM pg_stat_activity WHERE "
                                        "pid = %s", (pid,)).fetchone()
                if waiting and waiting[0] == "Lock":
                    break
                time.sleep(0.05)
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        thread.join(30)
    assert isinstance(outcome[0], StorageError) and "unavailable" in str(outcome[0])
    assert gallery.names() == ["alice"]  # reconnected; no half of dave, the set intact
    gallery.add(person(verifier, "dave", 4))
    assert gallery.names() == ["alice", "dave"] and gallery.generation == 2
    gallery.close()
