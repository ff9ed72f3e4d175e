"""``ProfileWatcher``, one look at a time: what counts as a change (content, not a touch), what a bad edit, a
missing file and an editor's rename do, and that each state is reported once. The running ``serve --watch`` is
tested end to end in tests/cli/test_serve_watch.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from azimds.emulator.model import profile as profiles
from azimds.emulator.model.profile import Profile
from azimds.emulator.watch import ProfileWatcher


def text(env: str) -> str:
    return f'compute:\n  tags: "env:{env}"\n'


def tags(profile: Profile) -> str:
    return str(profile.vm.instance["compute"]["tags"])


class Watched:
    """A profile file and its watcher, with what it applied and reported."""

    def __init__(self, directory: Path):
        self.path = directory / "vm.yaml"
        self.path.write_text(text("one"))
        self.applied: list[Profile] = []
        self.reports: list[str] = []
        self.watcher = ProfileWatcher(self.path, load=lambda: profiles.load(self.path), apply=self.applied.append,
                                      report=self.reports.append, interval=60)

    def look(self) -> None:
        asyncio.run(self.watcher.check())

    def write(self, content: str, mtime_ns: int | None = None) -> None:
        self.path.write_text(content)
        if mtime_ns is not None:
            os.utime(self.path, ns=(mtime_ns, mtime_ns))

    def shift_mtime(self, seconds: int) -> int:
        """A modification time ``seconds`` after the file's own (a change within one clock tick looks alike)."""
        return self.path.stat().st_mtime_ns + seconds * 1_000_000_000


def test_nothing_changed_nothing_done(tmp_path: Path) -> None:
    watched = Watched(tmp_path)
    watched.look()
    assert (watched.applied, watched.reports) == ([], [])


def test_an_edit_is_loaded_and_applied_once(tmp_path: Path) -> None:
    watched = Watched(tmp_path)
    watched.write(text("two"), watched.shift_mtime(1))  # the same size as before: the time tells
    watched.look()
    watched.look()
    assert [tags(p) for p in watched.applied] == ["env:two"]
    assert watched.reports == [f"{watched.path} changed: reloaded"]
    assert watched.watcher.reloads == 1


def test_a_touch_or_an_unchanged_save_reloads_nothing(tmp_path: Path) -> None:
    """A reload resets the world (as POST /v1/reload does), so a save that changes nothing must not cause one."""
    watched = Watched(tmp_path)
    os.utime(watched.path, ns=(watched.shift_mtime(5),) * 2)
    watched.look()
    replacement = tmp_path / "vm.yaml.new"
    replacement.write_text(text("one"))
    os.replace(replacement, watched.path)  # a new inode, the same bytes
    watched.look()
    assert (watched.applied, watched.reports) == ([], [])


def test_a_bad_edit_is_reported_once_and_nothing_applied_then_the_fix_is(tmp_path: Path) -> None:
    watched = Watched(tmp_path)
    watched.write('compute:\n  tags: [\n', watched.shift_mtime(1))
    watched.look()
    watched.look()
    assert watched.applied == []
    assert len(watched.reports) == 1
    assert watched.reports[0].startswith(f"{watched.path} changed but is not a valid profile; the running world is "
                                         "kept: line 3 column 1: malformed YAML")
    watched.write('compute:\n  vmSize: {a: 1}\n', watched.shift_mtime(1))  # parses, but is not a VM
    watched.look()
    assert watched.applied == [] and len(watched.reports) == 2
    assert "not a valid profile" in watched.reports[1] and "compute.vmSize" in watched.reports[1]
    assert "\n" not in watched.reports[1]
    watched.write(text("three"), watched.shift_mtime(1))
    watched.look()
    assert [tags(p) for p in watched.applied] == ["env:three"]
    assert watched.reports[2] == f"{watched.path} changed: reloaded"


def test_an_editor_that_renames_a_new_file_over_the_old_one_is_seen(tmp_path: Path) -> None:
    watched = Watched(tmp_path)
    replacement = tmp_path / ".vm.yaml.swp"
    replacement.write_text(text("renamed"))
    os.replace(replacement, watched.path)
    watched.look()
    assert [tags(p) for p in watched.applied] == ["env:renamed"]


def test_a_missing_file_is_reported_once_and_its_return_applied(tmp_path: Path) -> None:
    watched = Watched(tmp_path)
    watched.path.unlink()
    watched.look()
    watched.look()
    assert watched.applied == []
    assert watched.reports == [f"{watched.path} cannot be read; the running world is kept (--watch)"]
    watched.write(text("back"))
    watched.look()
    assert [tags(p) for p in watched.applied] == ["env:back"]
