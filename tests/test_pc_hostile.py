"""Careless applications and hostile signaling at the peer connection (issue 7, items 4, 5, 8, 9).

Two real peers of ours on 127.0.0.1 (pc_helpers), real aiortc DTLS/SCTP above our ICE.
- An exception in an application's event handler, plain or async, on a data channel, a
  remote track or the peer connection itself, is logged and never takes the transport down.
- A DTLS transport that dies underneath makes connectionState "failed", never "connecting".
- A description is validated completely before anything of it is applied: a restart
  offer that reuses an older ufrag is refused with nothing changed.
- State that signaling can grow is bounded: stored candidate lines, remembered ufrags,
  the candidate lines one description may make us parse, m-sections in use.
- An offer whose only m-section is rejected is answered, back to stable.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiortc import RTCDataChannel

from pc_helpers import Recorder, make_pc, negotiate, trickle, ufrag_of
from unbroken import (
    InvalidAccessError,
    OperationError,
    RTCPeerConnection,
    RTCSessionDescription,
)
from unbroken.ice import IceConfig
from unbroken.jsep import limits
from unbroken.peerconnection.pc import IGNORED_OVER_CAP
from unbroken.runtime.mdns import RemoteCandidates

HANDLER_LOG = "unbroken.peerconnection.handlers"


class Boom(Exception):
    """What a careless handler raises."""


class Pair:
    """Two peer connections with a data channel a -> b; b's messages recorded."""

    def __init__(self, a: RTCPeerConnection, b: RTCPeerConnection) -> None:
        self.a, self.b = a, b
        self.ra, self.rb = Recorder(a), Recorder(b)
        self.channel_a: RTCDataChannel | None = None
        self.channel_b: RTCDataChannel | None = None
        self.got_a: list[str] = []
        self.got_b: list[str] = []
        self._message = asyncio.Event()
        # Run on each side's channel before anything else is attached to it.
        self.before_a: list[Callable[[RTCDataChannel], object]] = []
        self.before_b: list[Callable[[RTCDataChannel], object]] = []

    def _recorder(self, into: list[str]) -> Callable[[str], None]:
        def record(message: str) -> None:
            into.append(message)
            self._message.set()

        return record

    async def connect(self) -> None:
        trickle(self.a, self.b)
        opened = asyncio.Event()
        arrived = asyncio.Event()
        self.channel_a = self.a.createDataChannel("chat")
        for hook in self.before_a:
            hook(self.channel_a)
        self.channel_a.on("open", opened.set)
        self.channel_a.on("message", self._recorder(self.got_a))

        def on_channel(channel: RTCDataChannel) -> None:
            for hook in self.before_b:
                hook(channel)
            self.channel_b = channel
            channel.on("message", self._recorder(self.got_b))
            arrived.set()

        self.b.on("datachannel", on_channel)
        await negotiate(self.a, self.b)
        await asyncio.wait_for(asyncio.gather(opened.wait(), arrived.wait()), 5)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until predicate() holds, re-checked at every message."""

        async def wait() -> None:
            while not predicate():
                self._message.clear()
                await self._message.wait()

        await asyncio.wait_for(wait(), timeout)

    async def exchange(self, n: int) -> None:
        """n numbered messages each way; wait until all arrived."""
        assert self.channel_a is not None and self.channel_b is not None
        start_a, start_b = len(self.got_a), len(self.got_b)
        for i in range(n):
            self.channel_a.send(f"a{start_b + i}")
            self.channel_b.send(f"b{start_a + i}")
        await self.wait_until(
            lambda: len(self.got_b) >= start_b + n and len(self.got_a) >= start_a + n
        )

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    p = Pair(make_pc(), make_pc())
    await p.connect()
    yield p
    await p.close()


def raising(kind: str, calls: list[str], name: str) -> Callable[..., Any]:
    """A handler that records its call and raises, plain or async."""
    if kind == "sync":

        def handler(*args: Any) -> None:
            calls.append(name)
            raise Boom(name)

        return handler

    async def async_handler(*args: Any) -> None:
        calls.append(name)
        await asyncio.sleep(0)
        raise Boom(name)

    return async_handler


def boom_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == HANDLER_LOG and r.exc_info is not None and isinstance(r.exc_info[1], Boom)
    ]


# ---------------------------------------------------------------- item 4: careless handlers


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_message_handler_neither_stops_delivery_nor_kills_dtls(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's `channel.on("message", lambda m: 1/0)`: DTLS died, nothing arrived after."""
    caplog.set_level(logging.ERROR, logger=HANDLER_LOG)
    calls: list[str] = []
    p = Pair(make_pc(), make_pc())
    # b's raising handler comes first: the recording one after it must still run.
    p.before_b.append(lambda ch: ch.on("message", raising(kind, calls, "message")))
    await p.connect()
    try:
        await p.exchange(50)
        assert p.got_b == [f"a{i}" for i in range(50)]
        assert p.got_a == [f"b{i}" for i in range(50)]
        await p.wait_until(lambda: len(boom_records(caplog)) >= 50)  # async ones log later
        assert calls.count("message") == 50
        assert p.a.connectionState == p.b.connectionState == "connected"
        assert p.b.sctp is not None and p.b.sctp.transport.state == "connected"
    finally:
        await p.close()


