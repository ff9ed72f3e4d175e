"""``azimds serve --watch`` end to end: an edit of the profile file changes the answers, a broken one is reported
in one line while the old answers go on, the fix (saved the way editors do, by rename) is applied; an edit resets
what the control plane changed, as ``POST /v1/reload`` does; a restart with the edited file keeps the state. And
``--watch`` where it cannot work is refused in one line."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from pathlib import Path

from tests.support import AZIMDS, azimds_inprocess, fetch, wait_until

TOKEN = "watch-test-token"


def profile_text(env: str) -> str:
    return f'compute:\n  tags: "env:{env}"\n  zone: "1"\n'


class WatchedServe:
    """``azimds serve --watch`` on a profile file, its stderr read line by line as it comes."""

    def __init__(self, profile: Path, state_dir: Path):
        self.proc = subprocess.Popen(
            [*AZIMDS, "serve", "--profile", str(profile), "--watch", "--watch-interval", "0.05", "--port", "0",
             "--control-port", "0", "--control-token", TOKEN, "--state-dir", str(state_dir), "--rate-limit", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True).start()
        ready = self.proc.stdout.readline()
        match = re.fullmatch(r"azimds: serving (http://[^/]+)/metadata\n", ready)
        assert match, (ready, self.stop())
        self.url = match.group(1)
        control = self.expect(r"azimds: control plane (http://\S+)")
        self.control_url = control.group(1)
        self.token = TOKEN

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout: float = 15) -> re.Match[str]:
        """The next stderr line that matches ``pattern`` (lines before it are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line like {pattern!r} on stderr after {timeout} s; saw {self.seen}") from None
            self.seen.append(line)
            match = re.fullmatch(pattern, line)
            if match:
                return match

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=15)


def tags(url: str) -> str:
    return fetch(url, "/metadata/instance/compute/tags?api-version=2021-02-01&format=text").body.decode()


def zone(url: str) -> str:
    return fetch(url, "/metadata/instance/compute/zone?api-version=2021-02-01&format=text").body.decode()


def control(serve: WatchedServe, method: str, path: str, body: bytes) -> int:
    return fetch(serve.control_url, path, method=method, metadata=False, body=body,
                 headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}).status


def test_edits_are_applied_a_broken_one_reported_and_the_world_kept(tmp_path: Path) -> None:
    profile = tmp_path / "vm.yaml"
    profile.write_text(profile_text("one"))
    state = tmp_path / "state"
    serve = WatchedServe(profile, state)
    try:
        assert tags(serve.url) == "env:one"
        # a change made at run time: an edit of the file resets it, as the control plane's reload does
        assert control(serve, "PUT", "/v1/metadata/compute/zone", b'"3"') == 200
        assert zone(serve.url) == "3"

        profile.write_text(profile_text("two"))
        wait_until(lambda: tags(serve.url) == "env:two", timeout=15, interval=0.02)
        serve.expect(re.escape(f"azimds: {profile} changed: reloaded"))
        assert zone(serve.url) == "1"

        profile.write_text('compute:\n  tags: [\n')
        serve.expect(re.escape(f"azimds: {profile} changed but is not a valid profile; the running world is kept: ")
                     + r"line 3 column 1: malformed YAML: .*")
        assert tags(serve.url) == "env:two"
        assert control(serve, "PUT", "/v1/metadata/compute/zone", b'"2"') == 200  # the world still answers changes

        replacement = tmp_path / ".vm.yaml.tmp"  # an editor's save: a new file renamed over the old one
        replacement.write_text(profile_text("three"))
        os.replace(replacement, profile)
        wait_until(lambda: tags(serve.url) == "env:three", timeout=15, interval=0.02)
        serve.expect(re.escape(f"azimds: {profile} changed: reloaded"))
        assert zone(serve.url) == "1"
    finally:
        assert serve.stop() == 0
    assert not any("Traceback" in line for line in serve.seen)

    # the state now belongs to the edited file: a restart with it keeps it rather than setting it aside
    restart = subprocess.Popen([*AZIMDS, "serve", "--profile", str(profile), "--port", "0", "--control-port", "0",
                                "--state-dir", str(state)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert restart.stdout is not None and restart.stdout.readline().startswith("azimds: serving ")
    finally:
        restart.terminate()
        _, err = restart.communicate(timeout=15)
    assert "another profile" not in err, err
    assert not list(state.glob("aside-*"))


def test_watch_where_it_cannot_work_is_refused_in_one_line(tmp_path: Path) -> None:
    profile = tmp_path / "vm.yaml"
    profile.write_text(profile_text("one"))
    quiet = ("--port", "0", "--state-dir", "")
    run = azimds_inprocess("serve", "--watch", *quiet)
    assert (run.returncode, run.stdout, run.stderr) == (2, "", "azimds: --watch: needs a profile file to watch "
                                                               "(--profile FILE)\n")
    run = azimds_inprocess("serve", "--profile", str(profile), "--watch", "--workers", "2", *quiet)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == ("azimds: --watch: a world shared by several processes (--workers, --state "
                          "postgresql://…) takes a new profile only when they restart with it\n")
    env = {**os.environ, "AZIMDS_WATCH": "1", "AZIMDS_WATCH_INTERVAL": "0"}
    run = azimds_inprocess("serve", "--profile", str(profile), *quiet, env=env)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == "azimds: AZIMDS_WATCH_INTERVAL: must be 0.01 to 60 seconds, not '0'\n"
