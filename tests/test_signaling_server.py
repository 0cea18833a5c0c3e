"""The signaling server's protocol, access rules and limits, driven over real WebSockets.

Every refusal is a clear `{"type": "error", "code", "message"}` to the sender, the
connection stays usable, and the other peers (of the room and of other rooms) carry on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from signaling_helpers import RawPeer, running_server
from unbroken.signaling import (
    ServerConfig,
    SignalingClient,
    SignalingError,
    SignalingServer,
    mint_token,
)
from unbroken.signaling import messages as m

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with running_server(ServerConfig(away_for=0.5)) as s:
        yield s


async def pair(server: SignalingServer, room: str = "r") -> tuple[RawPeer, RawPeer]:
    a = await RawPeer.open(server.url)
    b = await RawPeer.open(server.url)
    assert (await a.join(room, peer="a"))["type"] == "joined"
    assert (await b.join(room, peer="b"))["peers"] == ["a"]
    assert (await a.recv())["type"] == "peer-joined"
    return a, b


async def relay_works(a: RawPeer, b: RawPeer, marker: str) -> None:
    """a's message reaches b as the next thing b receives."""
    await a.send({"type": "message", "data": marker})
    got = await b.recv()
    assert got["type"] == "message" and got["data"] == marker
    assert got["from"] != b.peer


async def test_join_relay_and_leave(server: SignalingServer) -> None:
    a, b = await pair(server)
    await a.send({"type": "description", "description": OFFER})
    got = await b.recv()
    assert got == {"seq": 1, "type": "description", "description": OFFER, "from": "a"}
    candidate = {
        "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    }
    await b.send({"type": "candidate", "candidate": candidate})
    assert (await a.recv())["candidate"] == candidate
    await b.send({"type": "end-of-candidates", "usernameFragment": "abcd"})
    eoc = await a.recv()
    assert eoc["type"] == "end-of-candidates" and eoc["usernameFragment"] == "abcd"
    await b.send({"type": "leave"})
    assert (await b.recv())["type"] == "left"
    left = await a.recv()
    assert left["type"] == "peer-left" and left["peer"] == "b" and left["reason"] == "left"
    await a.send({"type": "message", "data": 1})
    assert (await a.recv())["code"] == m.NO_PEER
    for p in (a, b):
        await p.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", m.BAD_JSON),
        ("[1, 2]", m.BAD_MESSAGE),
        ('{"type": "teleport"}', m.UNKNOWN_TYPE),
        ('{"type": "message"}', m.BAD_MESSAGE),
        ('{"type": "message", "data": 1, "evil": true}', m.BAD_MESSAGE),
        ('{"type": "description", "description": {"type": "rollback", "sdp": "x"}}', m.BAD_MESSAGE),
        ('{"type": "candidate", "candidate": {"candidate": "", "sdpMid": "0"}}', m.BAD_MESSAGE),
        (
            '{"type": "candidate", "candidate": {"candidate": "c", "sdpMLineIndex": -1}}',
            m.BAD_MESSAGE,
        ),
        ('{"type": "message", "data": 1, "seq": 1.5}', m.BAD_MESSAGE),
        ('{"type": "message", "data": NaN}', m.BAD_JSON),
        ('{"type": "message", "data": 1, "to": "x"}', m.UNKNOWN_PEER),
        ('{"type": "join", "room": "no spaces allowed"}', m.BAD_MESSAGE),
        ('{"type": "join", "room": "r"}', m.ALREADY_JOINED),
        ("[" * 100000 + "]" * 100000, m.TOO_BIG),
        ("[" * 20000 + "]" * 20000, m.BAD_JSON),
    ],
)
async def test_bad_frames_get_clear_errors_and_the_session_goes_on(
    server: SignalingServer, frame: str, code: str
) -> None:
    a, b = await pair(server)
    await a.send(frame)
    error = await a.recv()
    assert error["type"] == "error" and error["code"] == code and error["message"]
    await relay_works(a, b, "still fine")
    await relay_works(b, a, "both ways")
    assert server.counters[m.INTERNAL] == 0
    for p in (a, b):
        await p.close()


async def test_before_join_and_binary_and_oversized(server: SignalingServer) -> None:
    a = await RawPeer.open(server.url)
    await a.send({"type": "message", "data": 1})
    assert (await a.recv())["code"] == m.NOT_JOINED
    await a.ws.send_bytes(b'{"type": "join", "room": "r"}')
    assert (await a.recv())["code"] == m.NOT_TEXT
    await a.send(json.dumps({"type": "message", "data": "x" * (m.DEFAULT_MAX_MESSAGE_BYTES + 1)}))
    assert (await a.recv())["code"] == m.TOO_BIG
    assert (await a.join("r"))["type"] == "joined"
    # Far beyond what aiohttp reads: the connection is closed with 1009, nothing else.
    b = await RawPeer.open(server.url)
    assert (await b.join("other"))["type"] == "joined"
    await a.ws.send_str("x" * (m.DEFAULT_MAX_MESSAGE_BYTES * 16 + 1))
    frame = await a.ws.receive(timeout=5)
    assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert a.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    c = await RawPeer.open(server.url)
    assert (await c.join("other"))["type"] == "joined"
    assert (await b.recv())["type"] == "peer-joined"  # the other room never noticed
    for p in (a, b, c):
        await p.close()


