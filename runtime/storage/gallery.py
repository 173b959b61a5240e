"""A gallery of enrolled people in one SQLite file: one writer, many readers, atomic updates.

Each person is stored as a signed template (runtime.references: the same schema, validation
and HMAC as a template file), so an edited row is refused like an edited file. The gallery
records the model fingerprint and embedding size; another model's gallery is refused. The file
is created with mode 0600 in a 0700 folder; SQLite's write-ahead log lets readers search while
one writer enrols, and each change is one transaction.

>>> gallery = Gallery.open("site.db", verifier, create=True)
>>> gallery.add(verifier.enroll("alice", ["alice1.jpg", "alice2.jpg"]))
>>> gallery.index().search(embeddings, k=3)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from siamese.runtime.errors import ConfigError, MissingExtraError, ReferenceError, StorageError
from siamese.runtime.storage.fileio import make_private_dirs
from siamese.runtime.storage.references import Template, other_model

if TYPE_CHECKING:
    from siamese.runtime.verifier import Verifier

GALLERY_FORMAT = "siamese-gallery-1"
BUSY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Match:
    name: str
    score: float


class GalleryIndex:
    """Exact search over the people's mean embeddings: one matrix product per batch of queries.

    For cosine models the means are unit-normalised, so scores are cosine similarities; for
    Euclidean models scores are minus the distance, as everywhere in the runtime.
    """

    def __init__(self, names: list[str], means: np.ndarray, metric: str) -> None:
        self.names, self.metric = names, metric
        means = np.asarray(means, dtype=np.float32).reshape(len(names), -1)
        if metric == "cosine" and len(names):
            means = means / np.linalg.norm(means, axis=1, keepdims=True).clip(1e-12)
        self.means = np.ascontiguousarray(means)

    def __len__(self) -> int:
        return len(self.names)

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """(Q, P) scores of every query against every person."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.means.shape[1])
        if self.metric == "cosine":
            return queries @ self.means.T
        squared = ((queries ** 2).sum(1)[:, None] - 2 * queries @ self.means.T
                   + (self.means ** 2).sum(1)[None])
        return -np.sqrt(np.maximum(squared, 0))

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[Match]]:
        """The k best people per query, best first."""
        if not len(self):
            return [[] for _ in range(len(np.atleast_2d(queries)))]
        scores = self.scores(queries)
        k = min(k, len(self))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        results = []
        for row, candidates in zip(scores, top, strict=True):
            ordered = candidates[np.argsort(-row[candidates])]
            results.append([Match(self.names[i], float(row[i])) for i in ordered])
        return results

    def lookalikes(self, threshold: float) -> list[tuple[str, str, float]]:
        """Pairs of enrolled people whose means score at or above `threshold`, closest first."""
        if len(self) < 2:
            return []
        scores = self.scores(self.means)
        first, second = np.triu_indices(len(self), 1)
        close = scores[first, second] >= threshold
        pairs = [(self.names[a], self.names[b], float(scores[a, b]))
                 for a, b in zip(first[close], second[close], strict=True)]
        return sorted(pairs, key=lambda pair: -pair[2])


class FaissIndex(GalleryIndex):
    """The same search through FAISS (`pip install "siamese-edge[faiss]"`), cosine models only.

    `kind="flat"` is exact (IndexFlatIP); `kind="hnsw"` is an approximate graph index
    (IndexHNSWFlat, M=32) for galleries where one exact matrix product per query is too slow;
    tools/bench_gallery.py measures both against numpy, with HNSW's recall.
    """

    def __init__(self, names: list[str], means: np.ndarray, metric: str,
                 kind: str = "hnsw") -> None:
        try:
            import faiss
        except ModuleNotFoundError:
            raise MissingExtraError('the faiss index needs faiss: pip install '
                                    '"siamese-edge[faiss]"') from None
        if metric != "cosine":
            raise ConfigError("the faiss index serves cosine models only")
        super().__init__(names, means, metric)
        dim = self.means.shape[1]
        if kind == "flat":
            self.faiss = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self.faiss = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            self.faiss.hnsw.efSearch = 64
        else:
            raise ConfigError(f"unknown faiss index kind {kind!r} (flat or hnsw)")
        self.faiss.add(self.means)

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[Match]]:
        queries = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(
            -1, self.means.shape[1]))
        if not len(self):
            return [[] for _ in queries]
        scores, ids = self.faiss.search(queries, min(k, len(self)))
        return [[Match(self.names[i], float(score)) for i, score in zip(row_ids, row, strict=True)
                 if i >= 0] for row_ids, row in zip(ids, scores, strict=True)]


