"""The seam to aiortc: its DTLS, SCTP and data channels over our ICE transport.

aiortc's RTCDtlsTransport uses exactly `role`, `await _send()` and `await _recv()` of its
ICE transport. These are private members: the first test fails loudly when an aiortc
release uses anything else; the second runs the real stack over two IceConnections on
loopback through 20 ICE restarts while messages flow both ways every 10 ms.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from importlib.metadata import version
from typing import cast

import aiortc.rtcdtlstransport
import pytest
from aiortc import (
    RTCCertificate,
    RTCDataChannel,
    RTCDataChannelParameters,
    RTCDtlsTransport,
    RTCIceTransport,
    RTCSctpTransport,
)

from unbroken.ice import SelectedPairChanged
from unbroken.peerconnection import aiortc_seam
from unbroken.runtime import IceConnection
from unbroken.runtime.loopback import connected_pair


def test_aiortc_uses_only_role_send_recv_of_the_ice_transport() -> None:
    major_minor = tuple(int(x) for x in version("aiortc").split(".")[:2])
    assert (1, 16) <= major_minor < (1, 17), "pyproject pins aiortc>=1.16,<1.17: re-check the seam"
    source = inspect.getsource(aiortc.rtcdtlstransport)
    used = set(re.findall(r"self\.transport\.(\w+)", source)) | set(
        re.findall(r"self\._transport\.(\w+)", source)
    )
    assert used == {"role", "_send", "_recv"}, (
        f"aiortc's DTLS now uses {sorted(used)} of the ICE transport"
    )


async def restart(a: IceConnection, b: IceConnection) -> None:
    """A restart as JSEP does it, and wait until both sides use the new generation."""
    target = a.agent.generation + 1
    switched = [asyncio.Event(), asyncio.Event()]
    for conn, ev in zip((a, b), switched):

        def on_switch(event: SelectedPairChanged, ev: asyncio.Event = ev) -> None:
            if event.generation == target:
                ev.set()

        conn.on("selectedpairchange", on_switch)
    offer = a.restart()
    answer = b.restart()
    b.set_remote_credentials(*offer)
    a.set_remote_credentials(*answer)
    await asyncio.wait_for(asyncio.gather(switched[0].wait(), switched[1].wait()), 5)
    for conn in (a, b):
        conn.remove_all_listeners("selectedpairchange")


async def test_dtls_sctp_datachannel_survive_20_restarts() -> None:
    ice_a, ice_b = await connected_pair()
    # The seam: our IceConnection stands in for aiortc's RTCIceTransport (role, _send, _recv).
    dtls_a = RTCDtlsTransport(cast(RTCIceTransport, ice_a), [RTCCertificate.generateCertificate()])
    dtls_b = RTCDtlsTransport(cast(RTCIceTransport, ice_b), [RTCCertificate.generateCertificate()])
    states: list[str] = []
    dtls_a.on("statechange", lambda: states.append(dtls_a.state))
    dtls_b.on("statechange", lambda: states.append(dtls_b.state))
    await asyncio.wait_for(
        asyncio.gather(
            dtls_a.start(dtls_b.getLocalParameters()), dtls_b.start(dtls_a.getLocalParameters())
        ),
        10,
    )
    ssl_a, ssl_b = dtls_a._ssl, dtls_b._ssl
    sctp_a, sctp_b = RTCSctpTransport(dtls_a), RTCSctpTransport(dtls_b)
    got_a: list[str] = []
    got_b: list[str] = []
    channel_b: list[RTCDataChannel] = []

    @sctp_b.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        channel_b.append(channel)
        channel.on("message", got_b.append)

    caps = RTCSctpTransport.getCapabilities()
    await asyncio.gather(sctp_a.start(caps, 5000), sctp_b.start(caps, 5000))
    dc_a = RTCDataChannel(sctp_a, RTCDataChannelParameters(label="chat"))
    opened = asyncio.Event()
    dc_a.on("open", opened.set)
    dc_a.on("message", got_a.append)
    await asyncio.wait_for(opened.wait(), 5)
    while not channel_b or channel_b[0].readyState != "open":
        await asyncio.sleep(0.01)
    sent = 0
    stop = asyncio.Event()

    async def traffic() -> None:
        nonlocal sent
        while not stop.is_set():
            dc_a.send(f"a{sent}")
            channel_b[0].send(f"b{sent}")
            sent += 1
            await asyncio.sleep(0.010)

    task = asyncio.create_task(traffic())
    try:
        for _ in range(20):
            await asyncio.sleep(0.05)
            await restart(ice_a, ice_b)
    finally:
        stop.set()
        await task
    deadline = asyncio.get_running_loop().time() + 10
    while (len(got_a) < sent or len(got_b) < sent) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert ice_a.agent.generation == 20 and ice_b.agent.generation == 20
    assert got_b == [f"a{i}" for i in range(sent)]
    assert got_a == [f"b{i}" for i in range(sent)]
    # One DTLS session throughout: the same SSL objects, connected once, never re-handshaken.
    assert dtls_a._ssl is ssl_a and dtls_b._ssl is ssl_b
    assert states.count("connected") == 2 and "failed" not in states and "closed" not in states
    await sctp_a.stop()
    await sctp_b.stop()
    await dtls_a.stop()
    await dtls_b.stop()
    await ice_a.close()
    await ice_b.close()


def test_pyee_runs_each_handler_through_emit_run() -> None:
    """Guarded handlers (peerconnection/handlers.py) hook pyee's protected `_emit_run`.

    Every data channel, remote track, SCTP/DTLS/ICE transport and the peer connection
    rely on it: if pyee stops calling `_emit_run(f, args, kwargs)` once per handler, an
    application's raising handler would again raise into aiortc's SCTP receive path.
    """
    from pyee.asyncio import AsyncIOEventEmitter

    from unbroken.peerconnection.handlers import guard, is_guarded

    params = list(inspect.signature(AsyncIOEventEmitter._emit_run).parameters)
    assert params == ["self", "f", "args", "kwargs"], f"pyee's _emit_run is now {params}"
    emitter = guard(AsyncIOEventEmitter())
    assert is_guarded(emitter)
    got: list[str] = []

    def boom(message: str) -> None:
        raise ZeroDivisionError(message)

    emitter.on("message", boom)
    emitter.on("message", got.append)
    assert emitter.emit("message", "hello")  # no raise: logged by the guard
    assert got == ["hello"]  # and the next handler still ran


# ---------------------------------------------------------------- aiortc_seam.py, one by one


async def seam_objects() -> dict[str, object]:
    """Real aiortc objects of each kind whose private members aiortc_seam touches."""
    from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver

    dtls = RTCDtlsTransport(None, [RTCCertificate.generateCertificate()])  # type: ignore[arg-type]
    sender = RTCRtpSender("video", dtls)
    receiver = RTCRtpReceiver("video", dtls)
    transceiver = RTCRtpTransceiver(kind="video", receiver=receiver, sender=sender)
    return {
        "certificate": RTCCertificate.generateCertificate(),
        "dtls": dtls,
        "sctp": RTCSctpTransport(dtls),
        "transceiver": transceiver,
        "sender": sender,
        "receiver": receiver,
    }


SEAM_MEMBERS = [
    (owner, member)
    for owner, members in (
        ("certificate", aiortc_seam.CERTIFICATE_MEMBERS),
        ("dtls", aiortc_seam.DTLS_MEMBERS),
        ("sctp", aiortc_seam.SCTP_MEMBERS),
        ("transceiver", aiortc_seam.TRANSCEIVER_MEMBERS),
        ("sender", aiortc_seam.SENDER_MEMBERS),
        ("receiver", aiortc_seam.RECEIVER_MEMBERS),
    )
    for member in members
]


@pytest.mark.parametrize(
    ("owner", "member"), SEAM_MEMBERS, ids=[f"{o}.{m}" for o, m in SEAM_MEMBERS]
)
async def test_aiortc_has_each_private_member_of_the_seam(owner: str, member: str) -> None:
    """Every private member aiortc_seam touches exists on aiortc's real objects."""
    objects = await seam_objects()
    assert hasattr(objects[owner], member), f"aiortc's {owner} has no {member} any more"


