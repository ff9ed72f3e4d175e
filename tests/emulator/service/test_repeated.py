"""A connection that asks the same again (every poller does) is neither parsed nor looked up again, and still sees every
once: the VM's documents, faults, rate limits, a new profile, a fleet's member made anew. Each test asks on one
kept-alive connection, as pollers do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from azimds import Emulator
from azimds.emulator.service.http import Request
from tests.support import Keep, fetch

NAME = "/metadata/instance/compute/name?api-version=2021-02-01&format=text"
TAGS = "/metadata/instance/compute/tags?api-version=2021-02-01&format=text"


def test_the_same_ask_again_on_a_connection_is_not_parsed_again(monkeypatch):
    """The HTTP core hands the service the request it parsed the first time."""
    seen: list[object] = []
    original = Request.__init__

    def spy(self: Request, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        seen.append(self)

    monkeypatch.setattr(Request, "__init__", spy)
    with Emulator({"compute": {"name": "vm-a"}}) as imds:
        keep = Keep(imds.url)
        answers = [keep.request("GET", NAME, headers={"Metadata": "true"}) for _ in range(5)]
        keep.close()
    assert answers == [(200, b"vm-a")] * 5
    assert len(seen) == 1  # parsed once, answered five times


def test_changes_faults_and_a_reset_show_at_once_on_a_kept_connection():
    with Emulator({"compute": {"name": "vm-a", "tags": "a:1"}}) as imds:
        keep = Keep(imds.url)
        ask = lambda: keep.request("GET", TAGS, headers={"Metadata": "true"})  # noqa: E731
        assert ask() == (200, b"a:1")
        imds.control.set_tags({"a": "2"})
        assert ask() == (200, b"a:2")
        imds.control.add_fault("/metadata/instance/*=status:503,first:1")
        assert ask()[0] == 503
        assert ask() == (200, b"a:2")
        imds.control.reset()
        assert ask() == (200, b"a:1")
        keep.close()


def test_the_rate_limit_counts_every_request_on_a_kept_connection():
    with Emulator({"compute": {"name": "vm-a"}}, rate_limit=5) as imds:
        keep = Keep(imds.url)
        statuses = [keep.request("GET", NAME, headers={"Metadata": "true"})[0] for _ in range(30)]
        keep.close()
    assert statuses[:5] == [200] * 5 and 429 in statuses  # a burst of five, then five a second


def test_a_new_profile_is_seen_on_a_kept_connection(tmp_path: Path):
    profile = tmp_path / "vm.yaml"
    profile.write_text("compute: {name: before}\n")
    with Emulator(profile) as imds:
        keep = Keep(imds.url)
        assert keep.request("GET", NAME, headers={"Metadata": "true"}) == (200, b"before")
        profile.write_text("compute: {name: after}\n")
        reply = fetch(imds.control_url, "/v1/reload", method="POST", metadata=False,
                      headers={"Authorization": f"Bearer {imds.token}"})
        assert reply.status == 200
        assert keep.request("GET", NAME, headers={"Metadata": "true"}) == (200, b"after")
        keep.close()


def test_a_fleet_member_let_go_and_changed_is_seen_on_the_connection_that_kept_asking(monkeypatch):
    from azimds.emulator.world import fleet

    monkeypatch.setattr(fleet, "MAX_LIVE", 2)
    tree = {"compute": {"name": "jump-1"},
            "fleet": {"scaleSets": [{"name": "web", "capacity": 10, "addresses": "127.1.0.0",
                                     "subnet": "10.1.0.0/24"}]}}
    with Emulator(tree) as imds:
        keep = Keep(imds.url, source_address="127.1.0.4")
        assert keep.request("GET", TAGS, headers={"Metadata": "true"}) == (200, b"")
        for index in (5, 6, 7):  # web_4 is let go
            fetch(imds.url, TAGS, source=f"127.1.0.{index}")
        auth = {"Authorization": f"Bearer {imds.token}"}
        reply = fetch(imds.control_url, "/v1/tags?vm=web_4", method="PUT", metadata=False, headers=auth,
                      body=json.dumps({"only": "me"}).encode())
        assert reply.json() == {"tags": "only:me"}
        imds.control.reboot("web_4")  # a scale-set instance shows changed tags once it reboots
        assert keep.request("GET", TAGS, headers={"Metadata": "true"}) == (200, b"only:me")
        keep.close()


@pytest.fixture
def looked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The source addresses the world was asked to find a VM for, in order."""
    from azimds.emulator.world.world import World

    asked: list[str] = []
    original = World.vm_for

    def spy(self: World, peer: str):  # type: ignore[no-untyped-def]
        asked.append(peer)
        return original(self, peer)

    monkeypatch.setattr(World, "vm_for", spy)
    return asked