class Gallery:
    """People enrolled under one model, in one SQLite file."""

    def __init__(self, path: Path, connection: sqlite3.Connection, verifier: Verifier) -> None:
        self.path, self.db, self.verifier = path, connection, verifier

    @classmethod
    def open(cls, path: str | Path, verifier: Verifier, create: bool = False) -> Gallery:
        """Open (or with `create`, create) the gallery at `path` for `verifier`'s model."""
        path = Path(path)
        if path.exists() and not path.is_file():
            raise StorageError(f"gallery {path} is not a file")
        if not path.exists():
            if not create:
                raise ReferenceError(f"no gallery at {path}: enroll people into it first")
            make_private_dirs(path.parent)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            db = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            gallery = cls(path, db, verifier)
            gallery._init_schema()
        except sqlite3.DatabaseError as exc:
            raise ReferenceError(f"{path} is not a usable gallery: {exc}") from None
        return gallery

    def _init_schema(self) -> None:
        fingerprint = self.verifier.embedder.fingerprint
        with self._write():
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.db.execute("CREATE TABLE IF NOT EXISTS people (name TEXT PRIMARY KEY, "
                            "template TEXT NOT NULL)")
            self.db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", [
                ("format", GALLERY_FORMAT), ("model_fingerprint", fingerprint)])
        meta = dict(self.db.execute("SELECT key, value FROM meta"))
        if meta.get("format") != GALLERY_FORMAT:
            raise ReferenceError(f"{self.path} is not a siamese-edge gallery")
        if meta.get("model_fingerprint") != fingerprint:
            raise other_model(f"gallery {self.path}", str(meta.get("model_fingerprint")),
                              fingerprint)

    @contextlib.contextmanager
    def _write(self):
        """One write transaction (BEGIN IMMEDIATE: writers queue, readers go on)."""
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

    def add(self, template: Template, replace: bool = False) -> None:
        """Store one person; an existing name is refused unless `replace`."""
        self.verifier.check_template(template)
        text = template.to_json(self.verifier.key)
        with self._write():
            exists = self.db.execute("SELECT 1 FROM people WHERE name = ?",
                                     (template.name,)).fetchone()
            if exists and not replace:
                raise ReferenceError(f"{template.name!r} is already in gallery {self.path} "
                                     f"(use --replace)")
            self.db.execute("INSERT OR REPLACE INTO people VALUES (?, ?)", (template.name, text))

    def remove(self, name: str) -> bool:
        with self._write():
            return self.db.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount > 0

    def names(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT name FROM people ORDER BY name")]

    def templates(self) -> list[Template]:
        """Every person, validated and authenticated like a template file."""
        verifier = self.verifier
        out = []
        for name, text in self.db.execute("SELECT name, template FROM people ORDER BY name"):
            template = Template.from_json(text, f"gallery {self.path} entry {name!r}",
                                          verifier.key, verifier.dim)
            if template.name != name or template.model_fingerprint != verifier.embedder.fingerprint:
                raise ReferenceError(f"gallery {self.path} entry {name!r} does not match its row")
            out.append(template)
        return out

    def index(self) -> GalleryIndex:
        templates = self.templates()
        means = (np.stack([t.mean for t in templates]) if templates
                 else np.zeros((0, self.verifier.dim), np.float32))
        return GalleryIndex([t.name for t in templates], means, self.verifier.embedder.info.metric)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
