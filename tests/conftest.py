"""Shared fixtures: an in-process emulator on an ephemeral port for read-only tests, `azimds serve` runs, and a
private PostgreSQL (``postgres_cluster``, ``postgres_url``: a fresh database per test).

The shipped pytest plugin's own fixtures (``imds``, ``imds_fleet``) are left as they are; this suite's
read-only emulator is ``shared_vm``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from azimds import Emulator

from .support import ServeProcess
from .support_postgres import postgres_cluster, postgres_url  # noqa: F401  (fixtures: a private PostgreSQL)

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session")
def shared_vm() -> Iterator[Emulator]:
    """The embedded default VM, no rate limit: for tests that only read."""
    with Emulator(rate_limit=0) as emulator:
        yield emulator


@pytest.fixture
def serve() -> Iterator[type]:
    """Start `azimds serve` processes: ``proc = serve("--profile", path)``; all are stopped after."""
    started: list[ServeProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(*args, env=env)
        started.append(proc)
        return proc

    yield start  # type: ignore[misc]
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
