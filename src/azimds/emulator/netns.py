"""Run a command where http://169.254.169.254 is the emulator, without touching the host's network.

The command runs in a private network namespace (``unshare --net``; as an unprivileged user with a user
namespace too) whose loopback carries 169.254.169.254/32, with the emulator listening there on port 80.
Unmodified programs, the docs' curl lines and SDKs with no configuration then reach it; the host sees
nothing, and everything disappears with the command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["NetnsError", "inside", "run"]

IMDS_ADDRESS = "169.254.169.254"


class NetnsError(RuntimeError):
    """The namespace cannot be made here; the message says why and what would fix it."""


def _unshare_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise NetnsError("azimds run needs the 'unshare' command (util-linux)")
    if shutil.which("ip") is None and not Path("/usr/sbin/ip").exists() and not Path("/sbin/ip").exists():
        raise NetnsError("azimds run needs the 'ip' command (iproute2)")
    prefix = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        how = "as root" if os.geteuid() == 0 else "without root: unprivileged user namespaces are disabled here"
        reason = probe.stderr.strip() or "unshare failed"
        raise NetnsError(f"cannot create a private network namespace {how} ({reason}); "
                         "run as root, or enable user namespaces (sysctl kernel.unprivileged_userns_clone=1)")
    return prefix


def run(command: Sequence[str], serve_args: Sequence[str] = ()) -> int:
    """Run ``command`` in a new namespace with the emulator at 169.254.169.254:80; returns its exit code."""
    if not command:
        raise NetnsError("give the command to run after --, e.g. azimds run -- curl ...")
    prefix = _unshare_prefix()
    child = [*prefix, sys.executable, "-m", "azimds", "_run-inside", *serve_args, "--", *command]
    return subprocess.call(child)


def _ip(*args: str) -> None:
    ip = shutil.which("ip") or "/usr/sbin/ip"
    subprocess.run([ip, *args], check=True, capture_output=True)


def inside(command: Sequence[str], profile: str | None = None, state_dir: str | None = None,
           rate_limit: float | None = None) -> int:
    """Inside the new namespace: bring up loopback with the IMDS address, serve, run the command."""
    from .testing import Emulator

    _ip("link", "set", "lo", "up")
    _ip("addr", "add", f"{IMDS_ADDRESS}/32", "dev", "lo")
    with Emulator(profile, host=IMDS_ADDRESS, port=80, rate_limit=rate_limit, state_dir=state_dir) as emulator:
        env = {k: v for k, v in os.environ.items()
               if k not in ("AZIMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST")}
        env["AZIMDS_CONTROL"] = emulator.control_url  # so the command can steer it: azimds ctl …
        env["AZIMDS_CONTROL_TOKEN"] = emulator.token
        try:
            return subprocess.call(list(command), env=env)
        except FileNotFoundError:
            print(f"azimds: command not found: {command[0]}", file=sys.stderr)
            return 127
