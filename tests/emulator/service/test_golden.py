"""Golden responses: a real captured document served back byte for byte at its version."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from azimds import Emulator, azure
from azimds.emulator.model import profile
from azimds.emulator.service import render
from azimds.emulator.service.endpoints.instance import document
from tests.support import DATA, fetch

WALA = DATA / "WALinuxAgent_tests_data_imds_valid_2018-02-01.json"


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def test_walinuxagent_document_round_trips_byte_for_byte():
    expected = compact(json.loads(WALA.read_text()))
    with Emulator(profile=WALA) as imds:
        reply = fetch(imds.url, "/metadata/instance?api-version=2018-02-01")
    assert reply.status == 200
    assert reply.body == expected


def test_compact_capture_is_a_profile_too(tmp_path):
    path = tmp_path / "captured.json"
    path.write_bytes(compact(json.loads(WALA.read_text())))
    with Emulator(profile=path) as imds:
        reply = fetch(imds.url, "/metadata/instance?api-version=2018-02-01")
    assert reply.body == path.read_bytes()


@pytest.mark.parametrize("version", azure.INSTANCE_VERSIONS[1:])
def test_every_version_served_can_be_captured_and_served_back(version):
    """What the emulator serves at V, loaded as a profile, is served again at V unchanged."""
    vm = SimpleNamespace(instance=profile.load_default().instance, cache={})
    served = render.to_json(document(vm, version, False))
    recaptured = SimpleNamespace(instance=profile.from_tree(json.loads(served), "<capture>").instance, cache={})
    assert render.to_json(document(recaptured, version, False)) == served