PC_EVENTS = (
    "signalingstatechange",
    "iceconnectionstatechange",
    "connectionstatechange",
    "icegatheringstatechange",
    "icecandidate",
    "negotiationneeded",
    "datachannel",
    "track",
)
CHANNEL_EVENTS = ("open", "message", "bufferedamountlow", "close")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_raising_handlers_on_every_event_are_logged_and_change_nothing(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every peer connection, channel, track and transport event with a raising handler first.

    Negotiation, connection, messages, an audio track and close() all work as without them.
    """
    caplog.set_level(logging.ERROR, logger=HANDLER_LOG)
    calls: list[str] = []
    a, b = make_pc(), make_pc()
    for pc in (a, b):
        for name in PC_EVENTS:
            pc.on(name, raising(kind, calls, f"pc:{name}"))
    p = Pair(a, b)

    def guard_channel(channel: RTCDataChannel) -> None:
        for name in CHANNEL_EVENTS:
            channel.on(name, raising(kind, calls, f"b:{name}"))

    p.before_b.append(guard_channel)
    p.before_a.append(
        lambda channel: [
            channel.on(name, raising(kind, calls, f"a:{name}")) for name in CHANNEL_EVENTS
        ]
    )
    tracks: list[Any] = []

    def on_track(track: Any) -> None:
        track.on("ended", raising(kind, calls, "track:ended"))
        tracks.append(track)

    b.on("track", on_track)
    a.addTransceiver("audio", "sendonly")
    try:
        await p.connect()
        ice_b = b.iceTransport
        assert ice_b is not None
        ice_b.on("statechange", raising(kind, calls, "ice:statechange"))
        assert p.channel_a is not None and p.channel_b is not None
        p.channel_a.bufferedAmountLowThreshold = 1
        await p.exchange(20)
        assert p.got_b == [f"a{i}" for i in range(20)]
        await negotiate_restart(a, b)  # states change again with raising handlers in place
        await p.exchange(5)
        assert a.connectionState == b.connectionState == "connected"
        assert tracks and tracks[0].kind == "audio"
        tracks[0].stop()  # MediaStreamTrack.stop() emits "ended" and returns normally
    finally:
        await p.close()  # the channels' close handlers raise too; close() completes
    expected = {
        "pc:signalingstatechange",
        "pc:iceconnectionstatechange",
        "pc:connectionstatechange",
        "pc:icegatheringstatechange",
        "pc:icecandidate",
        "pc:negotiationneeded",
        "pc:datachannel",
        "pc:track",
        "a:open",
        "a:message",
        "b:message",
        "a:close",
        "b:close",
        "track:ended",
        "ice:statechange",
    }
    # Async handlers run (and log) on later loop turns: wait for the last of them.
    await until(lambda: expected <= set(calls) and len(boom_records(caplog)) == len(calls))
    assert expected <= set(calls), sorted(expected - set(calls))
    assert len(boom_records(caplog)) == len(calls)  # each one logged, with its traceback


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Re-check predicate() on every loop turn until it holds or `timeout` passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate() and loop.time() < deadline:
        await asyncio.sleep(0)


async def negotiate_restart(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription()
    await a.setRemoteDescription(b.localDescription)


async def test_dtls_closed_by_the_peer_makes_connection_failed_and_closes_channels(
    pair: Pair,
) -> None:
    """A DTLS transport that dies underneath shows as failed, never as connecting.

    b's DTLS sends close_notify (aiortc's public RTCDtlsTransport.stop()): a's DTLS
    closes while a's ICE is still connected. webrtc-pc counts DTLS in connectionState.
    """
    a, b = pair.a, pair.b
    assert a.sctp is not None and b.sctp is not None
    channel_closed = asyncio.Event()
    assert pair.channel_a is not None
    pair.channel_a.on("close", channel_closed.set)
    await b.sctp.transport.stop()
    await pair.ra.wait_for(lambda: a.connectionState == "failed")
    assert a.iceConnectionState in ("connected", "completed")  # it is DTLS that failed
    assert pair.ra.states("connectionstatechange") == ["connecting", "connected", "failed"]
    # The SCTP association rode on that DTLS session: the channels close, as in browsers.
    await asyncio.wait_for(channel_closed.wait(), 5)
    assert pair.channel_a.readyState == "closed"
    await pair.rb.wait_for(lambda: b.connectionState == "failed")
    # An ICE restart does not bring a dead DTLS session back.
    await negotiate_restart(a, b)
    assert a.connectionState == "failed"


# ---------------------------------------------------------------- item 5: validate, then apply


def with_credentials(sdp: str, ufrag: str, pwd: str) -> str:
    sdp = re.sub(r"a=ice-ufrag:\S+", f"a=ice-ufrag:{ufrag}", sdp)
    return re.sub(r"a=ice-pwd:\S+", f"a=ice-pwd:{pwd}", sdp)


def pwd_of(sdp: str) -> str:
    found = re.search(r"a=ice-pwd:(\S+)", sdp)
    assert found is not None
    return found.group(1)


async def test_restart_offer_reusing_an_older_ufrag_is_refused_with_nothing_changed(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    assert a.currentLocalDescription is not None
    first = a.currentLocalDescription.sdp
    old_ufrag, old_pwd = ufrag_of(first), pwd_of(first)
    await negotiate_restart(a, b)
    assert b.iceTransport is not None
    generation = b.iceTransport.agent.generation
    before = b.remoteDescription
    assert before is not None
    fresh = "Fr3shUfr4g"
    for bad in (
        with_credentials((await a.createOffer()).sdp, old_ufrag, old_pwd),  # an older generation
        with_credentials((await a.createOffer()).sdp, old_ufrag, "N" * 24),  # older ufrag, new pwd
        # RFC 8839 §4.4.1.1.1: a restart changes both; the current ufrag with a new pwd.
        with_credentials((await a.createOffer()).sdp, ufrag_of(before.sdp), "P" * 24),
        with_credentials((await a.createOffer()).sdp, fresh, pwd_of(before.sdp)),
    ):
        with pytest.raises(InvalidAccessError, match="ufrag|ice-pwd"):
            await b.setRemoteDescription(RTCSessionDescription(bad, "offer"))
        assert b.signalingState == "stable"
        assert b.remoteDescription is not None and b.remoteDescription.sdp == before.sdp
        assert b.iceTransport.agent.generation == generation
    # A normal restart afterwards: both sides agree and the new generation carries data.
    await negotiate_restart(a, b)
    assert a.signalingState == b.signalingState == "stable"
    assert a.iceTransport is not None
    assert a.iceTransport.agent.generation == b.iceTransport.agent.generation == generation + 1
    await pair.exchange(5)
    await negotiate_restart(b, a)
    assert a.signalingState == b.signalingState == "stable"
    await pair.exchange(5)


async def test_local_answer_keeping_credentials_after_remote_restart_is_refused(
    pair: Pair,
) -> None:
    """Validated before applying: no ICE restart happens for a description then refused."""
    a, b = pair.a, pair.b
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    await b.setRemoteDescription(a.localDescription)
    assert b.currentLocalDescription is not None and b.iceTransport is not None
    generation = b.iceTransport.agent.generation
    answer = await b.createAnswer()
    stale = with_credentials(
        answer.sdp,
        ufrag_of(b.currentLocalDescription.sdp),
        pwd_of(b.currentLocalDescription.sdp),
    )
    with pytest.raises(InvalidAccessError, match="new ice-ufrag"):
        await b.setLocalDescription(RTCSessionDescription(stale, "answer"))
    assert b.signalingState == "have-remote-offer"
    assert b.iceTransport.agent.generation == generation
    await b.setLocalDescription(answer)
    await a.setRemoteDescription(b.localDescription)
    assert a.signalingState == b.signalingState == "stable"
    await pair.exchange(3)


async def test_local_offer_reusing_an_older_local_ufrag_is_refused(pair: Pair) -> None:
    a, b = pair.a, pair.b
    assert a.currentLocalDescription is not None and a.iceTransport is not None
    first = a.currentLocalDescription.sdp
    await negotiate_restart(a, b)
    generation = a.iceTransport.agent.generation
    offer = await a.createOffer(iceRestart=True)
    munged = with_credentials(offer.sdp, ufrag_of(first), pwd_of(first))
    with pytest.raises(InvalidAccessError, match="ufrag"):
        await a.setLocalDescription(RTCSessionDescription(munged, "offer"))
    assert a.signalingState == "stable" and a.iceTransport.agent.generation == generation
    await a.setLocalDescription(offer)
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription()
    await a.setRemoteDescription(b.localDescription)
    await pair.exchange(3)


async def test_rollback_of_a_restart_pranswer_restores_the_credentials(pair: Pair) -> None:
    """A local pranswer that restarted ICE, rolled back: credentials and generation restored."""
    a, b = pair.a, pair.b
    assert b.currentLocalDescription is not None and b.iceTransport is not None
    before = ufrag_of(b.currentLocalDescription.sdp)
    generation = b.iceTransport.agent.generation
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    await b.setRemoteDescription(a.localDescription)
    answer = await b.createAnswer()
    await b.setLocalDescription(RTCSessionDescription(answer.sdp, "pranswer"))
    assert b.iceTransport.agent.generation == generation + 1
    await b.setLocalDescription(RTCSessionDescription("", "rollback"))
    assert b.signalingState == "stable"
    assert b.iceTransport.agent.generation == generation
    assert b.localDescription is not None and ufrag_of(b.localDescription.sdp) == before
    # a gives up its offer too; a fresh restart from b then works for both.
    await a.setLocalDescription(RTCSessionDescription("", "rollback"))
    await negotiate_restart(b, a)
    assert a.signalingState == b.signalingState == "stable"
    await pair.exchange(3)


async def test_rollback_of_two_restart_offers_restores_the_credentials(pair: Pair) -> None:
    """Two local restart offers in a row, rolled back: both generations go."""
    a, b = pair.a, pair.b
    assert a.currentLocalDescription is not None and a.iceTransport is not None
    before = ufrag_of(a.currentLocalDescription.sdp)
    generation = a.iceTransport.agent.generation
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    await a.setLocalDescription(await a.createOffer(iceRestart=True))
    assert a.iceTransport.agent.generation == generation + 2
    await a.setLocalDescription(RTCSessionDescription("", "rollback"))
    assert a.iceTransport.agent.generation == generation
    assert a.localDescription is not None and ufrag_of(a.localDescription.sdp) == before
    assert ufrag_of((await a.createOffer()).sdp) == before  # no restart pending any more
    await negotiate_restart(a, b)
    assert a.signalingState == b.signalingState == "stable"
    await pair.exchange(3)


async def test_answer_while_restart_ice_is_pending_keeps_credentials(pair: Pair) -> None:
    """restartIce() on b, then a's plain offer: b's answer may not restart (a refused it)."""
    a, b = pair.a, pair.b
    assert b.currentLocalDescription is not None
    before = ufrag_of(b.currentLocalDescription.sdp)
    fired = pair.rb.count("negotiationneeded")
    b.restartIce()
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription()
    assert b.localDescription is not None and ufrag_of(b.localDescription.sdp) == before
    await a.setRemoteDescription(b.localDescription)
    assert a.signalingState == b.signalingState == "stable"
    # The restart is still wanted: negotiationneeded again, and b's next offer restarts.
    await pair.rb.wait_for(lambda: pair.rb.count("negotiationneeded") > fired)
    await negotiate(b, a)
    assert b.currentLocalDescription is not None
    assert ufrag_of(b.currentLocalDescription.sdp) != before
    await pair.exchange(3)


# ---------------------------------------------------------------- item 8: bounded state


def lines_to_nowhere(count: int) -> list[str]:
    """Distinct host candidates on loopback addresses, port 9 (discard): nobody listens."""
    return [
        f"candidate:{i} 1 udp {2122260223 - i} 127.0.{1 + (i >> 8) % 200}.{i & 255} 9 typ host"
        for i in range(count)
    ]


async def test_add_ice_candidate_keeps_only_what_the_agent_accepted() -> None:
    """100,000 calls made a 5.5 MB remoteDescription; now it stops at the agent's limit."""
    config = IceConfig(max_remote_candidates=8)
    a, b = make_pc(iceConfig=config), make_pc(iceConfig=config)
    p = Pair(a, b)
    await p.connect()
    try:
        assert a.remoteDescription is not None
        for line in lines_to_nowhere(300):
            await a.addIceCandidate({"candidate": line, "sdpMid": "0"})
        remote = a.remoteDescription
        assert remote is not None
        lines = [x for x in remote.sdp.splitlines() if x.startswith("a=candidate")]
        assert 1 <= len(lines) <= 8
        for line in lines_to_nowhere(300):  # duplicates are not stored either
            await a.addIceCandidate({"candidate": line, "sdpMid": "0"})
        again = a.remoteDescription
        assert again is not None and again.sdp == remote.sdp
        await p.exchange(3)
    finally:
        await p.close()


