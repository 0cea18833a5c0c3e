"""Two IceConnections of one process wired to each other, as signaling would wire them.

For tests, benchmarks and tools that exercise the ICE transport without a peer
connection: candidates and end-of-candidates are delivered on a later loop turn (after
the credentials of their generation, as a signaling channel would deliver them).
"""

from __future__ import annotations

import asyncio

from ..ice import Candidate, IceConfig, IceTransportState
from .connection import IceConnection
from .interfaces import AddressFilter

LOOPBACK = AddressFilter(addresses=("127.0.0.1",))
UP = (IceTransportState.CONNECTED, IceTransportState.COMPLETED)


def link(a: IceConnection, b: IceConnection) -> None:
    """Trickle each side's candidates and end-of-candidates to the other, a loop turn later."""
    loop = asyncio.get_running_loop()

    def forward(src: IceConnection, dst: IceConnection) -> None:
        def on_candidate(candidate: Candidate, ufrag: str) -> None:
            loop.call_soon(_deliver, dst, candidate.with_ufrag(ufrag), None)

        def on_end(ufrag: str) -> None:
            loop.call_soon(_deliver, dst, None, ufrag)

        src.on("candidate", on_candidate)
        src.on("gatheringcomplete", on_end)

    forward(a, b)
    forward(b, a)


def _deliver(dst: IceConnection, candidate: Candidate | None, ufrag: str | None) -> None:
    """Hand a trickled candidate over unless the receiving side closed meanwhile."""
    if dst.state is not IceTransportState.CLOSED:
        dst.add_remote_candidate(candidate, ufrag)


def linked_pair(
    config: IceConfig | None = None, address_filter: AddressFilter = LOOPBACK
) -> tuple[IceConnection, IceConnection]:
    """Two linked connections, not yet started: `a` controls."""
    a = IceConnection(controlling=True, config=config, address_filter=address_filter)
    b = IceConnection(controlling=False, config=config, address_filter=address_filter)
    link(a, b)
    return a, b


async def start(a: IceConnection, b: IceConnection) -> None:
    """Exchange credentials and gather on both sides of a linked pair."""
    a.set_remote_credentials(*b.local_credentials)
    b.set_remote_credentials(*a.local_credentials)
    await asyncio.gather(a.gather(), b.gather())


async def connected_pair(
    config: IceConfig | None = None,
    address_filter: AddressFilter = LOOPBACK,
    timeout: float = 10.0,
) -> tuple[IceConnection, IceConnection]:
    """Two linked connections, started and both connected (or `TimeoutError`)."""
    a, b = linked_pair(config, address_filter)
    await start(a, b)
    await asyncio.wait_for(
        asyncio.gather(a.wait_for_state(lambda s: s in UP), b.wait_for_state(lambda s: s in UP)),
        timeout,
    )
    return a, b
