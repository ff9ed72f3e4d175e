"""A process that owns a big fleet keeps the VMs it made out of the collector's full scans, and lets them go."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from azimds import Emulator
from azimds.emulator.collector import Settler, settling
from azimds.emulator.model import profile
from azimds.emulator.world import fleet as fleets
from tests.emulator.world.test_fleet import fleet_profile


@pytest.fixture
def thawed() -> Iterator[None]:
    """Whatever a test froze is thawed after it, and the collector runs as it did."""
    enabled = gc.isenabled()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()


def frozen(obj: object) -> bool:
    """Tracked by the collector, yet in none of its generations: in the permanent one, out of its scans."""
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


def test_members_made_are_frozen_once_enough_were_made_and_thawed_when_the_fleet_is_made_anew(thawed):
    with Emulator(fleet_profile(capacity=50), rate_limit=0) as imds:
        world = imds.world
        assert world.fleet is not None
        settler = Settler(world, every=10)
        for index in range(9):
            world.fleet.by_name(f"web_{index}")
        settler.tick()
        assert settler.settlings == 0 and gc.get_freeze_count() == 0
        made = world.fleet.by_name("web_9")
        assert not frozen(made)
        settler.tick()
        assert settler.settlings == 1 and gc.get_freeze_count() > 0 and frozen(made)
        settler.tick()  # nothing new made: nothing to do
        assert settler.settlings == 1
        world.reset(profile.from_tree(fleet_profile(capacity=60), "other.yaml"))
        settler.tick()  # the old fleet may be garbage now, cycles and all: thawed for the collector to see
        assert gc.get_freeze_count() == 0 and not frozen(made)


def test_a_frozen_member_let_go_is_freed_without_a_collection(thawed, monkeypatch):
    """Freezing keeps objects from the collector only: members hold no cycles, so one let go past MAX_LIVE is
    freed at once, frozen or not (with a cycle it would stay until the fleet is made anew)."""
    monkeypatch.setattr(fleets, "MAX_LIVE", 3)
    with Emulator(fleet_profile(capacity=50), rate_limit=0) as imds:
        fleet = imds.world.fleet
        assert fleet is not None
        gc.disable()
        model = weakref.ref(fleet.by_name("web_0").model)
        Settler(imds.world, every=1).tick()
        assert gc.get_freeze_count() > 0 and model() is not None
        for index in (1, 2, 3):  # web_0 is let go
            fleet.by_name(f"web_{index}")
        assert model() is None


def test_a_serving_process_settles_its_fleet_as_it_grows_and_thaws_when_it_stops(thawed):
    with Emulator(fleet_profile(capacity=50), rate_limit=0) as imds:
        fleet = imds.world.fleet
        assert fleet is not None

        async def grow() -> int:
            async with settling(imds.world, every=5, interval=0.001) as settler:
                for index in range(5):
                    fleet.by_name(f"web_{index}")

                async def settled() -> None:
                    while not settler.settlings:
                        await asyncio.sleep(0.001)

                await asyncio.wait_for(settled(), 10)
                assert gc.get_freeze_count() > 0
                return settler.settlings

        assert asyncio.run(grow()) == 1
        assert gc.get_freeze_count() == 0
