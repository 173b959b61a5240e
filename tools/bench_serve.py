"""siamese-serve under load on loopback, beside the same work through the library.

Starts `siamese-serve run` on 127.0.0.1 (a free port, a scratch keys file, gallery and audit
log), enrols the LFW fixture's people through the API, then measures:
  - compare and identify: requests/s and p50/p99 latency with --clients concurrent clients,
    and the same decode + compare / identify done by the library in this process (one thread,
    and --workers threads with a detector each); the service's share of the library's best;
  - schemathesis (when installed) against /openapi.json: 5xx and schema violations;
  - slowloris: --slow sockets sending a header byte every second, and --idle-ws WebSockets
    that never start, while /healthz is timed.
Every count and duration is bounded; nothing listens beyond loopback.

    python tools/bench_serve.py --clients 8 --requests 60 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "fixtures" / "lfw_mini" / "lfw-deepfunneled"
PAIR = (PHOTOS / "Joan_Laporta" / "Joan_Laporta_0001.jpg",
        PHOTOS / "Joan_Laporta" / "Joan_Laporta_0002.jpg")
QUERY = PHOTOS / "Yashwant_Sinha" / "Yashwant_Sinha_0004.jpg"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def row(name: str, seconds: float, latencies: list[float], statuses: list[int]) -> dict:
    return {"name": name, "rps": len(latencies) / seconds, "seconds": seconds,
            "latencies": latencies,
            "p50": 1e3 * percentile(latencies, 50), "p99": 1e3 * percentile(latencies, 99),
            "errors": sum(s != 200 for s in statuses)}


class Server:
    def __init__(self, folder: Path, workers: int) -> None:
        keys, self.folder = folder / "keys.json", folder
        env = {**os.environ, "SIAMESE_KEY_FILE": str(folder / "template.key"),
               "SIAMESE_CACHE": str(folder / "cache")}
        self.admin = self._key(keys, "bench-admin", "admin", env)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["siamese-serve", "run", "--keys", str(keys), "--gallery", str(folder / "g.db"),
             "--port", str(self.port), "--workers", str(workers), "--rate", "100000",
             "--queue", "256"], env=env, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.process.kill()
        raise SystemExit(f"the server did not start: {self.process.stderr.read()}")

    @staticmethod
    def _key(keys: Path, name: str, scope: str, env: dict) -> str:
        out = subprocess.run(["siamese-serve", "keys", "add", name, "--scope", scope,
                              "--keys", str(keys)], env=env, check=True, capture_output=True,
                             text=True)
        return out.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def load(server: Server, route: str, files, clients: int, requests: int) -> dict:
    headers = {"Authorization": f"Bearer {server.admin}"}
    per_client = max(1, requests // clients)
    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(_: int) -> None:
        with httpx.Client(timeout=120) as session:
            for _ in range(per_client):
                started = time.perf_counter()
                status = session.post(f"{server.url}{route}", files=files,
                                      headers=headers).status_code
                with lock:
                    latencies.append(time.perf_counter() - started)
                    statuses.append(status)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return row(f"service {route} ({clients} clients)", time.perf_counter() - started,
               latencies, statuses)


def library(name: str, job, threads: int, requests: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    per_thread = max(1, requests // threads)

    def worker(_: int) -> None:
        for _ in range(per_thread):
            started = time.perf_counter()
            job()
            with lock:
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    return row(f"library {name} ({threads} thread{'s' * (threads > 1)})",
               time.perf_counter() - started, latencies, [200] * len(latencies))


def library_jobs(folder: Path) -> dict:
    """The service's work (decode the uploaded bytes, compare / identify) in this process, on
    threads with a detector each, like the service's workers."""
    os.environ["SIAMESE_KEY_FILE"] = str(folder / "template.key")
    os.environ["SIAMESE_CACHE"] = str(folder / "cache")
    from siamese.runtime.identify import identify_faces
    from siamese.runtime.storage.gallery import Gallery
    from siamese.runtime.verifier import DETECT_SIDE, Verifier
    from siamese.runtime.vision.detector import DetectorConfig, FaceDetector
    from siamese.runtime.vision.imageio import decode_image

    base = Verifier.from_model()
    local = threading.local()

    def verifier() -> Verifier:
        if not hasattr(local, "v"):
            local.v = Verifier(base.embedder, FaceDetector(config=DetectorConfig(
                max_side=DETECT_SIDE)), base.config, base.cache.root, base.key)
        return local.v

    a, b, query = PAIR[0].read_bytes(), PAIR[1].read_bytes(), QUERY.read_bytes()
    with Gallery.open(folder / "g.db", base) as gallery:
        index = gallery.index()
    return {"compare": lambda: verifier().compare(decode_image(a, "a"), decode_image(b, "b")),
            "identify": lambda: identify_faces(verifier(), decode_image(query, "q"), index)}


