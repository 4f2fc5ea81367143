"""Run slots on their own: no server, no CLI, time from trio's MockClock.

tests/test_limits.py checks what a client sees of the queue over HTTP; this file
checks the ``Slots`` bookkeeping behind it, case by case, in milliseconds.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from cc2api.errors import QueueFull
from cc2api.slots import RETRY_AFTER_SECONDS, Slots


def test_slots_up_to_the_limit_are_granted_at_once() -> None:
    """The first ``limit`` takes are granted and counted as running, none queued."""
    slots = Slots(limit=2, queue_limit=3)
    taken = [slots.take(), slots.take()]
    assert [slot.granted for slot in taken] == [True, True]
    assert [slot.position for slot in taken] == [0, 0]
    assert (slots.running, slots.queued) == (2, 0)


def test_takes_past_the_limit_queue_with_positions_from_one() -> None:
    """Past the limit each take waits, numbered 1, 2, 3 in the order taken."""
    slots = Slots(limit=1, queue_limit=3)
    slots.take()
    waiting = [slots.take() for _ in range(3)]
    assert [slot.granted for slot in waiting] == [False, False, False]
    assert [slot.position for slot in waiting] == [1, 2, 3]
    assert (slots.running, slots.queued) == (1, 3)


def test_a_full_queue_refuses_with_retry_after_and_the_limits() -> None:
    """With every slot held and the queue full, take raises QueueFull naming both limits."""
    slots = Slots(limit=1, queue_limit=1)
    slots.take()
    slots.take()
    with pytest.raises(QueueFull) as refused:
        slots.take()
    assert refused.value.retry_after == RETRY_AFTER_SECONDS
    assert "MAX_CONCURRENT_RUNS=1" in str(refused.value)
    assert "MAX_QUEUED_RUNS=1" in str(refused.value)
    assert (slots.running, slots.queued) == (1, 1)


def test_no_queue_refuses_as_soon_as_the_slots_are_held() -> None:
    """With queue_limit 0 a take past the limit is refused instead of queued."""
    slots = Slots(limit=1, queue_limit=0)
    slots.take()
    with pytest.raises(QueueFull):
        slots.take()


def test_release_grants_the_oldest_waiter_and_moves_the_rest_up() -> None:
    """Releasing a held slot grants the first in line; the others' positions drop by one."""
    slots = Slots(limit=1, queue_limit=3)
    holder = slots.take()
    first, second, third = (slots.take() for _ in range(3))
    holder.release()
    assert (first.granted, second.granted, third.granted) == (True, False, False)
    assert (first.position, second.position, third.position) == (0, 1, 2)
    assert (slots.running, slots.queued) == (1, 2)


def test_release_is_idempotent() -> None:
    """Releasing a slot twice frees one slot, not two."""
    slots = Slots(limit=1, queue_limit=2)
    holder = slots.take()
    first, second = slots.take(), slots.take()
    holder.release()
    holder.release()
    assert (first.granted, second.granted) == (True, False)
    assert (slots.running, slots.queued) == (1, 1)


def test_leaving_the_queue_frees_its_place_and_grants_nothing() -> None:
    """A queued slot that is released leaves the queue; those behind it move up, none start."""
    slots = Slots(limit=1, queue_limit=3)
    slots.take()
    first, second, third = (slots.take() for _ in range(3))
    second.release()
    assert (first.position, second.position, third.position) == (1, 0, 2)
    assert not any(slot.granted for slot in (first, second, third))
    assert (slots.running, slots.queued) == (1, 2)


def test_a_place_left_in_the_queue_is_not_granted_later() -> None:
    """After a queued slot is released, a freed slot goes to the one behind it."""
    slots = Slots(limit=1, queue_limit=2)
    holder = slots.take()
    gone, behind = slots.take(), slots.take()
    gone.release()
    holder.release()
    assert (gone.granted, behind.granted) == (False, True)
    assert (slots.running, slots.queued) == (1, 0)


def test_a_freed_queue_place_takes_a_new_request() -> None:
    """Once a waiter leaves a full queue, the next take queues instead of being refused."""
    slots = Slots(limit=1, queue_limit=1)
    slots.take()
    slots.take().release()
    assert slots.take().position == 1


async def test_wait_returns_when_an_earlier_run_releases(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A queued slot's wait blocks until the holder releases, then returns granted."""
    slots = Slots(limit=1, queue_limit=1)
    holder = slots.take()
    queued = slots.take()
    granted_at: list[float] = []

    async def run_later() -> None:
        await queued.wait()
        granted_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_later)
        await trio.sleep(10)
        assert granted_at == []
        holder.release()
    assert granted_at == [10]
    assert queued.granted


async def test_a_cancelled_wait_leaves_the_slot_queued_until_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Cancelling wait keeps the slot in the queue; only release takes it out."""
    slots = Slots(limit=1, queue_limit=2)
    holder = slots.take()
    queued = slots.take()
    with trio.move_on_after(5) as scope:
        await queued.wait()
    assert scope.cancelled_caught
    assert (queued.position, slots.queued) == (1, 1)
    queued.release()
    holder.release()
    assert (queued.granted, slots.running, slots.queued) == (False, 0, 0)
