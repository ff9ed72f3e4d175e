"""Wires a profile, the metadata service and the HTTP core into an emulator that runs.

``serve`` runs one in the foreground until a signal; ``Emulator`` runs one on a background thread for
use inside a test suite, on an ephemeral port, with no global state.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import catalog
from . import profile as profiles
from .profile import Profile, Vm
from .server import HttpServer
from .service import MetadataService, ServiceOptions

__all__ = ["Emulator", "EmulatorConfig", "serve"]

DEFAULT_PORT = 8169  # the real service listens on 169.254.169.254:80; this is our loopback default


@dataclass(frozen=True)
class EmulatorConfig:
    """What ``serve`` and ``Emulator`` take; ``None`` means "the profile's setting, else the default"."""

    profile: str | Path | dict[str, Any] | Profile | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    rate_limit: float | None = None
    newest_version: str | None = None
    faults: tuple[Any, ...] = ()  # faults.Fault, added to the profile's


def load_profile(source: str | Path | dict[str, Any] | Profile | None) -> Profile:
    if source is None:
        return profiles.load_default()
    if isinstance(source, Profile):
        return source
    if isinstance(source, dict):
        return profiles.from_tree(source, "<dict>")
    return profiles.load(source)


def build_service(config: EmulatorConfig) -> MetadataService:
    """Load the profile and make the service; raises ProfileError or ValueError on bad input."""
    profile = load_profile(config.profile)
    settings = profile.settings
    newest = config.newest_version or settings.newest_version
    if newest is not None:
        catalog.check_newest(newest)
    rate = settings.rate_limit if config.rate_limit is None else config.rate_limit
    if rate < 0:
        raise ValueError(f"the rate limit must be 0 (off) or more, not {rate}")
    options = ServiceOptions(rate_limit=rate, newest_version=newest, server_version=settings.server_version,
                             faults=settings.faults + tuple(config.faults))
    return MetadataService(Vm(profile), options)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (it is faster), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(config: EmulatorConfig, ready: Callable[[str], None] = print) -> int:
    """Run until SIGINT or SIGTERM; returns the exit code. Raises on bad config before listening."""
    service = build_service(config)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(service, config, ready))
    finally:
        loop.close()


async def _serve(service: MetadataService, config: EmulatorConfig, ready: Callable[[str], None]) -> int:
    server = HttpServer(service, server_header=service.server_header)
    await server.start(config.host, config.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ready(f"azimds: serving {server.url}/metadata")
    await stop.wait()
    await server.close()
    return 0


class Emulator:
    """An emulator on a background thread: ``with Emulator() as imds: urlopen(imds.url + ...)``."""

    def __init__(self, profile: str | Path | dict[str, Any] | Profile | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, rate_limit: float | None = 0, newest_version: str | None = None,
                 faults: tuple[Any, ...] | list[Any] = ()):
        self.config = EmulatorConfig(profile, host, port, rate_limit, newest_version, tuple(faults))
        self.service = build_service(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: HttpServer | None = None

    @property
    def vm(self) -> Vm:
        return self.service.vm

    @property
    def journal(self) -> list[Any]:
        """The requests answered so far (oldest first), as ``service.JournalEntry`` tuples."""
        return list(self.service.journal)

    @property
    def faults(self) -> Any:
        """The live FaultSet: ``imds.faults.faults.append(Fault(...))`` takes effect at once."""
        return self.service.faults

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``; append ``/metadata/...``."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return self._server.url

    def start(self) -> "Emulator":
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = new_event_loop()
            asyncio.set_event_loop(loop)
            self._server = HttpServer(self.service, server_header=self.service.server_header)
            try:
                loop.run_until_complete(self._server.start(self.config.host, self.config.port))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._server.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="azimds-emulator", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._server = None
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop = self._thread = None
        self._server = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
