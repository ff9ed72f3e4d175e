"""Wires a profile, the emulated state, the metadata service, the control plane and the HTTP core together.

``serve`` runs an emulator in the foreground until a signal; ``Emulator`` runs one on a background thread
for use inside a test suite, on an ephemeral port, with no global state.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import catalog
from . import profile as profiles
from .clock import Clock
from .control import ControlPlane
from .profile import Profile, Vm
from .server import HttpServer
from .service import MetadataService, ServiceOptions
from .state import Emulation, JournalEntry
from .store import Store

__all__ = ["Emulator", "EmulatorConfig", "serve"]

DEFAULT_PORT = 8169  # the real service listens on 169.254.169.254:80; this is our loopback default
DEFAULT_CONTROL_PORT = 8170


@dataclass(frozen=True)
class EmulatorConfig:
    """What ``serve`` and ``Emulator`` take; ``None`` means "the profile's setting, else the default"."""

    profile: str | Path | dict[str, Any] | Profile | None = None
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    rate_limit: float | None = None
    newest_version: str | None = None
    faults: tuple[Any, ...] = ()  # faults.Fault, added to the profile's
    clock: str = "real"  # real | manual | scaled
    clock_speed: float = 1.0
    state_dir: str | Path | None = None  # None: nothing persisted
    control_host: str = "127.0.0.1"
    control_port: int | None = DEFAULT_CONTROL_PORT  # None: no control plane
    control_token: str | None = None  # None: generated, written to STATE_DIR/control-token
    log_format: str | None = None  # "json": one line per request on stderr
    scenario: str | Path | None = None  # a scenario file, planned after the profile's own scenarios
    public_url: str | None = None  # how clients reach the metadata port (AIA, jwks_uri); None: its own URL
    identity_rate_limit: float | None = None  # /metadata/identity/* requests/s per source address; 0: off
    identity_concurrency: int | None = None  # /metadata/identity/* requests in flight per source address; 0: off


def load_profile(source: str | Path | dict[str, Any] | Profile | None) -> Profile:
    if source is None:
        return profiles.load_default()
    if isinstance(source, Profile):
        return source
    if isinstance(source, dict):
        return profiles.from_tree(source, "<dict>")
    return profiles.load(source)


class Parts:
    """The assembled emulator: state, service, control plane. Raises ProfileError/ValueError on bad input."""

    def __init__(self, config: EmulatorConfig):
        self.config = config
        profile = load_profile(config.profile)
        settings = profile.settings
        newest = config.newest_version or settings.newest_version
        if newest is not None:
            catalog.check_newest(newest)
        rate = settings.rate_limit if config.rate_limit is None else config.rate_limit
        if rate < 0:
            raise ValueError(f"the rate limit must be 0 (off) or more, not {rate}")
        identity_rate = (settings.identity_rate_limit if config.identity_rate_limit is None
                         else config.identity_rate_limit)
        identity_concurrency = (settings.identity_concurrency if config.identity_concurrency is None
                                else config.identity_concurrency)
        if identity_rate < 0 or identity_concurrency < 0:
            raise ValueError("the identity limits must be 0 (off) or more, not "
                             f"{identity_rate}/s and {identity_concurrency} in flight")
        if config.public_url is not None and not config.public_url.startswith(("http://", "https://")):
            raise ValueError(f"the public URL must start with http:// or https://, not {config.public_url!r}")
        speed = config.clock_speed
        mode = "manual" if config.clock == "manual" else "scaled" if speed != 1 else "real"
        clock = Clock(mode, speed=speed if mode != "manual" else 1.0)
        self.store = _open_store(config.state_dir, profile)
        scenarios = list(profile.scenarios)
        if config.scenario is not None:
            scenarios += profiles.load_scenarios(config.scenario)
        self.emulation = Emulation(profile, clock=clock, faults=list(settings.faults) + list(config.faults),
                                   store=self.store, scenarios=scenarios)
        options = ServiceOptions(rate_limit=rate, newest_version=newest, server_version=settings.server_version,
                                 identity_rate_limit=identity_rate, identity_concurrency=int(identity_concurrency),
                                 state_dir=config.state_dir, public_url=config.public_url)
        self.fleet = None
        if profile.fleet is not None:
            from .fleet import Fleet

            self.fleet = Fleet(self.emulation, profile, profile.identity_section)
        self.service = MetadataService(self.emulation, options, self.fleet)
        if config.log_format == "json":
            self.service.log = _json_log
        self.token = config.control_token or secrets.token_urlsafe(24)
        self.token_file: Path | None = None
        if config.control_token is None and config.state_dir is not None:
            self.token_file = _write_token(Path(config.state_dir), self.token)
        reload = None
        if isinstance(config.profile, (str, Path)):
            reload = lambda: profiles.load(config.profile)  # noqa: E731
        self.control = ControlPlane(self.emulation, self.token, reload=reload, fleet=self.fleet)
        self.metadata_server = HttpServer(self.service, server_header=self.service.server_header)
        self.control_server = HttpServer(self.control, server_header="azimds-control")

    async def start(self) -> None:
        await self.metadata_server.start(self.config.host, self.config.port)
        self.service.public_url = (self.config.public_url or self.metadata_server.url).rstrip("/")
        if self.config.control_port is not None:
            try:
                await self.control_server.start(self.config.control_host, self.config.control_port)
            except BaseException:
                await self.metadata_server.close()
                raise

    async def close(self) -> None:
        await self.metadata_server.close()
        if self.control_server.port:
            await self.control_server.close()
        if self.store is not None:
            self.store.close()


def _open_store(state_dir: str | Path | None, profile: Profile) -> Store | None:
    """The state database, emptied when it belongs to another profile than this one."""
    if state_dir is None:
        return None
    store = Store(Path(state_dir) / "state.sqlite")
    fingerprint = hashlib.sha256(json.dumps([profile.instance, profile.loadbalancer], sort_keys=True)
                                 .encode()).hexdigest()
    if store.load().get("profile") != fingerprint:
        store.clear()
        store.save({"profile": fingerprint})
    return store


def _write_token(state_dir: Path, token: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "control-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def _json_log(entry: JournalEntry) -> None:
    sys.stderr.write(json.dumps({"time": entry.time, "peer": entry.peer, "method": entry.method, "url": entry.url,
                                 "status": entry.status, "latency_ms": round(entry.latency * 1000, 3)}) + "\n")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it is installed (it is faster), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(config: EmulatorConfig, ready: Callable[[str], None] = print) -> int:
    """Run until SIGINT or SIGTERM; returns the exit code. Raises on bad config before listening."""
    parts = Parts(config)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(parts, ready))
    finally:
        loop.close()


async def _serve(parts: Parts, ready: Callable[[str], None]) -> int:
    await parts.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if parts.control_server.port:
        where = f" (token in {parts.token_file})" if parts.token_file else ""
        print(f"azimds: control plane {parts.control_server.url}{where}", file=sys.stderr, flush=True)
    ready(f"azimds: serving {parts.metadata_server.url}/metadata")
    await stop.wait()
    await parts.close()
    return 0


class Emulator:
    """An emulator on a background thread: ``with Emulator() as imds: urlopen(imds.url + ...)``.

    Defaults suit tests: an ephemeral port, no rate limits (identity's included), nothing persisted (the CA
    and token keys live in memory, shared by the process's emulators: ``imds.ca_pem()`` gives the root), a
    control plane on an ephemeral loopback port reachable as ``imds.control_url`` with ``imds.token``.
    """

    def __init__(self, profile: str | Path | dict[str, Any] | Profile | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, rate_limit: float | None = 0, newest_version: str | None = None,
                 faults: tuple[Any, ...] | list[Any] = (), clock: str = "real", clock_speed: float = 1.0,
                 state_dir: str | Path | None = None, public_url: str | None = None,
                 identity_rate_limit: float | None = 0, identity_concurrency: int | None = 0):
        self.config = EmulatorConfig(profile, host, port, rate_limit, newest_version, tuple(faults), clock,
                                     clock_speed, state_dir, control_port=0, public_url=public_url,
                                     identity_rate_limit=identity_rate_limit,
                                     identity_concurrency=identity_concurrency)
        self.parts = Parts(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def service(self) -> MetadataService:
        return self.parts.service

    @property
    def emulation(self) -> Emulation:
        return self.parts.emulation

    @property
    def vm(self) -> Vm:
        return self.parts.emulation.vm

    @property
    def journal(self) -> list[JournalEntry]:
        """The requests answered so far (oldest first)."""
        return list(self.parts.emulation.journal)

    @property
    def faults(self) -> Any:
        """The live FaultSet: ``imds.faults.faults.append(Fault(...))`` takes effect at once."""
        return self.parts.emulation.faults

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``; append ``/metadata/...``."""
        if not self._running:
            raise RuntimeError("the emulator is not running")
        return self.parts.metadata_server.url

    @property
    def control_url(self) -> str:
        if not self._running:
            raise RuntimeError("the emulator is not running")
        return self.parts.control_server.url

    @property
    def token(self) -> str:
        return self.parts.token

    def ca_pem(self, *, intermediate: bool = False) -> str:
        """The root certificate that attested documents chain to, PEM (the intermediate after it, if asked)."""
        return self.parts.service.pki.export_pem(intermediate=intermediate)

    @property
    def control(self) -> "ControlCalls":
        """The control plane as Python calls, run on the emulator's own thread: ``imds.control.advance(60)``."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        return ControlCalls(self.parts.emulation, self._loop)

    def start(self) -> "Emulator":
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.parts.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.parts.close())
            loop.close()

        self._thread = threading.Thread(target=run, name="azimds-emulator", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        self._running = True
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop = self._thread = None
        self._running = False

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ControlCalls:
    """What the control plane does, as method calls for a test suite, each run on the emulator's thread (so
    nothing races the server) and returning its result or raising its error (ProfileError, EventError, …)."""

    def __init__(self, emulation: Emulation, loop: asyncio.AbstractEventLoop):
        self._emulation = emulation
        self._loop = loop

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def get(self, path: str = "") -> Any:
        return self._call(self._emulation.read_node, _parts(path))

    def set(self, path: str, value: Any) -> Any:
        return self._call(self._emulation.set_node, _parts(path), value)

    def patch(self, path: str, patch: Any) -> Any:
        return self._call(self._emulation.patch_node, _parts(path), patch)

    def delete(self, path: str) -> None:
        self._call(self._emulation.delete_node, _parts(path))

    def set_tags(self, tags: dict[str, Any]) -> str:
        return self._call(self._emulation.set_tags, tags)

    def schedule(self, type: str, resources: list[str] | None = None, **options: Any) -> Any:
        """Schedule an event (``events.EventBook.schedule``'s options); resources default to this VM."""
        names = resources or [self._emulation.vm.instance["compute"]["name"]]
        return self._call(self._emulation.events.schedule, type, names, **options)

    def approve(self, event_id: str, by: str | None = None) -> Any:
        return self._call(self._emulation.events.approve, event_id, by)

    def start(self, event_id: str) -> Any:
        return self._call(self._emulation.events.start, event_id)

    def complete(self, event_id: str) -> None:
        self._call(self._emulation.events.complete, event_id)

    def cancel(self, event_id: str) -> None:
        self._call(self._emulation.events.cancel, event_id)

    def advance(self, seconds: float) -> float:
        return self._call(self._emulation.advance_clock, seconds)

    def set_speed(self, speed: float) -> None:
        self._call(self._emulation.set_clock_speed, speed)

    def add_fault(self, spec: str | Any) -> None:
        from .faults import parse_fault

        self._call(self._emulation.add_fault, parse_fault(spec) if isinstance(spec, str) else spec)

    def clear_faults(self) -> None:
        self._call(self._emulation.clear_faults)

    def reset(self) -> None:
        self._call(self._emulation.reset)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]
