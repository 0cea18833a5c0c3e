"""Bad input at the signaling level with real peer connections, and a property over
random and mutated JSON: the server answers with an error or relays, never raises, and
never touches another room."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling_helpers import Call, RawPeer, running_server
from unbroken.signaling import ServerConfig, SignalingServer
from unbroken.signaling import messages as m

MARGIN = 20


async def test_peer_vanishing_mid_negotiation() -> None:
    async with running_server(ServerConfig(away_for=0.5)) as server:
        other = Call(server.url, room="bystanders")
        await other.connect()
        other.start_traffic()
        call = Call(server.url)
        await call.connect()
        call.start_traffic()
        await call.received_more(MARGIN)
        # Bob's machine vanishes right after alice's restart offer left: no leave, no return.
        left = asyncio.Event()
        call.a.client.on("peer-left", lambda msg: left.set())
        call.a.pc.restartIce()
        await call.a.recorder.wait_for(lambda: call.a.pc.signalingState == "have-local-offer")
        await call.b.client.close(leave=False)
        await asyncio.wait_for(left.wait(), 10)  # told once bob's resume window is over
        assert call.a.client.peers == [] and call.a.client.connected
        # Alice's side is intact: her peer connection still has its old path (bob's pc is
        # still up), her client can be reused, and nothing failed on the server.
        assert call.a.pc.signalingState == "have-local-offer"
        assert call.a.negotiator is not None and call.a.negotiator.errors == 0
        assert server.counters[m.INTERNAL] == 0
        await other.received_more(MARGIN)  # the bystanders never noticed
        await other.drain()
        other.check_exactly_once_in_order()
        await call.stop_traffic()
        await call.a.close()
        await call.b.negotiator.close() if call.b.negotiator else None
        await call.b.pc.close()
        await other.close()


async def test_flood_of_restart_ice_calls() -> None:
    async with running_server(ServerConfig()) as server:
        call = Call(server.url)
        await call.connect()
        call.start_traffic()
        await call.received_more(MARGIN)
        before = call.snapshot()
        for _ in range(500):  # from both sides, interleaved with the loop's other work
            call.a.pc.restartIce()
            call.b.pc.restartIce()
            await asyncio.sleep(0)
        await call.wait_for(lambda: call.restarted_since(before))
        await call.received_more(MARGIN)
        await call.drain()
        call.check_exactly_once_in_order()
        assert call.a.negotiator is not None and call.b.negotiator is not None
        offers = call.a.negotiator.offers + call.b.negotiator.offers
        # Coalesced: negotiationneeded fires once per stable state, not once per call.
        assert offers < 500, offers  # 1000 calls
        assert server.counters[m.RATE_LIMITED] == 0
        assert call.a.negotiator.errors == call.b.negotiator.errors == 0
        await call.close()


# ---------------------------------------------------------------- property

VALID: list[dict[str, Any]] = [
    {"type": "message", "data": "x"},
    {"type": "description", "description": {"type": "offer", "sdp": "v=0\r\n"}},
    {
        "type": "candidate",
        "candidate": {
            "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
            "sdpMid": "0",
            "sdpMLineIndex": 0,
            "usernameFragment": "abcd",
        },
    },
    {"type": "end-of-candidates", "usernameFragment": "abcd"},
    {"type": "ack", "seq": 0},
    {"type": "join", "room": "r"},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid message with one field replaced, added or removed, as JSON text."""
    msg = json.loads(json.dumps(draw(st.sampled_from(VALID))))
    action = draw(st.sampled_from(["replace", "add", "remove", "nested"]))
    key = draw(st.sampled_from(sorted(msg)))
    if action == "replace":
        msg[key] = draw(json_values)
    elif action == "add":
        msg[draw(st.text(max_size=10))] = draw(json_values)
    elif action == "remove":
        del msg[key]
    elif isinstance(msg.get(key), dict):
        inner = msg[key]
        inner[draw(st.sampled_from(sorted(inner) + ["extra"]))] = draw(json_values)
    return json.dumps(msg)