def merge(parts: list[dict]) -> dict:
    """Rounds of one setting as one row: requests over total time, latencies pooled."""
    seconds = sum(p["seconds"] for p in parts)
    latencies = [x for p in parts for x in p["latencies"]]
    return {**row(parts[0]["name"], seconds, latencies, [200] * len(latencies)),
            "errors": sum(p["errors"] for p in parts)}


def enrol_everyone(server: Server) -> int:
    headers = {"Authorization": f"Bearer {server.admin}"}
    enrolled = 0
    for person in sorted(PHOTOS.iterdir()):
        for photo in sorted(person.glob("*.jpg")):
            response = httpx.post(f"{server.url}/v1/people/{person.name}", headers=headers,
                                  files=[("images", (photo.name, photo.read_bytes()))],
                                  timeout=60)
            if response.status_code == 201:
                enrolled += 1
                break
    return enrolled


def healthz_times(url: str, count: int = 20) -> list[float]:
    """Seconds per GET /healthz, each on a new connection (one client: its setup not timed)."""
    times = []
    with httpx.Client(timeout=10, headers={"Connection": "close"}) as client:
        for _ in range(count):
            started = time.perf_counter()
            response = client.get(f"{url}/healthz")
            assert response.status_code == 200
            times.append(time.perf_counter() - started)
    return times


def slowloris(server: Server, sockets: int, seconds: float) -> str:
    held = []
    for _ in range(sockets):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        conn.sendall(b"POST /v1/compare HTTP/1.1\r\nHost: x\r\n")
        held.append(conn)
    times, alive, deadline = [], 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        for conn in held:
            with contextlib.suppress(OSError):
                conn.sendall(b"X-a: b\r\n")
        times += healthz_times(server.url, 5)
        time.sleep(1)
    for conn in held:
        try:
            conn.sendall(b"X-a: b\r\n")
            alive += 1
        except OSError:
            pass
        conn.close()
    return (f"slowloris: {sockets} sockets trickling headers for {seconds:g} s ({alive} still "
            f"open at the end): /healthz {len(times)}/{len(times)} answered, p50 "
            f"{1e3 * statistics.median(times):.1f} ms, max {1e3 * max(times):.1f} ms")


def idle_websockets(server: Server, count: int, seconds: float) -> str:
    import websockets

    async def run() -> tuple[int, int, list[float]]:
        async def connect():
            try:
                ws = await websockets.connect(f"ws://127.0.0.1:{server.port}/v1/sessions",
                                              open_timeout=20)
                return ws
            except Exception:  # refused over --max-sessions: counted, not fatal
                return None

        sockets = await asyncio.gather(*(connect() for _ in range(count)))
        opened = [s for s in sockets if s is not None]
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()
        times = await loop.run_in_executor(None, healthz_times, server.url, int(seconds * 5))
        still = 0
        for ws in opened:
            still += ws.state.name == "OPEN"
            await ws.close()
        return len(opened), still, times

    opened, still, times = asyncio.run(run())
    return (f"idle WebSockets: {count} opened at once, {opened} accepted by the handshake, "
            f"{still} still open while /healthz was timed (beyond the session cap the server "
            f"closes with 1013): /healthz {len(times)}/{len(times)} answered, p50 "
            f"{1e3 * statistics.median(times):.1f} ms, max {1e3 * max(times):.1f} ms")


