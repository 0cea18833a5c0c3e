"""The demo, headless: two peer connections heal real network faults by themselves.

Theory of operation
-------------------
`run_headless()` starts a signaling server on loopback and two of our RTCPeerConnections,
alice and bob, each with a `SignalingClient`, a `PerfectNegotiator` and recovery attached
(`unbroken.recovery.attach`): no restart code of its own. A reliable, ordered data
channel carries a numbered message every 20 ms each way. Then it breaks the network:

- as root (fault "netns"), in a network namespace of its own (demo_faults.py) where alice
  sits on veth `a0` and bob on `b0`: first a handover (alice's address replaced: the
  network watcher sees it through netlink and restarts at once), then a 3 s outage (every
  UDP packet dropped by nftables: the path goes silent and recovery restarts, with
  backoff, until the network is back);
- otherwise (fault "process"), on 127.0.0.1: alice's selected local port is made deaf
  inside the process (a BPF filter, demo_faults.drop_path): nothing tells the process,
  the path is silent for 1.5 s (before `disconnected` at 2.5 s), and recovery restarts
  on fresh ports.

It reports a timeline (states, selected pairs, recovery events) as it happens, and for
each fault the healing time: from the fault (or, for an outage, from the network's
return) until a message sent after it has arrived both ways. It succeeds (exit code 0)
only if every fault healed and every message arrived exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .demo_faults import DemoNetns, FaultError, drop_path, netns_missing, selected_local_address
from .peerconnection import RTCConfiguration, RTCPeerConnection
from .recovery import Recovery, RecoveryEvent, attach
from .signaling import PerfectNegotiator, SignalingClient, SignalingServer

logger = logging.getLogger(__name__)

INTERVAL = 0.020  # one message each way every 20 ms
OUTAGE = 3.0  # seconds the network stays dead
HEAL_TIMEOUT = 15.0  # a fault not healed by then fails the demo
A_ADDRESS, A_MOVED, B_ADDRESS = "10.99.0.1", "10.99.0.7", "10.99.1.1"

Out = Callable[[str], None]


@dataclass
class Timeline:
    """Timestamped lines relative to the start, written out as they happen."""

    start: float
    out: Out
    lines: list[tuple[float, str, str]] = field(default_factory=list)
    closed: bool = False  # the demo is shutting down: its own `closed` states are no news

    def add(self, who: str, what: str) -> None:
        """Record one line and write it."""
        if self.closed:
            return
        t = asyncio.get_running_loop().time() - self.start
        self.lines.append((t, who, what))
        self.out(f"{t * 1000:9.1f} ms  {who:<6} {what}")


@dataclass(frozen=True)
class Delivery:
    """One message received: its sequence number, send time and arrival time (loop clock)."""

    seq: int
    sent: float
    at: float


class Peer:
    """One side: peer connection, signaling, negotiator, recovery, and its message stream."""

    def __init__(self, name: str, pc: RTCPeerConnection, changed: asyncio.Event) -> None:
        self.name = name
        self.pc = pc
        self.changed = changed
        self.channel: Any = None
        self.sent_at: list[float] = []
        self.received: list[Delivery] = []
        self.client: SignalingClient | None = None
        self.negotiator: PerfectNegotiator | None = None
        self.recovery: Recovery | None = None
        self.events: list[RecoveryEvent] = []
        self._sender: asyncio.Task[None] | None = None

    def adopt(self, channel: Any) -> None:
        """Use `channel` for this side's stream."""
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("open", self.changed.set)

    def _on_message(self, data: Any) -> None:
        text = data if isinstance(data, str) else bytes(data).decode()
        seq, sent = text.split(" ", 1)
        self.received.append(Delivery(int(seq), float(sent), asyncio.get_running_loop().time()))
        self.changed.set()

    async def _send_loop(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.channel.readyState == "open":
            now = loop.time()
            self.channel.send(f"{len(self.sent_at)} {now:.6f}")
            self.sent_at.append(now)
            # The application's send schedule (k * INTERVAL), not synchronisation.
            await asyncio.sleep(max(0.0, start + len(self.sent_at) * INTERVAL - loop.time()))

    def start_sending(self) -> None:
        self._sender = asyncio.ensure_future(self._send_loop())

    async def stop_sending(self) -> int:
        """Stop the stream; how many messages were sent."""
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        return len(self.sent_at)

    def first_arrival_sent_after(self, moment: float) -> float | None:
        """When the first message the other side sent at or after `moment` arrived here."""
        return next((d.at for d in self.received if d.sent >= moment), None)

    async def close(self) -> None:
        await self.stop_sending()
        if self.recovery is not None:
            await self.recovery.stop()
        if self.negotiator is not None:
            await self.negotiator.close()
        if self.client is not None:
            await self.client.close()
        await self.pc.close()


def delivery_problem(received: list[Delivery], sent: int) -> str | None:
    """None if messages 0..sent-1 each arrived exactly once, in order; else what is wrong."""
    seqs = [d.seq for d in received]
    if seqs == list(range(sent)):
        return None
    missing = sorted(set(range(sent)) - set(seqs))
    return (
        f"{len(seqs)} received of {sent} sent: {len(missing)} missing, "
        f"{len(seqs) - len(set(seqs))} duplicated, "
        f"{sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)} out of order"
    )


class HeadlessDemo:
    """Two peers, a signaling server, the faults; see the module docstring."""

    def __init__(self, fault: str, out: Out, ns: DemoNetns | None) -> None:
        self.fault = fault
        self.out = out
        self.ns = ns
        self.changed = asyncio.Event()
        self.timeline = Timeline(asyncio.get_running_loop().time(), out)
        self.server = SignalingServer()
        self.peers: list[Peer] = []
        self.results: list[str] = []
        self.ok = True

    # ------------------------------------------------------------ setup

    def _config(self, name: str) -> RTCConfiguration:
        if self.fault == "netns":
            return RTCConfiguration(hostInterfaces=["a0" if name == "alice" else "b0"])
        return RTCConfiguration(hostAddresses=["127.0.0.1"], includeLoopback=True)

    async def _peer(self, name: str) -> Peer:
        peer = Peer(name, RTCPeerConnection(self._config(name)), self.changed)
        self.peers.append(peer)
        peer.client = SignalingClient(self.server.url, "headless", peer=name)
        await peer.client.connect()
        peer.negotiator = PerfectNegotiator(peer.pc, peer.client, recovery=False)
        peer.recovery = await attach(peer.pc)
        pc = peer.pc

        def on_ice() -> None:
            self.timeline.add(name, f"ice {pc.iceConnectionState}")
            self.changed.set()

        def on_connection() -> None:
            self.timeline.add(name, f"connection {pc.connectionState}")
            self.changed.set()

        def on_recovery(event: RecoveryEvent) -> None:
            peer.events.append(event)
            if event.action == "restart":
                what = f"recovery: restart ICE (attempt {event.attempt}, {event.trigger})"
            else:
                what = f"recovery: healed after {event.healed_after or 0.0:.3f} s ({event.trigger})"
            self.timeline.add(name, what)
            self.changed.set()

        pc.on("iceconnectionstatechange", on_ice)
        pc.on("connectionstatechange", on_connection)
        pc.on("signalingstatechange", self.changed.set)
        peer.recovery.on("recovery", on_recovery)
        return peer

    def _watch_pairs(self, peer: Peer) -> None:
        ice = peer.pc.iceTransport
        if ice is None:
            return

        def on_pair(event: Any) -> None:
            if event.local is None or event.remote is None:
                return
            self.timeline.add(
                peer.name,
                f"selected pair {event.local.host}:{event.local.port} -> "
                f"{event.remote.host}:{event.remote.port} (generation {event.generation})",
            )

        ice.on("selectedpairchange", on_pair)

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> bool:
        """Wait until predicate() holds (re-checked on every message and state change)."""

        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
            return True
        except TimeoutError:
            self.timeline.add("demo", f"FAILED: no {what} within {timeout:.0f} s")
            self.ok = False
            return False

    async def connect(self) -> bool:
        await self.server.start("127.0.0.1", 0)
        alice = await self._peer("alice")
        bob = await self._peer("bob")
        self.timeline.add("both", "signaling joined; alice opens a data channel")
        bob.pc.on("datachannel", bob.adopt)
        alice.adopt(alice.pc.createDataChannel("demo"))
        if not await self.until(
            lambda: all(
                p.channel is not None and p.channel.readyState == "open" for p in self.peers
            ),
            HEAL_TIMEOUT,
            "open data channel",
        ):
            return False
        for peer in self.peers:
            self._watch_pairs(peer)
            peer.start_sending()
        self.timeline.add(
            "both", f"channel open; a numbered message every {INTERVAL * 1000:.0f} ms each way"
        )
        return await self.until(
            lambda: all(len(p.received) >= 25 for p in self.peers), HEAL_TIMEOUT, "traffic"
        )

    # ------------------------------------------------------------ faults

    async def heal(self, label: str, since: float, note: str) -> bool:
        """Wait for data both ways sent after `since` and for recovery's healed event."""
        alice, bob = self.peers
        healed_before = [len([e for e in p.events if e.action == "healed"]) for p in self.peers]
        if not await self.until(
            lambda: (
                alice.first_arrival_sent_after(since) is not None
                and bob.first_arrival_sent_after(since) is not None
            ),
            HEAL_TIMEOUT,
            f"data both ways after the {label}",
        ):
            return False
        took = (
            max(
                alice.first_arrival_sent_after(since) or 0.0,
                bob.first_arrival_sent_after(since) or 0.0,
            )
            - since
        )
        self.timeline.add(
            "demo", f"{label}: data flows both ways again, {took * 1000:.0f} ms {note}"
        )
        await self.until(
            lambda: any(
                len([e for e in p.events if e.action == "healed"]) > n
                for p, n in zip(self.peers, healed_before)
            ),
            HEAL_TIMEOUT,
            "recovery healed event",
        )
        self.results.append(f"{label}: healed in {took * 1000:.0f} ms {note}")
        return True

    async def settle(self, count: int = 25) -> None:
        """Let `count` more messages through each way before the next step."""
        want = [len(p.received) + count for p in self.peers]
        await self.until(
            lambda: all(len(p.received) >= n for p, n in zip(self.peers, want)),
            HEAL_TIMEOUT,
            "traffic",
        )

    async def run_netns_faults(self) -> None:
        assert self.ns is not None
        loop = asyncio.get_running_loop()
        self.timeline.add(
            "demo", f"FAULT 1, handover: alice's address {A_ADDRESS} replaced by {A_MOVED}"
        )
        at = loop.time()
        self.ns.move_address("a0", A_ADDRESS, A_MOVED, 24)
        if not await self.heal("handover", at, "after the address changed"):
            return
        await self.settle()
        self.timeline.add(
            "demo", f"FAULT 2, outage: every UDP packet dropped for {OUTAGE:.0f} s (nftables)"
        )
        self.ns.outage(True)
        await asyncio.sleep(OUTAGE)  # the fault's length: the network stays dead this long
        self.ns.outage(False)
        back = loop.time()
        self.timeline.add("demo", "network back")
        await self.heal("outage", back, f"after the network came back ({OUTAGE:.0f} s outage)")

    async def run_process_fault(self) -> None:
        loop = asyncio.get_running_loop()
        alice = self.peers[0]
        local = await selected_local_address(alice.pc)
        if local is None:
            self.timeline.add("demo", "FAILED: alice has no selected pair")
            self.ok = False
            return
        self.timeline.add(
            "demo",
            f"FAULT: alice's path dropped inside the process (port {local[0]}:{local[1]} "
            "receives nothing any more, as when a NAT forgets its mapping)",
        )
        at = loop.time()
        drop_path(local)
        try:
            await self.heal(
                "dropped path", at, "after the path died (2.5 s of it: noticing `disconnected`)"
            )
        finally:
            drop_path(local, drop=False)

    async def finish(self) -> None:
        sent = [await p.stop_sending() for p in self.peers]
        alice, bob = self.peers
        await self.until(
            lambda: len(bob.received) >= sent[0] and len(alice.received) >= sent[1],
            HEAL_TIMEOUT,
            "delivery of every message",
        )
        for receiver, count, direction in (
            (bob, sent[0], "alice -> bob"),
            (alice, sent[1], "bob -> alice"),
        ):
            problem = delivery_problem(receiver.received, count)
            if problem is None:
                self.results.append(
                    f"{direction}: {count} messages sent, all delivered once, in order"
                )
            else:
                self.results.append(f"{direction}: LOST OR DISORDERED: {problem}")
                self.ok = False

    async def close(self) -> None:
        self.timeline.closed = True
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await peer.close()
        await self.server.close()


async def _headless(fault: str, out: Out, ns: DemoNetns | None) -> int:
    demo = HeadlessDemo(fault, out, ns)
    try:
        if await demo.connect():
            if fault == "netns":
                await demo.run_netns_faults()
            else:
                await demo.run_process_fault()
            await demo.finish()
    finally:
        await demo.close()
    out("")
    for line in demo.results:
        out(line)
    out("healed: yes, nothing lost" if demo.ok else "FAILED: see above")
    return 0 if demo.ok else 1


def run_headless(fault: str = "auto", out: Out = logger.info) -> int:
    """Run the headless demo (blocking); returns the exit code: 0 healed, nothing lost.

    `fault`: "netns" (root: a namespace of the demo's own), "process" (a path dropped
    inside the process), or "auto" (netns when possible).
    """
    if fault == "auto":
        fault = "process" if netns_missing() is not None else "netns"
    if fault == "process":
        out(
            "unbroken demo --headless: two peer connections on 127.0.0.1 with recovery on; "
            "the fault is made inside the process (run as root for a network namespace)"
        )
        return asyncio.run(_headless("process", out, None))
    try:
        ns = DemoNetns.create()
    except FaultError as exc:
        out(f"cannot make a network namespace ({exc})")
        return 2
    try:
        for device, address in (("a0", A_ADDRESS), ("b0", B_ADDRESS)):
            ns.ip("link", "add", device, "type", "veth", "peer", "name", f"{device}p")
            ns.ip("addr", "add", f"{address}/24", "dev", device)
            ns.ip("link", "set", device, "up")
            ns.ip("link", "set", f"{device}p", "up")
        out(
            f"unbroken demo --headless: two peer connections with recovery on, in network "
            f"namespace {ns.name}: alice on a0 ({A_ADDRESS}), bob on b0 ({B_ADDRESS})"
        )
        with ns.entered():  # every socket of the run (and of later restarts) lives there
            return asyncio.run(_headless("netns", out, ns))
    finally:
        ns.delete()
