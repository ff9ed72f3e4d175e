"""``addresses: dynamic``: a new source address claims the lowest free instance of a scale set, keeps it while it
calls, and lets it go ``idleRelease`` after its last call (emulated time: a manual clock, no sleeping). Claims
are rows of the store, so two processes on one store never hand one instance to two addresses, and a restart
keeps them."""

from __future__ import annotations

from pathlib import Path

import pytest

from azimds import Emulator
from azimds.emulator.model.fleet import parse_fleet
from azimds.emulator.model.profile import from_tree
from azimds.emulator.world.clock import Clock
from azimds.emulator.world.store import SqliteStore, Store, open_store
from azimds.emulator.world.world import World
from azimds.errors import NoFreeInstance, ProfileError, StateError
from tests.support import control, fetch, wait_until

T0 = 1_800_000_000
IDLE = 600.0  # idleRelease: 10m


def profile(capacity: int = 3, idle: str = "10m", **fleet) -> dict:
    return {"compute": {"name": "node-vm"},
            "identity": {"systemAssigned": True},
            "fleet": {"scaleSets": [{"name": "pods", "capacity": str(capacity), "addresses": "dynamic",
                                     "idleRelease": idle, "subnet": "10.244.0.0/24"}], **fleet}}


def world(tree: dict | None = None, store: Store | None = None) -> World:
    return World(from_tree(tree or profile(), "<test>"), clock=Clock("manual", start=T0), store=store)


def name_for(w: World, peer: str) -> str:
    vm = w.vm_for(peer)
    assert vm is not None
    return vm.name


# -- the profile ---------------------------------------------------------------------------------------------

def test_idle_release_is_a_duration_parsed_like_every_profile_duration():
    sets = parse_fleet({"scaleSets": [{"name": "a", "addresses": "dynamic", "idleRelease": "1h30m"},
                                      {"name": "b", "addresses": "dynamic", "idleRelease": "45"},
                                      {"name": "c", "addresses": "Dynamic"},
                                      {"name": "d", "addresses": "127.1.0.0"}]}, "x").scale_sets
    assert [(s.dynamic, s.idle_release) for s in sets] == [(True, 5400.0), (True, 45.0), (True, 600.0),
                                                            (False, 600.0)]


@pytest.mark.parametrize(("entry", "problem"), [
    ({"addresses": "dynamic", "idleRelease": "ten minutes"},
     "fleet.scaleSets[0].idleRelease: must be seconds or like '10m', '1h30m', '90s', not 'ten minutes'"),
    ({"addresses": "dynamic", "idleRelease": "0s"}, "fleet.scaleSets[0].idleRelease: must be 1 second to 365 days"),
    ({"addresses": "127.1.0.0", "idleRelease": "10m"},
     "fleet.scaleSets[0].idleRelease: only a scale set with addresses: dynamic lets instances go"),
    ({"addresses": "dynamically"}, "fleet.scaleSets[0].addresses: not an IPv4 address or dynamic: 'dynamically'"),
    ({"addresses": "dynamic", "capacity": "10001"},
     "fleet.scaleSets[0].capacity: a dynamic scale set has at most 10000 instances, not 10001"),
])
def test_a_bad_dynamic_scale_set_is_refused_naming_the_place(entry, problem):
    with pytest.raises(ProfileError) as caught:
        parse_fleet({"scaleSets": [{"name": "pods", **entry}]}, "vm.yaml")
    assert str(caught.value).startswith(f"vm.yaml: {problem}")


def test_a_static_fleet_keeps_its_fingerprint():
    """The idle time is not part of what the world is: a state kept before dynamic sets existed stays this
    profile's (repr of a static scale set unchanged)."""
    spec = parse_fleet({"scaleSets": [{"name": "web", "addresses": "127.1.0.0"}]}, "x")
    assert "idle_release" not in repr(spec) and "first_address=2130771968" in repr(spec)


# -- claim, keep, release ---------------------------------------------------------------------------------------

