"""The engine's slot scheduler alone: the limit, the order, and cancellation."""

from __future__ import annotations

import asyncio

from fastdhcp.exchange import Exchange, Slot, State
from fastdhcp.slots import Slots


def exchange(state: State = State.SELECTING) -> Exchange:
    return Exchange(state, b"\x02" * 6, asyncio.Future(loop=asyncio.new_event_loop()), 1.0)


def test_the_limit_then_new_leases_before_renewals() -> None:
    slots = Slots(limit=2)
    first, second = exchange(), exchange(State.RENEWING)
    assert slots.enter(first) and slots.enter(second)
    renewal, new = exchange(State.RENEWING), exchange()
    assert not slots.enter(renewal) and not slots.enter(new)  # queued, renewal first
    assert (len(slots), slots.active, renewal.slot) == (4, 2, Slot.WAITING)
    assert slots.leave(first) == [new]  # the docker run goes ahead of the renewal
    assert new.slot is Slot.ACTIVE and first.slot is Slot.NONE
    assert slots.leave(second) == [renewal]
    assert slots.leave(new) == [] and slots.leave(renewal) == []
    assert (len(slots), slots.active) == (0, 0)


def test_a_waiting_exchange_that_leaves_frees_nothing_and_is_never_admitted() -> None:
    slots = Slots(limit=1)
    running, cancelled, after = exchange(), exchange(), exchange()
    for one in (running, cancelled, after):
        slots.enter(one)
    assert slots.leave(cancelled) == [] and slots.active == 1
    assert slots.waiting() == [after]
    assert slots.leave(running) == [after]
    assert slots.leave(cancelled) == []  # leaving twice is harmless
