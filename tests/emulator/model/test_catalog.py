"""The catalogue is consistent: versions ordered, every field's parent listed and no newer than it."""

from __future__ import annotations

import pytest

from azimds import azure
from azimds.emulator.model import catalog


def test_versions_are_sorted_unique_iso_dates():
    for family in (azure.INSTANCE_VERSIONS, azure.EVENTS_VERSIONS):
        assert list(family) == sorted(set(family))
        assert all(len(v) == 10 and v[4] == v[7] == "-" for v in family)


def test_every_field_has_a_listed_parent_that_is_no_newer():
    fields = catalog.INSTANCE_FIELDS
    for path, since in fields.items():
        assert since in azure.INSTANCE_VERSIONS, path
        parent = path.rpartition("/")[0]
        if parent:
            assert parent in fields, f"{path} has no listed parent"
            assert fields[parent] <= since, f"{path} ({since}) is older than {parent} ({fields[parent]})"


def test_schema_shapes():
    root = catalog.instance_schema()
    assert root.children["network"].children["interface"].is_array
    tags = root.children["compute"].children["tags"]
    assert tags.is_leaf and tags.since == "2017-08-01"
    assert root.children["compute"].children["storageProfile"].children["resourceDisk"].since == "2021-02-01"


def test_spec_key_counts_per_version():
    """The compute key counts real payloads show (spec §5.6)."""
    compute = catalog.instance_schema().children["compute"].children

    def count(version: str) -> int:
        return sum(1 for node in compute.values() if node.since <= version)

    assert count("2017-08-01") == 15
    assert count("2018-02-01") == 17
    assert count("2019-03-11") == 23
    assert count("2021-02-01") == 32


def test_versions_cut_and_newest_three():
    cut = catalog.Versions(azure.INSTANCE_VERSIONS, newest="2019-06-01")
    assert cut.newest == ("2019-06-01", "2019-04-30", "2019-03-11")
    assert "2019-06-04" not in cut and "2019-06-01" in cut
    attested = catalog.Versions(azure.INSTANCE_VERSIONS, oldest="2018-10-01")
    assert "2018-04-02" not in attested and attested.accepted[0] == "2018-10-01"
    assert catalog.Versions(azure.INSTANCE_VERSIONS).newest == ("2025-04-07", "2024-07-17", "2024-03-15")


def test_newest_version_must_be_an_instance_version():
    from azimds.emulator.config import Config
    from azimds.errors import ProfileError

    assert Config.build(flags={"newest_version": "2021-02-01"}).newest_version == "2021-02-01"
    with pytest.raises(ProfileError, match="--newest-version: '2021-02-02' is not an instance api-version"):
        Config.build(flags={"newest_version": "2021-02-02"})