def test_new_addresses_claim_the_lowest_free_instances_and_keep_them():
    w = world()
    assert [name_for(w, p) for p in ("10.244.0.11", "10.244.0.12", "10.244.0.13")] == ["pods_0", "pods_1", "pods_2"]
    assert [name_for(w, p) for p in ("10.244.0.13", "10.244.0.11", "10.244.0.12")] == ["pods_2", "pods_0", "pods_1"]
    ids = {w.vm_for(p).instance["compute"]["vmId"] for p in ("10.244.0.11", "10.244.0.12", "10.244.0.13")}
    assert len(ids) == 3
    with pytest.raises(NoFreeInstance):
        w.vm_for("10.244.0.14")


def test_a_claim_is_kept_while_its_address_calls_and_released_after_the_idle_time():
    w = world()
    assert name_for(w, "10.244.0.11") == "pods_0"
    assert name_for(w, "10.244.0.12") == "pods_1"
    for _ in range(5):  # 0.9 of the idle time between calls, 4.5 of it in all: kept
        w.advance_clock(0.9 * IDLE)
        assert name_for(w, "10.244.0.11") == "pods_0"
    # .12 has not called for 4.5 idle times: pods_1 is free again, and the next newcomer takes it
    assert name_for(w, "10.244.0.20") == "pods_1"
    assert name_for(w, "10.244.0.12") == "pods_2"  # it comes back as a newcomer


def test_a_claim_is_never_released_early_and_at_most_a_tenth_of_the_idle_time_late():
    w = world(profile(capacity=1))
    assert name_for(w, "10.244.0.11") == "pods_0"
    w.advance_clock(0.05 * IDLE)
    assert name_for(w, "10.244.0.11") == "pods_0"  # too soon after the claim to be written again
    w.advance_clock(IDLE - 1)  # one second short of the idle time since its last call
    with pytest.raises(NoFreeInstance):
        w.vm_for("10.244.0.12")
    w.advance_clock(0.05 * IDLE + 2)  # past the idle time plus the tenth the written call may lag
    assert name_for(w, "10.244.0.12") == "pods_0"
    with pytest.raises(NoFreeInstance):  # and .11 lost it
        w.vm_for("10.244.0.11")


def test_static_sets_and_listed_vms_keep_their_addresses_beside_a_dynamic_set():
    tree = profile(vms=[{"addresses": ["10.244.0.2"], "compute": {"name": "db-1"}}])
    tree["fleet"]["scaleSets"].append({"name": "web", "capacity": "2", "addresses": "10.244.1.0"})
    w = world(tree)
    assert [name_for(w, p) for p in ("10.244.0.2", "10.244.1.1", "10.244.0.11")] == ["db-1", "web_1", "pods_0"]
    view = w.fleet_view()
    assert [(vm["name"], vm["scaleSet"], vm["addresses"]) for vm in view["vms"]] == [
        ("node-vm", None, []), ("db-1", None, ["10.244.0.2"]), ("pods_0", "pods", ["10.244.0.11"]),
        ("pods_1", "pods", []), ("pods_2", "pods", []), ("web_0", "web", ["10.244.1.0"]),
        ("web_1", "web", ["10.244.1.1"])]
    assert [(s["name"], s["addresses"]) for s in view["sets"]] == [("pods", "dynamic"), ("web", "10.244.1.0")]
    assert view["sets"][0]["claims"] == [{"address": "10.244.0.11", "vm": "pods_0", "claimed": T0,
                                               "lastSeen": T0, "releaseAt": T0 + 1.1 * IDLE}]


def test_reset_releases_every_claim():
    w = world()
    name_for(w, "10.244.0.11")
    name_for(w, "10.244.0.12")
    w.reset()
    assert w.fleet_view()["sets"][0]["claims"] == []
    assert name_for(w, "10.244.0.12") == "pods_0"


