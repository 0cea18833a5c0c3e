"""The demo: two ICE connections on loopback keep a datagram stream alive through restarts.

It prints a timeline a person can read: states, selected pairs, when each restart began
and ended, and the longest gap in delivery around it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .ice import IceConfig, IceTransportState, SelectedPairChanged
from .ice.candidate import Candidate
from .runtime import AddressFilter, IceConnection

logger = logging.getLogger(__name__)


@dataclass
class Timeline:
    """Timestamped lines, relative to the start."""

    start: float
    lines: list[tuple[float, str, str]] = field(default_factory=list)

    def add(self, now: float, who: str, what: str) -> None:
        """Record one line."""
        self.lines.append((now - self.start, who, what))

    def render(self) -> str:
        """The timeline as aligned text."""
        return "\n".join(f"{t * 1000:9.1f} ms  {who:<6} {what}" for t, who, what in self.lines)


def _wire(
    conn: IceConnection,
    peer: IceConnection,
    name: str,
    timeline: Timeline,
    loop: asyncio.AbstractEventLoop,
) -> None:
    """Trickle `conn`'s candidates to `peer` and log its events."""

    # Signaling is asynchronous: candidates reach the peer on a later loop turn, after
    # the offer/answer that carries their generation's credentials.
    def on_candidate(candidate: Candidate, ufrag: str) -> None:
        loop.call_soon(peer.add_remote_candidate, candidate.with_ufrag(ufrag))

    def on_eoc(ufrag: str) -> None:
        loop.call_soon(peer.add_remote_candidate, None, ufrag)

    def on_state(state: IceTransportState) -> None:
        timeline.add(loop.time(), name, f"state {state.value}")

    def on_selected(event: SelectedPairChanged) -> None:
        if event.local is None or event.remote is None:
            timeline.add(loop.time(), name, "no selected pair")
            return
        timeline.add(
            loop.time(),
            name,
            f"selected pair (generation {event.generation}) "
            f"{event.local.host}:{event.local.port} -> {event.remote.host}:{event.remote.port}",
        )

    conn.on("candidate", on_candidate)
    conn.on("gatheringcomplete", on_eoc)
    conn.on("statechange", on_state)
    conn.on("selectedpairchange", on_selected)


async def _pump(
    conn: IceConnection, arrivals: list[float], loop: asyncio.AbstractEventLoop
) -> None:
    """Record the arrival time of every application datagram."""
    while True:
        try:
            await conn._recv()
        except ConnectionError:
            return
        arrivals.append(loop.time())


async def run_demo(restarts: int = 3, interval: float = 0.010, settle: float = 0.5) -> str:
    """Connect two agents on 127.0.0.1, send every `interval`, restart `restarts` times."""
    loop = asyncio.get_running_loop()
    flt = AddressFilter(addresses=("127.0.0.1",))
    config = IceConfig()
    alice = IceConnection(controlling=True, config=config, address_filter=flt)
    bob = IceConnection(controlling=False, config=config, address_filter=flt)
    timeline = Timeline(loop.time())
    _wire(alice, bob, "alice", timeline, loop)
    _wire(bob, alice, "bob", timeline, loop)
    arrivals: list[float] = []
    pump = asyncio.create_task(_pump(bob, arrivals, loop))
    sent = 0

    async def sender() -> None:
        nonlocal sent
        while True:
            alice.send(b"\x80" + sent.to_bytes(8, "big") + bytes(40))
            sent += 1
            await asyncio.sleep(interval)

    bob.set_remote_credentials(*alice.local_credentials)
    alice.set_remote_credentials(*bob.local_credentials)
    timeline.add(loop.time(), "both", "credentials exchanged, gathering")
    await asyncio.gather(alice.gather(), bob.gather())
    await asyncio.gather(
        alice.wait_for_state(
            lambda s: s in (IceTransportState.CONNECTED, IceTransportState.COMPLETED)
        ),
        bob.wait_for_state(
            lambda s: s in (IceTransportState.CONNECTED, IceTransportState.COMPLETED)
        ),
    )
    timeline.add(
        loop.time(),
        "both",
        f"connected; alice sends a datagram every {round(interval * 1000)} ms",
    )
    send_task = asyncio.create_task(sender())
    summary: list[str] = []
    try:
        for n in range(1, restarts + 1):
            await asyncio.sleep(settle)
            begin = loop.time()
            timeline.add(begin, "alice", f"restart {n} begins (new credentials, make before break)")
            switched = asyncio.Event()

            def on_switch(
                event: SelectedPairChanged,
                target: int = alice.agent.generation + 1,
                switched: asyncio.Event = switched,
            ) -> None:
                if event.generation == target:
                    switched.set()

            alice.on("selectedpairchange", on_switch)
            offer = alice.restart()
            answer = bob.restart()
            bob.set_remote_credentials(*offer)
            alice.set_remote_credentials(*answer)
            await asyncio.wait_for(switched.wait(), 10)
            alice.remove_listener("selectedpairchange", on_switch)
            took = loop.time() - begin
            window = [t for t in arrivals if begin - 0.1 <= t <= begin + took + 0.1]
            gap = max((b - a for a, b in zip(window, window[1:])), default=0.0)
            timeline.add(loop.time(), "alice", f"restart {n} done in {took * 1000:.1f} ms")
            summary.append(
                f"restart {n}: {took * 1000:.1f} ms, longest delivery gap around it {gap * 1000:.1f} ms"
            )
        await asyncio.sleep(settle)
    finally:
        send_task.cancel()
        await alice.close()
        await bob.close()
        await pump
    lost = sent - len(arrivals)
    report = [
        "unbroken demo: two ICE agents on 127.0.0.1, datagrams every "
        f"{interval * 1000:.0f} ms, {restarts} ICE restarts",
        "",
        timeline.render(),
        "",
        *summary,
        f"datagrams sent {sent}, delivered {len(arrivals)}, lost {lost}",
    ]
    return "\n".join(report)