def fuzz(server: Server, examples: int, log: Path | None) -> str:
    try:
        import schemathesis  # noqa: F401
    except ModuleNotFoundError:
        return "schemathesis: not installed (pip install schemathesis), skipped"
    command = ["schemathesis", "run", f"{server.url}/openapi.json",
               "-H", f"Authorization: Bearer {server.admin}", "--max-examples", str(examples),
               "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--no-color"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          cwd=server.folder)  # its .schemathesis/ state stays in the scratch
    if log is not None:
        log.write_text(done.stdout + done.stderr)
    tail = "\n".join(line for line in done.stdout.strip().splitlines()[-40:]
                     if line.strip() and not line.startswith("  curl"))
    return f"schemathesis (exit {done.returncode}):\n{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=60, help="per route, setting, round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--slow", type=int, default=200, help="slowloris sockets")
    parser.add_argument("--idle-ws", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per hostile phase")
    parser.add_argument("--fuzz-examples", type=int, default=20)
    parser.add_argument("--fuzz-log", type=Path, help="schemathesis' whole report goes here")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["load", "fuzz", "slowloris", "websockets"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as scratch:
        folder = Path(scratch)
        server = Server(folder, args.workers)
        try:
            print(f"people enrolled: {enrol_everyone(server)}; workers {args.workers}; "
                  f"cores {len(os.sched_getaffinity(0))}")
            pair = {"a": ("a.jpg", PAIR[0].read_bytes()), "b": ("b.jpg", PAIR[1].read_bytes())}
            image = {"image": ("q.jpg", QUERY.read_bytes())}
            calm = healthz_times(server.url, 20)
            print(f"/healthz with no hostile load: p50 {1e3 * statistics.median(calm):.1f} ms, "
                  f"max {1e3 * max(calm):.1f} ms")
            rows = []
            if "load" not in args.skip:  # service and library alternate, round by round, so
                jobs = library_jobs(folder)  # that both see the machine's load alike
                parts: dict[str, list[dict]] = {}
                for _ in range(args.rounds):
                    for route, files in (("compare", pair), ("identify", image)):
                        parts.setdefault(f"s{route}", []).append(
                            load(server, f"/v1/{route}", files, args.clients, args.requests))
                        parts.setdefault(f"l{route}", []).append(
                            library(route, jobs[route], args.workers, args.requests))
                rows = [merge(parts[k]) for k in ("scompare", "lcompare", "sidentify",
                                                  "lidentify")]
            if "slowloris" not in args.skip:
                print(slowloris(server, args.slow, args.seconds))
            if "websockets" not in args.skip:
                print(idle_websockets(server, args.idle_ws, args.seconds))
            if "fuzz" not in args.skip:  # last: with an admin key it enrols and removes people
                print(fuzz(server, args.fuzz_examples, args.fuzz_log))
        finally:
            server.stop()
        print(f"\n{'setting':<40} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8}")
        for r in rows:
            print(f"{r['name']:<40} {r['rps']:7.1f} {r['p50']:8.1f} {r['p99']:8.1f} "
                  f"{r['errors']:8d}")
        for route in ("compare", "identify"):
            service = [r for r in rows if r["name"].startswith(f"service /v1/{route}")]
            lib = [r for r in rows if r["name"].startswith(f"library {route}")]
            if service and lib:
                print(f"{route}: service {service[0]['rps']:.1f} req/s = "
                      f"{100 * service[0]['rps'] / lib[0]['rps']:.0f}% of the library's "
                      f"{lib[0]['rps']:.1f} req/s ({args.rounds} alternating rounds of "
                      f"{args.requests}); target 80%")


if __name__ == "__main__":
    sys.exit(main())
