"""The runtime drains the agent after every input, application data included (issue 6)."""

from __future__ import annotations

import asyncio

from unbroken.ice import IceConfig, IceTransportState
from unbroken.runtime import IceConnection
from unbroken.runtime.loopback import LOOPBACK, link

S = IceTransportState


async def test_data_that_makes_the_pair_receiving_again_is_reported_at_once() -> None:
    # Consent every 20 s and `disconnected` after 0.3 s: once disconnected, the agent's
    # next deadline is a consent check seconds away, so only the drain that follows the
    # data datagram itself can report `connected` within the bound below.
    config = IceConfig(disconnected_timeout=0.3, keepalive_interval=20.0)
    a = IceConnection(controlling=True, address_filter=LOOPBACK, config=config)
    b = IceConnection(controlling=False, address_filter=LOOPBACK, config=config)
    try:
        link(a, b)
        a.set_remote_credentials(*b.local_credentials)
        b.set_remote_credentials(*a.local_credentials)
        await asyncio.gather(a.gather(), b.gather())
        up = (S.CONNECTED, S.COMPLETED)
        await asyncio.wait_for(b.wait_for_state(lambda s: s in up), 5)
        await asyncio.wait_for(b.wait_for_state(lambda s: s is S.DISCONNECTED), 5)
        timer = b.agent.get_timer()
        assert timer is not None
        loop = asyncio.get_running_loop()
        assert timer.at - loop.time() > 2.0, timer  # nothing else would wake b soon
        assert a.send(b"\x17\xfe\xfd" + bytes(40))  # a DTLS application-data record
        await asyncio.wait_for(b.wait_for_state(lambda s: s in up), 1.0)
        assert b.agent.counters["data_from_stranger"] == 0
    finally:
        await a.close()
        await b.close()
