"""``Emulator``: an emulator on a background thread, for use inside a test suite, and its control as Python calls.

Defaults suit tests: an ephemeral port, no rate limits (identity's included), nothing persisted (the CA and
token keys live in memory, shared by the process's emulators), a control plane on an ephemeral loopback port.
In-process emulators take their options from their arguments and the profile only, never from ``AZIMDS_*``
variables, so a test suite behaves the same whatever the environment says.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from ..errors import InvalidChange, ProfileError
from .app import App, configure, new_event_loop
from .control.static import link as dashboard_link
from .model.events import EventSpec
from .model.faults import FaultRule
from .model.profile import Profile
from .service.metadata import MetadataService
from .service.ports import JournalEntry
from .world.events import Event
from .world.faults import FaultSet
from .world.vm import VmState
from .world.world import World

__all__ = ["ControlCalls", "Emulator"]


class Emulator:
    """An emulator on a background thread: ``with Emulator() as imds: urlopen(imds.url + ...)``.

    ``profile`` is a file, a parsed tree (dict) or a loaded Profile (None: the embedded default VM). The
    other arguments are ``azimds serve``'s options (see ``azimds.emulator.config.OPTIONS``); None leaves an
    option to the profile's ``azimds:`` section, else its default.
    """

    def __init__(self, profile: str | Path | dict[str, Any] | Profile | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, rate_limit: float | None = 0, newest_version: str | None = None,
                 faults: Iterable[str | FaultRule] = (), clock: str = "real", clock_speed: float = 1.0,
                 state_dir: str | Path | None = None, public_url: str | None = None,
                 identity_rate_limit: float | None = 0, identity_concurrency: int | None = 0,
                 scenario: str | Path | None = None, server_version: str | None = None):
        flags: dict[str, Any] = {
            "host": host, "port": port, "rate_limit": rate_limit, "newest_version": newest_version,
            "fault": tuple(faults), "clock": clock, "clock_speed": clock_speed, "state_dir": state_dir,
            "public_url": public_url, "identity_rate_limit": identity_rate_limit,
            "identity_concurrency": identity_concurrency, "control_port": 0, "scenario": scenario,
            "server_version": server_version,
        }
        defaults: dict[str, Any] = {"state_dir": None}
        if isinstance(profile, (str, Path)):
            flags["profile"] = profile
        else:
            defaults["profile"] = profile
        self.config, loaded = configure(flags=flags, defaults=defaults)
        self.app = App(self.config, loaded)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._running = False

    @property
    def world(self) -> World:
        return self.app.world

    @property
    def service(self) -> MetadataService:
        return self.app.service

    @property
    def vm(self) -> VmState:
        """The profile's own VM (a fleet's first) as it is now."""
        return self.app.world.first

    @property
    def journal(self) -> list[JournalEntry]:
        """The requests answered so far (oldest first)."""
        return list(self.app.world.journal)

    @property
    def faults(self) -> FaultSet:
        """The faults in force: ``imds.faults.add(FaultRule(...))`` takes effect at once."""
        return self.app.world.faults

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``; append ``/metadata/...``."""
        if not self._running:
            raise RuntimeError("the emulator is not running")
        return self.app.metadata_server.url

    @property
    def control_url(self) -> str:
        if not self._running:
            raise RuntimeError("the emulator is not running")
        return self.app.control_server.url

    @property
    def dashboard_url(self) -> str:
        """The control plane's dashboard, with the token in the link's fragment (never sent to the server)."""
        return dashboard_link(self.control_url, self.token)

    @property
    def token(self) -> str:
        return self.app.token

    def ca_pem(self, *, intermediate: bool = False) -> str:
        """The root certificate that attested documents chain to, PEM (the intermediate after it, if asked)."""
        return self.app.service.pki.export_pem(intermediate=intermediate)

    @property
    def control(self) -> ControlCalls:
        """The control plane as Python calls, run on the emulator's own thread: ``imds.control.advance(60)``."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")
        return ControlCalls(self.app.world, self._loop)

    def start(self) -> Emulator:
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop = new_event_loop(self.app.config.loop)
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.app.start())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.app.close())
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

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ControlCalls:
    """What the control plane does, as method calls for a test suite, each run on the emulator's thread (so
    nothing races the server) and returning its result or raising its error (``azimds.errors``)."""

    def __init__(self, world: World, loop: asyncio.AbstractEventLoop):
        self._world = world
        self._loop = loop

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        future: Future[Any] = Future()

        def run() -> None:
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                future.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    def _vm(self, vm: str | None) -> VmState:
        return self._world.vm(vm)

    def get(self, path: str = "", *, vm: str | None = None) -> Any:
        return self._call(lambda: self._world.read_node(self._vm(vm), _parts(path)))

    def set(self, path: str, value: Any, *, vm: str | None = None) -> Any:
        return self._call(lambda: self._world.set_node(self._vm(vm), _parts(path), value))

    def patch(self, path: str, patch: Any, *, vm: str | None = None) -> Any:
        return self._call(lambda: self._world.patch_node(self._vm(vm), _parts(path), patch))

    def delete(self, path: str, *, vm: str | None = None) -> None:
        self._call(lambda: self._world.delete_node(self._vm(vm), _parts(path)))

    def set_tags(self, tags: dict[str, Any], *, vm: str | None = None) -> str:
        result: str = self._call(lambda: self._world.set_tags(self._vm(vm), tags))
        return result

    def schedule(self, type: str, resources: list[str] | None = None, *, vm: str | None = None,
                 **options: Any) -> Event:
        """Schedule an event: ``type`` and the control plane's event fields (``notice=60``, ``durationInSeconds``
        or ``duration``, ``event_id`` or ``eventId``, …); resources default to the VM."""
        try:
            spec = EventSpec.from_mapping({"type": type, "resources": resources, **options})
        except ProfileError as exc:
            raise InvalidChange("the event is invalid", exc.problems) from None
        event: Event = self._call(lambda: self._world.schedule(self._vm(vm), spec))
        return event

    def approve(self, event_id: str, by: str | None = None, *, vm: str | None = None) -> None:
        self._call(lambda: self._world.event_action(self._vm(vm), event_id, "approve", by))

    def start(self, event_id: str, *, vm: str | None = None) -> None:
        self._call(lambda: self._world.event_action(self._vm(vm), event_id, "start"))

    def complete(self, event_id: str, *, vm: str | None = None) -> None:
        self._call(lambda: self._world.event_action(self._vm(vm), event_id, "complete"))

    def cancel(self, event_id: str, *, vm: str | None = None) -> None:
        self._call(lambda: self._world.event_action(self._vm(vm), event_id, "cancel"))

    def advance(self, seconds: float) -> float:
        now: float = self._call(self._world.advance_clock, seconds)
        return now

    def set_speed(self, speed: float) -> None:
        self._call(self._world.set_clock_speed, speed)

    def add_fault(self, spec: str | FaultRule) -> None:
        try:
            rule = FaultRule.from_spec(spec) if isinstance(spec, str) else spec
        except ProfileError as exc:
            raise InvalidChange("the fault is invalid", exc.problems) from None
        self._call(self._world.add_fault, rule)

    def clear_faults(self) -> None:
        self._call(self._world.clear_faults)

    def reprovision(self, patch: dict[str, Any] | None = None, *, vm: str | None = None) -> dict[str, Any]:
        """Hand a pre-provisioned VM over (see ``POST /v1/reprovision``); its documents after."""
        result: dict[str, Any] = self._call(lambda: self._world.reprovision(self._vm(vm), patch))
        return result

    def reboot(self, vm: str | None = None) -> None:
        """The VM restarts: a scale-set instance then shows the tags changed before."""
        self._call(lambda: self._world.reboot(self._vm(vm)))

    def fleet(self) -> dict[str, Any]:
        """The fleet's VMs and scale sets, with who holds each dynamic instance (``GET /v1/fleet``)."""
        result: dict[str, Any] = self._call(self._world.fleet_view)
        return result

    def reset(self) -> None:
        self._call(self._world.reset)


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part]