FLEET = {"compute": {"name": "jump-1"},
         "fleet": {"scaleSets": [{"name": "web", "capacity": 10, "addresses": "127.1.0.0", "subnet": "10.1.0.0/24"}]}}


def test_a_kept_connection_finds_its_vm_once_while_nothing_moves_and_every_ask_is_journaled(looked: list[str]):
    """The fixed answer is kept with the request: a poller's repeats neither look for its VM nor resolve the URL
    again, yet each is counted and journaled."""
    with Emulator(FLEET) as imds:
        keep = Keep(imds.url, source_address="127.1.0.3")
        answers = [keep.request("GET", NAME, headers={"Metadata": "true"}) for _ in range(6)]
        keep.close()
        journaled = [e for e in imds.journal if e.peer == "127.1.0.3"]
    assert answers == [(200, b"web_3")] * 6
    assert looked == ["127.1.0.3"]
    assert [(e.status, e.url) for e in journaled] == [(200, NAME)] * 6


def test_tags_waiting_for_a_reboot_show_when_it_comes_on_a_kept_connection():
    """A scale-set instance's changed tags wait for its reboot, which is looked for at each ask: the answer
    given while they wait is not kept, so the reboot shows at the next ask on the same connection."""
    with Emulator(FLEET) as imds:
        keep = Keep(imds.url, source_address="127.1.0.4")
        ask = lambda: keep.request("GET", TAGS, headers={"Metadata": "true"})  # noqa: E731
        assert ask() == (200, b"")
        auth = {"Authorization": f"Bearer {imds.token}"}
        reply = fetch(imds.control_url, "/v1/tags?vm=web_4", method="PUT", metadata=False, headers=auth,
                      body=json.dumps({"role": "db"}).encode())
        assert reply.status == 200
        assert [ask(), ask(), ask()] == [(200, b"")] * 3  # waiting for the reboot
        imds.control.reboot("web_4")
        assert ask() == (200, b"role:db")
        keep.close()


def test_a_dynamic_instance_released_and_claimed_by_another_is_not_answered_from_what_was_kept():
    """An address of a dynamic scale set holds its instance only while it calls: which VM it is can change with
    time alone, so nothing found for it is kept."""
    tree = {"compute": {"name": "node-vm"},
            "fleet": {"scaleSets": [{"name": "pods", "capacity": "2", "addresses": "dynamic", "idleRelease": "5m",
                                     "subnet": "10.244.0.0/24"}]}}
    with Emulator(tree, clock="manual") as imds:
        keep = Keep(imds.url, source_address="127.2.0.11")
        ask = lambda: keep.request("GET", NAME, headers={"Metadata": "true"})  # noqa: E731
        assert [ask(), ask()] == [(200, b"pods_0")] * 2
        imds.control.advance(400)  # .11 quiet past idleRelease (and the tenth it may lag): pods_0 is free again
        assert fetch(imds.url, NAME, source="127.2.0.13").body == b"pods_0"
        assert ask() == (200, b"pods_1")
        keep.close()


TOKEN = "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/"
EVENTS = "/metadata/scheduledevents?api-version=2020-07-01"


def test_answers_made_at_each_ask_are_made_again_on_a_kept_connection(looked: list[str]):
    """A token or an event document is made at each ask from what was kept (not looked up again): the token's
    expires_in falls with the clock, a new event shows at once, and the VM is found once."""
    with Emulator({"compute": {"name": "vm-a"}, "identity": {"systemAssigned": True}}, clock="manual") as imds:
        keep = Keep(imds.url)
        tokens = []
        for _ in range(3):
            status, body = keep.request("GET", TOKEN, headers={"Metadata": "true"})
            assert status == 200
            tokens.append(json.loads(body))
            imds.control.advance(100)
        status, body = keep.request("GET", EVENTS, headers={"Metadata": "true"})
        assert status == 200 and json.loads(body)["Events"] == []
        imds.control.schedule("Freeze", notice=600)
        status, again = keep.request("GET", EVENTS, headers={"Metadata": "true"})
        keep.close()
    assert len({t["access_token"] for t in tokens}) == 1  # the cached token, as the real service keeps it
    assert [int(t["expires_in"]) for t in tokens] == [int(tokens[0]["expires_in"]) - 100 * i for i in range(3)]
    assert [e["EventType"] for e in json.loads(again)["Events"]] == ["Freeze"]
    assert len(looked) == 2  # once for the token, once for the events: every other ask answered from what was kept
