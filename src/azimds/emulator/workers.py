"""``azimds serve --workers N``: N processes answer one metadata port, under a supervisor that keeps them running.

Python answers one request at a time per process; on a machine with several cores, workers multiply what one
emulator can answer. The supervisor:

- holds the state directory's lock for its workers (they inherit its descriptor, so the directory stays locked
  until the last of them is gone), checks the store and makes the CA before any worker starts;
- opens N listening sockets on the port, one ``SO_REUSEPORT`` group bound in order (the group's socket i is
  worker i's), and attaches a classic BPF program to the group (``SO_ATTACH_REUSEPORT_CBPF``) that picks the
  socket from a hash of the connection's *source address*: every connection from one address reaches one
  worker, so the per-address rate limits (and a VM's token cache) hold whichever worker answers;
- starts each worker (``python -m azimds _worker``) with its socket, a link it reports readiness on and whose
  end of file tells it the supervisor is gone, and restarts one that exits (with a backoff when one keeps
  failing). It keeps every socket open itself, so the connections steered to a dead worker wait in its
  socket's backlog until the replacement takes the same socket;
- serves the control plane with a world of its own on the shared store: a change is a store transaction that
  every worker's listener applies within milliseconds; the journal and metrics are read from what every
  worker ships to the store;
- on SIGTERM or SIGINT, stops every worker (SIGTERM, SIGKILL past a grace period) and exits 0.

Without a state directory (``--port 0``, ``--state-dir ''``) the workers still need one store and one CA: the
supervisor keeps them in a temporary directory, deleted when it stops.

Steering by address rather than sharing counters: a shared counter is a cross-process write on every request
(a lock in shared memory that a killed worker may leave held, or a database write), where the kernel's choice
of socket costs nothing on the hot path and needs no coordination. Its limit: one address is one worker, so a
single client gains nothing from workers, and a VM of a fleet that calls from several addresses may meet two
workers (its per-VM limit then counts per worker). Where the program cannot be attached (not Linux, an old
kernel), the kernel's own hash spreads connections and the limits count per worker: serve says so in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import pickle
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import AzimdsError, ListenError
from .app import App, new_event_loop
from .collector import settling
from .config import Config
from .control.static import link as dashboard_link
from .model.profile import Profile
from .service.server import BACKLOG, Limits

__all__ = ["SO_ATTACH_REUSEPORT_CBPF", "Supervisor", "listen_group", "run_worker", "serve_workers", "steer_index",
           "steering_program"]

#: ``setsockopt`` option that attaches a classic BPF program choosing the socket of a reuseport group (Linux).
SO_ATTACH_REUSEPORT_CBPF = 51
_SKF_NET_OFF = -0x100000  # BPF_ABS offsets from here on are from the network (IP) header
_HASH_MULTIPLIER = 0x9E3779B1  # 2^32 / golden ratio: consecutive addresses spread evenly (Fibonacci hashing)

START_TIMEOUT = 60.0  # seconds a worker may take to say it is ready
STOP_GRACE = Limits().shutdown_grace + 5.0  # seconds workers get to finish after SIGTERM, before SIGKILL
HEALTHY = 10.0  # a worker that ran this long before exiting is restarted at once
MAX_BACKOFF = 10.0  # seconds between two starts of a worker that keeps failing, at most
_READY = b"ready\n"


# -- steering ----------------------------------------------------------------------------------------------

def steering_program(count: int) -> bytes:
    """The classic BPF program that returns ``steer_index(source address, count)`` for a connection's first
    packet, as ``struct sock_filter`` instructions. The program sees the packet from its TCP payload on, so it
    reaches the IP header through ``SKF_NET_OFF``: IPv4's source address is at 12, the last 32 bits of IPv6's
    at 20 (an IPv4 client of a dual-stack socket arrives as IPv4)."""
    def op(code: int, k: int = 0, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k & 0xFFFFFFFF)

    return b"".join((
        op(0x30, _SKF_NET_OFF),  # ldb [net + 0]: version and header length
        op(0x74, 4),  # rsh #4: the version
        op(0x15, 6, jt=2),  # jeq #6: to the IPv6 load
        op(0x20, _SKF_NET_OFF + 12),  # ld [net + 12]: the IPv4 source address
        op(0x05, 1),  # ja: to the hash
        op(0x20, _SKF_NET_OFF + 20),  # ld [net + 20]: the last 32 bits of the IPv6 source address
        op(0x24, _HASH_MULTIPLIER),  # mul #golden (32 bits)
        op(0x74, 16),  # rsh #16: the well-mixed high half
        op(0x94, count),  # mod #count
        op(0x16),  # ret a: the socket's index in the group
    ))


def steer_index(address: str, count: int) -> int:
    """The worker (0 … count-1) that answers connections from ``address``, as the steering program computes it."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    word = int(ip) & 0xFFFFFFFF
    return (((word * _HASH_MULTIPLIER) & 0xFFFFFFFF) >> 16) % count


