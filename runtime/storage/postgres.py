"""The central gallery: people in PostgreSQL, shared by many service processes (psycopg 3).

The same signed rows as the SQLite gallery (each template carries its HMAC under the site key);
the set of people is signed incrementally, so a write costs one row and not the whole set: the
`state` row holds the generation, the count and the sum (mod 2**256) of every row's digest,
tagged with the key. A row removed or put back behind the gallery's back no longer adds up.
Every change is one transaction that locks the `state` row (writers queue; the generation only
grows), stamps the row with its generation and a version, keeps a tombstone for a removal (for
deltas) and NOTIFYs the other processes. Schema changes are numbered migrations, applied once
under an advisory lock.

>>> gallery = CentralGallery.open("postgresql:///siamese?host=/run/pg", verifier, create=True)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from siamese.runtime.errors import (
    ConfigError,
    IntegrityError,
    MissingExtraError,
    ReferenceError,
    StorageError,
)
from siamese.runtime.storage.gallery_index import GalleryIndex
from siamese.runtime.storage.gallery_manifest import row_digest
from siamese.runtime.storage.integrity import tag, verify_tag
from siamese.runtime.storage.references import MAX_TEMPLATE_BYTES, Template, other_model

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

CHANNEL = "siamese_gallery"
SET_FORMAT = b"siamese-central-set-1"
MODULUS = 1 << 256
MIGRATIONS: tuple[str, ...] = (
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
       CREATE TABLE state (id INT PRIMARY KEY CHECK (id = 1), generation BIGINT NOT NULL,
                           count BIGINT NOT NULL, digest_sum TEXT NOT NULL, mac TEXT NOT NULL);
       CREATE TABLE people (name TEXT PRIMARY KEY, template TEXT NOT NULL,
                            version BIGINT NOT NULL, generation BIGINT NOT NULL);
       CREATE INDEX people_generation ON people (generation);
       CREATE TABLE removed (name TEXT PRIMARY KEY, generation BIGINT NOT NULL);""",
    """CREATE TABLE groups_people (grp TEXT NOT NULL, name TEXT NOT NULL,
                                   generation BIGINT NOT NULL, PRIMARY KEY (grp, name));
       CREATE TABLE doors_people (door TEXT NOT NULL, name TEXT NOT NULL,
                                  generation BIGINT NOT NULL, PRIMARY KEY (door, name));
       CREATE TABLE doors_groups (door TEXT NOT NULL, grp TEXT NOT NULL,
                                  generation BIGINT NOT NULL, PRIMARY KEY (door, grp));""",
)


def is_url(spec: str) -> bool:
    return spec.startswith(("postgresql://", "postgres://"))


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise MissingExtraError("a postgresql:// gallery needs the central extra: "
                                "pip install 'siamese-edge[central]'") from None
    return psycopg


