"""The central gallery at scale: N synthetic people in PostgreSQL, one door's snapshots, the door.

    python tools/bench_central.py --url 'postgresql://postgres@/bench?host=/tmp/pg' \
        [--people 100000] [--writers 1,4] [--servers 1,2,4]

People are random unit embeddings of the model's size (one per person, no photos): the figures
are storage, signing, transfer and search, not face detection. Prints one markdown row per
figure: enrolment throughput (one transaction per person, through CentralGallery.add, with 1
and more writer threads), a full snapshot of a door that admits everyone (build + sign on the
center, verify + write door.db at the door) and its size, a delta after 100 changes, identify
latency at the door (numpy; FAISS HNSW when faiss-cpu is installed), the door's memory, and
siamese-serve processes (1, 2, 4) on the database: time to ready, memory each, and how long an
enrolment through one takes to reach the last (NOTIFY). The database must be empty.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np
from siamese.runtime.commands.support import SiameseCommand
from siamese.runtime.storage.galleries import open_gallery
from siamese.runtime.storage.gallery import FaissIndex, Gallery
from siamese.runtime.storage.integrity import load_or_create_key
from siamese.runtime.storage.references import Template
from siamese.runtime.storage.snapshot import (
    apply_snapshot,
    key_id,
    load_or_create_signing_key,
    sign_snapshot,
    verify_snapshot,
)
from siamese.runtime.verifier import Verifier

DOOR = "bench"
DOOR_MEMORY = """
import sys
from siamese.runtime.storage.gallery import Gallery
from siamese.runtime.verifier import Verifier

def peak():  # VmHWM starts again at exec (ru_maxrss would carry the parent's peak)
    status = open('/proc/self/status').read().split('VmHWM:')[1]
    return int(status.split()[0])

verifier = Verifier.from_model('edge')
before = peak()
with Gallery.open(sys.argv[1], verifier, read_only=True) as gallery:
    index = gallery.index()
