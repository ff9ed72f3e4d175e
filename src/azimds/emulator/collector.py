"""Keeps a big fleet's VMs out of the cycle collector's full scans, which would otherwise stop every request.

CPython's full collection scans every object it tracks, and runs whenever the objects that outlived two younger
collections grew by a quarter. A fleet's VMs are such objects (about fifty each): with 10,000 VMs made a full
collection took 250-300 ms here, with 40,000 about 450 ms, coming back each time the fleet grew by a quarter
(now: at most ~40 ms, the settling's own collections ~10-35 ms once per thousand VMs made).

A process that owns its world (``azimds serve``, a worker) runs ``Settler.run``: each time ``SETTLE_EVERY``
more scale-set instances were made, it collects once (the objects not yet frozen, so about what was made since
the last time) and freezes what is left (``gc.freeze``), so that later full collections scan only what is newer.
Frozen objects are still freed as soon as nothing refers to them (a member let go past MAX_LIVE is); only
reference cycles among them would wait, so everything is thawed (``gc.unfreeze``) when the fleet is made anew (a
reset or a new profile), and the next full collection sees the old fleet's.

Not used by an emulator embedded in another program's process (``azimds.Emulator``): freezing is process-wide.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator

from .world.world import World

__all__ = ["SETTLE_EVERY", "Settler", "settling"]

SETTLE_EVERY = 1_000  # scale-set instances made between two settlings (~50,000 objects: a collection of ~20 ms)


class Settler:
    """Watches one world's fleet; ``tick`` (about once a second) collects and freezes when it grew enough."""

    def __init__(self, world: World, every: int = SETTLE_EVERY):
        self.world = world
        self.every = every
        self._fleet = world.fleet
        self._settled = 0  # members the fleet had made at the last settling
        self.settlings = 0

    def tick(self) -> None:
        fleet = self.world.fleet
        if fleet is not self._fleet:  # made anew: what was frozen may be garbage now, in cycles too
            self._fleet, self._settled = fleet, 0
            if gc.get_freeze_count():
                gc.unfreeze()
        if fleet is None or fleet.members_made - self._settled < self.every:
            return
        self._settled = fleet.members_made
        gc.collect()
        gc.freeze()
        self.settlings += 1

    async def run(self, interval: float) -> None:
        """Tick every ``interval`` seconds until cancelled; thaws everything when it ends."""
        try:
            while True:
                await asyncio.sleep(interval)
                self.tick()
        finally:
            gc.unfreeze()


@contextlib.asynccontextmanager
async def settling(world: World, every: int = SETTLE_EVERY, interval: float = 1.0) -> AsyncIterator[Settler]:
    """While in it, a process that owns ``world`` keeps its fleet's VMs out of full collections (ticking every
    ``interval`` seconds); everything is thawed when it ends."""
    settler = Settler(world, every)
    task = asyncio.ensure_future(settler.run(interval))
    try:
        yield settler
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
