"""Copy-paste example: testing IMDS-dependent code with azimds' pytest fixture."""

import app
import pytest


def test_reads_the_default_vms_tag(imds):
    assert app.tag("tag_key") == "configured-by-tag"


@pytest.mark.imds(profile={"compute": {"tags": {"tag_key": "prod"}}})
def test_reads_a_tag_from_my_profile(imds):
    assert app.tag("tag_key") == "prod"
    assert app.tag("missing") is None
    assert [entry.status for entry in imds.journal] == [200, 200]


def test_every_vm_of_a_fleet_reads_its_own_tags(imds_fleet):
    import http.client

    names = set()
    for i in range(10):  # the default fleet: web_0 … web_9 calling from 127.1.0.0 … 127.1.0.9
        host, port = imds_fleet.url.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), source_address=(f"127.1.0.{i}", 0))
        conn.request("GET", "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                     headers={"Metadata": "true"})
        names.add(conn.getresponse().read().decode())
        conn.close()
    assert names == {f"web_{i}" for i in range(10)}