print(before, peak(), len(index))
"""

def row(what: str, value: str, note: str = "") -> None:
    click.echo(f"| {what} | {value} | {note} |")


def people(verifier: Verifier, names: range, seed: int) -> list[Template]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((len(names), verifier.dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [Template(f"p{n:07d}", vectors[i:i + 1], verifier.embedder.fingerprint)
            for i, n in enumerate(names)]


def enrol(url: str, verifier: Verifier, templates: list[Template], writers: int,
          durable: bool = True) -> float:
    """People per second through CentralGallery.add, `writers` connections at once (not
    `durable`: synchronous_commit off on those connections, for a bulk load)."""
    chunks = [templates[i::writers] for i in range(writers)]

    def write(chunk: list[Template]) -> None:
        with open_gallery(url, verifier) as gallery:
            if not durable:
                gallery.db.execute("SET synchronous_commit = off")
            for template in chunk:
                gallery.add(template, replace=True)

    threads = [threading.Thread(target=write, args=(chunk,)) for chunk in chunks]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(templates) / (time.perf_counter() - started)


def serve_processes(url: str, counts: list[int], folder: Path, probe: Template) -> None:
    """siamese-serve processes on the database: ready time, memory, and how long an enrolment
    through the gallery takes to reach the last process's in-memory index."""
    import httpx
    from siamese.runtime.service.keys import add_key

    keys = folder / "keys.json"
    headers = {"Authorization": f"Bearer {add_key(keys, 'bench', 'door')}"}
    code = "from siamese.runtime.commands.serve import serve_main; serve_main()"
    verifier = Verifier.from_model("edge")
    for count in counts:
        processes, ports = [], [18700 + i for i in range(count)]
        started = time.perf_counter()
        for port in ports:
            processes.append(subprocess.Popen(
                [sys.executable, "-c", code, "run", "--gallery", url, "--keys", str(keys),
                 "--port", str(port), "--audit", str(folder / f"audit-{port}.jsonl"),
                 "--signing-key", str(folder / "center.key")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            for port in ports:
                while True:
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                            break
                    except httpx.TransportError:
                        time.sleep(0.2)
            ready = time.perf_counter() - started
            rss = [int(line.split()[1]) / 1024 for p in processes for line in
                   Path(f"/proc/{p.pid}/status").read_text().splitlines()
                   if line.startswith("VmRSS")]
            row(f"{count} siamese-serve process(es) on the database: all ready",
                f"{ready:.1f} s", f"each loads and checks every person; {np.mean(rss):.0f} MiB "
                f"each (VmRSS)")
            with open_gallery(url, verifier) as gallery:
                gallery.remove(probe.name)
                time.sleep(2)
                changed = time.perf_counter()
                gallery.add(probe)
            seen = None
            while time.perf_counter() - changed < 30:  # 404 until known, then 400 (no image)
                answer = httpx.post(f"http://127.0.0.1:{ports[-1]}/v1/verify/{probe.name}",
                                    files={"image": ("x.jpg", b"x", "image/jpeg")},
                                    headers=headers, timeout=30)
                if answer.status_code != 404:
                    seen = time.perf_counter() - changed
                    break
                time.sleep(0.005)
            row(f"{count} process(es): an enrolment reaches the last one's index",
                f"{seen:.2f} s" if seen is not None else "not within 30 s",
                "NOTIFY, then a read of the changed rows")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(60)


@click.command(cls=SiameseCommand)
@click.option("--url", required=True, help="An empty PostgreSQL database.")
@click.option("--people", "count", default=100_000, show_default=True)
@click.option("--writers", default="1,4", show_default=True)
@click.option("--servers", default="1,2,4", show_default=True)
@click.option("--queries", default=200, show_default=True)
@click.option("--measured", default=5000, show_default=True,
              help="People enrolled durably per writer count (the rest: bulk load).")
def main(url: str, count: int, writers: str, servers: str, queries: int, measured: int
         ) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-central-"))
    try:
        run(url, count, writers, servers, queries, measured, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(url: str, count: int, writers: str, servers: str, queries: int, measured: int,
        folder: Path) -> None:
    verifier = Verifier.from_model("edge", key=load_or_create_key())  # the door's process too
    templates = people(verifier, range(count), 0)
    click.echo(f"{count:,} people, {verifier.dim}-d, one embedding each; "
               f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start\n")
    click.echo("| figure | value | note |")
    click.echo("| --- | --- | --- |")
    with open_gallery(url, verifier, create=True) as gallery:
        done = len(gallery.names())  # a database filled by an earlier run: not enrolled again
    counts = [int(w) for w in writers.split(",")]
    if done:
        row("enrolment", "not measured", f"{done:,} people already there (an earlier run)")
    for writers_now in counts if not done else ():
        chunk = templates[done:done + measured]
        rate = enrol(url, verifier, chunk, writers_now)
        row(f"enrolment, {writers_now} writer(s), people {done:,} to {done + len(chunk):,}",
            f"{rate:,.0f} people/s", "one durable transaction each (synchronous_commit on)")
        done += len(chunk)
    if done < count:
        rate = enrol(url, verifier, templates[done:], counts[-1], durable=False)
        row(f"bulk load of the other {count - done:,}, {counts[-1]} writers",
            f"{rate:,.0f} people/s", "synchronous_commit off on those connections")
    with open_gallery(url, verifier) as gallery, gallery.db.cursor() as cursor:
        gallery.set_member("doors_groups", DOOR, "everyone", True)
        cursor.execute("INSERT INTO groups_people SELECT 'everyone', name, 0 FROM people "
                       "ON CONFLICT DO NOTHING")
        secret = load_or_create_signing_key(folder / "center.key")
        public = secret.public_key()
        started = time.perf_counter()
        generation, names, admitted = gallery.door_snapshot(DOOR)
        data = sign_snapshot(secret, DOOR, generation, None, names, admitted,
                             verifier.embedder.fingerprint)
        built = time.perf_counter() - started
        row("full snapshot: read, check and sign on the center", f"{built:.1f} s",
            f"{len(names):,} people, {len(data) / 2**20:.1f} MiB")
        door = folder / "door.db"
        started = time.perf_counter()
        apply_snapshot(verify_snapshot(data, public, verifier), key_id(public), door, verifier)
        row("full snapshot: verify and write door.db at the door",
            f"{time.perf_counter() - started:.1f} s",
            f"door.db {door.stat().st_size / 2**20:.0f} MiB")
        changes = people(verifier, range(100), 1)
        for template in changes:
            gallery.add(template, replace=True)
        started = time.perf_counter()
        now, names, admitted = gallery.door_snapshot(DOOR, generation)
        delta = sign_snapshot(secret, DOOR, now, generation, names, admitted,
                              verifier.embedder.fingerprint)
        built = time.perf_counter() - started
        started = time.perf_counter()
        apply_snapshot(verify_snapshot(delta, public, verifier), key_id(public), door, verifier)
        row("delta after 100 changes: center / door", f"{built:.2f} s / "
            f"{time.perf_counter() - started:.2f} s", f"{len(delta) / 2**20:.2f} MiB "
            f"(all {len(names):,} names, 100 templates)")
    with Gallery.open(door, verifier, read_only=True) as store:
        started = time.perf_counter()
        index = store.index()
        row("door: load door.db and build the index", f"{time.perf_counter() - started:.1f} s",
            "every row's HMAC and the manifest checked")
    rng = np.random.default_rng(2)
    probes = index.means[rng.integers(len(index), size=queries)]
    probes = probes + 0.05 * rng.standard_normal(probes.shape, dtype=np.float32)
    for name, search in (("numpy (exact)", index), ("FAISS HNSW", _faiss(index))):
        if search is None:
            row(f"door identify, {name}", "not measured", "faiss-cpu not installed")
            continue
        search.search(probes[:5], k=1)
        started = time.perf_counter()
        for probe in probes:
            search.search(probe[None], k=1)
        row(f"door identify, {name}", f"{1e3 * (time.perf_counter() - started) / queries:.2f} "
            f"ms / query", "search only (detection and embedding are extra)")
    memory = subprocess.run([sys.executable, "-c", DOOR_MEMORY, str(door)], check=True,
                            capture_output=True, text=True).stdout.split()
    row("door memory (peak RSS): model loaded / plus door.db index",
        f"{int(memory[0]) / 1024:.0f} MiB / {int(memory[1]) / 1024:.0f} MiB",
        "a separate process, numpy index")
    serve_processes(url, [int(s) for s in servers.split(",")], folder,
                    people(verifier, range(count, count + 1), 3)[0])


def _faiss(index):
    try:
        return FaissIndex(index.names, index.means, index.metric)
    except Exception:  # noqa: BLE001  (the faiss extra is optional)
        return None


if __name__ == "__main__":
    main()
