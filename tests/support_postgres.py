"""A private PostgreSQL cluster for the tests of the PostgreSQL engine: started from the machine's binaries in a
temporary directory, one database per test, stopped at the end. Nothing about PostgreSQL is mocked.

Under root the cluster runs as the ``postgres`` user (PostgreSQL refuses root), its directories owned by it.
Where no PostgreSQL binaries exist, the tests that need one skip, saying so (``scripts/sysdeps.sh`` installs
them on Debian).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresCluster", "find_binaries", "postgres_cluster", "postgres_url"]

_NAMES = itertools.count(1)


def find_binaries() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with initdb (or initdb on PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One PostgreSQL server of our own, on 127.0.0.1 and a free port, trusting local connections."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="azimds-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.sockets.mkdir()
        self.port = _free_port()
        self._user: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("PostgreSQL cannot run as root and there is no postgres user to run it as")
            for path in (self.root, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
            self._user = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        self.start()

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self._user, str(self.binaries / tool), *args], capture_output=True, text=True,
                              timeout=120, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}{log[-2000:]}")
        return done

    def start(self) -> None:
        options = f"-k {self.sockets} -p {self.port} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        status = subprocess.run([*self._user, str(self.binaries / "pg_ctl"), "-D", str(self.data), "status"],
                                capture_output=True, text=True, timeout=30, cwd=self.root)
        return status.returncode == 0

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(_NAMES)}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(), autocommit=True) as conn:
                    conn.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]  # a name made here
                return self.url(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def destroy(self) -> None:
        if self.running():
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def new_cluster() -> PostgresCluster:
    """A started private cluster, or a skip saying why none can run here."""
    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL is not installed here (no /usr/lib/postgresql/*/bin/initdb); scripts/sysdeps.sh "
                    "installs it with apt-get")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the PostgreSQL engine's extra is not installed ({exc.name}): pip install 'azimds[postgres]'")
    return PostgresCluster(binaries)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """The session's private PostgreSQL (tests that stop it start their own with ``new_cluster``)."""
    cluster = new_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """The URL of a fresh database of the session's cluster, for this test alone."""
    return postgres_cluster.create_database()