async def test_seam_transceiver_functions_act_on_aiortc() -> None:
    from aiortc import RTCRtpSender

    from unbroken.peerconnection.media import local_codecs

    objects = await seam_objects()
    t = objects["transceiver"]
    aiortc_seam.set_mid(t, "3")
    assert t.mid == "3"  # type: ignore[attr-defined]
    aiortc_seam.set_current_direction(t, "recvonly")
    assert t.currentDirection == "recvonly"  # type: ignore[attr-defined]
    codecs = local_codecs("video")
    aiortc_seam.set_codecs(t, codecs)
    assert t._codecs == codecs  # type: ignore[attr-defined]
    assert aiortc_seam.preferred_codecs(t) == []
    vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "VP8"]
    t.setCodecPreferences(vp8)  # type: ignore[attr-defined]
    assert aiortc_seam.preferred_codecs(t) == vp8


async def test_seam_sender_sources_name_the_senders_track() -> None:
    from aiortc import RTCRtpSender, VideoStreamTrack

    objects = await seam_objects()
    track = VideoStreamTrack()
    sender = RTCRtpSender(track, cast(RTCDtlsTransport, objects["dtls"]))
    ssrc, rtx_ssrc, stream_id, track_id = aiortc_seam.sender_sources(sender)
    assert isinstance(ssrc, int) and isinstance(rtx_ssrc, int) and ssrc != rtx_ssrc
    assert stream_id and track_id == track.id  # the msid the SDP announces (RFC 8830)
    track.stop()