async def test_third_peer_is_refused_and_the_two_carry_on(server: SignalingServer) -> None:
    a, b = await pair(server)
    c = await RawPeer.open(server.url)
    error = await c.join("r", peer="c")
    assert error["type"] == "error" and error["code"] == m.ROOM_FULL and "full" in error["message"]
    same = await c.join("r", peer="a")  # a member's id without its resume token
    assert same["code"] in (m.PEER_IN_USE, m.ROOM_FULL)
    await relay_works(a, b, "after c")
    assert (await c.join("elsewhere", peer="c"))["type"] == "joined"  # c can still join elsewhere
    for p in (a, b, c):
        await p.close()


async def test_unknown_room_and_unknown_session(server: SignalingServer) -> None:
    a = await RawPeer.open(server.url)
    error = await a.join("nobody-here", create=False)
    assert error["code"] == m.UNKNOWN_ROOM
    error = await a.join("r", resume="made-up-token", lastSeq=0)
    assert error["code"] == m.UNKNOWN_SESSION
    joined = await a.join("r")
    b = await RawPeer.open(server.url)
    wrong_room = await b.join("other", resume=joined["resume"])
    assert wrong_room["code"] == m.UNKNOWN_SESSION
    assert (await b.join("r", create=False))["type"] == "joined"
    for p in (a, b):
        await p.close()


async def test_replayed_and_reordered_messages_are_refused() -> None:
    async with running_server(ServerConfig(ack_every=2)) as server:
        a, b = await pair(server)
        await a.send({"type": "message", "data": "one", "seq": 1})
        assert (await b.recv())["data"] == "one"
        await a.send({"type": "message", "data": "one again", "seq": 1})
        replay = await a.recv()
        assert replay["code"] == m.REPLAYED and replay["ref"] == 1
        await a.send({"type": "message", "data": "three", "seq": 3})
        skip = await a.recv()
        assert skip["code"] == m.OUT_OF_ORDER and "expected 2" in skip["message"]
        await a.send({"type": "message", "data": "two", "seq": 2})
        assert (await a.recv()) == {"type": "ack", "seq": 2}
        assert (await b.recv())["data"] == "two"
        await relay_works(a, b, "unnumbered")
        for p in (a, b):
            await p.close()


async def test_each_message_reaches_the_other_exactly_once_in_order() -> None:
    async with running_server(ServerConfig(ack_every=2)) as server:
        a, b = await pair(server)
        await a.send({"type": "message", "data": 1, "seq": 1})
        await a.send({"type": "message", "data": 1, "seq": 1})  # replayed
        await a.send({"type": "message", "data": 3, "seq": 3})  # reordered
        await a.send({"type": "message", "data": 2, "seq": 2})
        await a.send({"type": "message", "data": 3, "seq": 3})
        await a.send({"type": "message", "data": "end"})
        got = [(await b.recv())["data"] for _ in range(4)]
        assert got == [1, 2, 3, "end"]
        for p in (a, b):
            await p.close()


async def test_tokens() -> None:
    secret = "s3cret"
    async with running_server(ServerConfig(secret=secret)) as server:
        a = await RawPeer.open(server.url)
        assert (await a.join("r"))["code"] == m.TOKEN_REQUIRED
        assert (await a.join("r", token="garbage"))["code"] == m.BAD_TOKEN
        wrong_secret = mint_token("other", "r", "alice")
        assert (await a.join("r", token=wrong_secret))["code"] == m.BAD_TOKEN
        other_room = mint_token(secret, "elsewhere", "alice")
        assert (await a.join("r", token=other_room))["code"] == m.BAD_TOKEN
        expired = mint_token(secret, "r", "alice", ttl=-1)
        error = await a.join("r", token=expired)
        assert error["code"] == m.TOKEN_EXPIRED and "expired" in error["message"]
        forged = expired.split(":")
        forged[0] = str(int(time.time()) + 3600)  # extend the expiry: signature no longer matches
        assert (await a.join("r", token=":".join(forged)))["code"] == m.BAD_TOKEN
        good = mint_token(secret, "r", "alice", ttl=60)
        assert (await a.join("r", token=good, peer="mallory"))["code"] == m.BAD_MESSAGE
        joined = await a.join("r", token=good)
        assert joined["type"] == "joined" and joined["peer"] == "alice"
        client = SignalingClient(server.url, "r", token=mint_token(secret, "r", "bob"))
        await client.connect()
        assert client.peerId == "bob" and client.peers == ["alice"]
        refused = SignalingClient(server.url, "r", token=expired)
        with pytest.raises(SignalingError) as info:
            await refused.connect()
        assert info.value.code == m.TOKEN_EXPIRED
        await client.close()
        await a.close()