class CentralGallery:
    """People enrolled under one model in PostgreSQL; the same interface as `Gallery`."""

    def __init__(self, url: str, verifier: Verifier) -> None:
        self.url, self.verifier, self.path = url, verifier, _redacted(url)
        self.read_only, self.expected_generation = False, None
        self._lock = threading.Lock()
        self.db = self._connect()

    @classmethod
    def open(cls, url: str, verifier: Verifier, create: bool = False,
             read_only: bool = False, expected_generation: int | None = None) -> CentralGallery:
        gallery = cls(url, verifier)
        gallery.read_only, gallery.expected_generation = read_only, expected_generation
        try:
            gallery._migrate(create)
            gallery._check_meta()
        except BaseException:
            gallery.close()
            raise
        return gallery

    # --- connection -------------------------------------------------------------------------
    def _connect(self):
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise StorageError(f"cannot reach the central gallery {self.path}: "
                               f"{_first_line(exc)}") from None

    def _run(self, job: Callable, write: bool = False):
        """`job(cursor)` in one transaction; a lost connection is a StorageError (503 in the
        service) and the next call reconnects; nothing half-written survives a rollback."""
        psycopg = _psycopg()
        if write and self.read_only:
            raise ConfigError(f"gallery {self.path} is open read-only")
        with self._lock:
            if self.db.closed or self.db.broken:
                self.db = self._connect()
            try:
                with self.db.transaction(), self.db.cursor() as cursor:
                    return job(cursor)
            except psycopg.OperationalError as exc:
                raise StorageError(f"central gallery {self.path} unavailable: "
                                   f"{_first_line(exc)}") from None
            except psycopg.DatabaseError as exc:
                raise StorageError(f"central gallery {self.path}: {_first_line(exc)}") from None

    def _migrate(self, create: bool) -> None:
        def job(cursor) -> None:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('siamese-migrations'))")
            cursor.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INT PRIMARY "
                           "KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            cursor.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
            done = cursor.fetchone()[0]
            if done == 0 and not create:
                raise ReferenceError(f"no gallery at {self.path}: enroll people into it first")
            if done > len(MIGRATIONS):
                raise ConfigError(f"central gallery {self.path} has schema {done}, newer than "
                                  f"this siamese-edge ({len(MIGRATIONS)}): upgrade it")
            for version in range(done + 1, len(MIGRATIONS) + 1):
                cursor.execute(MIGRATIONS[version - 1])
                if version == 1:
                    cursor.execute("INSERT INTO meta VALUES ('model_fingerprint', %s)",
                                   (self.verifier.embedder.fingerprint,))
                    cursor.execute("INSERT INTO state VALUES (1, 0, 0, '0', %s)",
                                   (self._set_mac(0, 0, 0),))
                cursor.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                               (version,))
        self._run(job)

    def _check_meta(self) -> None:
        def job(cursor) -> str | None:
            cursor.execute("SELECT value FROM meta WHERE key = 'model_fingerprint'")
            row = cursor.fetchone()
            return row and row[0]
        made_with, fingerprint = self._run(job), self.verifier.embedder.fingerprint
        if made_with != fingerprint:
            raise other_model(f"gallery {self.path}", str(made_with), fingerprint)

    # --- the signed set ---------------------------------------------------------------------
    def _set_mac(self, generation: int, count: int, digest_sum: int) -> str:
        return tag(self.verifier.key, SET_FORMAT, str(generation).encode(),
                   str(count).encode(), format(digest_sum, "x").encode())

    def _state(self, cursor, lock: bool = False) -> tuple[int, int, int]:
        cursor.execute("SELECT generation, count, digest_sum, mac FROM state WHERE id = 1"
                       + (" FOR UPDATE" if lock else ""))
        generation, count, text, mac = cursor.fetchone()
        digest_sum = int(text, 16)
        verify_tag(self.verifier.key, mac, f"central gallery {self.path} set",
                   SET_FORMAT, str(generation).encode(), str(count).encode(),
                   format(digest_sum, "x").encode())
        return generation, count, digest_sum

    def _store_state(self, cursor, generation: int, count: int, digest_sum: int) -> None:
        cursor.execute("UPDATE state SET generation = %s, count = %s, digest_sum = %s, mac = %s "
                       "WHERE id = 1", (generation, count, format(digest_sum, "x"),
                                        self._set_mac(generation, count, digest_sum)))
        cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(generation)))

    def _bump(self, cursor) -> int:
        """The next generation, for a change that does not touch the set (memberships)."""
        generation, count, digest_sum = self._state(cursor, lock=True)
        self._store_state(cursor, generation + 1, count, digest_sum)
        return generation + 1

    @property
    def generation(self) -> int:
        return self._run(lambda cursor: self._state(cursor)[0])

    # --- changes ----------------------------------------------------------------------------
    def add(self, template: Template, replace: bool = False) -> None:
        """Store one person in one transaction; an existing name is refused unless `replace`."""
        self.verifier.check_template(template)
        text = template.to_json(self.verifier.key)
        if len(text.encode()) > MAX_TEMPLATE_BYTES:
            raise ReferenceError(f"{template.name!r}: the template is over "
                                 f"{MAX_TEMPLATE_BYTES:,} bytes")
        name = template.name

        def job(cursor) -> None:
            # the person's row first, then the set: every writer locks in this order
            row = None
            while row is None:  # again when a concurrent removal took the row in between
                cursor.execute("INSERT INTO people VALUES (%s, %s, 0, -1) ON CONFLICT (name) "
                               "DO NOTHING RETURNING name", (name, text))
                created = cursor.fetchone() is not None
                cursor.execute("SELECT template, version FROM people WHERE name = %s FOR "
                               "UPDATE", (name,))
                row = cursor.fetchone()
            old, version = row
            if not created and not replace:
                raise ReferenceError(f"{name!r} is already in gallery {self.path} "
                                     f"(use --replace)")
            generation, count, digest_sum = self._state(cursor, lock=True)
            if created:
                count += 1
            else:
                digest_sum -= int(row_digest(name, old), 16)
            digest_sum = (digest_sum + int(row_digest(name, text), 16)) % MODULUS
            cursor.execute("UPDATE people SET template = %s, version = %s, generation = %s "
                           "WHERE name = %s", (text, version + 1, generation + 1, name))
            cursor.execute("DELETE FROM removed WHERE name = %s", (name,))
            self._store_state(cursor, generation + 1, count, digest_sum)
        self._run(job, write=True)

    def remove(self, name: str) -> bool:
        def job(cursor) -> bool:
            cursor.execute("DELETE FROM people WHERE name = %s RETURNING template", (name,))
            row = cursor.fetchone()
            if row is None:
                return False
            generation, count, digest_sum = self._state(cursor, lock=True)
            digest_sum = (digest_sum - int(row_digest(name, row[0]), 16)) % MODULUS
            cursor.execute("INSERT INTO removed VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
                           "SET generation = excluded.generation", (name, generation + 1))
            self._store_state(cursor, generation + 1, count - 1, digest_sum)
            return True
        return self._run(job, write=True)

    # --- reads ------------------------------------------------------------------------------
    def _verified_rows(self) -> tuple[int, dict[str, str]]:
        """(generation, name -> template text), once the rows add up to the signed set (one
        REPEATABLE READ snapshot)."""
        def job(cursor):
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            generation, count, digest_sum = self._state(cursor)
            cursor.execute("SELECT name, template FROM people")
            return generation, count, digest_sum, dict(cursor.fetchall())
        generation, count, digest_sum, rows = self._run(job)
        total = sum(int(row_digest(name, text), 16) for name, text in rows.items()) % MODULUS
        if len(rows) != count or total != digest_sum:
            raise _edited(self.path)
        if self.expected_generation is not None and generation < self.expected_generation:
            raise IntegrityError(f"gallery {self.path} is at generation {generation}, older "
                                 f"than the {self.expected_generation} last seen: it was "
                                 f"rolled back")
        return generation, rows

    def _parse(self, name: str, text: str) -> Template:
        verifier = self.verifier
        template = Template.from_json(text, f"gallery {self.path} entry {name!r}", verifier.key,
                                      verifier.dim)
        if template.name != name or template.model_fingerprint != verifier.embedder.fingerprint:
            raise ReferenceError(f"gallery {self.path} entry {name!r} does not match its row")
        return template

    def names(self) -> list[str]:
        return sorted(self._verified_rows()[1])

    list = names

    def templates(self) -> list[Template]:
        return [self._parse(n, t) for n, t in sorted(self._verified_rows()[1].items())]

    def snapshot(self) -> tuple[int, dict[str, Template]]:
        """(generation, every person) from one consistent read, the set checked."""
        generation, rows = self._verified_rows()
        return generation, {n: self._parse(n, t) for n, t in rows.items()}

    def changes_since(self, generation: int) -> tuple[int, dict[str, Template | None]]:
        """(now, name -> template or None when removed) for every change after `generation`.

        Each row is authenticated; the whole set is checked by `snapshot` (at start)."""
        def job(cursor):
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            now = self._state(cursor)[0]
            cursor.execute("SELECT name, template FROM people WHERE generation > %s",
                           (generation,))
            changed = cursor.fetchall()
            cursor.execute("SELECT name FROM removed WHERE generation > %s", (generation,))
            return now, changed, [name for (name,) in cursor.fetchall()]
        now, changed, removed = self._run(job)
        out: dict[str, Template | None] = dict.fromkeys(removed)
        out.update((name, self._parse(name, text)) for name, text in changed)
        return now, out

    def index(self) -> GalleryIndex:
        from siamese.runtime.storage.gallery import index_of

        return index_of(self.templates(), self.verifier)

    def listener(self, on_change: Callable[[], None], stop: threading.Event) -> threading.Thread:
        """A daemon thread that calls `on_change()` on every NOTIFY (and once a second, in case
        a notification was lost while reconnecting)."""
        psycopg = _psycopg()

        def listen() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True,
                                         connect_timeout=5) as conn:
                        conn.execute(f"LISTEN {CHANNEL}")
                        while not stop.is_set():
                            for _ in conn.notifies(timeout=1.0, stop_after=1):
                                break
                            on_change()
                except psycopg.Error:
                    stop.wait(1.0)
        thread = threading.Thread(target=listen, name="gallery-listener", daemon=True)
        thread.start()
        return thread

    # --- doors and groups -------------------------------------------------------------------
    def set_member(self, table: str, owner: str, member: str, present: bool) -> bool:
        """Add (or remove) `member` in a door's people, a door's groups or a group's people."""
        columns = {"groups_people": ("grp", "name"), "doors_people": ("door", "name"),
                   "doors_groups": ("door", "grp")}[table]

        def job(cursor) -> bool:
            generation = self._bump(cursor)
            if present:
                cursor.execute(f"INSERT INTO {table} VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                               (owner, member, generation))
            else:
                cursor.execute(f"DELETE FROM {table} WHERE {columns[0]} = %s AND "
                               f"{columns[1]} = %s", (owner, member))
            if not cursor.rowcount:
                raise _Unchanged
            return True
        try:
            return self._run(job, write=True)
        except _Unchanged:
            return False

    def groups(self) -> dict[str, list[str]]:
        def job(cursor):
            cursor.execute("SELECT grp, name FROM groups_people ORDER BY grp, name")
            return cursor.fetchall()
        out: dict[str, list[str]] = {}
        for group, name in self._run(job):
            out.setdefault(group, []).append(name)
        return out

    def door_people(self, door: str) -> list[str]:
        """The enrolled people `door` may admit (its own list and its groups')."""
        return sorted(self._door_rows(door, None)[1])

    def _door_rows(self, door: str, since: int | None) -> tuple[int, dict[str, str | None]]:
        """(generation, name -> template text) for the door's people; with `since`, the text
        only for those whose row or admission changed after it (None for the others)."""
        admitted = ("SELECT name, generation FROM doors_people WHERE door = %(door)s UNION ALL "
                    "SELECT g.name, greatest(g.generation, d.generation) FROM doors_groups d "
                    "JOIN groups_people g ON g.grp = d.grp WHERE d.door = %(door)s")

        def job(cursor):
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            generation = self._state(cursor)[0]
            cursor.execute(f"SELECT p.name, CASE WHEN %(since)s::BIGINT IS NULL OR "
                           f"greatest(p.generation, max(a.generation)) > %(since)s THEN "
                           f"p.template END FROM people p JOIN ({admitted}) a ON a.name = "
                           f"p.name GROUP BY p.name, p.template, p.generation",
                           {"door": door, "since": since})
            return generation, dict(cursor.fetchall())
        return self._run(job)

    def door_snapshot(self, door: str, since: int | None = None
                      ) -> tuple[int, list[str], dict[str, Template]]:
        """(generation, every admitted name, templates: all, or those changed after `since`)."""
        generation, rows = self._door_rows(door, since)
        return generation, sorted(rows), {n: self._parse(n, t) for n, t in rows.items()
                                          if t is not None}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> CentralGallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Unchanged(Exception):
    """A membership that was already so: rolled back (no generation spent)."""


def _edited(path: str) -> IntegrityError:
    return IntegrityError(f"central gallery {path} does not match its signed set of people: "
                          f"rows were added, removed or restored outside siamese-edge")


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _redacted(url: str) -> str:
    """The URL without a password (for messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
