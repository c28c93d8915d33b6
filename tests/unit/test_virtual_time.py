"""The test loop whose clock jumps (virtual_time.py): timers fire in order, and
time never jumps over work a thread is still doing."""

from __future__ import annotations

import asyncio
import threading

from virtual_time import EPOCH, VirtualTimeLoop, in_virtual_time


@in_virtual_time
async def test_timers_fire_in_order_at_their_virtual_times() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    fired: list[tuple[str, float]] = []
    for name, delay in (("late", 3600.0), ("early", 1.5), ("middle", 60.0)):
        loop.call_later(delay, lambda n=name: fired.append((n, loop.time())))
    await asyncio.sleep(7200)
    assert fired == [("early", 1.5), ("middle", 60.0), ("late", 3600.0)]
    assert loop.wall() == EPOCH + 7200


@in_virtual_time
async def test_time_waits_for_a_busy_thread_and_for_the_executor() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop)
    done = threading.Event()
    loop.busy.append(lambda: not done.is_set())
    result: asyncio.Future[float] = loop.create_future()

    def work() -> None:
        done.wait(0.05)  # real time, while a 10 s virtual timer is pending
        loop.call_soon_threadsafe(result.set_result, loop.time())
        done.set()

    threading.Thread(target=work).start()
    timeout = loop.call_later(10, lambda: None)
    assert await result == 0.0  # the thread's answer came before time moved
    timeout.cancel()
    assert await asyncio.to_thread(lambda: loop.time()) == 0.0
