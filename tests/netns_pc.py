"""Two of our RTCPeerConnections on veth interfaces in a namespace, under real faults.

Theory of operation. `FaultNs.create()` makes a network namespace holding two veth
pairs, `a0` (10.99.0.1) and `b0` (10.99.1.1), both ends inside it, and an nftables
table `inet fault` with an input-hook chain: an outage is a rule there dropping every
UDP packet (dropping on input, not output, so `sendto()` still succeeds, as on a real
dead path). An address change is `ip addr del` + `ip addr add` on `a0` (a handover).
Nothing can leave the namespace.

`PcPair` runs peer connection A on `a0` and B on `b0` (`hostInterfaces`), in this
process, with in-process signaling (trickle, perfect timing) and a reliable ordered
data channel carrying a numbered message every `interval` each way. Every message
carries its send time; every arrival is recorded with the loop clock, so a test can
ask when a given message arrived. The caller runs everything inside the namespace
(`with ns.entered():` around the event loop's work), so sockets made later, for the
fresh ports of a restart, are made there too.

Used by tests/test_pc_netns.py (correctness) and benchmarks/outage_resume.py (timing).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCDataChannel

from interop.netns import NetNs, NetNsError, netns_available
from pc_helpers import Recorder, negotiate, trickle
from prereq import require
from unbroken import RTCConfiguration, RTCPeerConnection
from unbroken.ice import IceConfig

A_ADDRESS = "10.99.0.1"
A_MOVED = "10.99.0.7"
B_ADDRESS = "10.99.1.1"
LABEL = "data"


def require_fault_ns() -> None:
    """Skip the test when root/namespaces/nft are missing; under CI=true, fail it."""
    require(fault_ns_missing())


def fault_ns_missing() -> str | None:
    """None if the namespace and nftables are usable here, else why not."""
    problem = netns_available()
    if problem is None and shutil.which("nft") is None:
        problem = "nft (nftables) is not installed: run scripts/install-test-deps.sh"
    return problem


class FaultNs:
    """The namespace, its two interfaces and the fault table."""

    def __init__(self, ns: NetNs) -> None:
        self.ns = ns
        self.a_address = A_ADDRESS

    @classmethod
    def create(cls) -> FaultNs:
        ns = NetNs.create(prefix="ubpf")
        try:
            for name, cidr in (("a0", f"{A_ADDRESS}/24"), ("b0", f"{B_ADDRESS}/24")):
                ns.ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
                ns.ip("addr", "add", cidr, "dev", name)
                ns.ip("link", "set", name, "up")
                ns.ip("link", "set", f"{name}p", "up")
            self = cls(ns)
            self.nft("add", "table", "inet", "fault")
            self.nft(
                "add", "chain", "inet", "fault", "in", "{ type filter hook input priority 0 ; }"
            )
        except BaseException:
            ns.delete()
            raise
        return self

    def nft(self, *args: str) -> None:
        proc = self.ns.run("nft", *args)
        if proc.returncode != 0:
            raise NetNsError(f"nft {' '.join(args)}: {proc.stderr.strip()}")

    def outage(self, down: bool) -> None:
        """Drop every UDP packet on input (down) or stop dropping."""
        if down:
            self.nft("add", "rule", "inet", "fault", "in", "meta", "l4proto", "udp", "drop")
        else:
            self.nft("flush", "chain", "inet", "fault", "in")

    def move_a(self, new: str = A_MOVED) -> None:
        """A handover on A's side: its address is replaced (`ip addr del` + `add`)."""
        self.ns.ip("addr", "del", f"{self.a_address}/24", "dev", "a0")
        self.ns.ip("addr", "add", f"{new}/24", "dev", "a0")
        self.a_address = new

    def delete(self) -> None:
        self.ns.delete()


@dataclass(frozen=True)
class Delivery:
    """One message received: its sequence number, send and arrival times (loop clock)."""

    seq: int
    sent: float
    at: float