def _attach(sock: socket.socket, count: int) -> None:
    """Attach the steering program to ``sock``'s reuseport group; OSError when the system cannot."""
    import ctypes

    code = steering_program(count)
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = struct.pack("@HP", len(code) // 8, ctypes.addressof(buffer))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)


def listen_group(host: str, port: int, count: int) -> tuple[list[socket.socket], str | None]:
    """``count`` listening sockets on ``host``:``port`` (0: a free port), one ``SO_REUSEPORT`` group whose socket
    i is the list's i, and None when connections are steered by source address, else why not. A name is
    resolved to its first IPv4 address (else IPv6). Raises ListenError."""
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ListenError("--workers needs SO_REUSEPORT (Linux, BSD or macOS); run one process here")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host}:{port} for the metadata port: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, address = infos[0][0], infos[0][4]
    if port:  # another process's reuseport group on the port would take us in: refuse, as one process would
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise ListenError(f"cannot listen on {host}:{port} for the metadata port: "
                                  f"{os.strerror(exc.errno) if exc.errno else exc}; give --port another port (0 "
                                  "picks a free one)") from None
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as one process listens
            sock.bind(address)
            sock.listen(BACKLOG)  # joins the group: the order of listen() is the group's order
            address = (address[0], sock.getsockname()[1], *address[2:])
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ListenError(f"cannot listen on {host}:{port} for the metadata port: "
                          f"{os.strerror(exc.errno) if exc.errno else exc}") from None
    try:
        _attach(sockets[0], count)
    except OSError as exc:  # not Linux, or a kernel without reuseport programs
        return sockets, f"SO_ATTACH_REUSEPORT_CBPF: {os.strerror(exc.errno) if exc.errno else exc}"
    return sockets, None


# -- the supervisor ----------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Slot:
    """One worker's place: its socket (kept for its whole life) and the process answering it now."""

    index: int
    sock: socket.socket
    proc: subprocess.Popen[bytes] | None = None
    link: socket.socket | None = None  # the supervisor's end; closing it tells the worker to stop
    started: float = 0.0
    ready: asyncio.Future[None] | None = None
    failures: int = 0  # exits in a row, each before the worker had run HEALTHY seconds
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


