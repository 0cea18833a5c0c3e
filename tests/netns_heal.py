"""Two peers in two network namespaces, signaling through the real server, under real faults.

Theory of operation. `HealNet.create()` makes three namespaces: A and B for the peers
and S for the signaling server. A and B are joined by a veth pair, `a0` (10.99.0.1) in
A and `b0` (10.99.0.2) in B; with `second=True` a second pair, `a1` (10.99.2.1) and
`b1` (10.99.2.2). Each peer namespace also has a veth to S (`sa`/`sb`, on their own
subnets); S does not forward, so signaling reaches the server and nothing else, and the
media path cannot leak through S. Every peer namespace has an nftables table `inet
fault` with an input-hook chain for loss. Two namespaces rather than two interfaces in
one (tests/netns_pc.py): inside one namespace the kernel delivers to its own addresses
over `lo` whatever the state of their interface, so `ip link set a0 down` would cut
nothing (checked here: a datagram still arrives); across namespaces it cuts the path.

A peer connection must make every socket of its life (a restart opens new ones) and
read the interface list in its own namespace, and a thread is in one namespace at a
time, so each peer runs an event loop of its own in a thread that stays in its
namespace (`LoopThread`). The test's loop drives them with `LoopThread.call(coro)` and
waits on `Watch.changed`, which every arrival and state change sets (thread-safely).
Times are `time.monotonic()` in every thread (and, converted, in a browser page).

`OursPeer` is our RTCPeerConnection with a `SignalingClient`, a `PerfectNegotiator` and,
unless told otherwise, `unbroken.recovery.attach()`; `AiortcPeer` is aiortc's, with a
plain offer/answer through the same server (aiortc has no trickle and no restart).
Either side of a call carries a reliable ordered data channel with a numbered message
every `interval` each way (`Stream`). `heal_times()` reads, from the arrival records,
how long after a moment the data flowed again. Used by tests/test_real_faults.py and
benchmarks/healing.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from interop.netns import NetNs, NetNsError, netns_available

log = logging.getLogger(__name__)

T = TypeVar("T")

A_ADDRESS = "10.99.0.1"
A_MOVED = "10.99.0.7"
B_ADDRESS = "10.99.0.2"
A1_ADDRESS = "10.99.2.1"
B1_ADDRESS = "10.99.2.2"
SIG_A = ("10.98.1.1", "10.98.1.254")  # (A's end, S's end)
SIG_B = ("10.98.2.1", "10.98.2.254")
ROOM = "heal"
LABEL = "numbers"
# An arrival this soon after a fault was already on its way before it (one-way latency
# on a veth is well under a millisecond; no restart heals this fast).
IN_FLIGHT = 0.010


def heal_missing() -> str | None:
    """None if namespaces and nftables are usable here, else why not."""
    problem = netns_available()
    if problem is None and shutil.which("nft") is None:
        problem = "nft (nftables) is not installed: run scripts/install-test-deps.sh"
    return problem


# ============================================================================ the network


class HealNet:
    """Namespaces A, B and S, their links, and the faults (see the module docstring)."""

    def __init__(self, a: NetNs, b: NetNs, s: NetNs) -> None:
        self.a, self.b, self.s = a, b, s
        self.a_address = A_ADDRESS
        self.interfaces_a = ["a0"]
        self.interfaces_b = ["b0"]

    @classmethod
    def create(cls, second: bool = False) -> HealNet:
        made: list[NetNs] = []
        try:
            for _ in range(3):
                made.append(NetNs.create(prefix="ubh"))
            self = cls(*made)
            self._veth(self.a, "a0", f"{A_ADDRESS}/24", self.b, "b0", f"{B_ADDRESS}/24")
            if second:
                self._veth(self.a, "a1", f"{A1_ADDRESS}/24", self.b, "b1", f"{B1_ADDRESS}/24")
                self.interfaces_a.append("a1")
                self.interfaces_b.append("b1")
            self._veth(self.a, "sa", f"{SIG_A[0]}/24", self.s, "s1", f"{SIG_A[1]}/24")
            self._veth(self.b, "sb", f"{SIG_B[0]}/24", self.s, "s2", f"{SIG_B[1]}/24")
            self.s.run("sysctl", "-qw", "net.ipv4.ip_forward=0")
            self._wait_up()
            for ns in (self.a, self.b):
                nft(ns, "add", "table", "inet", "fault")
                nft(
                    ns, "add", "chain", "inet", "fault", "in",
                    "{ type filter hook input priority 0 ; }",
                )  # fmt: skip
        except BaseException:
            for ns in made:
                ns.delete()
            raise
        return self

    @staticmethod
    def _veth(x: NetNs, xname: str, xcidr: str, y: NetNs, yname: str, ycidr: str) -> None:
        x.ip("link", "add", xname, "type", "veth", "peer", "name", yname, "netns", y.name)
        x.ip("addr", "add", xcidr, "dev", xname)
        y.ip("addr", "add", ycidr, "dev", yname)
        x.ip("link", "set", xname, "up")
        y.ip("link", "set", yname, "up")

    def _wait_up(self, timeout: float = 10.0) -> None:
        """Wait until every veth reports operstate UP.

        The kernel sets it up to a second after `ip link set up` (linkwatch); a network
        watcher started before then would report that late "link changed: UP" as a
        change of network in the middle of a measurement.
        """
        deadline = time.monotonic() + timeout
        while True:
            down = [
                f"{ns.name}:{name}"
                for ns in (self.a, self.b, self.s)
                for name, state in link_states(ns).items()
                if name != "lo" and state != "UP"
            ]
            if not down:
                return
            if time.monotonic() > deadline:
                raise NetNsError(f"links not up after {timeout} s: {down}")
            time.sleep(0.02)  # polling the kernel's state: there is no blocking wait for it

    def server_url(self, side: str, port: int) -> str:
        """The signaling server's URL as seen from side "a" or "b"."""
        return f"ws://{(SIG_A if side == 'a' else SIG_B)[1]}:{port}/ws"

    # ------------------------------------------------------------------ faults

    def handover(self, new: str = A_MOVED) -> None:
        """A's address on a0 replaced (`ip addr del` + `add`): a network handover."""
        self.drop_address()
        self.add_address(new)

    def drop_address(self) -> None:
        """A's address on a0 removed (the first half of a handover)."""
        self.a.ip("addr", "del", f"{self.a_address}/24", "dev", "a0")

    def add_address(self, new: str = A_MOVED) -> None:
        """`new` added on a0 (the second half of a handover)."""
        self.a.ip("addr", "add", f"{new}/24", "dev", "a0")
        self.a_address = new

    def link(self, up: bool, name: str = "a0") -> None:
        """A's interface `name` administratively down or up."""
        self.a.ip("link", "set", name, "up" if up else "down")

    def remove(self, name: str) -> None:
        """A's interface `name` deleted for good (a veth: its end in B goes with it)."""
        self.a.ip("link", "del", name)

    def loss(self, percent: int | None) -> None:
        """Drop `percent`% of UDP arriving in A and in B (input hook); None: stop."""
        for ns in (self.a, self.b):
            if percent is None:
                nft(ns, "flush", "chain", "inet", "fault", "in")
            else:
                nft(
                    ns, "add", "rule", "inet", "fault", "in", "meta", "l4proto", "udp",
                    "numgen", "random", "mod", "100", "<", str(percent), "counter", "drop",
                )  # fmt: skip

    def dropped(self) -> int:
        """UDP packets the loss rules dropped so far (both namespaces)."""
        total = 0
        for ns in (self.a, self.b):
            out = ns.run("nft", "list", "chain", "inet", "fault", "in").stdout
            total += sum(int(n) for n in re.findall(r"counter packets (\d+)", out))
        return total

    def delete(self) -> None:
        for ns in (self.a, self.b, self.s):
            with contextlib.suppress(NetNsError):
                ns.delete()


