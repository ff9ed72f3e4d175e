"""pytest fixtures for code under test that talks to IMDS: a running emulator per test.

Registered through the ``pytest11`` entry point, so installing azimds is enough::

    def test_reads_tag(imds):                      # AZIMDS_ENDPOINT and AZURE_POD_IDENTITY_AUTHORITY_HOST
        assert my_app.configure() == "prod"        # point at the emulator for this test

    @pytest.mark.imds(profile="tests/vm.yaml", clock="manual")
    def test_with_my_vm(imds): ...

The marker's keyword arguments are ``azimds.Emulator``'s. ``imds_fleet`` is the same with a fleet: unless
its profile says otherwise, the default VM plus a scale set ``web`` of ten instances, ``web_0`` … ``web_9``,
calling from 127.1.0.0 … 127.1.0.9 (bind a client there: ``source_address=("127.1.0.3", 0)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

DEFAULT_FLEET = {"fleet": {"scaleSets": [{"name": "web", "capacity": 10, "addresses": "127.1.0.0",
                                          "subnet": "10.1.0.0/24"}]}}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers",
                            "imds(**options): options for the azimds emulator fixtures (Emulator's arguments)")


@pytest.fixture
def imds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A running emulator (the embedded default VM unless the ``imds`` marker says otherwise), with the
    environment variables azimds' client and Azure SDKs read pointing at it for the test."""
    yield from _running(request, monkeypatch, {})


@pytest.fixture
def imds_fleet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Like ``imds``, with a fleet (the default: a scale set of ten VMs on 127.1.0.0-127.1.0.9)."""
    yield from _running(request, monkeypatch, {"profile": DEFAULT_FLEET})


def _running(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
             defaults: dict[str, Any]) -> Iterator[Any]:
    try:
        from .testing import Emulator
    except ModuleNotFoundError as exc:  # installed without the extra: this plugin loads, its fixtures cannot run
        pytest.fail(f"the {request.fixturename} fixture needs the emulator: pip install 'azimds[emulator]' "
                    f"({exc.name} is missing)", pytrace=False)

    marker = request.node.get_closest_marker("imds")
    options = {**defaults, **(marker.kwargs if marker else {})}
    with Emulator(**options) as emulator:
        monkeypatch.setenv("AZIMDS_ENDPOINT", emulator.url)
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.url)
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield emulator
