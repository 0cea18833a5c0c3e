"""RTCPeerConnection restart semantics (JSEP, webrtc-pc), two real peers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import cast

import pytest
from aiortc import RTCDataChannel, RTCDtlsTransport

from pc_helpers import Recorder, make_pc, negotiate, trickle, ufrag_of
from unbroken import InvalidAccessError, OperationError, RTCPeerConnection, RTCSessionDescription
from unbroken.ice import IceConfig


class Pair:
    """Two connected peer connections with a data channel a -> b."""

    def __init__(self, a: RTCPeerConnection, b: RTCPeerConnection) -> None:
        self.a, self.b = a, b
        self.ra, self.rb = Recorder(a), Recorder(b)
        self.channel_a: RTCDataChannel | None = None
        self.channel_b: RTCDataChannel | None = None
        self.got_b: list[str] = []
        self.got_a: list[str] = []
        self._message = asyncio.Event()

    def _on_message(self, into: list[str]) -> Callable[[str], None]:
        def record(message: str) -> None:
            into.append(message)
            self._message.set()

        return record

    async def wait_messages(self, total: int, timeout: float = 10.0) -> None:
        """Wait until `total` messages arrived each way (woken by every message)."""

        async def wait() -> None:
            while len(self.got_b) < total or len(self.got_a) < total:
                self._message.clear()
                await self._message.wait()

        await asyncio.wait_for(wait(), timeout)

    async def connect(self) -> None:
        trickle(self.a, self.b)
        opened = asyncio.Event()
        self.channel_a = self.a.createDataChannel("chat")
        self.channel_a.on("open", opened.set)
        self.channel_a.on("message", self._on_message(self.got_a))
        arrived = asyncio.Event()

        def on_channel(channel: RTCDataChannel) -> None:
            self.channel_b = channel
            channel.on("message", self._on_message(self.got_b))
            arrived.set()

        self.b.on("datachannel", on_channel)
        await negotiate(self.a, self.b)
        await asyncio.wait_for(asyncio.gather(opened.wait(), arrived.wait()), 5)

    async def exchange(self, n: int) -> None:
        """Send n numbered messages each way and wait until all have arrived."""
        assert self.channel_a is not None and self.channel_b is not None
        start_b, start_a = len(self.got_b), len(self.got_a)
        for i in range(n):
            self.channel_a.send(f"a{start_b + i}")
            self.channel_b.send(f"b{start_a + i}")
        await self.wait_messages(max(start_a, start_b) + n)


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair(make_pc(), make_pc())
    await p.connect()
    yield p
    await p.a.close()
    await p.b.close()


async def test_create_offer_ice_restart_has_no_side_effects(pair: Pair) -> None:
    a = pair.a
    assert a.localDescription is not None and a.iceTransport is not None
    before = ufrag_of(a.localDescription.sdp)
    gen = a.iceTransport.agent.generation
    first = await a.createOffer(iceRestart=True)
    second = await a.createOffer({"iceRestart": True})
    assert ufrag_of(first.sdp) == ufrag_of(second.sdp) != before
    # Nothing happened yet: the restart begins at setLocalDescription.
    assert a.iceTransport.agent.generation == gen
    assert ufrag_of(a.localDescription.sdp) == before and a.signalingState == "stable"
    await a.setLocalDescription(first)
    assert a.iceTransport.agent.generation == gen + 1
    assert a.pendingLocalDescription is not None
    assert ufrag_of(a.pendingLocalDescription.sdp) == ufrag_of(first.sdp)
    await pair.b.setRemoteDescription(a.localDescription)
    await pair.b.setLocalDescription()
    await a.setRemoteDescription(pair.b.localDescription)
    assert a.currentLocalDescription is not None and pair.b.currentRemoteDescription is not None
    assert ufrag_of(a.currentLocalDescription.sdp) == ufrag_of(first.sdp)
    assert ufrag_of(pair.b.currentRemoteDescription.sdp) == ufrag_of(first.sdp)
    await pair.exchange(5)


async def test_restart_ice_fires_negotiationneeded_and_next_offer_restarts(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.currentLocalDescription is not None and b.currentLocalDescription is not None
    old_a, old_b = ufrag_of(a.currentLocalDescription.sdp), ufrag_of(b.currentLocalDescription.sdp)
    fired = pair.ra.count("negotiationneeded")
    a.restartIce()
    await pair.ra.wait_for(lambda: pair.ra.count("negotiationneeded") == fired + 1)
    offer = await a.createOffer()
    assert ufrag_of(offer.sdp) != old_a
    await a.setLocalDescription(offer)
    await b.setRemoteDescription(a.localDescription)
    answer = await b.createAnswer()
    assert ufrag_of(answer.sdp) != old_b  # the answerer restarts too (RFC 8829 §5.3.2)
    await b.setLocalDescription(answer)
    await a.setRemoteDescription(b.localDescription)
    # Applied answer no longer holds the old credentials: the restart is no longer pending.
    assert (await a.createOffer()).sdp.count(ufrag_of(offer.sdp)) >= 1
    await pair.exchange(5)
    for p in (a, b):
        assert p.currentLocalDescription is not None
        assert ufrag_of(p.currentLocalDescription.sdp) not in (old_a, old_b)


async def test_rollback_keeps_restart_in_force_and_fires_again(pair: Pair) -> None:
    a = pair.a
    assert a.currentLocalDescription is not None
    old = ufrag_of(a.currentLocalDescription.sdp)
    a.restartIce()
    await pair.ra.wait_for(lambda: pair.ra.count("negotiationneeded") >= 1)
    fired = pair.ra.count("negotiationneeded")
    await a.setLocalDescription()
    assert a.iceTransport is not None
    assert a.iceTransport.agent.generation == 1
    await a.setLocalDescription(RTCSessionDescription(sdp="", type="rollback"))
    assert a.signalingState == "stable"
    assert a.iceTransport.agent.generation == 0  # the restart's generation was dropped
    assert a.localDescription is not None
    assert ufrag_of(a.localDescription.sdp) == old
    await pair.ra.wait_for(lambda: pair.ra.count("negotiationneeded") == fired + 1)
    offer = await a.createOffer()
    assert ufrag_of(offer.sdp) != old
    await pair.exchange(3)


async def test_remote_restart_offer_gets_answer_with_new_credentials(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert b.currentLocalDescription is not None
    old_b = ufrag_of(b.currentLocalDescription.sdp)
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    await b.setRemoteDescription(a.localDescription)
    answer = await b.createAnswer()
    again = await b.createAnswer()
    assert ufrag_of(answer.sdp) == ufrag_of(again.sdp) != old_b
    await b.setLocalDescription(answer)
    await a.setRemoteDescription(b.localDescription)
    await pair.exchange(5)


async def test_answer_changing_credentials_without_restart_is_rejected(pair: Pair) -> None:
    a, b = pair.a, pair.b
    await a.setLocalDescription(await a.createOffer())  # no restart
    await b.setRemoteDescription(a.localDescription)
    answer = await b.createAnswer()
    tampered = answer.sdp.replace(ufrag_of(answer.sdp), "Zzzz9999")
    with pytest.raises(InvalidAccessError, match="did not restart"):
        await a.setRemoteDescription(RTCSessionDescription(tampered, "answer"))
    assert a.signalingState == "have-local-offer"
    await b.setLocalDescription(answer)
    await a.setRemoteDescription(b.localDescription)  # the right answer still works
    await pair.exchange(3)


async def test_answer_keeping_credentials_after_our_restart_is_rejected(pair: Pair) -> None:
    a, b = pair.a, pair.b
    old_answer = b.currentLocalDescription
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    assert old_answer is not None
    with pytest.raises(InvalidAccessError, match="must carry new"):
        await a.setRemoteDescription(RTCSessionDescription(old_answer.sdp, "answer"))
    await pair.exchange(3)  # the old pair keeps carrying data meanwhile


async def test_candidates_are_bound_to_generations(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.currentRemoteDescription is not None
    old_remote = ufrag_of(a.currentRemoteDescription.sdp)
    candidate = {
        "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "Unkn0wn1",
    }
    with pytest.raises(OperationError, match="no remote description has ufrag"):
        await a.addIceCandidate(candidate)
    await negotiate_restart(a, b)
    # A candidate of the previous generation is ignored: resolved, never paired.
    assert a.iceTransport is not None
    pairs_before = len(a.iceTransport.agent.pairs())
    await a.addIceCandidate({**candidate, "usernameFragment": old_remote})
    assert len(a.iceTransport.agent.pairs()) == pairs_before
    newest = a.iceTransport.agent.generations()[-1]
    assert all(c.ufrag in (None, newest.remote_ufrag) for c in newest.remote_candidates)
    await pair.exchange(3)


async def negotiate_restart(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription()
    await a.setRemoteDescription(b.localDescription)


async def test_repeated_restarts_keep_data_flowing_and_dtls_once(pair: Pair) -> None:
    a, b = pair.a, pair.b
    dtls = cast("RTCDtlsTransport | None", a.iceTransport and a._dtls)
    ssl = dtls._ssl if dtls is not None else None
    assert pair.channel_a is not None and pair.channel_b is not None
    sent = 0
    for n in range(10):
        for _ in range(5):
            pair.channel_a.send(f"a{sent}")
            pair.channel_b.send(f"b{sent}")
            sent += 1
        await negotiate_restart(a if n % 2 == 0 else b, b if n % 2 == 0 else a)
    await pair.wait_messages(sent)
    assert pair.got_b == [f"a{i}" for i in range(sent)]
    assert pair.got_a == [f"b{i}" for i in range(sent)]
    assert a._dtls is dtls and dtls is not None and dtls._ssl is ssl and dtls.state == "connected"
    assert pair.channel_a.readyState == "open"
    assert a.connectionState == "connected" and b.connectionState == "connected"
    assert a.iceTransport is not None
    assert a.iceTransport.agent.generation == 10


async def test_state_sequences_through_a_restart(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert pair.ra.states("iceconnectionstatechange") == ["checking", "connected", "completed"]
    assert pair.ra.states("connectionstatechange") == ["connecting", "connected"]
    await negotiate_restart(a, b)
    await pair.ra.wait_for(
        lambda: (
            pair.ra.states("iceconnectionstatechange")[-1] == "completed"
            and len(pair.ra.states("iceconnectionstatechange")) == 5
        )
    )
    # webrtc-pc: a restart turns completed into connected (make before break: never checking).
    assert pair.ra.states("iceconnectionstatechange")[3:] == ["connected", "completed"]
    assert pair.ra.states("connectionstatechange") == ["connecting", "connected"]


async def test_classic_failed_handler_recovers() -> None:
    config = IceConfig(disconnected_timeout=0.5, consent_timeout=1.5)
    a, b = make_pc(iceConfig=config), make_pc(iceConfig=config)
    p = Pair(a, b)
    await p.connect()
    restarted = asyncio.Event()

    @a.on("iceconnectionstatechange")
    async def on_state() -> None:
        if a.iceConnectionState == "failed":
            a.restartIce()

    @a.on("negotiationneeded")
    async def on_negotiation() -> None:
        if a.iceConnectionState == "failed":
            await negotiate(a, b)
            restarted.set()

    # Cut b off: it stops reading its sockets (a dead path), then comes back.
    assert b.iceTransport is not None
    sockets = list(b.iceTransport._sockets.values())
    pinned = b.iceTransport._pinned  # the selected pair's own socket (runtime/pinned.py)
    for sock in sockets:  # asyncio's selector transports can pause (ReadTransport)
        cast(asyncio.ReadTransport, sock.transport).pause_reading()
    if pinned is not None:
        pinned.pause_reading()
    await p.ra.wait_for(lambda: a.iceConnectionState == "failed", 5)
    for sock in sockets:
        cast(asyncio.ReadTransport, sock.transport).resume_reading()
    if pinned is not None:
        pinned.resume_reading()
    await asyncio.wait_for(restarted.wait(), 5)
    await p.ra.wait_for(lambda: a.iceConnectionState in ("connected", "completed"), 5)
    # b kept sending while it read nothing, so a kept receiving (never "disconnected")
    # until consent expired: a one-way failure goes straight to "failed" (RFC 7675).
    assert p.ra.states("iceconnectionstatechange") == [
        "checking",
        "connected",
        "completed",
        "failed",
        "checking",
        "connected",
        "completed",
    ]
    assert p.ra.states("connectionstatechange") == [
        "connecting",
        "connected",
        "failed",
        "connecting",
        "connected",
    ]
    await p.exchange(3)
    await a.close()
    await b.close()