def link_states(ns: NetNs) -> dict[str, str]:
    """Interface name -> operstate in `ns`."""
    proc = ns.run("ip", "-j", "link", "show")
    if proc.returncode != 0:
        raise NetNsError(f"ip link show: {proc.stderr.strip()}")
    return {link["ifname"]: link.get("operstate", "") for link in json.loads(proc.stdout)}


def nft(ns: NetNs, *args: str) -> None:
    proc = ns.run("nft", *args)
    if proc.returncode != 0:
        raise NetNsError(f"nft {' '.join(args)}: {proc.stderr.strip()}")


# ============================================================================ threads


class LoopThread:
    """An event loop in a thread that stays in one namespace (see the module docstring)."""

    def __init__(self, ns: NetNs, name: str) -> None:
        self.ns = ns
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"heal-{name}", daemon=True)

    def start(self) -> LoopThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"loop thread {self.name} did not start")
        if self._error is not None:
            raise self._error
        return self

    def _run(self) -> None:
        try:
            with self.ns.entered():
                loop = asyncio.new_event_loop()
                self.loop = loop
                self._ready.set()
                try:
                    loop.run_forever()
                finally:
                    tasks = asyncio.all_tasks(loop)
                    for task in tasks:
                        task.cancel()
                    if tasks:
                        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                    loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run `coro` on this thread's loop; await its result from the caller's loop."""
        assert self.loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def stop(self) -> None:
        if self.loop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)


class Watch:
    """Wakes the test's loop whenever something it waits on may have changed."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()

    def notify(self, *_: Any) -> None:
        """Thread-safe: callable from any peer's loop."""
        with contextlib.suppress(RuntimeError):  # the test's loop is gone: nothing waits
            self.loop.call_soon_threadsafe(self.changed.set)

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until predicate() holds, re-checked at every notification."""

        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None

    async def holds_for(self, predicate: Callable[[], bool], duration: float) -> bool:
        """True if predicate() stays true for `duration` s (re-checked at every change)."""

        async def broken() -> None:
            while predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(broken(), duration)
        except TimeoutError:
            return True
        return False


# ============================================================================ streams


@dataclass(frozen=True)
class Arrival:
    seq: int
    at: float  # time.monotonic()


class Stream:
    """A numbered message every `interval` on one channel; arrivals recorded."""

    def __init__(self, name: str, watch: Watch) -> None:
        self.name = name
        self.watch = watch
        self.channel: Any = None
        self.sent_at: list[float] = []
        self.received: list[Arrival] = []
        self.errors: list[str] = []
        self._sender: asyncio.Task[None] | None = None

    def adopt(self, channel: Any, interval: float) -> None:
        self.channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._start(interval)
        else:
            channel.on("open", lambda: self._start(interval))

    def _on_message(self, data: Any) -> None:
        text = data if isinstance(data, str) else bytes(data).decode()
        self.received.append(Arrival(int(text.split(" ", 1)[0]), time.monotonic()))
        self.watch.notify()

    def _start(self, interval: float) -> None:
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send_loop(interval))
            self.watch.notify()

    async def _send_loop(self, interval: float) -> None:
        """On a fixed schedule (k * interval from the start): the application's pace."""
        start = time.monotonic()
        while True:
            if self.channel.readyState != "open":
                self.errors.append(f"{self.name}: channel {self.channel.readyState}")
                self.watch.notify()
                return
            now = time.monotonic()
            self.channel.send(f"{len(self.sent_at)} {now:.6f}")
            self.sent_at.append(now)
            await asyncio.sleep(max(0.0, start + len(self.sent_at) * interval - time.monotonic()))

    @property
    def sending(self) -> bool:
        return self._sender is not None

    async def stop(self) -> int:
        """Stop sending (runs on the stream's loop); how many messages were sent."""
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        return len(self.sent_at)


