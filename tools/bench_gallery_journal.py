"""What SQLite's rollback journal (the gallery's mode: one file) costs against WAL: the time of
each `Gallery.add` and of a read-only open with its index, on synthetic people.

    python tools/bench_gallery_journal.py [--people 200] [--opens 20] [--rounds 2]

People are random unit vectors of the photos model's size (3 per person), signed like real
templates; the gallery's own settings apply (synchronous=FULL), only the journal mode differs.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.storage.gallery import Gallery
from siamese.runtime.storage.references import Template
from siamese.runtime.verifier import Verifier


def _people(verifier: Verifier, count: int) -> list[Template]:
    rng = np.random.default_rng(0)
    people = []
    for number in range(count):
        vectors = rng.standard_normal((3, verifier.dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        people.append(Template(f"p{number}", vectors, verifier.embedder.fingerprint,
                               ("0" * 64,) * 3))
    return people


def _measure(verifier: Verifier, people: list[Template], mode: str, opens: int) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "g.db"
        adds = []
        with Gallery.open(path, verifier, create=True) as gallery:
            gallery.db.execute(f"PRAGMA journal_mode={mode}")
            for template in people:
                started = time.perf_counter()
                gallery.add(template)
                adds.append(1e3 * (time.perf_counter() - started))
        reads = []
        for _ in range(opens):
            started = time.perf_counter()
            with Gallery.open(path, verifier, read_only=True) as gallery:
                gallery.index()
            reads.append(1e3 * (time.perf_counter() - started))
    p90 = sorted(adds)[int(0.9 * len(adds)) - 1]
    return (f"| {mode} | {statistics.median(adds):.1f} | {p90:.1f} | "
            f"{statistics.median(reads):.0f} |")


@click.command(cls=SiameseCommand)
@click.option("--people", default=200, show_default=True, type=click.IntRange(10))
@click.option("--opens", default=20, show_default=True, type=click.IntRange(1))
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1))
def main(people: int, opens: int, rounds: int) -> None:
    """One row per journal mode and round: add ms (median, p90), open + index ms (median)."""
    verifier = Verifier.from_model(use="photos")
    templates = _people(verifier, people)
    click.echo(f"| journal | add ms, median | add ms, p90 | open + index of {people} ms |")
    click.echo("| --- | --- | --- | --- |")
    for _ in range(rounds):
        for mode in ("wal", "delete"):
            click.echo(_measure(verifier, templates, mode, opens))


if __name__ == "__main__":
    main()
