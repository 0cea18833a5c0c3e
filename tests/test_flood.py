"""A stranger's flood at the rate one process can send neither fails a session nor loses a message.

Two of our RTCPeerConnections on 127.0.0.1 with a reliable ordered data channel carrying a
numbered message every 10 ms each way; a third socket, in another process
(tests/flood_sender.py), sends a mix of junk and bad-integrity Binding requests to both
ICE ports as fast as it can for FLOOD_SECONDS (30 s; set UNBROKEN_FLOOD_SECONDS to change
it). The session must stay connected throughout (no `disconnected` or `failed` seen on
either side, ICE or peer connection), and every message must arrive exactly once, in
order. The messages' latency during the flood is logged, never asserted (timing targets
live in benchmarks/stun_hostile.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import socket
import statistics
import sys
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCDataChannel

from flood_sender import packets
from pc_helpers import Recorder, make_pc, negotiate, trickle
from unbroken.ice import IceTransportState
from unbroken.runtime.loopback import connected_pair
from unbroken.runtime.pinned import PINNING_SUPPORTED, bind_base

FLOOD_SECONDS = float(os.environ.get("UNBROKEN_FLOOD_SECONDS", "30"))
INTERVAL = 0.010
SENDER = Path(__file__).resolve().parent / "flood_sender.py"
logger = logging.getLogger(__name__)


class Stream:
    """Numbered messages every INTERVAL on one channel; arrivals recorded by the other end."""

    def __init__(self, name: str, send: RTCDataChannel, receive_on: list[tuple[int, float]]):
        self.name = name
        self.channel = send
        self.sent_at: list[float] = []
        self.arrivals = receive_on
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            self.sent_at.append(loop.time())
            self.channel.send(f"{self.name}{len(self.sent_at) - 1}")
            next_at += INTERVAL
            await asyncio.sleep(max(0.0, next_at - loop.time()))


def receiver(name: str, into: list[tuple[int, float]], got: asyncio.Event) -> Any:
    loop = asyncio.get_running_loop()

    def on_message(message: str) -> None:
        assert message.startswith(name)
        into.append((int(message[len(name) :]), loop.time()))
        got.set()

    return on_message


# ------------------------------------------------------------------ the receive path


def fill(base: tuple[str, int], ufrag: str, count: int = 5000) -> None:
    """Send `count` hostile datagrams to `base` from a stranger's socket, synchronously.

    The loop cannot run meanwhile, so the base socket's receive buffer ends up full (it
    holds a few hundred datagrams) and the kernel drops the rest, as under a flood
    faster than the loop.
    """
    pool = packets(random.Random(7), ufrag)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for i in range(count):
            stranger.sendto(pool[i % len(pool)], base)


@pytest.mark.skipif(not PINNING_SUPPORTED, reason="the pinned receive path is Linux-only")
async def test_the_selected_pair_gets_through_a_full_receive_buffer() -> None:
    a, b = await connected_pair()
    try:
        (base_b,) = b.agent.bases
        fill(base_b, b.local_credentials[0])
        # The peer's datagrams arrive after the junk, while the base socket is full.
        for seq in range(20):
            assert a.send(b"\x80" + seq.to_bytes(4, "big"))
        got = [await asyncio.wait_for(b._recv(), 5) for _ in range(20)]
        assert [int.from_bytes(g[1:], "big") for g in got] == list(range(20))
        # The junk was read too (part of it: the kernel dropped what did not fit).
        assert b.agent.counters["stun_bad_fingerprint"] + b.agent.counters["stun_malformed"] > 0
        assert b.state in (IceTransportState.CONNECTED, IceTransportState.COMPLETED)
    finally:
        await a.close()
        await b.close()


def test_bases_get_ports_of_their_own() -> None:
    """A bind to port 0 with SO_REUSEPORT set may get a port another such socket holds
    (Linux), and two connections would then split each other's datagrams: bind_base sets
    the flag only after bind()."""
    sockets = [bind_base("127.0.0.1") for _ in range(1000)]
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == len(sockets)
    finally:
        for s in sockets:
            s.close()


async def test_close_releases_the_port() -> None:
    a, b = await connected_pair()
    (base_b,) = b.agent.bases
    await a.close()
    await b.close()
    # Neither the base nor a pinned socket holds the port any more once the loop has run
    # the transports' close callbacks (asyncio closes a transport's socket a turn later).
    for _ in range(10):
        await asyncio.sleep(0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(base_b)


# ------------------------------------------------------------------ the flood


async def read_line(proc: asyncio.subprocess.Process, timeout: float) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    return line.decode().strip()


async def test_stranger_flood_neither_fails_the_session_nor_loses_a_message() -> None:
    a, b = make_pc(), make_pc()
    ra, rb = Recorder(a), Recorder(b)
    trickle(a, b)
    channel_a = a.createDataChannel("flood", ordered=True)
    opened = asyncio.Event()
    channel_a.on("open", opened.set)
    got = asyncio.Event()
    at_a: list[tuple[int, float]] = []
    at_b: list[tuple[int, float]] = []
    channel_a.on("message", receiver("b", at_a, got))
    arrived: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()

    def on_channel(channel: RTCDataChannel) -> None:
        channel.on("message", receiver("a", at_b, got))
        arrived.set_result(channel)

    b.on("datachannel", on_channel)
    proc: asyncio.subprocess.Process | None = None
    try:
        await negotiate(a, b)
        await asyncio.wait_for(opened.wait(), 10)
        channel_b = await asyncio.wait_for(arrived, 10)
        assert a.connectionState == "connected" and b.connectionState == "connected"
        targets = []
        for pc in (a, b):
            ice = pc.iceTransport
            assert ice is not None
            (base,) = ice.agent.bases
            targets += ["--target", f"{base[0]}:{base[1]}:{ice.local_credentials[0]}"]
        seen_before = (len(ra.events), len(rb.events))

        streams = [Stream("a", channel_a, at_b), Stream("b", channel_b, at_a)]
        for stream in streams:
            stream.start()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(SENDER), *targets, "--duration", str(FLOOD_SECONDS),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert await read_line(proc, 30) == "ready"
        flood_started = asyncio.get_running_loop().time()
        result = json.loads(await read_line(proc, FLOOD_SECONDS + 30))
        flood_ended = asyncio.get_running_loop().time()
        await asyncio.wait_for(proc.wait(), 10)
        for stream in streams:
            await stream.stop()

        # Everything sent arrives (reliable channel), exactly once and in order.
        async def drained() -> None:
            while len(at_b) < len(streams[0].sent_at) or len(at_a) < len(streams[1].sent_at):
                got.clear()
                await got.wait()

        try:
            await asyncio.wait_for(drained(), 30)
        except TimeoutError:
            pass  # reported and failed below, with the states and counters
        counters = {
            side: dict(pc.iceTransport.agent.counters)
            for side, pc in (("a", a), ("b", b))
            if pc.iceTransport is not None
        }
        print(
            f"flood: {result['rate']:.0f} datagrams/s for {result['seconds']:.1f} s "
            f"({result['sent']} sent) from another process"
        )
        for stream in streams:
            during = sorted(
                arrived_at - stream.sent_at[seq]
                for seq, arrived_at in stream.arrivals
                if flood_started <= stream.sent_at[seq] <= flood_ended
            )
            if during:
                print(
                    f"messages {stream.name}: {len(stream.sent_at)} sent, "
                    f"{len(stream.arrivals)} arrived; latency during the flood: "
                    f"median {statistics.median(during) * 1000:.1f} ms, "
                    f"p95 {during[int(len(during) * 0.95)] * 1000:.1f} ms, "
                    f"max {during[-1] * 1000:.1f} ms"
                )
        print("agent counters:", json.dumps(counters, sort_keys=True))
        # Connected throughout: no disconnected/failed/closed on either side, at any layer.
        for rec, before in ((ra, seen_before[0]), (rb, seen_before[1])):
            changes = [e for e in rec.events[before:] if e[0].endswith("statechange")]
            bad = [e for e in changes if e[1] in ("disconnected", "failed", "closed")]
            assert bad == [], changes
        assert a.connectionState == "connected" and b.connectionState == "connected"
        assert a.iceConnectionState in ("connected", "completed")
        assert b.iceConnectionState in ("connected", "completed")
        assert [seq for seq, _ in at_b] == list(range(len(streams[0].sent_at)))
        assert [seq for seq, _ in at_a] == list(range(len(streams[1].sent_at)))
        assert result["sent"] > 0
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await a.close()
        await b.close()
