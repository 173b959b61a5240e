"""Search over a gallery's people: exact (numpy) or through FAISS (flat or HNSW)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from siamese.runtime.errors import ConfigError, MissingExtraError


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
        means = np.asarray(means, dtype=np.float32)
        means = means.reshape(len(names), -1) if len(names) else means.reshape(0, means.shape[-1])
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
