"""A throwaway PostgreSQL cluster for the tests: initdb in a temporary folder, a unix socket
there (no TCP), stopped and removed at the end; never a system service. As root, the server
runs as the `postgres` user. Tests skip, naming the reason, only where no server can start."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Cluster:
    folder: Path
    bin: Path
    as_postgres: list[str]

    @property
    def socket(self) -> str:
        return str(self.folder)

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_postgres, str(self.bin / "pg_ctl"), "-D",
                               str(self.folder / "data"), "-w", "-t", "60", *args],
                              capture_output=True, text=True, timeout=90)

    def start(self) -> None:
        result = self.ctl("-l", str(self.folder / "log"), "start")
        if result.returncode:
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()[:300]}")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def _start() -> Cluster:
    pytest.importorskip("psycopg", reason="the central gallery needs psycopg: "
                        "pip install '.[central]'")
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="siamese-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    cluster = Cluster(folder, bin_dir, as_postgres)
    init = subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(folder / "data"),
                           "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                          capture_output=True, text=True, timeout=120)
    if init.returncode:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot initdb a throwaway PostgreSQL: {init.stderr.strip()[:200]}")
    with open(folder / "data" / "postgresql.conf", "a") as conf:
        conf.write(f"listen_addresses = ''\nunix_socket_directories = '{folder}'\n"
                   f"fsync = off\nmax_connections = 100\n")
    try:
        cluster.start()
    except RuntimeError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"cannot start a throwaway PostgreSQL: {exc}")
    return cluster


_shared: list = []  # [cluster, users]: each test module imports the fixture; one cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    if not _shared:
        _shared.extend([_start(), 0])
    _shared[1] += 1
    try:
        yield _shared[0]
    finally:
        _shared[1] -= 1
        if not _shared[1]:
            cluster = _shared.pop(0)
            _shared.clear()
            cluster.ctl("-m", "immediate", "stop")
            shutil.rmtree(cluster.folder, ignore_errors=True)