async def test_open_server_warns_at_start(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="unbroken.signaling"):
        async with running_server():
            pass
    assert any("open to anyone" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unbroken.signaling"):
        async with running_server(ServerConfig(secret="x")):
            pass
    assert not any("open to anyone" in r.message for r in caplog.records)


async def test_origin_allow_list() -> None:
    config = ServerConfig(allowed_origins=frozenset({"https://app.example"}))
    async with running_server(config) as server:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await RawPeer.open(server.url, origin="https://evil.example")
        assert info.value.status == 403
        async with aiohttp.ClientSession() as session:
            url = server.url.replace("ws://", "http://")
            headers = {
                "Origin": "https://evil.example",
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            }
            async with session.get(url, headers=headers) as response:
                assert response.status == 403
                assert "not allowed" in await response.text()
        good = await RawPeer.open(server.url, origin="https://app.example")
        assert (await good.join("r"))["type"] == "joined"
        no_origin = await RawPeer.open(server.url)  # not a browser: allowed
        assert (await no_origin.join("r"))["type"] == "joined"
        assert server.counters["refused-origin"] == 2
        for p in (good, no_origin):
            await p.close()


class Clock:
    """A clock the test moves by hand: the token bucket then refills exactly when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_flood_is_rate_limited_and_counted() -> None:
    clock = Clock()
    async with running_server(ServerConfig(rate=20, burst=10, clock=clock)) as server:
        a, b = await pair(server)
        c, d = await pair(server, "calm")
        before = server.counters["relayed"]
        flood = 2000
        for i in range(flood):
            await a.send({"type": "message", "data": i})
        error = await a.recv()
        assert error["code"] == m.RATE_LIMITED and "per second" in error["message"]
        clock.now += 1.0  # 20 tokens back
        await a.send({"type": "teleport"})  # answered only once every frame before it was handled
        assert (await a.recv())["code"] == m.UNKNOWN_TYPE  # one rate error a second, no more
        # The bucket's 10 tokens, less the one a's join took, went through, in order, once;
        # the rest were dropped and counted.
        assert server.counters["relayed"] - before == 9
        assert server.counters[m.RATE_LIMITED] == flood - 9
        assert [(await b.recv())["data"] for _ in range(9)] == list(range(9))
        await relay_works(a, b, "after the flood")  # the flooder itself is served again
        await relay_works(c, d, "the calm room never noticed")
        for p in (a, b, c, d):
            await p.close()


async def test_no_join_in_time_closes() -> None:
    async with running_server(ServerConfig(join_timeout=0.2)) as server:
        a = await RawPeer.open(server.url)
        error = await a.recv()
        assert error["code"] == m.NOT_JOINED
        frame = await a.ws.receive(timeout=5)
        assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await a.close()


async def test_client_js_and_stats_are_served(server: SignalingServer) -> None:
    async with aiohttp.ClientSession() as session:
        base = server.url.replace("ws://", "http://").removesuffix("/ws")
        async with session.get(base + "/client.js") as response:
            assert response.status == 200
            assert "javascript" in response.headers["Content-Type"]
            text = await response.text()
            assert "class SignalingClient" in text and "class PerfectNegotiator" in text
        async with session.get(base + "/stats") as response:
            assert (await response.json())["rooms"] == 0


async def test_resume_replays_after_last_seq_and_takes_over(server: SignalingServer) -> None:
    a, b = await pair(server)
    for i in range(5):
        await a.send({"type": "message", "data": i})
    assert [(await b.recv())["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
    token = await b.join("r")  # already joined: refused, nothing else changes
    assert token["code"] == m.ALREADY_JOINED
    # b says it got only up to 3 (4 and 5 were lost in flight): they come again, once.
    c = await RawPeer.open(server.url)
    resumed = await c.join("r", resume=b.resume, lastSeq=3)
    assert resumed["type"] == "joined" and resumed["resumed"] and resumed["peer"] == "b"
    assert [(await c.recv())["data"] for _ in range(2)] == [3, 4]
    # The old connection was taken over: closed with 4000.
    frame = await b.ws.receive(timeout=5)
    assert frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert b.ws.close_code == 4000
    await relay_works(a, c, "to the new connection")
    assert server.counters["replaced"] == 1
    for p in (a, b, c):
        await p.close()


async def test_away_peer_is_removed_after_its_window(server: SignalingServer) -> None:
    a, b = await pair(server)
    await b.ws.close()  # no leave: away for 0.5 s, then gone
    left = await a.recv()
    assert left["type"] == "peer-left" and left["peer"] == "b" and left["reason"] == "timeout"
    c = await RawPeer.open(server.url)
    assert (await c.join("r", resume=b.resume))["code"] == m.UNKNOWN_SESSION
    assert (await c.join("r", peer="b"))["type"] == "joined"  # the id is free again
    for p in (a, c):
        await p.close()