class Side:
    """One peer connection with its recorder, its channel and its message stream."""

    def __init__(self, name: str, pc: RTCPeerConnection, changed: asyncio.Event) -> None:
        self.name = name
        self.pc = pc
        self.recorder = Recorder(pc)
        self.channel: RTCDataChannel | None = None
        self.received: list[Delivery] = []
        self.sent_at: list[float] = []
        self.errors: list[str] = []
        self.sender: asyncio.Task[None] | None = None
        self.changed = changed
        for event in ("iceconnectionstatechange", "connectionstatechange", "signalingstatechange"):
            pc.on(event, changed.set)

    def adopt(self, channel: RTCDataChannel) -> None:
        self.channel = channel
        channel.on("message", self._on_message)

    def _on_message(self, data: Any) -> None:
        text = data if isinstance(data, str) else bytes(data).decode()
        seq, sent = text.split(" ", 1)
        self.received.append(Delivery(int(seq), float(sent), asyncio.get_running_loop().time()))
        self.changed.set()

    async def _send_loop(self, interval: float) -> None:
        """A message every interval on a fixed schedule (k * interval from the start)."""
        assert self.channel is not None
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            if self.channel.readyState != "open":
                self.errors.append(f"{self.name}: channel {self.channel.readyState}")
                return
            now = loop.time()
            self.channel.send(f"{len(self.sent_at)} {now:.6f}")
            self.sent_at.append(now)
            # The application's send schedule, not synchronisation.
            await asyncio.sleep(max(0.0, start + len(self.sent_at) * interval - loop.time()))

    def start(self, interval: float) -> None:
        self.sender = asyncio.ensure_future(self._send_loop(interval))

    async def stop(self) -> int:
        """Stop sending; how many messages were sent."""
        if self.sender is not None:
            self.sender.cancel()
            try:
                await self.sender
            except asyncio.CancelledError:
                pass
        return len(self.sent_at)

    def states(self, prop: str) -> list[str]:
        return [str(v) for v in self.recorder.states(prop)]


class PcPair:
    """A on a0, B on b0, connected, with a data channel and a stream each way."""

    def __init__(self, config: IceConfig | None = None, interval: float = 0.010) -> None:
        self.interval = interval
        config = config or IceConfig()
        self.changed = asyncio.Event()
        self.a = Side("A", self._pc("a0", config), self.changed)
        self.b = Side("B", self._pc("b0", config), self.changed)

    @staticmethod
    def _pc(interface: str, config: IceConfig) -> RTCPeerConnection:
        return RTCPeerConnection(RTCConfiguration(hostInterfaces=[interface], iceConfig=config))

    async def connect(self, timeout: float = 10.0) -> None:
        """Negotiate (A offers), open the channel, start both streams."""
        trickle(self.a.pc, self.b.pc)
        opened = asyncio.Event()
        arrived = asyncio.Event()
        channel = self.a.pc.createDataChannel(LABEL)
        channel.on("open", opened.set)
        self.a.adopt(channel)

        def on_channel(remote: RTCDataChannel) -> None:
            self.b.adopt(remote)
            arrived.set()

        self.b.pc.on("datachannel", on_channel)
        await negotiate(self.a.pc, self.b.pc)
        await asyncio.wait_for(asyncio.gather(opened.wait(), arrived.wait()), timeout)
        self.a.start(self.interval)
        self.b.start(self.interval)

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until predicate() holds, re-checked at every message and state event."""

        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}\n{self.report()}"
            ) from None

    async def finish(self, timeout: float = 10.0) -> tuple[int, int]:
        """Stop both streams and wait for every message to arrive; (A sent, B sent)."""
        sent_a, sent_b = await self.a.stop(), await self.b.stop()
        await self.until(
            lambda: len(self.b.received) >= sent_a and len(self.a.received) >= sent_b,
            timeout,
            f"all messages ({sent_a} A -> B, {sent_b} B -> A)",
        )
        return sent_a, sent_b

    def report(self) -> str:
        lines = []
        for side in (self.a, self.b):
            lines.append(
                f"{side.name}: sent {len(side.sent_at)}, received {len(side.received)}, "
                f"ice {side.states('iceconnectionstatechange')}, "
                f"connection {side.states('connectionstatechange')}, errors {side.errors}"
            )
        return "\n".join(lines)

    async def close(self) -> None:
        for side in (self.a, self.b):
            await side.stop()
            await side.pc.close()


def delivery_problem(received: list[Delivery], sent: int) -> str | None:
    """None if messages 0..sent-1 each arrived exactly once, in order; else what is wrong."""
    seqs = [d.seq for d in received]
    if seqs == list(range(sent)):
        return None
    missing = sorted(set(range(sent)) - set(seqs))
    return (
        f"{len(seqs)} received of {sent} sent: missing {missing[:20]}, "
        f"{len(seqs) - len(set(seqs))} duplicated, "
        f"{sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)} out of order"
    )


def first_sent_after(side: Side, moment: float) -> int:
    """The sequence number of the first message `side` sent at or after `moment`."""
    return next(i for i, t in enumerate(side.sent_at) if t >= moment)


def arrival_of(received: list[Delivery], seq: int) -> float | None:
    """When message `seq` arrived (loop clock), or None if it has not."""
    return next((d.at for d in received if d.seq == seq), None)
