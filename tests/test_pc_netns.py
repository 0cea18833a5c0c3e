"""The peer connection under real network faults in a namespace (issue 7 items 6 and 10).

Two of our RTCPeerConnections on two veth interfaces inside a namespace the test makes
(tests/netns_pc.py), a reliable ordered data channel with a numbered message every 10 ms
each way. Faults are made the way they happen: `ip addr del/add` for an address change
(a handover), nftables dropping every UDP packet on input for an outage. Timing figures
are benchmarks/outage_resume.py's business; the bounds here are correctness bounds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from netns_pc import (
    A_MOVED,
    FaultNs,
    PcPair,
    arrival_of,
    delivery_problem,
    first_sent_after,
    require_fault_ns,
)
from pc_helpers import negotiate
from unbroken.ice import IceConfig

pytestmark = [pytest.mark.netns]

log = logging.getLogger(__name__)

UP = ("connected", "completed")

#: aiortc's SCTP retransmission timer (T3) runs at RTO = max(1 s, SRTT + 4 RTTVAR), 1 s
#: here, and does not back off (aiortc 1.16); it restarts about when an outage begins.
#: An outage of k + 0.1 s therefore ends about 0.9 s before T3's next expiry: data sent
#: during the outage and left to the timer arrives about 0.9 s after the path is back
#: (benchmarks/outage_resume.py measured 0.90 s at this phase). Retransmitted at once on
#: the path change, it arrives within milliseconds (measured 10 to 13 ms). The bound sits
#: well between the two, with room for a slow machine on both sides.
OUTAGE = 9.1
PROMPT = 0.5


class NotPrompt(AssertionError):
    """Data sent during the outage arrived, but not within PROMPT of the path's return."""


def assert_prompt(ab: float, ba: float) -> None:
    if max(ab, ba) >= PROMPT:
        raise NotPrompt(
            f"the first message sent during the outage arrived {ab:.3f} s (A -> B) and "
            f"{ba:.3f} s (B -> A) after the path was back, not within {PROMPT} s"
        )


@pytest.fixture
def fault() -> Iterator[FaultNs]:
    require_fault_ns()
    made = FaultNs.create()
    try:
        # The whole test runs in the namespace: the sockets of later generations (fresh
        # ports on restart) are made there too.
        with made.ns.entered():
            yield made
    finally:
        made.delete()


@pytest.fixture
async def pair(fault: FaultNs) -> AsyncIterator[PcPair]:
    made = PcPair(IceConfig(disconnected_timeout=1.0))
    try:
        await made.connect()
        await made.until(
            lambda: len(made.a.received) >= 20 and len(made.b.received) >= 20, 10, "traffic"
        )
        yield made
    finally:
        await made.close()


async def selected_local_address(pair: PcPair) -> str | None:
    """A's selected local candidate's address, from getStats()."""
    report = await pair.a.pc.getStats()
    for stats in report.values():
        if stats.get("type") == "transport" and stats.get("selectedCandidatePairId"):
            selected = report[stats["selectedCandidatePairId"]]
            return str(report[selected["localCandidateId"]]["address"])
    return None


def assert_all_delivered(pair: PcPair, sent_a: int, sent_b: int) -> None:
    problem_ab = delivery_problem(pair.b.received, sent_a)
    problem_ba = delivery_problem(pair.a.received, sent_b)
    assert problem_ab is None, f"A -> B: {problem_ab}\n{pair.report()}"
    assert problem_ba is None, f"B -> A: {problem_ba}\n{pair.report()}"
    assert pair.a.errors == [] and pair.b.errors == [], pair.report()


# ------------------------------------------------------------------ item 6


