"""Who serves the next fetcher under log(N) waves (fanout_waves.Servers), run on a real event
loop: each server feeds `wave_width` fetchers at once, a waiting fetcher gets the least busy
server with room, and a server that delivered nothing (a wave server that died) is assigned to
no one after and asked last."""

from __future__ import annotations

import asyncio

from builder.runtime._fanout_shell import FanoutPlan
from builder.runtime.fanout_waves import Servers

SEEDS = ("10.0.0.1", "10.0.0.2")
NODES = ("10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6")


def make_pool(width: int = 1) -> Servers:
    plan = FanoutPlan(SEEDS, NODES, 5000, "sealer-rootfs/c1", "/s", None, wave_hosts=NODES, wave_width=width)
    return Servers(plan, {s: frozenset({"aa"}) for s in SEEDS})


def test_each_server_feeds_width_fetchers_and_a_finished_host_joins() -> None:
    async def go() -> list[str | None]:
        pool = make_pool()
        first, second = await pool.take(), await pool.take()
        third = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0.01)
        assert not third.done()  # both seeds are busy: it waits
        assert pool.wants(NODES[0], waiting=1)
        await pool.add(NODES[0])
        return [first, second, await asyncio.wait_for(third, 1)]

    assert asyncio.run(go()) == [*SEEDS, NODES[0]]


def test_a_dropped_server_is_assigned_to_no_one_after_and_asked_last() -> None:
    async def go() -> None:
        pool = make_pool()
        await pool.add(NODES[0])
        taken = await pool.take()
        await pool.give_back(taken)
        await pool.drop([NODES[0]])
        # the dead wave server is the least busy (0) but never given out again
        assigned = [await pool.take() for _ in SEEDS]
        assert NODES[0] not in assigned and sorted(assigned) == sorted(SEEDS)  # type: ignore[type-var]
        assert pool.order(SEEDS[0]) == (SEEDS[0], SEEDS[1], NODES[0])
        # and it leaves no room that a finished host would be started to fill
        assert pool.wants(NODES[1], waiting=1)

    asyncio.run(go())


def test_when_every_server_was_dropped_fetchers_go_back_to_the_plan_sources() -> None:
    async def go() -> None:
        pool = make_pool()
        busy = await pool.take()
        waiting = asyncio.ensure_future(pool.take())
        other = await asyncio.wait_for(waiting, 1)
        late = asyncio.ensure_future(pool.take())
        await asyncio.sleep(0.01)
        assert not late.done()
        await pool.drop([busy, other])  # type: ignore[list-item]
        assert await asyncio.wait_for(late, 1) is None  # not left waiting for a dead server
        assert pool.order(None) is None

    asyncio.run(go())