def delivery_problem(received: list[int], sent: int) -> str | None:
    """None if 0..sent-1 each arrived exactly once, in order; else what is wrong."""
    if received == list(range(sent)):
        return None
    missing = sorted(set(range(sent)) - set(received))
    return (
        f"{len(received)} received of {sent} sent: missing {missing[:20]}, "
        f"{len(received) - len(set(received))} duplicated, "
        f"{sum(1 for x, y in zip(received, received[1:]) if y < x)} out of order"
    )


@dataclass(frozen=True)
class Heal:
    """After a moment t: first arrival on the new path and the backlog, both ways (s)."""

    first: float  # max over the two directions: data flows both ways again
    backlog: float  # ... and everything sent before that moment has arrived
    first_ab: float
    first_ba: float


def direction_times(
    sent_at: list[float], received: list[Arrival], t: float
) -> tuple[float, float] | None:
    """(first, backlog) after `t` for one direction, or None if it has not healed.

    first: the first arrival later than t + IN_FLIGHT (the path was cut at t, so it came
    by the healed path); backlog: the arrival of the last message sent before that
    first arrival (the channel is ordered: everything before it has arrived too).
    """
    arrivals = list(received)
    first = next((r.at for r in arrivals if r.at > t + IN_FLIGHT), None)
    if first is None:
        return None
    last_before = max((i for i, s in enumerate(sent_at) if s < first), default=None)
    if last_before is None:
        return first - t, first - t
    done = next((r.at for r in arrivals if r.seq == last_before), None)
    if done is None:
        return None
    return first - t, max(done, first) - t


