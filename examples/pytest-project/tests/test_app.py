"""Copy-paste example: testing IMDS-dependent code with azimds' pytest fixture."""

import pytest

import app


def test_reads_the_default_vms_tag(imds):
    assert app.tag("tag_key") == "configured-by-tag"


@pytest.mark.imds(profile={"compute": {"tags": {"tag_key": "prod"}}})
def test_reads_a_tag_from_my_profile(imds):
    assert app.tag("tag_key") == "prod"
    assert app.tag("missing") is None
    assert [entry.status for entry in imds.journal] == [200, 200]