FIELD_NAMES = [
    "room",
    "peer",
    "token",
    "resume",
    "lastSeq",
    "create",
    "to",
    "seq",
    "ack",
    "description",
    "candidate",
    "usernameFragment",
    "data",
]
#: Known types with any known fields holding any values.
shuffled = st.builds(
    lambda kind, fields: json.dumps({"type": kind, **fields}),
    st.sampled_from(m.CLIENT_TYPES + ("teleport",)),
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=4),
)

frames = st.one_of(
    mutated(),
    shuffled,
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(VALID).map(json.dumps),
)


class Env:
    """Room "r": a fuzzing sender s and its partner p. Room "calm": x and y."""

    def __init__(self, server: SignalingServer, s: RawPeer, p: RawPeer, x: RawPeer, y: RawPeer):
        self.server, self.s, self.p, self.x, self.y = server, s, p, x, y
        self.marker = 0

    async def check(self, frame: str) -> None:
        await self.s.send(frame)
        # A probe answered only after every earlier frame was handled (frames are in order).
        await self.s.send('{"type": "probe"}')
        replies = []
        while True:
            reply = await self.s.recv()
            if (
                reply.get("type") == "error"
                and reply.get("code") == m.UNKNOWN_TYPE
                and "probe" in reply.get("message", "")
            ):
                break
            replies.append(reply)
        for reply in replies:
            assert reply["type"] in ("error", "left", "ack", "peer-joined", "peer-left"), reply
            if reply["type"] == "error":
                assert isinstance(reply["code"], str) and reply["message"]
            if reply["type"] == "left":  # the fuzzer left its room: back in, for the next one
                await self.s.send({"type": "join", "room": "r", "peer": "s"})
        # Whatever was relayed to the partner came first; the marker follows it.
        self.marker += 1
        marker = f"m{self.marker}"
        if any(r["type"] == "left" for r in replies):
            await self.s.recv_type("joined")
        await self.s.send({"type": "message", "data": marker})
        while True:
            got = await self.p.recv()
            assert got["type"] in m.RELAYED_TYPES + ("peer-left", "peer-joined"), got
            if got.get("data") == marker and got["type"] == "message":
                break
        assert self.server.counters[m.INTERNAL] == 0


@contextlib.contextmanager
def event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One loop for many run_until_complete() calls (asyncio.Runner is Python 3.11+)."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def test_random_and_mutated_messages(caplog: pytest.LogCaptureFixture) -> None:
    with event_loop() as loop, caplog.at_level(logging.ERROR):

        async def setup() -> tuple[Any, Env]:
            context = running_server(ServerConfig(rate=0))
            server = await context.__aenter__()
            peers = [await RawPeer.open(server.url) for _ in range(4)]
            s, p, x, y = peers
            await s.join("r", peer="s")
            await p.join("r", peer="p")
            await x.join("calm", peer="x")
            await y.join("calm", peer="y")
            await s.recv_type("peer-joined")
            await x.recv_type("peer-joined")
            return context, Env(server, s, p, x, y)

        context, env = loop.run_until_complete(setup())

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(frame=frames)
        def check(frame: str) -> None:
            loop.run_until_complete(env.check(frame))

        check()
        assert env.marker >= 100, env.marker  # hypothesis really ran that many examples
        print(f"examples: {env.marker}, server counters: {dict(env.server.counters)}")

        async def calm_room_untouched() -> None:
            await env.x.send({"type": "message", "data": "calm"})
            got = await env.y.recv()
            assert got["type"] == "message" and got["data"] == "calm" and got["from"] == "x"
            for peer in (env.s, env.p, env.x, env.y):
                await peer.close()
            await context.__aexit__(None, None, None)

        loop.run_until_complete(calm_room_untouched())
    errors = [r for r in caplog.records if r.name.startswith("unbroken.signaling")]
    assert not errors, errors
