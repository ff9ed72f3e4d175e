"""The shipped pytest plugin (``azimds.emulator.pytest_plugin``, registered through the ``pytest11`` entry
point), tested as its users meet it: generated test files run by pytester in this process.

Each generated file is run with ``--strict-markers`` (so the ``imds`` marker must be registered) and its
outcomes counted exactly, so a generated assertion that fails fails the test here.
"""

from __future__ import annotations

import pytest

from azimds.emulator.pytest_plugin import DEFAULT_FLEET

PROXIES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
DEAD_PROXY = "http://127.0.0.1:9"

HELPERS = '''
import http.client
import os

import pytest

NAME = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
PROXIES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


def get(base, path, source=None):
    """(status, body) of one request, from ``source`` if given."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers={"Metadata": "true"})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()
'''


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the generated tests run in: proxies set (the fixture must unset them for the test and
    restore them after), no endpoint variables (the fixture sets them, then removes them again)."""
    for name in PROXIES:
        monkeypatch.setenv(name, DEAD_PROXY)
    for name in ("AZIMDS_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_generated=HELPERS + source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--strict-markers", "-v")


def test_imds_points_the_environment_at_a_running_emulator(pytester: pytest.Pytester, outside: None) -> None:
    result = run(pytester, '''
from azimds.client import Client


def test_uses_the_emulator(imds):
    assert os.environ["AZIMDS_ENDPOINT"] == imds.url
    assert os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] == imds.url
    assert not [name for name in PROXIES if name in os.environ]
    assert get(os.environ["AZIMDS_ENDPOINT"], NAME) == (200, "web-01")  # the embedded default VM
    assert Client(limiter=None).tags()["tag_key"] == "configured-by-tag"  # the client finds it by itself
    assert [entry.status for entry in imds.journal] == [200, 200]


def test_each_test_gets_its_own(imds):
    assert imds.journal == []


def test_and_then_the_environment_is_as_it_was():
    assert "AZIMDS_ENDPOINT" not in os.environ and "AZURE_POD_IDENTITY_AUTHORITY_HOST" not in os.environ
    assert {os.environ[name] for name in PROXIES} == {"''' + DEAD_PROXY + '''"}
''')
    result.assert_outcomes(passed=3)


def test_the_imds_marker_passes_its_options_to_the_emulator(pytester: pytest.Pytester, outside: None) -> None:
    result = run(pytester, '''
@pytest.mark.imds(clock="manual", profile={"compute": {"name": "marked"}})
def test_marked(imds):
    assert get(imds.url, NAME) == (200, "marked")
    start = imds.control.advance(0)
    assert imds.control.advance(0) == start  # a manual clock stands still
    assert imds.control.advance(60) == start + 60


def test_unmarked(imds):
    assert get(imds.url, NAME) == (200, "web-01")
    assert imds.control.advance(0) != imds.control.advance(0)  # a real clock runs


@pytest.mark.imds(no_such_option=1)
def test_an_unknown_option_is_an_error(imds):
    pass
''')
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at setup of test_an_unknown_option_is_an_error*",
                                 "*TypeError*no_such_option*"])


def test_imds_fleet_gives_each_source_address_of_the_default_fleet_its_own_vm(pytester: pytest.Pytester,
                                                                              outside: None) -> None:
    assert DEFAULT_FLEET["fleet"]["scaleSets"][0]["addresses"] == "127.1.0.0"  # what the docstring promises
    result = run(pytester, '''
def test_fleet(imds_fleet):
    assert os.environ["AZIMDS_ENDPOINT"] == imds_fleet.url
    assert [get(imds_fleet.url, NAME, source=f"127.1.0.{i}") for i in (0, 3, 9)] == [
        (200, "web_0"), (200, "web_3"), (200, "web_9")]
    own = get(imds_fleet.url, NAME)  # from 127.0.0.1, no instance's address: the profile's own VM
    assert own[0] == 200 and not own[1].startswith("web_")
    assert get(imds_fleet.url, NAME, source="127.1.0.10") == own  # ten instances, no eleventh


@pytest.mark.imds(profile={"compute": {"name": "alone"}})
def test_a_marked_profile_replaces_the_default_fleet(imds_fleet):
    assert get(imds_fleet.url, NAME) == (200, "alone")
    assert get(imds_fleet.url, NAME, source="127.1.0.3") == (200, "alone")  # one VM, whoever asks
''')
    result.assert_outcomes(passed=2)


def test_a_failing_generated_test_is_seen_failing(pytester: pytest.Pytester, outside: None) -> None:
    """The outcomes counted above are the generated tests' own: an assertion that is false fails."""
    result = run(pytester, '''
def test_wrong(imds):
    assert get(imds.url, NAME) == (200, "not-this-name")
''')
    result.assert_outcomes(failed=1)


def test_the_documented_module_path_works_without_the_entry_point(pytester: pytest.Pytester, outside: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``-p azimds.pytest_plugin``, with plugin auto-loading off (as some CI setups run pytest)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(test_generated=HELPERS + '''
@pytest.mark.imds(clock="manual")
def test_marked(imds):
    assert get(imds.url, NAME) == (200, "web-01")
''')
    without = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--strict-markers")
    without.assert_outcomes(errors=1)  # neither marker nor fixture without the plugin
    loaded = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--strict-markers", "-p", "azimds.pytest_plugin")
    loaded.assert_outcomes(passed=1)
