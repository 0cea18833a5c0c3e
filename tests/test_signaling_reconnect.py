"""A peer's WebSocket dropped mid-session: what was sent to it meanwhile arrives after it
resumes, exactly once and in order, and a restart renegotiated while it was away completes."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from signaling_helpers import Call, running_server
from unbroken.signaling import ServerConfig, SignalingClient, SignalingServer

MARGIN = 20


def closed_port_url() -> str:
    """A ws:// URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/ws"


async def messages(client: SignalingClient, n: int) -> list[object]:
    """The data of the next n application messages the client receives (others skipped)."""
    out: list[object] = []
    while len(out) < n:
        msg = await client.receive(timeout=10)
        if msg["type"] == "message":
            out.append(msg["data"])
    return out


@pytest.fixture
async def server() -> AsyncIterator[SignalingServer]:
    async with running_server(ServerConfig(away_for=30.0, ack_every=4)) as s:
        yield s


async def test_messages_sent_while_away_arrive_once_in_order(server: SignalingServer) -> None:
    alice = SignalingClient(server.url, "r", peer="alice", ack_every=4)
    bob = SignalingClient(server.url, "r", peer="bob", ack_every=4)
    await alice.connect()
    await bob.connect()
    await alice.wait_for_peer()
    for i in range(10):
        alice.sendMessage(i)
    assert await messages(bob, 10) == list(range(10))
    # Bob's network goes: the server sees its TCP connection die; bob cannot reconnect yet.
    real_url = bob.url
    bob.url = closed_port_url()
    assert server.disconnect("r", "bob")
    await bob.wait_until(lambda: bob.state == "reconnecting")
    for i in range(10, 60):
        alice.sendMessage(i)  # queued in bob's mailbox on the server
    for i in range(100, 130):
        bob.sendMessage(i)  # queued in bob's outbox
    assert bob.unacknowledged >= 30
    bob.url = real_url  # the network is back: bob resumes by itself
    assert await messages(bob, 50) == list(range(10, 60))
    assert await messages(alice, 30) == list(range(100, 130))
    assert bob.connects == 2 and bob.lost == 0 and alice.lost == 0
    assert server.counters["resumed"] == 1 and server.counters["lost-on-resume"] == 0
    await alice.close()
    await bob.close()


async def test_overflow_while_away_is_dropped_oldest_first_and_counted() -> None:
    async with running_server(ServerConfig(queue_limit=8, ack_every=1)) as server:
        alice = SignalingClient(server.url, "r", peer="alice")
        bob = SignalingClient(server.url, "r", peer="bob")
        await alice.connect()
        await bob.connect()
        await alice.wait_for_peer()
        real_url, bob.url = bob.url, closed_port_url()
        server.disconnect("r", "bob")
        await bob.wait_until(lambda: bob.state == "reconnecting")
        for i in range(20):
            alice.sendMessage(i)
        await alice.wait_until(lambda: alice.unacknowledged == 0)  # all 20 are in bob's mailbox
        bob.url = real_url
        got = await messages(bob, 8)
        assert got == list(range(12, 20))  # the newest 8; the 12 oldest were dropped
        assert bob.lost == 12 and server.stats()["dropped"] == 12
        await alice.close()
        await bob.close()


async def test_restart_while_away_completes_after_resume(server: SignalingServer) -> None:
    call = Call(server.url)
    await call.connect()
    call.start_traffic()
    await call.received_more(MARGIN)
    for restarter in ("alice", "bob"):
        before = call.snapshot()
        real_url, call.b.client.url = call.b.client.url, closed_port_url()
        assert server.disconnect("call", "bob")
        await call.b.client.wait_until(lambda: call.b.client.state == "reconnecting")
        (call.a if restarter == "alice" else call.b).pc.restartIce()
        # The offer went out (alice's to the server, bob's into his outbox) and waits.
        side = call.a if restarter == "alice" else call.b
        await side.recorder.wait_for(lambda s=side: s.pc.signalingState == "have-local-offer")
        assert not call.restarted_since(before)
        await call.received_more(MARGIN)  # the old ICE path carries data all along
        call.b.client.url = real_url
        await call.wait_for(lambda before=before: call.restarted_since(before))
        await call.received_more(MARGIN)
    await call.drain()
    call.check_exactly_once_in_order()
    assert call.b.client.connects == 3
    for s in (call.a, call.b):
        assert s.negotiator is not None and s.negotiator.errors == 0
    await call.close()