@pytest.mark.parametrize("when", ["at-once", "on-disconnected"])
async def test_restart_after_address_change_never_shows_failed(
    pair: PcPair, fault: FaultNs, when: str
) -> None:
    """Issue 7 item 6: restartIce() after a real address change goes straight to checking.

    A's address is replaced (`ip addr del` + `add`); A's application restarts ICE, at
    once (as on a network-change event) or when it sees `disconnected`, and negotiates
    in its negotiationneeded handler. A's states never show `failed` (an application
    closing on `failed`, a common pattern, would kill a restart about to succeed), the
    new address carries the call, and nothing is lost.
    """
    a = pair.a.pc
    closed_on_failed: list[str] = []

    def careless() -> None:  # the common pattern: give up on "failed"
        if a.connectionState == "failed" or a.iceConnectionState == "failed":
            closed_on_failed.append(a.iceConnectionState)
            asyncio.ensure_future(a.close())

    def on_state() -> None:
        if when == "on-disconnected" and a.iceConnectionState == "disconnected":
            a.restartIce()

    async def on_negotiation() -> None:
        if "closed" not in (a.connectionState, pair.b.pc.connectionState):
            await negotiate(a, pair.b.pc)

    a.on("connectionstatechange", careless)
    a.on("iceconnectionstatechange", careless)
    a.on("iceconnectionstatechange", on_state)
    a.on("negotiationneeded", on_negotiation)
    marks = {
        prop: len(pair.a.states(prop))
        for prop in ("iceconnectionstatechange", "connectionstatechange")
    }
    fault.move_a()
    moved = asyncio.get_running_loop().time()
    if when == "at-once":
        a.restartIce()
    # Healed: messages sent after the change arrive both ways.
    await pair.until(
        lambda: (
            any(d.sent > moved for d in pair.b.received)
            and any(d.sent > moved for d in pair.a.received)
        ),
        15,
        "data both ways after the address change",
    )
    assert await selected_local_address(pair) == A_MOVED
    sent_a, sent_b = await pair.finish()
    ice = pair.a.states("iceconnectionstatechange")[marks["iceconnectionstatechange"] :]
    connection = pair.a.states("connectionstatechange")[marks["connectionstatechange"] :]
    log.info("%s: A's ice states %s, connection states %s", when, ice, connection)
    assert "failed" not in ice and "failed" not in connection, (ice, connection)
    assert closed_on_failed == []
    assert a.iceConnectionState in UP and a.connectionState == "connected", pair.report()
    if when == "on-disconnected":
        assert "disconnected" in ice  # the handler had something to react to
    assert_all_delivered(pair, sent_a, sent_b)


# ------------------------------------------------------------------ item 10


async def _outage(pair: PcPair, fault: FaultNs, handover: bool) -> tuple[float, float]:
    """An OUTAGE-long outage; with `handover`, it ends on a new address and A restarts.

    Returns how long after the path was back the first message sent during the outage
    arrived, A -> B and B -> A.
    """
    loop = asyncio.get_running_loop()
    fault.outage(True)  # blocks the loop until the rule is in: nothing is sent meanwhile
    began = loop.time()
    await pair.until(
        lambda: (
            pair.a.pc.iceConnectionState == "disconnected"
            and pair.b.pc.iceConnectionState == "disconnected"
        ),
        5,
        "both sides disconnected",
    )
    await asyncio.sleep(OUTAGE - (loop.time() - began))  # the fault's length
    if handover:
        fault.move_a()
    fault.outage(False)
    back = loop.time()
    lost_ab, lost_ba = first_sent_after(pair.a, began), first_sent_after(pair.b, began)
    if handover:
        pair.a.pc.restartIce()
        await negotiate(pair.a.pc, pair.b.pc)
    await pair.until(
        lambda: (
            arrival_of(pair.b.received, lost_ab) is not None
            and arrival_of(pair.a.received, lost_ba) is not None
        ),
        10,
        "the first messages sent during the outage",
    )
    ab = arrival_of(pair.b.received, lost_ab)
    ba = arrival_of(pair.a.received, lost_ba)
    assert ab is not None and ba is not None
    sent_a, sent_b = await pair.finish()
    assert_all_delivered(pair, sent_a, sent_b)
    for side in (pair.a, pair.b):
        states = side.states("iceconnectionstatechange")
        assert "failed" not in states, states
        assert side.pc.iceConnectionState in UP, pair.report()
    return ab - back, ba - back


async def test_data_sent_during_an_outage_arrives_promptly_after_a_handover(
    pair: PcPair, fault: FaultNs
) -> None:
    """Issue 7 item 10: a 9.1 s outage that ends on a new address, A restarts ICE.

    The new generation's pair replaces one that heard nothing for the whole outage, so
    the peer connection has SCTP retransmit at once: what was sent during the outage
    arrives within PROMPT of the path being back, not at SCTP's next T3 expiry.
    """
    ab, ba = await _outage(pair, fault, handover=True)
    log.info("handover after an outage: first lost message A->B %.3f s, B->A %.3f s", ab, ba)
    assert_prompt(ab, ba)


async def test_data_sent_during_an_outage_arrives_promptly_on_the_same_pair(
    pair: PcPair, fault: FaultNs
) -> None:
    """Issue 7 item 10: a 9.1 s outage, then the same path back (no restart, no handler).

    ICE goes disconnected and back to connected on the same pair. What was sent during
    the outage should arrive within PROMPT of the path being back, not wait for SCTP's
    next T3 expiry (about 0.9 s later with this outage length).
    """
    ab, ba = await _outage(pair, fault, handover=False)
    log.info("same pair after an outage: first lost message A->B %.3f s, B->A %.3f s", ab, ba)
    assert_prompt(ab, ba)
