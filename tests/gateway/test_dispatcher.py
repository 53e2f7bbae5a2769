"""The dispatcher between the gateway's requests and the scheduler."""

from __future__ import annotations

from fairgate.gateway.dispatcher import Dispatcher
from fairgate.scheduler import Scheduler


def test_a_load_reading_for_a_replica_removed_meanwhile_is_dropped() -> None:
    """The engine watch reads its targets, then awaits their metrics; a reload can remove a
    replica in between. That reading must not fail the watch (it failed every later refresh)."""
    scheduler = Scheduler()
    now = iter(range(0, 1000, 5))
    dispatcher = Dispatcher(scheduler, clock=lambda: float(next(now)), adaptive=True)
    dispatcher.add_replica("m-0", "m")
    dispatcher.add_replica("m-1", "m")
    dispatcher.remove_replica("m-1")
    for waiting in (5, 5, 5, 5, 0, 0, 0, 0):
        dispatcher.engine_load("m-0", 4, waiting)
        dispatcher.engine_load("m-1", 4, waiting)  # raised UnknownReplica once the limit moved
    assert dispatcher._tuners["m-0"].limit != 4  # the readings did move a limit


def test_a_reading_that_starts_a_probe_asks_for_another_soon() -> None:
    scheduler = Scheduler()
    dispatcher = Dispatcher(scheduler, clock=lambda: 0.0, adaptive=True)
    dispatcher.add_replica("m-0", "m")
    assert dispatcher.engine_load("m-0", 4, 0)  # full and no queue: one more, to probe
    assert not dispatcher.engine_load("m-0", 4, 1)  # the engine queued it: answered
    assert not Dispatcher(scheduler, clock=lambda: 0.0).engine_load("m-0", 4, 0)
