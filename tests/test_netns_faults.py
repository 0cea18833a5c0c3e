"""Real network faults in a network namespace: address handover, packet loss, an outage.

Two IceConnections run on real UDP sockets on two veth interfaces inside a namespace
the test creates (traffic never leaves it). Faults are made the way they happen: `ip
addr del/add` for a handover, nftables on the input hook for loss and outages.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest

from interop.netns import NetNs, netns_available
from prereq import require
from unbroken.ice import IceConfig, IceTransportState, SelectedPairChanged
from unbroken.runtime import AddressFilter, IceConnection
from unbroken.runtime.loopback import link

UP = (IceTransportState.CONNECTED, IceTransportState.COMPLETED)


def _require() -> None:
    problem = netns_available()
    if problem is None and shutil.which("nft") is None:
        problem = "nft (nftables) is not installed: run scripts/install-test-deps.sh"
    require(problem)


@pytest.fixture
def ns() -> Iterator[NetNs]:
    _require()
    space = NetNs.create(prefix="ubf")
    try:
        for name, cidr in (("a0", "10.99.0.1/24"), ("b0", "10.99.1.1/24")):
            # A veth pair with both ends inside the namespace (no dummy module here).
            space.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
            space.ip("addr", "add", cidr, "dev", name)
            space.ip("link", "set", name, "up")
            space.ip("link", "set", f"{name}p", "up")
        space.run("nft", "add", "table", "inet", "fault")
        space.run(
            "nft", "add", "chain", "inet", "fault", "in", "{ type filter hook input priority 0 ; }"
        )
        yield space
    finally:
        space.delete()


class Peers:
    """a on interface a0, b on b0, candidates trickled, a datagram a -> b every 10 ms."""

    def __init__(self, ns: NetNs, config: IceConfig) -> None:
        self.ns = ns
        with ns.entered():
            self.a = IceConnection(
                controlling=True, config=config, address_filter=AddressFilter(interfaces=("a0",))
            )
            self.b = IceConnection(
                controlling=False, config=config, address_filter=AddressFilter(interfaces=("b0",))
            )
        self.received: list[int] = []
        self.states_a: list[IceTransportState] = []
        self.a.on("statechange", self.states_a.append)
        self._changed = asyncio.Event()
        for conn in (self.a, self.b):
            conn.on("statechange", lambda _s: self._changed.set())
            conn.on("selectedpairchange", lambda _e: self._changed.set())

    async def start(self) -> None:
        link(self.a, self.b)
        self.a.set_remote_credentials(*self.b.local_credentials)
        self.b.set_remote_credentials(*self.a.local_credentials)
        with self.ns.entered():
            await self.a.gather()
            await self.b.gather()
        await self.until(lambda: self.a.state in UP and self.b.state in UP, 10)
        self.pump = asyncio.ensure_future(self._pump())
        self.sender = asyncio.ensure_future(self._send())

    async def _pump(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                data = await self.b._recv()
                self.received.append(int.from_bytes(data[1:9], "big"))
                self._changed.set()

    async def _send(self) -> None:
        seq = 0
        while True:
            self.a.send(b"\x80" + seq.to_bytes(8, "big"))
            seq += 1
            await asyncio.sleep(0.010)  # the application's send interval, not synchronisation

    async def until(self, predicate: object, timeout: float) -> None:
        async def wait() -> None:
            while not predicate():  # type: ignore[operator]
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def restart(self) -> None:
        target = self.a.agent.generation + 1
        switched: list[SelectedPairChanged] = []
        self.a.on("selectedpairchange", switched.append)
        with self.ns.entered():
            await self.a.refresh_addresses()
            await self.b.refresh_addresses()
        offer = self.a.restart()
        answer = self.b.restart()
        self.b.set_remote_credentials(*offer)
        self.a.set_remote_credentials(*answer)
        await self.until(lambda: any(e.generation == target for e in switched), 10)

    async def close(self) -> None:
        self.sender.cancel()
        await self.a.close()
        await self.b.close()
        await self.pump


@pytest.fixture
async def peers(ns: NetNs) -> AsyncIterator[Peers]:
    p = Peers(ns, IceConfig(disconnected_timeout=1.0))
    await p.start()
    yield p
    await p.close()


async def test_address_handover_then_restart(peers: Peers, ns: NetNs) -> None:
    ns.ip("addr", "del", "10.99.0.1/24", "dev", "a0")
    ns.ip("addr", "add", "10.99.0.7/24", "dev", "a0")
    await peers.restart()
    pair = peers.a.agent.selected_pair
    assert pair is not None and pair.base[0] == "10.99.0.7"
    count = len(peers.received)
    await peers.until(lambda: len(peers.received) >= count + 20, 5)
    late = peers.received[count:]
    assert late == sorted(late)


async def test_thirty_percent_loss_still_connects_and_restarts(ns: NetNs) -> None:
    ns.run(
        "nft",
        "add",
        "rule",
        "inet",
        "fault",
        "in",
        "meta",
        "l4proto",
        "udp",
        "numgen",
        "random",
        "mod",
        "100",
        "<",
        "30",
        "drop",
    )
    p = Peers(ns, IceConfig())
    await p.start()
    await p.restart()
    count = len(p.received)
    await p.until(lambda: len(p.received) >= count + 30, 10)
    await p.close()


async def test_outage_goes_disconnected_and_comes_back(peers: Peers, ns: NetNs) -> None:
    ns.run("nft", "add", "rule", "inet", "fault", "in", "meta", "l4proto", "udp", "drop")
    await peers.until(lambda: peers.a.state is IceTransportState.DISCONNECTED, 5)
    ns.run("nft", "flush", "chain", "inet", "fault", "in")
    await peers.until(lambda: peers.a.state in UP, 5)
    count = len(peers.received)
    await peers.until(lambda: len(peers.received) >= count + 10, 5)
    # The same pair came back: no restart was needed for a short outage.
    assert peers.a.agent.generation == 0
    seq = [s.value for s in peers.states_a]
    assert seq[seq.index("disconnected") :] in (
        ["disconnected", "connected"],
        ["disconnected", "connected", "completed"],
    )
