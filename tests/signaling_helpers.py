"""Shared pieces of the signaling tests: a server on 127.0.0.1, raw WebSocket peers,
and two of our peer connections negotiating through the server (PerfectNegotiator)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
from aiortc import RTCDataChannel

from pc_helpers import Recorder, make_pc
from unbroken import RTCPeerConnection
from unbroken.sdp import ice_ufrags
from unbroken.signaling import (
    PerfectNegotiator,
    ServerConfig,
    SignalingClient,
    SignalingServer,
)

TIMEOUT = 15.0


@contextlib.asynccontextmanager
async def running_server(
    config: ServerConfig | None = None, **kwargs: Any
) -> AsyncIterator[SignalingServer]:
    """A signaling server on 127.0.0.1, any free port, for the `async with` block."""
    server = SignalingServer(config, **kwargs)
    await server.start("127.0.0.1", 0)
    try:
        yield server
    finally:
        await server.close()


class RawPeer:
    """A bare WebSocket to the server: send any text, read replies (for bad input)."""

    def __init__(
        self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse[bool]
    ) -> None:
        self.session = session
        self.ws = ws
        self.peer: str | None = None
        self.resume: str | None = None

    @classmethod
    async def open(cls, url: str, origin: str | None = None) -> RawPeer:
        session = aiohttp.ClientSession()
        headers = {"Origin": origin} if origin else None
        try:
            ws = await session.ws_connect(url, headers=headers, max_msg_size=0)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, msg: Any) -> None:
        await self.ws.send_str(msg if isinstance(msg, str) else json.dumps(msg))

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        frame = await self.ws.receive(timeout=timeout)
        assert frame.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {frame!r}"
        result: dict[str, Any] = json.loads(frame.data)
        return result

    async def recv_type(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message of this type (others are skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if msg.get("type") == kind:
                return msg

    async def join(self, room: str, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "join", "room": room, **fields})
        reply = await self.recv()
        if reply.get("type") == "joined":
            self.peer = reply["peer"]
            self.resume = reply["resume"]
        return reply

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()


def ufrag_of(sdp: str) -> str:
    found = ice_ufrags(sdp)
    assert found, "no ice-ufrag"
    return found[0]


class Side:
    """One of our peer connections with its signaling client and negotiator."""

    def __init__(self, name: str, url: Any, room: str, **client_options: Any) -> None:
        self.name = name
        self.pc: RTCPeerConnection = make_pc()
        self.recorder = Recorder(self.pc)
        self.client = SignalingClient(url, room, peer=name, **client_options)
        self.negotiator: PerfectNegotiator | None = None
        self.channel: RTCDataChannel | None = None
        self.got: list[str] = []

    async def start(self) -> None:
        await self.client.connect()
        self.negotiator = PerfectNegotiator(self.pc, self.client)

    def ufrags(self) -> tuple[str, str] | None:
        """(local, remote) ufrags of the current descriptions, once both exist."""
        local, remote = self.pc.currentLocalDescription, self.pc.currentRemoteDescription
        if local is None or remote is None:
            return None
        return ufrag_of(local.sdp), ufrag_of(remote.sdp)

    async def close(self) -> None:
        if self.negotiator is not None:
            await self.negotiator.close()
        await self.client.close()
        await self.pc.close()


class Call:
    """Two sides in one room with a data channel a -> b, numbered messages both ways.

    `start_traffic()` sends a numbered message every `interval` seconds each way; the
    checks are that each side received 0, 1, 2, ... exactly once and in order.
    """

    def __init__(
        self, url: Any, room: str = "call", url_b: Any = None, **client_options: Any
    ) -> None:
        self.a = Side("alice", url, room, **client_options)
        self.b = Side("bob", url if url_b is None else url_b, room, **client_options)
        self._changed = asyncio.Event()
        self._traffic: asyncio.Task[None] | None = None
        self.sent = {"alice": 0, "bob": 0}

    def notify(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate: Callable[..., bool], timeout: float = TIMEOUT) -> None:
        """Wait until predicate() holds; re-checked on every message and state change."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    def _receiver(self, side: Side) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            side.got.append(message)
            self.notify()

        return on_message

    async def connect(self) -> None:
        for side in (self.a, self.b):
            for event in (
                "signalingstatechange",
                "iceconnectionstatechange",
                "connectionstatechange",
            ):
                side.pc.on(event, self.notify)
        await self.a.start()
        await self.b.start()

        def on_channel(channel: RTCDataChannel) -> None:
            self.b.channel = channel
            channel.on("message", self._receiver(self.b))
            self.notify()

        self.b.pc.on("datachannel", on_channel)
        self.a.channel = self.a.pc.createDataChannel("numbers")
        self.a.channel.on("message", self._receiver(self.a))
        self.a.channel.on("open", self.notify)
        await self.wait_for(
            lambda: (
                self.a.channel is not None
                and self.a.channel.readyState == "open"
                and self.b.channel is not None
            )
        )

    async def _send_loop(self, interval: float) -> None:
        assert self.a.channel is not None and self.b.channel is not None
        while True:
            for side, channel in (("alice", self.a.channel), ("bob", self.b.channel)):
                channel.send(str(self.sent[side]))
                self.sent[side] += 1
            await asyncio.sleep(interval)  # pacing the traffic, not synchronisation

    def start_traffic(self, interval: float = 0.01) -> None:
        self._traffic = asyncio.create_task(self._send_loop(interval))

    async def stop_traffic(self) -> None:
        if self._traffic is not None:
            self._traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._traffic
            self._traffic = None

    async def received_more(self, count: int, timeout: float = TIMEOUT) -> None:
        """Wait until each side received `count` more messages than it has now."""
        want_a, want_b = len(self.a.got) + count, len(self.b.got) + count
        await self.wait_for(
            lambda: len(self.a.got) >= want_a and len(self.b.got) >= want_b, timeout
        )

    async def drain(self) -> None:
        """Stop the traffic and wait until everything sent has arrived."""
        await self.stop_traffic()
        await self.wait_for(
            lambda: len(self.b.got) >= self.sent["alice"] and len(self.a.got) >= self.sent["bob"]
        )

    def check_exactly_once_in_order(self) -> None:
        assert self.b.got == [str(i) for i in range(self.sent["alice"])]
        assert self.a.got == [str(i) for i in range(self.sent["bob"])]

    def restarted_since(self, before: dict[str, tuple[str, str] | None]) -> bool:
        """Both sides stable with new local and remote ufrags compared with `before`."""
        for side in (self.a, self.b):
            now = side.ufrags()
            old = before[side.name]
            if side.pc.signalingState != "stable" or now is None or old is None:
                return False
            if now[0] == old[0] or now[1] == old[1]:
                return False
        return True

    def snapshot(self) -> dict[str, tuple[str, str] | None]:
        return {side.name: side.ufrags() for side in (self.a, self.b)}

    async def close(self) -> None:
        await self.stop_traffic()
        for side in (self.a, self.b):
            await side.close()