class Supervisor:
    """Runs ``config.workers`` workers on one port, restarts those that exit, and serves the control plane."""

    def __init__(self, config: Config, profile: Profile, *, ready: Callable[[str], None] = print,
                 notice: Callable[[str], None] | None = None):
        self.notice = notice or _notice
        self.ready = ready
        self.temporary: str | None = None
        if config.state_dir is None:  # workers share one store and one CA: somewhere, for as long as we run
            self.temporary = tempfile.mkdtemp(prefix="azimds-workers-")
            config = config.with_(state_dir=self.temporary)
        self.config = config
        self.profile = profile
        self.slots: list[_Slot] = []
        self.stopping = False
        self.serving = False
        self.unsteered: str | None = None  # why sources are not steered to one worker each (None: they are)
        self.url = ""
        try:
            self.app = App(config, profile, role="supervisor")
        except BaseException:
            self._remove_temporary()
            raise
        worker_config = config.with_(node=None, control_port=None, control_token=None, reset_state=False,
                                     scenario=None, workers=1)
        started = time.monotonic()  # every worker's faults count first-seconds from here, a replacement's too
        self._setups = [pickle.dumps((worker_config.with_(node=f"{config.node}/{index}" if config.node else None),
                                      profile, started)) for index in range(config.workers)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all_down: asyncio.Event | None = None

    # -- running ---------------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        self._all_down = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        config = self.config
        begun = started = False
        try:
            sockets, self.unsteered = listen_group(config.host, config.port, config.workers)
            self.slots = [_Slot(index, sock) for index, sock in enumerate(sockets)]
            host, port = sockets[0].getsockname()[:2]
            self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
            begun = True
            await self.app.start()  # the control plane, and the listener that applies the workers' changes (it
            started = True          # lets go of everything itself when it fails)
            for slot in self.slots:
                self._spawn(slot)
            if not await self._started(stop):
                return 0
            self.serving = True
            if self.unsteered is not None:
                self.notice(f"warning: cannot steer each source address to one worker here ({self.unsteered}); "
                            "connections are spread by the kernel's hash, so the per-VM rate limits count per "
                            "worker")
            pids = ", ".join(f"worker {slot.index}: pid {slot.proc.pid}" for slot in self.slots if slot.proc)
            self.notice(f"{config.workers} workers answer the metadata port ({pids})"
                        + ("; each source address always reaches the same one" if self.unsteered is None else ""))
            if self.app.control_server.port:
                where = f" (token in {self.app.token_file})" if self.app.token_file else ""
                self.notice(f"control plane {self.app.control_server.url}{where}")
                self.notice(f"dashboard {dashboard_link(self.app.control_server.url, self.app.token)}")
            self.ready(f"azimds: serving {self.url}/metadata")
            await stop.wait()
            return 0
        finally:
            self.stopping = True
            await self._stop_workers()
            if started:
                await self.app.close()
            elif not begun:
                self.app.release()
            for slot in self.slots:
                slot.sock.close()
            self._remove_temporary()

    async def _started(self, stop: asyncio.Event) -> bool:
        """Wait until every worker is ready (True), or a stop was asked (False); AzimdsError when one failed."""
        ready: asyncio.Future[list[None]] = asyncio.gather(*(slot.ready for slot in self.slots if slot.ready))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait([ready, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if ready.done():
            ready.result()  # raises the first failure
            return True
        ready.cancel()
        return False

    def _spawn(self, slot: _Slot) -> None:
        """Start a worker on ``slot``'s socket."""
        loop = self._loop
        assert loop is not None
        mine, theirs = socket.socketpair()
        lock = self.app.state.fileno() if self.app.state is not None else None
        command = [sys.executable, "-m", "azimds", *(["--debug"] if _debugging() else []), "_worker",
                   "--index", str(slot.index), "--listen-fd", str(slot.sock.fileno()),
                   "--link-fd", str(theirs.fileno())]
        fds = (slot.sock.fileno(), theirs.fileno(), *((lock,) if lock is not None else ()))
        try:
            proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=fds,
                                    process_group=0)  # signals from the terminal are the supervisor's to pass on
        except BaseException:
            mine.close()
            raise
        finally:
            theirs.close()
        slot.proc, slot.link, slot.started = proc, mine, time.monotonic()
        slot.ready = loop.create_future()
        slot.ready.add_done_callback(lambda future: future.exception() if not future.cancelled() else None)
        mine.setblocking(False)
        loop.add_reader(mine.fileno(), self._on_link, slot, proc)
        slot.timers.append(loop.call_later(START_TIMEOUT, self._too_slow, slot, proc))
        threading.Thread(target=_feed, args=(proc, self._setups[slot.index]), name=f"azimds-feed-{slot.index}",
                         daemon=True).start()
        threading.Thread(target=_watch, args=(proc, loop, lambda: self._exited(slot, proc)),
                         name=f"azimds-watch-{proc.pid}", daemon=True).start()

    def _on_link(self, slot: _Slot, proc: subprocess.Popen[bytes]) -> None:
        """The worker said it is ready, or went away (end of file: its exit is handled by ``_exited``)."""
        assert self._loop is not None and slot.link is not None
        try:
            data = slot.link.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        self._loop.remove_reader(slot.link.fileno())
        if data.startswith(_READY) and slot.proc is proc and slot.ready is not None and not slot.ready.done():
            for timer in slot.timers:
                timer.cancel()
            slot.timers.clear()
            slot.ready.set_result(None)
            if self.serving:
                self.notice(f"worker {slot.index} answers again (pid {proc.pid})")

    def _too_slow(self, slot: _Slot, proc: subprocess.Popen[bytes]) -> None:
        if slot.proc is proc and proc.poll() is None:
            self.notice(f"worker {slot.index} (pid {proc.pid}) was not ready within {START_TIMEOUT:.0f} s; "
                        "killing it")
            proc.kill()

    def _exited(self, slot: _Slot, proc: subprocess.Popen[bytes]) -> None:
        """A worker's process has ended: start another on its socket (unless stopping)."""
        if slot.proc is not proc:
            return
        assert self._loop is not None and self._all_down is not None
        for timer in slot.timers:
            timer.cancel()
        slot.timers.clear()
        if slot.link is not None:
            self._loop.remove_reader(slot.link.fileno())
            slot.link.close()
            slot.link = None
        slot.proc = None
        how = _how(proc.returncode)
        if slot.ready is not None and not slot.ready.done():
            slot.ready.set_exception(AzimdsError(f"worker {slot.index} (pid {proc.pid}) {how} before it was ready"
                                                 + (" (see above)" if proc.returncode and proc.returncode > 0
                                                    else "")))
        if self.stopping or not self.serving:
            if all(other.proc is None for other in self.slots):
                self._all_down.set()
            return
        if time.monotonic() - slot.started >= HEALTHY:
            slot.failures = 0
        delay = 0.0 if slot.failures == 0 else min(MAX_BACKOFF, 0.5 * 2 ** (slot.failures - 1))
        slot.failures += 1
        self.notice(f"worker {slot.index} (pid {proc.pid}) {how}; starting another"
                    + (f" in {delay:g} s" if delay else ""))
        slot.timers.append(self._loop.call_later(delay, self._restart, slot))

    def _restart(self, slot: _Slot) -> None:
        slot.timers.clear()
        if self.stopping or slot.proc is not None:
            return
        try:
            self._spawn(slot)
        except OSError as exc:
            assert self._loop is not None
            self.notice(f"cannot start worker {slot.index}: {exc}; trying again in {MAX_BACKOFF:g} s")
            slot.timers.append(self._loop.call_later(MAX_BACKOFF, self._restart, slot))

    async def _stop_workers(self) -> None:
        """SIGTERM every worker, SIGKILL those still there after STOP_GRACE; return once all have exited."""
        assert self._all_down is not None
        for slot in self.slots:
            for timer in slot.timers:
                timer.cancel()
            slot.timers.clear()
        live = [slot.proc for slot in self.slots if slot.proc is not None]
        if not live:
            return
        for proc in live:
            _signal(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._all_down.wait(), STOP_GRACE)
        except TimeoutError:
            left = [slot.proc for slot in self.slots if slot.proc is not None]
            self.notice(f"{len(left)} worker(s) still running {STOP_GRACE:g} s after SIGTERM; killing them")
            for proc in left:
                _signal(proc, signal.SIGKILL)
            await self._all_down.wait()

    def _remove_temporary(self) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None


def _feed(proc: subprocess.Popen[bytes], setup: bytes) -> None:
    """Give a new worker its configuration and profile (on a thread: a large profile fills the pipe)."""
    assert proc.stdin is not None
    with contextlib.suppress(OSError):  # it died first: its exit says why
        proc.stdin.write(setup)
    with contextlib.suppress(OSError):
        proc.stdin.close()


def _watch(proc: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop, then: Callable[[], None]) -> None:
    proc.wait()
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(then)


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)


def _how(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with {code}"


def _debugging() -> bool:
    return os.environ.get("AZIMDS_DEBUG", "") not in ("", "0") or "--debug" in sys.argv[1:]


def _notice(message: str) -> None:
    print(f"azimds: {message}", file=sys.stderr, flush=True)


def serve_workers(config: Config, profile: Profile, ready: Callable[[str], None] = print) -> int:
    """``azimds serve --workers N`` in the foreground until SIGINT or SIGTERM; returns the exit code."""
    supervisor = Supervisor(config, profile, ready=ready)
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(supervisor.run())
    finally:
        loop.close()


# -- a worker ----------------------------------------------------------------------------------------------

def run_worker(index: int, listen_fd: int, link_fd: int) -> int:
    """A worker's life: its configuration and profile from the supervisor (on stdin), the metadata port on the
    socket it inherited, until SIGTERM, SIGINT or the supervisor's end of the link closing."""
    loaded: Any = pickle.loads(sys.stdin.buffer.read())  # from our own supervisor, through a pipe only it holds
    config, profile, started = loaded
    if not isinstance(config, Config) or not isinstance(profile, Profile) or not isinstance(started, float):
        raise AzimdsError(f"worker {index}: its supervisor sent no configuration")
    sock = socket.socket(fileno=listen_fd)
    link = socket.socket(fileno=link_fd)
    app = App(config, profile, role="worker", sock=sock)
    app.world.faults.started = started  # the system's monotonic clock: the supervisor's start is ours
    loop = new_event_loop(config.loop)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(_work(app, link))
    finally:
        link.close()
        loop.close()


async def _work(app: App, link: socket.socket) -> int:
    await app.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def gone() -> None:  # the supervisor never writes: anything readable is the end of file of its death
        loop.remove_reader(link.fileno())
        stop.set()

    link.setblocking(False)
    loop.add_reader(link.fileno(), gone)
    try:
        link.send(_READY)
        async with settling(app.world):
            await stop.wait()
    finally:
        await app.close()
    return 0
