"""Wires a configuration into a running emulator: profile, world, metadata service, control plane, HTTP servers.

``App(config)`` assembles the parts (raising ProfileError for a bad profile or option, before anything
listens), the profile file's watch included (``serve --watch``: the control plane's reload, run when the file
changes); ``serve`` runs one in the foreground until a signal. ``testing.Emulator`` runs one on a thread.
With ``--workers N`` (``workers``) the same parts are split in two roles: the supervisor's App keeps the state
directory's lock and serves the control plane; each worker's App answers the metadata port on a socket the
supervisor hands it. Both share the world through the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ListenError, StateError, UsageError
from .collector import settling
from .config import Config
from .control.plane import ControlPlane
from .control.static import link as dashboard_link
from .model import profile as profiles
from .model.profile import Profile
from .service.metadata import MetadataService, ServiceOptions
from .service.pki import Pki
from .service.ports import JournalEntry
from .service.server import HttpServer
from .statedir import StateDir
from .watch import ProfileWatcher
from .world.clock import Clock
from .world.store import SqliteStore, Store, open_store
from .world.world import World, fingerprint

__all__ = ["ROLES", "App", "configure", "load_profile", "new_event_loop", "serve"]

#: What an App does: ``single`` the whole emulator (metadata port and control plane; its store private to it),
#: ``supervisor`` the lock, the store checked and the control plane (no metadata port), ``worker`` the metadata
#: port on a socket it is given (no lock, no control plane). The last two share the store.
ROLES = ("single", "supervisor", "worker")


def load_profile(source: object) -> Profile:
    """The profile a configuration names: a file, a parsed tree, a loaded Profile, or the embedded default."""
    if source is None:
        return profiles.load_default()
    if isinstance(source, Profile):
        return source
    if isinstance(source, dict):
        return profiles.from_tree(source, "<dict>")
    if isinstance(source, (str, Path)):
        return profiles.load(source)
    raise TypeError(f"a profile is a path, a mapping or a Profile, not {type(source).__name__}")


def configure(*, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
              defaults: Mapping[str, Any] | None = None) -> tuple[Config, Profile]:
    """The configuration and the profile it names: options validated, then the profile loaded, then its
    ``azimds:`` section merged in at its place (defaults < profile < environment < flags). Raises ProfileError."""
    named = Config.build(env=env, flags=flags, defaults=defaults)
    profile = load_profile(named.profile)
    config = Config.build(profile_settings=profile.settings, profile_source=profile.source, env=env, flags=flags,
                          defaults=defaults)
    return config, profile


class App:
    """The assembled emulator. ``config`` is final: the profile's ``azimds:`` section is already in it.

    ``role`` is one of ``ROLES``; a worker is given its listening socket (``sock``) and a state directory whose
    lock its supervisor holds."""

    def __init__(self, config: Config, profile: Profile | None = None, *, role: str = "single",
                 sock: socket.socket | None = None):
        if role not in ROLES or (role == "worker") != (sock is not None):
            raise ValueError(f"an App's role is one of {ROLES}, and only a worker is given a socket")
        self.config = config
        self.role = role
        self.sock = sock
        profile = profile if profile is not None else load_profile(config.profile)
        self.profile = profile
        clock = Clock("manual" if config.clock == "manual" else "scaled" if config.clock_speed != 1 else "real",
                      speed=config.clock_speed if config.clock != "manual" else 1.0)
        state_dir = Path(config.state_dir) if config.state_dir else None
        scenarios = profiles.load_scenarios(config.scenario) if config.scenario is not None else ()
        self.state = StateDir(state_dir).open() if state_dir is not None and role != "worker" else None
        self.store: Store | None = None
        try:
            if self.state is not None and config.reset_state:
                aside = self.state.set_aside()
                if aside is not None:
                    print(f"azimds: the old state is in {aside}", file=sys.stderr, flush=True)
            if role == "worker":  # the supervisor has checked the store and holds the directory for us
                url = config.state or (f"sqlite:///{state_dir / 'state.sqlite'}" if state_dir is not None else None)
                if url is None:
                    raise StateError("", "a worker needs its supervisor's state directory or --state")
                self.store = open_store(url, shared=True)
            else:
                self.store = _open_store(config, self.state, profile, shared=role == "supervisor" or config.shared)
            pki = Pki.for_state_dir(state_dir)
            if role != "worker":
                pki.check()
            if role == "supervisor":  # made once, here, before the workers sign anything with them
                pki.intermediate()
                pki.token_signer()
            elif role == "single":
                pki.prepare()
            self.world = World(profile, clock=clock, faults=config.fault, store=self.store, scenarios=scenarios,
                               node=config.node, scale_set_tags=config.scale_set_tags)
        except BaseException:
            self._release()
            raise
        options = ServiceOptions(rate_limit=config.rate_limit, newest_version=config.newest_version,
                                 server_version=config.server_version, identity_rate_limit=config.identity_rate_limit,
                                 identity_concurrency=config.identity_concurrency,
                                 events_first_call_delay=config.events_first_call_delay)
        self.service = MetadataService(self.world, options, pki)
        if config.log_format == "json":
            self.world.journal.log = _json_log
        self.token = config.control_token or secrets.token_urlsafe(24)
        self.token_file: Path | None = None
        if config.control_token is None and state_dir is not None and role != "worker":
            self.token_file = _write_token(state_dir, self.token)
        reload = None
        self.watcher: ProfileWatcher | None = None
        if isinstance(config.profile, (str, Path)):
            path = config.profile
            reload = lambda: profiles.load(path)  # noqa: E731
            if config.watch and role != "worker":  # one reload, two ways: POST /v1/reload and --watch
                self.watcher = ProfileWatcher(path, load=reload, apply=self.world.reset, report=_notice,
                                              interval=config.watch_interval)
        self.control = ControlPlane(self.world, self.token, reload=reload)
        self._watching: asyncio.Task[None] | None = None
        self.metadata_server = HttpServer(self.service, server_header=self.service.server_header, notice=_notice)
        self.control_server = HttpServer(self.control, server_header="azimds-control", notice=_notice)

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            self._release()
            raise
        loop = asyncio.get_running_loop()

        def schedule(apply: Callable[[], None]) -> None:
            loop.call_soon_threadsafe(apply)

        self.world.listen(schedule)
        if self.watcher is not None:
            self._watching = loop.create_task(self.watcher.run())
            self._watching.add_done_callback(_watch_ended)

    async def _start(self) -> None:
        config = self.config
        if self.role == "worker":
            await self.metadata_server.start(sock=self.sock)
        elif self.role == "single":
            try:
                await self.metadata_server.start(config.host, config.port)
            except OSError as exc:
                raise ListenError(f"cannot listen on {config.host}:{config.port} for the metadata port: "
                                  f"{_reason(exc)}; give --port another port (0 picks a free one)") from None
        if self.role != "supervisor":  # its workers know their own address
            self.service.public_url = (config.public_url or self.metadata_server.url).rstrip("/")
        if config.control_port is not None and self.role != "worker":
            try:
                await self.control_server.start(config.control_host, config.control_port)
            except BaseException as exc:
                await self.metadata_server.close()
                if isinstance(exc, OSError):
                    raise ListenError(f"cannot listen on {config.control_host}:{config.control_port} for the "
                                      f"control plane: {_reason(exc)}; give --control-port another port "
                                      "(0 picks a free one)") from None
                raise

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watching
        await self.metadata_server.close()
        if self.control_server.port:
            await self.control_server.close()
        self._release()

    def release(self) -> None:
        """Let go of the world, the store and the state directory of an App that was never started."""
        self._release()

    def _release(self) -> None:
        world = getattr(self, "world", None)
        if world is not None:
            world.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self.state is not None:
            self.state.close()


def _open_store(config: Config, state: StateDir | None, profile: Profile, shared: bool) -> Store | None:
    """The store ``--state`` names (default: the state directory's SQLite file; nothing without either);
    ``shared`` when other processes write to it too (workers, nodes).

    A SQLite store that belongs to another profile is set aside (nothing is ever deleted); a shared engine
    that holds another profile's world is refused, unless ``--reset-state`` clears it.
    """
    url = config.state or (f"sqlite:///{state.database}" if state is not None else None)
    if url is None:
        return None
    store = open_store(url, shared=shared)
    mark = fingerprint(profile)
    _, saved = store.load()
    if saved.get("profile") != mark and saved:
        if not isinstance(store, SqliteStore) or state is None or Path(store.path) != state.database:
            if not config.reset_state:
                store.close()
                raise StateError(store.url.split("@")[-1], "it holds the world of another profile; start every "
                                 "node with the same profile, or once with --reset-state to clear it")
            store.update(None, lambda current: dict.fromkeys(current))
        else:
            store.close()
            aside = state.set_aside(("state.sqlite", "state.sqlite-wal", "state.sqlite-shm"))
            print(f"azimds: the state in {state.path} was for another profile; it is now in {aside}",
                  file=sys.stderr, flush=True)
            store = open_store(url, shared=shared)
    elif config.reset_state and not isinstance(store, SqliteStore):
        store.update(None, lambda current: dict.fromkeys(current))
    store.update(["profile"], lambda current: {"profile": mark} if current.get("profile") != mark else {})
    return store


def _write_token(state_dir: Path, token: str) -> Path:
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "control-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def _reason(exc: OSError) -> str:
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _notice(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr, flush=True)


def _watch_ended(task: asyncio.Task[None]) -> None:
    """The watch ends only when the emulator closes; anything else is a bug, said in one line."""
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        _notice(f"--watch stopped: this is a bug in azimds, please report it: {type(exc).__name__}: {exc}")


def _json_log(entry: JournalEntry) -> None:
    sys.stderr.write(json.dumps({"time": entry.time, "peer": entry.peer, "method": entry.method, "url": entry.url,
                                 "status": entry.status, "latency_ms": round(entry.latency * 1000, 3)}) + "\n")


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """The loop ``--loop`` names: ``auto`` is uvloop when it is installed (it is faster), else asyncio's own."""
    if kind == "asyncio":
        return asyncio.new_event_loop()
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise UsageError("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def serve(app: App, ready: Callable[[str], None] = print) -> int:
    """Run until SIGINT or SIGTERM; returns the exit code."""
    loop = new_event_loop(app.config.loop)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_serve(app, ready))
    finally:
        loop.close()


async def _serve(app: App, ready: Callable[[str], None]) -> int:
    await app.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if app.control_server.port:
        where = f" (token in {app.token_file})" if app.token_file else ""
        print(f"azimds: control plane {app.control_server.url}{where}", file=sys.stderr, flush=True)
        print(f"azimds: dashboard {dashboard_link(app.control_server.url, app.token)}", file=sys.stderr, flush=True)
    ready(f"azimds: serving {app.metadata_server.url}/metadata")
    async with settling(app.world):
        await stop.wait()
    await app.close()
    return 0
