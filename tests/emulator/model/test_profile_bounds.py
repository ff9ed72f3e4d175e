"""Pathological profiles are refused fast, in bounded memory, one line per problem; YAML booleans mean what
they say (one parsing helper), and a tag value is never a mapping."""

from __future__ import annotations

import resource
import subprocess
import time

import pytest

from azimds.emulator.model import profile
from azimds.errors import ProfileError
from tests.support import AZIMDS

BOMB = "\n".join([
    'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    *(f"{x}: &{x} [{', '.join([f'*{p}'] * 9)}]" for p, x in zip("abcdefgh", "bcdefghi", strict=True)),
    "compute: {tags: *i}",
])


@pytest.mark.parametrize("text, where, problem", [
    (BOMB, "", "its aliases expand to more than 1,000,000 values"),
    ("a: " + "[" * 10_000 + "]" * 10_000, "line 1 column", "nested deeper than 64 levels"),
    ('{"a": ' + "[" * 10_000 + "]" * 10_000 + "}", "", "nested deeper than 64 levels"),
    ("compute:\n  name: a\n  name: b\n", "line 3 column 3", "the key 'name' is given twice"),
    ('{"compute": {"name": "a", "name": "b"}}', "", "the key 'name' is given twice"),
    ('{"compute": {"name": NaN}}', "", "NaN is not a value IMDS can serve"),
    ('{"compute": {"zone": Infinity}}', "", "Infinity is not a value IMDS can serve"),
    ("compute: {tags: {a: {b: c}}}", "compute.tags.a", "a tag value is a string, not a mapping"),
    ("compute: {tags: {a: [1, 2]}}", "compute.tags.a", "a tag value is a string, not a mapping or a list"),
    ("fleet: {vms: [{addresses: [127.0.0.2], compute: {name: x, tags: {k: {n: 1}}}}]}",
     "fleet.vms[0].compute.tags.k", "a tag value is a string"),
])
def test_pathological_profiles_are_refused_fast(text, where, problem):
    started = time.monotonic()
    with pytest.raises(ProfileError) as info:
        profile.from_tree(profile.parse(text, "vm.yaml"), "vm.yaml")
    assert time.monotonic() - started < 1.0
    message = str(info.value)
    assert message.startswith(f"vm.yaml: {where}") and problem in message, message


def test_a_billion_laughs_costs_neither_time_nor_memory(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    run = subprocess.run([*AZIMDS, "serve", "--port", "0", "--state-dir", "", "--profile", str(path)],
                         capture_output=True, text=True, timeout=30,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)))
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == f"azimds: {path}: its aliases expand to more than 1,000,000 values\n"


def test_too_large_a_file_is_not_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (profile.MAX_BYTES + 10))
    with pytest.raises(ProfileError, match="larger than 8 MiB"):
        profile.load(path)


@pytest.mark.parametrize("written, strict", [("false", False), ("False", False), ("no", False), ("true", True),
                                             ("yes", True)])
def test_yaml_booleans_mean_what_they_say(written, strict):
    tree = profile.parse(f"fleet: {{strict: {written}, scaleSets: [{{name: w, addresses: 127.1.0.0}}]}}", "f.yaml")
    assert profile.from_tree(tree, "f.yaml").fleet.strict is strict  # type: ignore[union-attr]


def test_a_scenario_that_is_not_started_is_not_started():
    loaded = profile.from_tree(profile.parse("scenarios: [{in: 60, type: Reboot, started: false}]", "s.yaml"),
                               "s.yaml")
    assert loaded.scenarios[0].started is False


def test_a_boolean_that_is_neither_is_named():
    with pytest.raises(ProfileError, match=r"fleet\.strict: must be true or false, not 'maybe'"):
        profile.from_tree(profile.parse("fleet: {strict: maybe}", "f.yaml"), "f.yaml")