def heal_times(
    a_sent: list[float],
    b_received: list[Arrival],
    b_sent: list[float],
    a_received: list[Arrival],
    t: float,
) -> Heal | None:
    """`Heal` after `t` for A -> B and B -> A, or None while either has not healed."""
    ab = direction_times(a_sent, b_received, t)
    ba = direction_times(b_sent, a_received, t)
    if ab is None or ba is None:
        return None
    return Heal(max(ab[0], ba[0]), max(ab[1], ba[1]), ab[0], ba[0])


def longest_gap(received: list[Arrival], start: float, end: float) -> float:
    """The longest time without an arrival between start and end."""
    times = [start] + [r.at for r in received if start < r.at < end] + [end]
    return max(y - x for x, y in zip(times, times[1:]))


# ============================================================================ peers


class OursPeer:
    """Our RTCPeerConnection with signaling, perfect negotiation and recovery (its loop only).

    `handler`: "recovery" (attach), "failed" (the MDN pattern: restartIce() on
    `failed`), or "none".
    """

    def __init__(self, name: str, watch: Watch) -> None:
        self.name = name
        self.watch = watch
        self.stream = Stream(name, watch)
        self.pc: Any = None
        self.client: Any = None
        self.negotiator: Any = None
        self.recovery: Any = None
        self.events: list[Any] = []
        self.ice_states: list[tuple[float, str]] = []

    async def start(
        self,
        url: str,
        interfaces: list[str],
        handler: str = "recovery",
        *,
        offer_channel: bool,
        interval: float,
    ) -> None:
        from unbroken import RTCConfiguration, RTCPeerConnection
        from unbroken.recovery import attach
        from unbroken.signaling import PerfectNegotiator, SignalingClient

        self.pc = RTCPeerConnection(RTCConfiguration(hostInterfaces=interfaces))
        pc = self.pc

        def on_ice() -> None:
            self.ice_states.append((time.monotonic(), pc.iceConnectionState))
            self.watch.notify()
            if handler == "failed" and pc.iceConnectionState == "failed":
                pc.restartIce()

        pc.on("iceconnectionstatechange", on_ice)
        pc.on("connectionstatechange", self.watch.notify)
        pc.on("signalingstatechange", self.watch.notify)
        self.client = SignalingClient(url, ROOM, peer=self.name)
        self.client.on("connected", self.watch.notify)
        self.client.on("disconnected", self.watch.notify)
        await self.client.connect()
        # Recovery (or the MDN handler) is set up here by hand, so each run says which.
        self.negotiator = PerfectNegotiator(pc, self.client, recovery=False)
        if handler == "recovery":
            self.recovery = await attach(pc)
            self.recovery.on("recovery", self._on_recovery)
        if offer_channel:
            self.stream.adopt(pc.createDataChannel(LABEL), interval)
        else:
            pc.on("datachannel", lambda channel: self.stream.adopt(channel, interval))

    def _on_recovery(self, event: Any) -> None:
        self.events.append((time.monotonic(), event))
        log.info("%s: recovery %s", self.name, event)
        self.watch.notify()

    def selected_local_address(self) -> str | None:
        ice = self.pc.iceTransport
        pair = ice.agent.selected_pair if ice is not None else None
        return None if pair is None else str(pair.base[0])

    async def close(self) -> None:
        await self.stream.stop()
        if self.recovery is not None:
            await self.recovery.stop()
        if self.negotiator is not None:
            await self.negotiator.close()
        if self.client is not None:
            await self.client.close()
        if self.pc is not None:
            await self.pc.close()


