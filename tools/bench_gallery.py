"""Gallery search time per query at 1k to 1M synthetic templates: numpy (exact matrix product,
the runtime's default) beside FAISS flat (exact) and FAISS HNSW (approximate, with its recall).

    python tools/bench_gallery.py [--sizes 1000,10000,100000,1000000] [--queries 200]

Templates and queries are random unit vectors of the model's size (128); a query is a template
plus noise (cosine about 0.7 to it), so recall@1 of HNSW is measured against the exact answer.
One thread count for all (the machine's); build time and memory per index are printed too.
"""

from __future__ import annotations

import time

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.storage.gallery import FaissIndex, GalleryIndex


def _timed_search(index, queries: np.ndarray) -> tuple[float, list]:
    index.search(queries[:5], k=5)  # warm-up
    started = time.perf_counter()
    results = [index.search(query[None], k=5)[0] for query in queries]
    return 1e3 * (time.perf_counter() - started) / len(queries), results


@click.command(cls=SiameseCommand)
@click.option("--sizes", default="1000,10000,100000,1000000", show_default=True)
@click.option("--queries", default=200, show_default=True)
@click.option("--dim", default=128, show_default=True)
def main(sizes: str, queries: int, dim: int) -> None:
    """Print one row per gallery size and index: ms per query (k=5), build s, recall@1."""
    rng = np.random.default_rng(0)
    click.echo("| templates | index | ms / query | build s | recall@1 vs exact |")
    click.echo("| --- | --- | --- | --- | --- |")
    for size in (int(s) for s in sizes.split(",")):
        means = rng.standard_normal((size, dim), dtype=np.float32)
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        picks = rng.integers(size, size=queries)
        noisy = means[picks] + rng.standard_normal((queries, dim), dtype=np.float32) * 0.09
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        names = [str(i) for i in range(size)]
        exact = None
        builders = {"numpy (exact)": (GalleryIndex, ()), "faiss flat (exact)": (FaissIndex,
                    ("flat",)), "faiss hnsw": (FaissIndex, ("hnsw",))}
        for label, (kind, extra) in builders.items():
            started = time.perf_counter()
            index = kind(names, means, "cosine", *extra)
            built = time.perf_counter() - started
            ms, results = _timed_search(index, noisy)
            top = [r[0].name for r in results]
            exact = exact or top
            recall = np.mean([a == b for a, b in zip(top, exact, strict=True)])
            click.echo(f"| {size:,} | {label} | {ms:.3f} | {built:.1f} | {recall:.3f} |")
            del index


if __name__ == "__main__":
    main()
