"""pytest fixtures for code under test that talks to IMDS: a running emulator per test.

Registered through the ``pytest11`` entry point, so installing azimds is enough::

    def test_reads_tag(imds):                      # AZIMDS_ENDPOINT and AZURE_POD_IDENTITY_AUTHORITY_HOST
        assert my_app.configure() == "prod"        # point at the emulator for this test

    @pytest.mark.imds(profile="tests/vm.yaml", clock="manual")
    def test_with_my_vm(imds): ...

The marker's keyword arguments are ``azimds.Emulator``'s.
"""

from __future__ import annotations

from typing import Any, Iterator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "imds(**options): options for the azimds emulator fixture (Emulator's arguments)")


@pytest.fixture
def imds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A running emulator (the embedded default VM unless the ``imds`` marker says otherwise), with the
    environment variables azimds' client and Azure SDKs read pointing at it for the test."""
    from .emulator import Emulator

    marker = request.node.get_closest_marker("imds")
    options = dict(marker.kwargs) if marker else {}
    with Emulator(**options) as emulator:
        monkeypatch.setenv("AZIMDS_ENDPOINT", emulator.url)
        monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.url)
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        yield emulator
