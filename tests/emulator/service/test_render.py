"""Renderer rules: gating by version, route walking, compact sorted JSON, the text form."""

from __future__ import annotations

import pytest

from azimds.emulator.model import catalog
from azimds.emulator.service import render

SCHEMA = catalog.instance_schema()


def test_gate_drops_newer_fields_at_every_level():
    tree = {"compute": {"vmId": "x", "zone": "1", "securityProfile": {"secureBootEnabled": "true",
                                                                     "securityType": "TrustedLaunch"}}}
    assert render.gate(tree, SCHEMA, "2017-08-01") == {"compute": {"vmId": "x"}}
    assert render.gate(tree, SCHEMA, "2021-02-01") == {
        "compute": {"vmId": "x", "zone": "1", "securityProfile": {"secureBootEnabled": "true"}}}
    assert render.gate(tree, SCHEMA, "2021-12-13") == tree


def test_gate_applies_to_array_items():
    tree = {"compute": {"storageProfile": {"dataDisks": [{"lun": "0", "isUltraDisk": "false"}]}}}
    assert render.gate(tree, SCHEMA, "2021-02-01") == {"compute": {"storageProfile": {"dataDisks": [{"lun": "0"}]}}}


def test_walk_keys_and_indexes():
    doc = {"a": [{"b": "1"}, {"b": "2"}]}
    assert render.walk(doc, ["a", "1", "b"]) == "2"
    for bad in (["a", "2"], ["a", "01"], ["a", "-1"], ["a", "x"], ["c"], ["a", "0", "b", "z"]):
        with pytest.raises(render.NotFound):
            render.walk(doc, bad)


def test_json_is_compact_sorted_utf8_without_newline():
    assert render.to_json({"b": "é", "a": {"d": "", "c": []}}) == '{"a":{"c":[],"d":""},"b":"é"}'.encode()


def test_text_forms():
    assert render.to_text("value") == b"value"
    assert render.to_text({"network": {}, "compute": {}, "leaf": ""}) == b"compute/\nleaf\nnetwork/"
    assert render.to_text([{"x": "1"}, {"x": "2"}]) == b"0/\n1/"
    assert render.to_text([]) == b""