async def test_remote_ufrag_memory_and_local_candidate_book_are_bounded(pair: Pair) -> None:
    """Per-restart state grew by one entry per restart forever; it is now bounded.

    Past the remembered generations a ufrag is as unknown as one never seen: OperationError.
    """
    a, b = pair.a, pair.b
    assert a.currentRemoteDescription is not None
    first_remote = ufrag_of(a.currentRemoteDescription.sdp)
    candidate = {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0"}
    await negotiate_restart(b, a)
    await a.addIceCandidate({**candidate, "usernameFragment": first_remote})  # old: ignored
    memory = limits.REMOTE_UFRAG_MEMORY
    for i in range(memory + 1):
        await negotiate_restart(b if i % 2 else a, a if i % 2 else b)
    assert len(a._jsep.remote_ufrags) <= memory  # noqa: SLF001 - the bound itself
    assert len(a._local_candidates) <= 2 and len(a._gathering_complete) <= 2  # noqa: SLF001
    with pytest.raises(OperationError, match="no remote description has ufrag"):
        await a.addIceCandidate({**candidate, "usernameFragment": first_remote})
    await pair.exchange(3)


def offer_with_candidates(sdp: str, count: int) -> str:
    lines = sdp.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("a=mid"))
    extra = ["a=" + line for line in lines_to_nowhere(count)]
    return "\r\n".join(lines[: at + 1] + extra + lines[at + 1 :]) + "\r\n"


