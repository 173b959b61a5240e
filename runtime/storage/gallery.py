"""A gallery of enrolled people in one SQLite file: one writer, many readers, atomic updates.

Each person is stored as a signed template (runtime.references: the same schema, validation
and HMAC as a template file), so an edited row is refused like an edited file; a signed
manifest (runtime.storage.gallery_manifest) covers the set of people, so a removed row put
back or a row swapped is refused too. The gallery records the model fingerprint; another
model's gallery is refused. Readers open it read-only and change nothing. The file
is created with mode 0600 in a 0700 folder; each change is one transaction under SQLite's
rollback journal (readers wait out a writer's commit, up to BUSY_TIMEOUT_S), so between
changes the gallery is the one file: no -wal or -shm beside it, and a copy of the file alone
is the whole gallery.

>>> gallery = Gallery.open("site.db", verifier, create=True)
>>> gallery.add(verifier.enroll("alice", ["alice1.jpg", "alice2.jpg"]))
>>> gallery.index().search(embeddings, k=3)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import numpy as np
from siamese.runtime.errors import ConfigError, ReferenceError, StorageError
from siamese.runtime.storage.fileio import check_output_path, make_private_dirs
from siamese.runtime.storage.gallery_index import FaissIndex, GalleryIndex, Match
from siamese.runtime.storage.gallery_manifest import Manifest, row_digest
from siamese.runtime.storage.references import MAX_TEMPLATE_BYTES, Template, other_model

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

__all__ = ["FaissIndex", "Gallery", "GalleryIndex", "Match"]

URL_SCHEMES = ("postgresql:", "postgres:", "http:", "https:")
GALLERY_FORMAT = "siamese-gallery-2"  # 1: rows signed one by one, no manifest of the set
BUSY_TIMEOUT_S = 10.0
MAX_ROW_BYTES = MAX_TEMPLATE_BYTES  # a longer person's row is refused
# SQLite refuses any longer value before it is read: the manifest of the set grows with the
# people (about 140 bytes each: 256 MiB holds about 1.9 million)
MAX_VALUE_BYTES = 256 * 1024 * 1024


class Gallery:
    """People enrolled under one model, in one SQLite file, with a signed manifest of the set.

    Every read checks the file's schema, model, row types and sizes and the manifest (under
    the verifier's key) before it returns anything; every write checks the key and model first.
    `read_only` opens SQLite read-only (`mode=ro`, and `immutable=1` where the file cannot be
    written), so reading never creates or changes a file.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection, verifier: Verifier,
                 read_only: bool = False, expected_generation: int | None = None) -> None:
        self.path, self.db, self.verifier = path, connection, verifier
        self.read_only, self.expected_generation = read_only, expected_generation

    @classmethod
    def open(cls, path: str | Path, verifier: Verifier, create: bool = False,
             read_only: bool = False, expected_generation: int | None = None) -> Gallery:
        """Open (or with `create`, create) the gallery at `path` for `verifier`'s model.

        `expected_generation`: the last generation this site saw (kept outside the file);
        an older gallery is refused as rolled back."""
        if str(path).startswith(URL_SCHEMES):
            raise ConfigError(f"{path} is a database URL where a gallery file path is expected "
                              f"(a postgresql:// gallery is central: siamese-serve run "
                              f"--gallery URL; a door pulls it with siamese-gallery pull)")
        path = Path(path)
        if read_only and create:
            raise ConfigError("a gallery opened read-only cannot be created")
        db = _connect_read_only(path) if read_only else _connect(path, create)
        gallery = cls(path, db, verifier, read_only, expected_generation)
        try:
            db.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, MAX_VALUE_BYTES)
            if not read_only:
                # a rollback journal, not WAL: between writes the gallery is this one file,
                # complete, so copying it (even from a running server) copies every person
                db.execute("PRAGMA journal_mode=DELETE")
                db.execute("PRAGMA synchronous=FULL")
                gallery._create_if_empty()
            gallery._meta()
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ReferenceError(f"{path} is not a siamese gallery ({exc})") from None
        except BaseException:
            db.close()
            raise
        return gallery

    def _not_ours(self, why: str) -> ReferenceError:
        return ReferenceError(f"{self.path} is not a siamese gallery ({why})")

    def _create_if_empty(self) -> None:
        """A new (empty) database gets the schema and an empty manifest, in one transaction."""
        with self._write():
            if self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return
            self.db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute("CREATE TABLE people (name TEXT PRIMARY KEY, template TEXT NOT NULL)")
            self.db.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("format", GALLERY_FORMAT),
                ("model_fingerprint", self.verifier.embedder.fingerprint),
                ("manifest", Manifest(0).to_json(self.verifier.key))])

    def _meta(self) -> dict[str, str]:
        """The meta table, after the schema, format and model are checked."""
        tables = {name: [column[1] for column in self.db.execute(f"PRAGMA table_info({name})")]
                  for (name,) in self.db.execute(
                      "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables.get("meta") != ["key", "value"] or tables.get("people") != ["name",
                                                                               "template"]:
            raise self._not_ours("no siamese tables" if not tables else "another schema")
        meta = {}
        for key, value in self.db.execute("SELECT key, value FROM meta"):
            if type(key) is not str or type(value) is not str:
                raise self._not_ours("a meta row is not text")
            meta[key] = value
        if meta.get("format") == "siamese-gallery-1":
            raise ReferenceError(f"gallery {self.path} was made by an older siamese-edge, "
                                 f"without a signed list of people: enrol its people again")
        if meta.get("format") != GALLERY_FORMAT or "manifest" not in meta:
            raise self._not_ours("no siamese format record")
        fingerprint = self.verifier.embedder.fingerprint
        if meta.get("model_fingerprint") != fingerprint:
            raise other_model(f"gallery {self.path}", str(meta.get("model_fingerprint")),
                              fingerprint)
        return meta

    def _manifest(self) -> Manifest:
        return Manifest.from_json(self._meta()["manifest"], str(self.path), self.verifier.key)

    def _rows(self) -> dict[str, str]:
        """name -> template text of every row, types and sizes checked before any parsing."""
        rows = {}
        try:
            for name, text in self.db.execute("SELECT name, template FROM people"):
                if type(name) is not str or type(text) is not str:
                    raise self._not_ours(f"entry {str(name)[:64]!r} is not text")
                if len(text) > MAX_ROW_BYTES:
                    raise self._not_ours(f"an entry is over {MAX_ROW_BYTES:,} bytes")
                rows[name] = text
        except sqlite3.DataError:  # SQLITE_LIMIT_LENGTH: refused before it is read
            raise self._not_ours(f"an entry is over {MAX_VALUE_BYTES:,} bytes") from None
        return rows

    def _verified_rows(self) -> dict[str, str]:
        """The rows, once they are exactly the set the manifest signs (one read snapshot)."""
        try:
            self.db.execute("BEGIN")
            try:
                manifest, rows = self._manifest(), self._rows()
            finally:
                self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._not_ours(str(exc)) from None
        manifest.check(rows, str(self.path), self.expected_generation)
        return rows

    @contextlib.contextmanager
    def _write(self):
        """One write transaction (BEGIN IMMEDIATE: writers queue, readers go on)."""
        if self.read_only:
            raise ConfigError(f"gallery {self.path} is open read-only")
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise StorageError(f"cannot write gallery {self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise self._not_ours(str(exc)) from None

    def _change(self, name: str, text: str | None) -> Manifest:
        """The manifest after `name` changes; its key and the model are checked first."""
        return self._manifest().changed(name, text)

    @property
    def generation(self) -> int:
        """Raised by one on every change: keep the last one outside the file to detect a
        rollback of the whole file (see docs/RELIABILITY.md)."""
        return self._manifest().generation

    def add(self, template: Template, replace: bool = False) -> None:
        """Store one person; an existing name is refused unless `replace`."""
        self.verifier.check_template(template)
        text = template.to_json(self.verifier.key)
        if len(text.encode()) > MAX_ROW_BYTES:
            raise ReferenceError(f"{template.name!r}: the template is over {MAX_ROW_BYTES:,} "
                                 f"bytes")
        with self._write():
            manifest = self._change(template.name, text)  # key and model before any write
            exists = self.db.execute("SELECT 1 FROM people WHERE name = ?",
                                     (template.name,)).fetchone()
            if exists and not replace:
                raise ReferenceError(f"{template.name!r} is already in gallery {self.path} "
                                     f"(use --replace)")
            self.db.execute("INSERT OR REPLACE INTO people VALUES (?, ?)", (template.name, text))
            self._store(manifest)

    def remove(self, name: str) -> bool:
        with self._write():
            manifest = self._change(name, None)
            if not self.db.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount:
                return False
            self._store(manifest)
            return True

    def _store(self, manifest: Manifest) -> None:
        self.db.execute("UPDATE meta SET value = ? WHERE key = 'manifest'",
                        (manifest.to_json(self.verifier.key),))

    def names(self) -> list[str]:
        """The enrolled names (the signed set checked)."""
        return sorted(self._verified_rows())

    list = names

    def templates(self) -> list[Template]:
        """Every person, validated and authenticated like a template file."""
        verifier = self.verifier
        out = []
        for name, text in sorted(self._verified_rows().items()):
            template = Template.from_json(text, f"gallery {self.path} entry {name!r}",
                                          verifier.key, verifier.dim)
            if template.name != name or template.model_fingerprint != verifier.embedder.fingerprint:
                raise ReferenceError(f"gallery {self.path} entry {name!r} does not match its row")
            out.append(template)
        return out

    def index(self) -> GalleryIndex:
        return index_of(self.templates(), self.verifier)

    def sync(self, changes: dict[str, Template | None], generation: int,
             meta: dict[str, str]) -> None:
        """Set many rows (None: remove) and `meta` entries in one transaction, the manifest
        moved to `generation` (which never goes back): how a door applies a center's snapshot."""
        for template in changes.values():
            if template is not None:
                self.verifier.check_template(template)
        rows = {name: None if t is None else t.to_json(self.verifier.key)
                for name, t in changes.items()}
        with self._write():
            manifest = self._manifest()
            if generation < manifest.generation:
                raise ReferenceError(f"gallery {self.path} is at generation "
                                     f"{manifest.generation}; {generation} is older")
            digests = dict(manifest.digests)
            for name, text in rows.items():
                if text is None:
                    digests.pop(name, None)
                    self.db.execute("DELETE FROM people WHERE name = ?", (name,))
                else:
                    digests[name] = row_digest(name, text)
                    self.db.execute("INSERT OR REPLACE INTO people VALUES (?, ?)", (name, text))
            self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
            self._store(Manifest(generation, digests))

    def meta(self, key: str) -> str | None:
        """One extra meta entry (e.g. a door's snapshot record), or None."""
        return self._meta().get(key)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def recorded_model(path: str | Path) -> str | None:
    """The model fingerprint a gallery file records, read without checking or changing
    anything else; None when there is no file or it is not a siamese gallery (opening it
    then says why)."""
    try:
        db = _connect_read_only(Path(path))
    except ReferenceError:
        return None
    try:
        row = db.execute("SELECT value FROM meta WHERE key = 'model_fingerprint'").fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()
    return row[0] if row and type(row[0]) is str else None


def index_of(templates: list[Template], verifier: Verifier) -> GalleryIndex:
    """The search index over `templates`' means."""
    means = (np.stack([t.mean for t in templates]) if templates
             else np.zeros((0, verifier.dim), np.float32))
    return GalleryIndex([t.name for t in templates], means, verifier.embedder.info.metric)


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    """A read-write connection to a regular file (a new one, mode 0600, with `create`)."""
    check_output_path(path)
    if not path.exists():
        if not create:
            raise ReferenceError(f"no gallery at {path}: enroll people into it first")
        make_private_dirs(path.parent)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    try:
        return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"cannot open gallery {path}: {exc}") from None


def _roll_back(path: Path) -> None:
    """Let SQLite roll back the journal a killed writer left (a read-only connection cannot),
    restoring the last committed gallery; a live writer's journal is left alone (it holds its
    lock, so SQLite does not take the journal for an interrupted one)."""
    try:
        db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise ReferenceError(f"cannot recover gallery {path} from an interrupted write: "
                             f"{exc}") from None


def _writable(path: Path) -> bool:
    """Whether anyone here could change `path` (else SQLite may skip locking: immutable)."""
    with contextlib.suppress(OSError):
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return False
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """SQLite `mode=ro` (plus `immutable=1` on read-only files or media): nothing is created,
    not even a journal."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ReferenceError(f"no gallery at {path}: enroll people into it first") from None
    except OSError as exc:
        raise ReferenceError(f"cannot read gallery {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ReferenceError(f"{path} is not a siamese gallery (not a regular file)")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if not _writable(path):
        uri += "&immutable=1"
    elif Path(f"{path}-journal").exists():
        _roll_back(path)
    try:
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.DatabaseError as exc:
        raise ReferenceError(f"cannot read gallery {path}: {exc}") from None