async def test_seam_remote_track_is_the_receivers_track() -> None:
    objects = await seam_objects()
    receiver = objects["receiver"]
    track = aiortc_seam.remote_track(receiver, "video", "their-track")
    assert track.kind == "video" and track.id == "their-track"
    assert receiver.track is track  # type: ignore[attr-defined]
    assert aiortc_seam.remote_track(receiver, "video", "other") is track  # made once


async def test_seam_dtls_role_is_what_the_handshake_reads() -> None:
    objects = await seam_objects()
    dtls = objects["dtls"]
    aiortc_seam.set_dtls_role(dtls, "server")
    assert dtls._role == "server"  # type: ignore[attr-defined]
    # aiortc picks the role from ICE only while it is "auto" (rtcdtlstransport.py start()).
    assert 'self._role == "auto"' in inspect.getsource(RTCDtlsTransport.start)


def test_seam_lean_certificate_makes_contexts_that_release_idle_buffers() -> None:
    """LeanCertificate's DTLS context (shared by every connection of the thread) carries
    SSL_MODE_RELEASE_BUFFERS and keeps no sessions; aiortc's own contexts do neither."""
    from aiortc.rtcdtlstransport import SRTP_PROFILES
    from OpenSSL import SSL
    from OpenSSL._util import lib

    def mode(ctx: SSL.Context) -> int:
        # pyOpenSSL refuses set_mode on a context in use; OpenSSL's returns the mode.
        return int(lib.SSL_CTX_set_mode(ctx._context, 0))

    cert = aiortc_seam.LeanCertificate.generateCertificate()
    assert isinstance(cert, aiortc_seam.LeanCertificate)
    ctx = cert._create_ssl_context(SRTP_PROFILES)
    assert mode(ctx) & SSL.MODE_RELEASE_BUFFERS
    assert ctx.get_session_cache_mode() == SSL.SESS_CACHE_OFF
    other = aiortc_seam.LeanCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)
    assert other is ctx  # one context for every connection of the thread
    plain = RTCCertificate.generateCertificate()._create_ssl_context(SRTP_PROFILES)
    assert not mode(plain) & SSL.MODE_RELEASE_BUFFERS
    assert plain.get_session_cache_mode() != SSL.SESS_CACHE_OFF


def test_aiortc_starts_the_handshake_right_after_making_the_connection() -> None:
    """LeanCertificate's shared context relies on it: RTCDtlsTransport.start() asks for the
    context, makes the connection from it and calls do_handshake() (where OpenSSL reports
    the handshake start) without yielding to the loop in between."""
    start = inspect.getsource(RTCDtlsTransport.start)
    made = start.index("_create_ssl_context(")
    handshake = start.index("await self._do_handshake()")
    assert "await" not in start[made:handshake]
    do_handshake = inspect.getsource(RTCDtlsTransport._do_handshake)
    first_await = do_handshake.index("await")
    assert "self._ssl.do_handshake()" in do_handshake[:first_await]