class AiortcPeer:
    """aiortc's RTCPeerConnection: one offer/answer through the server, no restart."""

    def __init__(self, name: str, watch: Watch) -> None:
        self.name = name
        self.watch = watch
        self.stream = Stream(name, watch)
        self.pc: Any = None
        self.client: Any = None
        self.ice_states: list[tuple[float, str]] = []
        self.states: list[tuple[float, str]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, url: str, *, offer_channel: bool, interval: float) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        from unbroken.signaling import SignalingClient

        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN server
        pc = self.pc

        def on_ice() -> None:
            self.ice_states.append((time.monotonic(), pc.iceConnectionState))
            self.watch.notify()

        def on_state() -> None:
            self.states.append((time.monotonic(), pc.connectionState))
            self.watch.notify()

        pc.on("iceconnectionstatechange", on_ice)
        pc.on("connectionstatechange", on_state)

        self.client = SignalingClient(url, ROOM, peer=self.name)
        await self.client.connect()
        if offer_channel:
            self.stream.adopt(pc.createDataChannel(LABEL), interval)
            await self.client.wait_for_peer()
            await pc.setLocalDescription(await pc.createOffer())  # gathers everything
            self.client.sendDescription(_init(pc.localDescription))
        else:
            pc.on("datachannel", lambda channel: self.stream.adopt(channel, interval))
        self._task = asyncio.ensure_future(self._answer_loop())

    async def _answer_loop(self) -> None:
        from aiortc import RTCSessionDescription

        while True:
            msg = await self.client.receive()
            if msg.get("type") != "description":
                continue
            desc = msg["description"]
            await self.pc.setRemoteDescription(RTCSessionDescription(desc["sdp"], desc["type"]))
            if desc["type"] == "offer":
                await self.pc.setLocalDescription(await self.pc.createAnswer())
                self.client.sendDescription(_init(self.pc.localDescription))

    async def close(self) -> None:
        await self.stream.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.client is not None:
            await self.client.close()
        if self.pc is not None:
            await self.pc.close()


def _init(description: Any) -> dict[str, str]:
    """aiortc's RTCSessionDescription as the init dict signaling sends."""
    return {"type": description.type, "sdp": description.sdp}


# ============================================================================ the call


class Call:
    """Peer "a" in namespace A and "b" in B, each on its own loop thread.

    kind: "ours" or "aiortc"; handlers: per side, for ours ("recovery", "failed", "none").
    """

    def __init__(self, net: HealNet, kind: str = "ours", interval: float = 0.050) -> None:
        self.net = net
        self.kind = kind
        self.interval = interval
        self.watch = Watch()
        self.ta = LoopThread(net.a, "a").start()
        self.tb = LoopThread(net.b, "b").start()
        peer = OursPeer if kind == "ours" else AiortcPeer
        self.a: Any = peer("a", self.watch)
        self.b: Any = peer("b", self.watch)

    async def connect(
        self, port: int, handlers: tuple[str, str] = ("recovery", "recovery"), timeout: float = 15
    ) -> None:
        url_a, url_b = self.net.server_url("a", port), self.net.server_url("b", port)
        if self.kind == "ours":
            await self.tb.call(
                self.b.start(url_b, self.net.interfaces_b, handlers[1], offer_channel=False,
                             interval=self.interval)
            )  # fmt: skip
            await self.ta.call(
                self.a.start(url_a, self.net.interfaces_a, handlers[0], offer_channel=True,
                             interval=self.interval)
            )  # fmt: skip
        else:
            await self.tb.call(self.b.start(url_b, offer_channel=False, interval=self.interval))
            await self.ta.call(self.a.start(url_a, offer_channel=True, interval=self.interval))
        await self.watch.until(
            lambda: self.a.stream.sending and self.b.stream.sending, timeout, "the channel open"
        )

    async def traffic(self, count: int = 10, timeout: float = 10) -> None:
        """Wait until each side has received `count` more messages."""
        want_a = len(self.a.stream.received) + count
        want_b = len(self.b.stream.received) + count
        await self.watch.until(
            lambda: len(self.a.stream.received) >= want_a and len(self.b.stream.received) >= want_b,
            timeout,
            f"{count} more messages each way\n{self.report()}",
        )

    def heal(self, t: float) -> Heal | None:
        a, b = self.a.stream, self.b.stream
        return heal_times(a.sent_at, b.received, b.sent_at, a.received, t)

    def sent_after(self, t: float) -> tuple[int | None, int | None]:
        """The seq each side sent first at or after t."""
        a, b = self.a.stream, self.b.stream
        first_a = next((i for i, s in enumerate(a.sent_at) if s >= t), None)
        first_b = next((i for i, s in enumerate(b.sent_at) if s >= t), None)
        return first_a, first_b

    def delivered_after(self, t: float) -> bool:
        """Has any message sent at or after t arrived, either way?"""
        first_a, first_b = self.sent_after(t)
        a_got = any(first_b is not None and r.seq >= first_b for r in self.a.stream.received)
        b_got = any(first_a is not None and r.seq >= first_a for r in self.b.stream.received)
        return a_got or b_got

    async def until_healed(self, t: float, timeout: float) -> Heal:
        await self.watch.until(
            lambda: self.heal(t) is not None, timeout, f"data both ways\n{self.report()}"
        )
        heal = self.heal(t)
        assert heal is not None
        return heal

    async def finish(self, timeout: float = 20) -> tuple[str | None, str | None]:
        """Stop both streams, wait for everything sent; the delivery problems (A->B, B->A)."""
        sent_a = await self.ta.call(self.a.stream.stop())
        sent_b = await self.tb.call(self.b.stream.stop())
        with contextlib.suppress(AssertionError):
            await self.watch.until(
                lambda: (
                    len(self.b.stream.received) >= sent_a and len(self.a.stream.received) >= sent_b
                ),
                timeout,
                "every message",
            )
        return (
            delivery_problem([r.seq for r in self.b.stream.received], sent_a),
            delivery_problem([r.seq for r in self.a.stream.received], sent_b),
        )

    def report(self) -> str:
        lines = []
        for side in (self.a, self.b):
            s = side.stream
            lines.append(
                f"{side.name}: sent {len(s.sent_at)}, received {len(s.received)}, "
                f"ice {[state for _, state in side.ice_states]}, errors {s.errors}"
            )
        return "\n".join(lines)

    async def close(self) -> None:
        for thread, side in ((self.ta, self.a), (self.tb, self.b)):
            with contextlib.suppress(Exception):
                await thread.call(side.close(), 15)
        self.ta.stop()
        self.tb.stop()


