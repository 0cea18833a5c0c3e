"""Perfect negotiation through the signaling server: two of our peer connections on
127.0.0.1, restartIce() on one side, the other, or both at once; a data channel keeps
delivering every message exactly once and in order."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from signaling_helpers import Call, running_server
from unbroken.signaling import ServerConfig, SignalingServer

MARGIN = 20  # messages each way before and after each restart


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with running_server(ServerConfig(away_for=5.0)) as s:
        yield s


@pytest.fixture
async def call(server: SignalingServer) -> AsyncIterator[Call]:
    c = Call(server.url)
    await c.connect()
    c.start_traffic()
    await c.received_more(MARGIN)
    yield c
    await c.close()


@pytest.mark.parametrize("who", ["alice", "bob", "both"])
async def test_restart_ice_renegotiates_by_itself(call: Call, who: str) -> None:
    for _ in range(2):
        before = call.snapshot()
        if who in ("alice", "both"):
            call.a.pc.restartIce()
        if who in ("bob", "both"):
            call.b.pc.restartIce()
        await call.wait_for(lambda before=before: call.restarted_since(before))
        await call.received_more(MARGIN)
    await call.drain()
    call.check_exactly_once_in_order()
    for side in (call.a, call.b):
        assert side.negotiator is not None and side.negotiator.errors == 0
        assert side.pc.connectionState == "connected"


async def test_recovery_is_on_by_default_and_can_be_turned_off() -> None:
    from unbroken import RTCPeerConnection
    from unbroken.recovery import Recovery, RecoveryPolicy
    from unbroken.signaling import PerfectNegotiator, SignalingClient

    pc = RTCPeerConnection()
    client = SignalingClient("ws://127.0.0.1:9/unused", "room")  # never connected here
    negotiators = [
        PerfectNegotiator(pc, client),
        PerfectNegotiator(pc, client, recovery=RecoveryPolicy(on_network_change=False)),
        PerfectNegotiator(pc, client, recovery=False),
    ]
    try:
        on, custom, off = (n.recovery for n in negotiators)
        assert isinstance(on, Recovery) and on.policy == RecoveryPolicy()
        assert isinstance(custom, Recovery) and not custom.policy.on_network_change
        assert off is None
    finally:
        for n in negotiators:
            await n.close()
        await pc.close()
