"""Automatic recovery (unbroken.recovery) under real faults in a network namespace.

Two of our peer connections on two veth interfaces (tests/netns_pc.py), a numbered
message every 20 ms each way on a reliable ordered channel, and no application restart
handler at all: only `recovery.attach(pc)` and a signaling stand-in that answers
`negotiationneeded` with an offer, as any signaling helper does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from netns_pc import (
    FaultNs,
    PcPair,
    Side,
    arrival_of,
    delivery_problem,
    require_fault_ns,
)
from pc_helpers import negotiate
from unbroken import RTCPeerConnection
from unbroken.recovery import Recovery, RecoveryEvent, RecoveryPolicy, attach

INTERVAL = 0.020


def answer_negotiationneeded(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    """In-process signaling: whoever needs negotiation offers, one exchange at a time."""
    lock = asyncio.Lock()

    def handler(
        offerer: RTCPeerConnection, answerer: RTCPeerConnection
    ) -> Callable[[], Awaitable[None]]:
        async def on_needed() -> None:
            async with lock:
                if offerer.signalingState == "stable" and offerer.connectionState != "closed":
                    await negotiate(offerer, answerer)

        return on_needed

    a.on("negotiationneeded", handler(a, b))
    b.on("negotiationneeded", handler(b, a))


@pytest.fixture
async def setup() -> AsyncIterator[tuple[FaultNs, PcPair, Recovery, Recovery]]:
    require_fault_ns()
    fns = FaultNs.create()
    try:
        with fns.ns.entered():
            pair = PcPair(interval=INTERVAL)
            await pair.connect()
            answer_negotiationneeded(pair.a.pc, pair.b.pc)
            ra = await attach(pair.a.pc)
            rb = await attach(pair.b.pc)
            try:
                yield fns, pair, ra, rb
            finally:
                await ra.stop()
                await rb.stop()
                await pair.close()
    finally:
        fns.delete()


def record(recovery: Recovery) -> list[RecoveryEvent]:
    events: list[RecoveryEvent] = []
    recovery.on("recovery", events.append)
    return events


async def test_handover_heals_by_itself(setup: tuple[FaultNs, PcPair, Recovery, Recovery]) -> None:
    fns, pair, ra, _rb = setup
    assert ra.watcher is not None and ra.watcher.mode == "netlink"
    events = record(ra)
    await pair.until(lambda: len(pair.b.received) > 10, 5, "traffic")
    loop = asyncio.get_running_loop()
    moved = loop.time()
    with fns.ns.entered():
        fns.move_a()

    def arrived_after(sender: Side, receiver: Side) -> float | None:
        """When the first message `sender` sent after the move reached `receiver`."""
        after = [i for i, t in enumerate(sender.sent_at) if t >= moved]
        return arrival_of(receiver.received, after[0]) if after else None

    await pair.until(
        lambda: (
            arrived_after(pair.a, pair.b) is not None and arrived_after(pair.b, pair.a) is not None
        ),
        10,
        "data both ways after the handover",
    )
    healed = max(arrived_after(pair.a, pair.b) or 0.0, arrived_after(pair.b, pair.a) or 0.0)
    logging.getLogger(__name__).info("handover healed in %.3f s", healed - moved)
    assert [e.action for e in events][:1] == ["restart"]
    assert events[0].trigger.startswith("network: ")
    await pair.until(lambda: any(e.action == "healed" for e in events), 10, "healed event")
    sent_a, sent_b = await pair.finish()
    assert delivery_problem(pair.b.received, sent_a) is None
    assert delivery_problem(pair.a.received, sent_b) is None
    assert "failed" not in pair.a.states("iceconnectionstatechange")
    assert "failed" not in pair.a.states("connectionstatechange")


async def test_outage_heals_without_a_restart_storm(
    setup: tuple[FaultNs, PcPair, Recovery, Recovery],
) -> None:
    fns, pair, ra, rb = setup
    await pair.until(lambda: len(pair.b.received) > 10, 5, "traffic")
    with fns.ns.entered():
        fns.outage(True)
    await pair.until(lambda: ra.restarts >= 1 and rb.restarts >= 1, 10, "restarts on disconnected")
    await asyncio.sleep(6.0)  # the fault's length: the network stays dead this long
    during = ra.restarts + rb.restarts
    with fns.ns.entered():
        fns.outage(False)
    await pair.until(lambda: ra.healed >= 1 and rb.healed >= 1, 30, "healed after the outage")
    sent_a, sent_b = await pair.finish(20)
    assert delivery_problem(pair.b.received, sent_a) is None
    assert delivery_problem(pair.a.received, sent_b) is None
    # Backoff (2 s doubling, x0.8-1.2): about 3 restarts a side in 6 s of outage, no storm.
    assert during <= 8, (ra.restarts, rb.restarts)
    assert pair.a.pc.connectionState in ("connected", "connecting")


async def test_policy_off_does_nothing() -> None:
    policy = RecoveryPolicy(on_network_change=False, on_disconnected=False, on_failed=False)
    pc = RTCPeerConnection()
    try:
        recovery = await attach(pc, policy)
        assert recovery.watcher is None
        recovery.request("manual")  # an explicit request still restarts
        assert recovery.restarts == 1
    finally:
        await pc.close()
