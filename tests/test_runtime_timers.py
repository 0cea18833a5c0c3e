"""The runtime's timers: idle connections share loop wakeups, exact deadlines stay exact."""

from __future__ import annotations

import asyncio
import math
from typing import cast

from unbroken.ice import CandidatePair, IceConfig
from unbroken.runtime import IceConnection
from unbroken.runtime.connection import TIMER_SLOT, wheel_of
from unbroken.runtime.loopback import connected_pair


def armed_as_announced(conn: IceConnection) -> bool:
    """The connection's timer is armed as its agent's deadline says: exact ones with a loop
    timer at that instant, coalescible ones in the wheel, in the first slot not before."""
    deadline = conn.agent.get_timer()
    assert deadline is not None
    if not deadline.coalescible:
        return (
            conn._wheel_slot is None
            and conn._timer is not None
            and conn._timer.when() == deadline.at
        )
    slot = conn._wheel_slot
    return (
        conn._timer is None
        and slot is not None
        and math.isclose(slot / TIMER_SLOT, round(slot / TIMER_SLOT))
        and deadline.at <= slot < deadline.at + TIMER_SLOT + 1e-9
    )


async def test_idle_connections_share_one_loop_timer_per_slot() -> None:
    pairs = await asyncio.gather(*(connected_pair() for _ in range(100)))
    conns = [c for pair in pairs for c in pair]
    wheel = wheel_of(asyncio.get_running_loop())
    try:
        fired, ran = wheel.fired, wheel.ran

        async def keepalives_ran(count: int) -> None:
            while wheel.ran - ran < count:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(keepalives_ran(400), 30)
        # 200 connections' keepalives (about 1.2 per pair per second: 120 a second) fall
        # into 20 slots a second: each loop timer of the wheel ran several connections.
        assert wheel.ran - ran >= 3 * (wheel.fired - fired)
        assert all(c.agent.state.value in ("connected", "completed") for c in conns)
        # cast: every one is connected (above), so each has a selected pair.
        assert (
            sum(cast(CandidatePair, c.agent.selected_pair).consent_requests_sent for c in conns) > 0
        )
        for conn in conns:
            assert armed_as_announced(conn), conn.agent.get_timer()
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    assert all(c._wheel_slot is None and c._timer is None for c in conns)


async def test_deadlines_that_time_a_state_stay_exact() -> None:
    # Keepalives 20 s apart and no path-silence heuristic before them: after connecting,
    # the next deadline is disconnected, which times what the application sees and is
    # never rounded.
    config = IceConfig(keepalive_interval=20.0, switch_silence_interval=10.0)
    a, b = await connected_pair(config)
    try:
        for conn in (a, b):
            deadline = conn.agent.get_timer()
            assert deadline is not None and not deadline.coalescible, deadline
            assert deadline.reason == "disconnected", deadline
            assert armed_as_announced(conn)
        # With the default config, the idle pair's next deadline is its keepalive: coalesced.
        c, d = await connected_pair()
        try:
            for conn in (c, d):

                async def coalesced(conn: IceConnection = conn) -> None:
                    while (t := conn.agent.get_timer()) is None or not t.coalescible:
                        await asyncio.sleep(0.05)

                await asyncio.wait_for(coalesced(), 10)
                assert armed_as_announced(conn)
        finally:
            await c.close()
            await d.close()
    finally:
        await a.close()
        await b.close()