# ============================================================================ the server


class InProcessServer:
    """The signaling server on the test's loop, its listening socket in namespace S."""

    def __init__(self, net: HealNet) -> None:
        self.net = net
        self.server: Any = None
        self.port = 0

    async def start(self) -> InProcessServer:
        import socket

        from unbroken.signaling import SignalingServer

        with self.net.s.entered():  # the socket (and every accepted one) belongs to S
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", 0))
        self.server = SignalingServer()
        await self.server.start(sock=sock)
        self.port = self.server.port
        return self

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


class ProcessServer:
    """`unbroken signaling --redis` as a child process in S, with a redis-server there.

    Rooms, mailboxes and resume sessions live in Redis, so the server can be killed and
    started again (`restart()`) and its clients resume where they were.
    """

    def __init__(self, net: HealNet) -> None:
        self.net = net
        self.port = 8765
        self.redis_port = 6390
        self.dir = Path(tempfile.mkdtemp(prefix="ubh-redis-"))
        self.redis: subprocess.Popen[str] | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    async def start(self) -> ProcessServer:
        redis = shutil.which("redis-server")
        if redis is None:
            raise NetNsError("redis-server is not installed (scripts/install-test-deps.sh)")
        self.redis = subprocess.Popen(
            [
                *self.net.s.exec_prefix(), redis, "--port", str(self.redis_port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.dir), "--daemonize", "no",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        await self._wait_line(self.redis, "Ready to accept connections")
        await self.start_server()
        return self

    async def start_server(self) -> None:
        self.proc = subprocess.Popen(
            [
                *self.net.s.exec_prefix(), sys.executable, "-m", "unbroken.cli", "signaling",
                "--host", "0.0.0.0", "--port", str(self.port),
                "--redis", f"redis://127.0.0.1:{self.redis_port}/0",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        await self._wait_line(self.proc, "listening on")
        self.starts += 1

    @staticmethod
    async def _wait_line(proc: subprocess.Popen[str], text: str, timeout: float = 30) -> None:
        """Wait for the child's own word that it is ready (read in a worker thread)."""
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> list[str]:
            lines = []
            for line in stdout:
                lines.append(line)
                if text in line:
                    return lines
            raise NetNsError(f"child exited before {text!r}:\n{''.join(lines)}")

        await asyncio.wait_for(asyncio.to_thread(read), timeout)
        # Keep draining its output so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()

    def kill_server(self) -> None:
        """SIGKILL the server: no goodbye to its clients, as in a crash or a redeploy."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    async def close(self) -> None:
        self.kill_server()
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