async def test_candidate_lines_past_the_cap_are_ignored_and_counted() -> None:
    """A description with 8,000 candidate lines: the agent sees only the first ones."""
    offerer, b = make_pc(), make_pc()
    offerer.createDataChannel("x")
    offer = offer_with_candidates((await offerer.createOffer()).sdp, 8000)
    assert len(offer.encode()) < limits.MAX_DESCRIPTION_BYTES
    await b.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    assert b.iceTransport is not None
    cap = limits.max_candidate_lines(b.iceTransport.agent.config.max_remote_candidates)
    seen = sum(
        v for k, v in b.iceTransport.agent.counters.items() if k.startswith("remote_candidate")
    ) + len(b.iceTransport.agent.generations()[-1].remote_candidates)
    assert seen <= cap  # the rest were never parsed nor handed to the agent
    assert RemoteCandidates.of(b.iceTransport).counters[IGNORED_OVER_CAP] == 8000 - cap
    await b.setLocalDescription()
    assert b.signalingState == "stable"
    await b.close()
    await offerer.close()


async def test_oversized_description_is_refused_with_nothing_changed() -> None:
    offerer, b = make_pc(), make_pc()
    offerer.createDataChannel("x")
    sdp = (await offerer.createOffer()).sdp
    padding = "a=x-padding:" + "p" * 1000 + "\r\n"
    big = sdp + padding * (limits.MAX_DESCRIPTION_BYTES // len(padding) + 1)
    with pytest.raises(InvalidAccessError, match="bytes"):
        await b.setRemoteDescription(RTCSessionDescription(big, "offer"))
    assert b.signalingState == "stable" and b.remoteDescription is None
    await b.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
    await b.close()
    await offerer.close()


async def test_more_m_sections_in_use_than_the_limit_are_refused() -> None:
    """400 audio m-sections started 400 decoders; past the limit the offer is refused."""
    offerer, b = make_pc(), make_pc()
    for _ in range(limits.MAX_MEDIA_SECTIONS + 1):
        offerer.addTransceiver("audio", "sendrecv")
    offer = await offerer.createOffer()
    with pytest.raises(InvalidAccessError, match=f"at most {limits.MAX_MEDIA_SECTIONS}"):
        await b.setRemoteDescription(offer)
    assert b.signalingState == "stable" and b.getTransceivers() == []
    # Exactly at the limit is fine; rejected m-sections (port 0) do not count.
    at_limit = offer.sdp.replace("m=audio 9 ", "m=audio 0 ", 1)
    await b.setRemoteDescription(RTCSessionDescription(at_limit, "offer"))
    assert len(b.getTransceivers()) == limits.MAX_MEDIA_SECTIONS
    await b.close()
    await offerer.close()


async def test_reoffer_must_keep_the_m_sections_in_place(pair: Pair) -> None:
    """New mids in place of old ones would make new transceivers on every re-offer."""
    a, b = pair.a, pair.b
    offer = (await a.createOffer()).sdp
    before = b.remoteDescription
    assert before is not None
    for bad in (
        offer.replace("a=mid:0", "a=mid:9").replace("BUNDLE 0", "BUNDLE 9"),  # replaced
        offer.split("m=application")[0],  # removed
    ):
        with pytest.raises(InvalidAccessError, match="m-section"):
            await b.setRemoteDescription(RTCSessionDescription(bad, "offer"))
        assert b.signalingState == "stable"
        assert b.remoteDescription is not None and b.remoteDescription.sdp == before.sdp
    # An answer has exactly the offer's m-sections (RFC 3264 §6).
    await a.setLocalDescription(RTCSessionDescription(offer, "offer"))
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription()
    assert b.localDescription is not None
    answer = b.localDescription.sdp
    extra = answer + "m=audio 0 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:7\r\n"
    with pytest.raises(InvalidAccessError, match="m-sections"):
        await a.setRemoteDescription(RTCSessionDescription(extra, "answer"))
    assert a.signalingState == "have-local-offer"
    await a.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    await pair.exchange(3)


# ---------------------------------------------------------------- item 9: all rejected


async def test_offer_whose_only_m_section_is_rejected_is_answered() -> None:
    offerer, b = make_pc(), make_pc()
    offerer.createDataChannel("x")
    await offerer.setLocalDescription()
    assert offerer.localDescription is not None
    rejected = offerer.localDescription.sdp.replace("m=application 9 ", "m=application 0 ")
    await b.setRemoteDescription(RTCSessionDescription(rejected, "offer"))
    await b.setLocalDescription()
    assert b.signalingState == "stable"
    answer = b.localDescription
    assert answer is not None and answer.type == "answer"
    assert "m=application 0 " in answer.sdp and "a=ice-ufrag" not in answer.sdp
    await offerer.setRemoteDescription(answer)
    assert offerer.signalingState == "stable"
    await b.close()
    await offerer.close()


async def test_reoffer_rejecting_the_only_m_section_is_answered_and_session_goes_on(
    pair: Pair,
) -> None:
    a, b = pair.a, pair.b
    offer = await a.createOffer()
    rejected = offer.sdp.replace("m=application 9 ", "m=application 0 ")
    await b.setRemoteDescription(RTCSessionDescription(rejected, "offer"))
    await b.setLocalDescription()
    assert b.signalingState == "stable"
    assert b.localDescription is not None and "m=application 0 " in b.localDescription.sdp
    # The session goes on: the next offer enables the m-section again, data still flows.
    await negotiate(a, b)
    assert a.signalingState == b.signalingState == "stable"
    assert b.currentRemoteDescription is not None
    assert ufrag_of(b.currentRemoteDescription.sdp) == ufrag_of(offer.sdp)
    await pair.exchange(3)


# ---------------------------------------------------------------- close() at awkward moments


async def test_close_at_awkward_moments() -> None:
    """close() from inside a handler, while DTLS dies, between a restart offer and the answer."""
    # From inside the receiving side's async message handler.
    p = Pair(make_pc(), make_pc())
    closed = asyncio.Event()

    async def close_on_message(message: str) -> None:
        await p.b.close()
        closed.set()

    p.before_b.append(lambda channel: channel.on("message", close_on_message))
    await p.connect()
    assert p.channel_a is not None
    p.channel_a.send("bye")
    await asyncio.wait_for(closed.wait(), 5)
    assert p.b.connectionState == "closed" and p.b.signalingState == "closed"
    await p.a.close()

    # Right after the peer's DTLS went away, while our SCTP is being stopped because of it.
    p = Pair(make_pc(), make_pc())
    await p.connect()
    assert p.b.sctp is not None
    await p.b.sctp.transport.stop()
    await p.ra.wait_for(lambda: p.a.connectionState == "failed")
    await p.a.close()
    await p.b.close()
    assert p.a.connectionState == p.b.connectionState == "closed"

    # Between a remote restart offer and our answer (its ICE restart deferred).
    p = Pair(make_pc(), make_pc())
    await p.connect()
    await p.a.setLocalDescription(await p.a.createOffer(iceRestart=True))
    await p.b.setRemoteDescription(p.a.localDescription)
    await p.b.close()
    assert p.b.signalingState == "closed"
    await p.a.close()