# -- kept in the store -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_two_nodes_on_one_store_never_hand_one_instance_to_two_addresses(engine: str, tmp_path: Path,
                                                                          request: pytest.FixtureRequest):
    """Two nodes' agents: each claims through the store, so a node that has not yet heard of the other's claim
    still gets another instance (and none when none is left); listening, each learns the other's claims."""
    def open_one() -> Store:
        if engine == "sqlite":
            return SqliteStore(tmp_path / "s.sqlite", shared=True)
        return open_store(request.getfixturevalue("postgres_url"))

    one, two = open_one(), open_one()
    a, b = world(profile(capacity=2), one), world(profile(capacity=2), two)
    try:
        assert name_for(a, "10.244.0.11") == "pods_0"
        assert name_for(b, "10.244.1.11") == "pods_1"  # b has applied nothing of a's
        with pytest.raises(NoFreeInstance):
            b.vm_for("10.244.1.12")
        with pytest.raises(NoFreeInstance):
            a.vm_for("10.244.0.12")
        a.listen(lambda apply: apply())
        wait_until(lambda: len(a.fleet_view()["sets"][0]["claims"]) == 2, timeout=5)
        assert [c["vm"] for c in a.fleet_view()["sets"][0]["claims"]] == ["pods_0", "pods_1"]
    finally:
        a.close()
        b.close()
        one.close()
        two.close()


def test_claims_survive_a_restart_and_a_damaged_row_is_refused(tmp_path: Path):
    store = SqliteStore(tmp_path / "s.sqlite")
    w = world(store=store)
    name_for(w, "10.244.0.11")
    name_for(w, "10.244.0.12")
    w.close()
    store.close()
    store = SqliteStore(tmp_path / "s.sqlite")
    again = world(store=store)
    assert [c["address"] for c in again.fleet_view()["sets"][0]["claims"]] == ["10.244.0.11", "10.244.0.12"]
    assert name_for(again, "10.244.0.13") == "pods_2"
    again.close()
    store.update(["claims/pods"], lambda current: {"claims/pods": current["claims/pods"].replace(
        '"instance":1', '"instance":0')})
    store.close()
    store = SqliteStore(tmp_path / "s.sqlite")
    with pytest.raises(StateError, match="row 'claims/pods': two addresses claim the same instance of pods"):
        world(store=store)
    store.close()


# -- over the network ------------------------------------------------------------------------------------------

INSTANCE = "/metadata/instance/compute?api-version=2021-02-01"


def test_over_the_network_each_address_its_own_instance_listed_released_and_refused_when_full():
    with Emulator(profile(capacity=2, idle="5m"), clock="manual") as imds:
        first = fetch(imds.url, INSTANCE, source="127.2.0.11").json()
        second = fetch(imds.url, INSTANCE, source="127.2.0.12").json()
        assert (first["name"], second["name"]) == ("pods_0", "pods_1") and first["vmId"] != second["vmId"]
        assert fetch(imds.url, INSTANCE, source="127.2.0.11").json() == first
        full = fetch(imds.url, INSTANCE, source="127.2.0.13")
        assert (full.status, full.body) == (
            403, b'{ "error": "Forbidden: every instance is claimed by another source address" }')
        listing = control(imds, "GET", "/v1/fleet").json()
        assert [(c["address"], c["vm"]) for c in listing["sets"][0]["claims"]] == [
            ("127.2.0.11", "pods_0"), ("127.2.0.12", "pods_1")]
        assert listing["sets"][0]["idleRelease"] == 300
        assert control(imds, "POST", "/v1/clock", {"advance": 200}).status == 200
        assert fetch(imds.url, INSTANCE, source="127.2.0.12").json()["name"] == "pods_1"  # written again
        assert control(imds, "POST", "/v1/clock", {"advance": 200}).status == 200
        # .11 has been quiet for 400 s (> 330), .12 for 200 s
        assert fetch(imds.url, INSTANCE, source="127.2.0.13").json()["name"] == "pods_0"
        assert [c["address"] for c in control(imds, "GET", "/v1/fleet").json()["sets"][0]["claims"]] == [
            "127.2.0.13", "127.2.0.12"]
        assert imds.control.fleet() == control(imds, "GET", "/v1/fleet").json()
        token = fetch(imds.url, "/metadata/identity/oauth2/token?api-version=2018-02-01"
                                "&resource=https://management.azure.com/", source="127.2.0.13").json()
        assert token["client_id"]
