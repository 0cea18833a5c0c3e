"""Our peer connection driven with aiortc's own classes and idioms (issue 8).

Items: aiortc's descriptions, candidates, configuration, enum values and exceptions
(1); non-trickle use with a STUN server on loopback (2); ICE server names (3); the track
event during setRemoteDescription and the echo pattern (4); codec preferences in the SDP
and bundle policies (5); a remote close (6); the smaller points (7).

Tests with aiortc's RTCPeerConnection run in a network namespace with only `lo` (aioice
offers every local address and has no filter): the test's thread enters it, so every
socket of both stacks is there. Tests with only ours gather on 127.0.0.1 (and ::1).
coturn, as tests/test_runtime.py starts it, is the STUN server on loopback. Under
CI=true a missing prerequisite (root, coturn) fails instead of skipping.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any

import aiortc
import aiortc.exceptions
import pytest
from aiortc.contrib.signaling import object_from_string, object_to_string
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

import unbroken
from interop.netns import NetNs, netns_available
from pc_helpers import Recorder
from prereq import require
from unbroken import (
    InvalidAccessError,
    InvalidStateError,
    NotSupportedError,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
    TypeError_,
    UnbrokenError,
)
from unbroken.errors import SyntaxError_

LOOPBACK = ["127.0.0.1"]


def ours(**options: Any) -> RTCPeerConnection:
    options.setdefault("hostAddresses", LOOPBACK)
    return RTCPeerConnection(RTCConfiguration(**options))


async def exchange(offerer: Any, answerer: Any) -> None:
    """aiortc's idiom: apply, then send localDescription (its candidates are in it)."""
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(
        object_from_string(object_to_string(offerer.localDescription))
    )
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(
        object_from_string(object_to_string(answerer.localDescription))
    )


async def until(predicate: Any, timeout: float = 10.0) -> None:
    """Wait until predicate() holds, re-checked on every loop turn (no fixed sleep)."""

    async def loop() -> None:
        while not predicate():
            await asyncio.sleep(0)

    await asyncio.wait_for(loop(), timeout)


async def open_channel_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """A data channel from a to b over one aiortc-style exchange; both ends open."""
    channel = a.createDataChannel("chat")
    remote: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    b.on("datachannel", lambda c: None if remote.done() else remote.set_result(c))
    await exchange(a, b)
    other = await asyncio.wait_for(remote, 10)
    await until(lambda: channel.readyState == "open" and other.readyState == "open")
    return channel, other


@pytest.fixture(scope="module")
def lo_ns() -> Iterator[NetNs]:
    require(netns_available())
    ns = NetNs.create(prefix="ubcp", extra_addresses=("127.0.0.2/8",))
    try:
        yield ns
    finally:
        ns.delete()


@pytest.fixture
def in_lo_ns(lo_ns: NetNs) -> Iterator[NetNs]:
    """The test (its event loop) runs in a namespace with only lo: aiortc gathers 127.0.0.2."""
    with lo_ns.entered():
        yield lo_ns


def aiortc_pc(**options: Any) -> aiortc.RTCPeerConnection:
    # iceServers=[]: aiortc's default configuration names a public STUN server.
    return aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[], **options))


# ---------------------------------------------------------------- 1: aiortc's classes


def test_classes_are_aiortcs_both_ways() -> None:
    desc = RTCSessionDescription(sdp="v=0\r\n", type="offer")
    assert isinstance(desc, aiortc.RTCSessionDescription)
    theirs = aiortc.RTCSessionDescription(sdp="v=0\r\n", type="offer")
    assert isinstance(theirs, RTCSessionDescription)  # as the examples' receive loops test it
    assert desc == theirs and desc.toJSON() == {"type": "offer", "sdp": "v=0\r\n"}
    cand = RTCIceCandidate("candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", "0", 0)
    assert isinstance(cand, aiortc.RTCIceCandidate)
    assert isinstance(
        aiortc.RTCIceCandidate(1, "f", "127.0.0.1", 9, 1, "udp", "host"), RTCIceCandidate
    )
    assert isinstance(RTCIceServer("stun:127.0.0.1"), aiortc.RTCIceServer)
    assert isinstance(RTCConfiguration(), aiortc.RTCConfiguration)
    assert isinstance(aiortc.RTCConfiguration(), RTCConfiguration)
    for name in ("InvalidStateError", "InvalidAccessError", "OperationError"):
        assert issubclass(getattr(unbroken, name), getattr(aiortc.exceptions, name))
        assert issubclass(getattr(unbroken, name), UnbrokenError)
    assert issubclass(TypeError_, TypeError) and issubclass(TypeError_, ValueError)


def test_signaling_helpers_carry_our_objects() -> None:
    desc = RTCSessionDescription(sdp="v=0\r\n", type="answer")
    back = object_from_string(object_to_string(desc))
    assert back == desc
    line = (
        "candidate:842163049 1 udp 1677729535 127.0.0.3 61665 typ srflx raddr 127.0.0.1 rport 61665"
    )
    cand = RTCIceCandidate(line, "0", 0, "abcd")
    text = json.loads(object_to_string(cand))
    assert text == {"candidate": line, "id": "0", "label": 0, "type": "candidate"}
    theirs = object_from_string(object_to_string(cand))
    assert isinstance(theirs, aiortc.RTCIceCandidate)
    assert (theirs.ip, theirs.port, theirs.relatedAddress, theirs.relatedPort) == (
        "127.0.0.3",
        61665,
        "127.0.0.1",
        61665,
    )
    assert cand == theirs  # equal as aiortc's fields


async def test_aiortc_candidates_are_added_as_they_come_from_its_signaling() -> None:
    a, b = ours(), ours()
    a.createDataChannel("chat")
    await a.setLocalDescription(await a.createOffer())
    assert a.localDescription is not None
    # As a trickling peer would send it: no candidate yet, gathering not over.
    offer = re.sub(r"a=(candidate:.*|end-of-candidates)\r\n", "", a.localDescription.sdp)
    await b.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    message = json.dumps(
        {
            "type": "candidate",
            "candidate": "candidate:9 1 udp 2130706431 127.0.0.1 40000 typ host",
            "id": "0",
            "label": 0,
        }
    )
    theirs = object_from_string(message)  # aiortc's RTCIceCandidate, sdpMid set by hand
    await b.addIceCandidate(theirs)
    assert b.remoteDescription is not None
    assert "127.0.0.1 40000 typ host" in b.remoteDescription.sdp
    await b.addIceCandidate(None)  # aiortc's end-of-candidates
    assert "a=end-of-candidates" in b.remoteDescription.sdp
    await a.close()
    await b.close()


def test_candidate_constructor_forms() -> None:
    keywords = RTCIceCandidate(
        component=1,
        foundation="1",
        ip="127.0.0.1",
        port=5000,
        priority=2130706431,
        protocol="udp",
        type="host",
        sdpMid="0",
        sdpMLineIndex=0,
    )
    assert keywords.candidate == "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
    assert keywords.address == "127.0.0.1" and keywords.component == 1
    positional = RTCIceCandidate(1, "1", "127.0.0.1", 5000, 2130706431, "udp", "host", sdpMid="0")
    assert positional.candidate == keywords.candidate
    w3c = RTCIceCandidate({"candidate": keywords.candidate, "sdpMid": "0", "usernameFragment": "u"})
    assert (w3c.ip, w3c.port, w3c.type, w3c.usernameFragment) == ("127.0.0.1", 5000, "host", "u")
    assert w3c.toJSON()["usernameFragment"] == "u"
    end = RTCIceCandidate("", "0", 0)
    assert end.candidate == "" and end.ip is None
    with pytest.raises(TypeError):
        RTCIceCandidate(component=1, foundation="1")  # missing fields
    with pytest.raises(ValueError):  # what aiortc raises for the same mistake
        RTCIceCandidate({"candidate": "x", "bogus": 1})


async def test_aiortc_configuration_enums_and_options_are_accepted() -> None:
    config = RTCConfiguration(
        iceServers=[aiortc.RTCIceServer("stun:127.0.0.1:3478")],
        iceTransportPolicy=RTCIceTransportPolicy.ALL,
        bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        alwaysNegotiateDataChannels=True,
        hostAddresses=LOOPBACK,
    )
    pc = RTCPeerConnection(config)
    assert pc.getConfiguration().bundlePolicy is RTCBundlePolicy.MAX_BUNDLE
    pc.addTransceiver("audio")
    offer = await pc.createOffer()
    kinds = re.findall(r"^m=(\w+)", offer.sdp, re.M)
    assert kinds == ["application", "audio"]  # alwaysNegotiateDataChannels: data first
    await pc.close()
    theirs = RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))  # aiortc's own class
    assert theirs.getConfiguration().iceServers == []
    await theirs.close()
    with pytest.raises(TypeError):
        RTCPeerConnection(RTCConfiguration(bundlePolicy="most-bundle"))
    with pytest.raises(SyntaxError_):  # webrtc-pc: a URL that does not parse; a ValueError too
        RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer("stun:bad host")]))


async def test_aiortc_exceptions_catch_ours() -> None:
    pc = ours()
    await pc.close()
    with pytest.raises(aiortc.exceptions.InvalidStateError):
        await pc.createOffer()
    b = ours()
    with pytest.raises(aiortc.exceptions.InvalidStateError):
        await b.createAnswer()  # no remote offer
    await b.close()


async def test_data_channel_errors_are_ours_and_aiortcs() -> None:
    a, b = ours(), ours()
    channel, remote = await open_channel_pair(a, b)
    assert isinstance(channel, unbroken.RTCDataChannel) and isinstance(
        remote, unbroken.RTCDataChannel
    )
    closed = asyncio.Event()
    remote.on("close", closed.set)
    channel.close()
    await asyncio.wait_for(closed.wait(), 10)
    for end in (channel, remote):
        with pytest.raises(InvalidStateError) as info:
            end.send("late")
        assert isinstance(info.value, aiortc.exceptions.InvalidStateError)
    await a.close()
    await b.close()


async def test_with_aiortc_over_its_signaling_both_directions(in_lo_ns: NetNs) -> None:
    for offerer_ours in (True, False):
        a: Any = RTCPeerConnection(RTCConfiguration(iceServers=[])) if offerer_ours else aiortc_pc()
        b: Any = aiortc_pc() if offerer_ours else RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel, remote = await open_channel_pair(a, b)
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        remote.on("message", lambda m, got=got: got.done() or got.set_result(m))
        channel.send(b"\x00binary")
        assert await asyncio.wait_for(got, 10) == b"\x00binary"
        await a.close()
        await b.close()


# ---------------------------------------------------------------- 2, 3: non-trickle, names


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stun_server() -> Iterator[int]:
    """coturn as a STUN server on 127.0.0.1 and ::1; yields its port."""
    binary = shutil.which("turnserver")
    if binary is None:
        require("coturn (turnserver) is not installed: run scripts/install-test-deps.sh")
    assert binary is not None
    port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            binary, "--stun-only", "--listening-ip", "127.0.0.1", "--listening-ip", "::1",
            "--listening-port", str(port), "--no-tls", "--no-dtls", "--no-cli",
            "--log-file", f"{tmp}/turn.log", "--simple-log", "--pidfile", f"{tmp}/turn.pid",
            "--no-software-attribute",
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield port
        finally:
            proc.terminate()
            proc.wait(5)


async def test_non_trickle_waits_for_gathering_with_a_stun_server_by_name(stun_server: int) -> None:
    """aiortc's idiom with a STUN server: the description sent carries everything.

    The server is named "localhost" (the resolver answers from /etc/hosts) and "[::1]".
    """
    urls = [f"stun:localhost:{stun_server}", f"stun:[::1]:{stun_server}"]
    pc = ours(hostAddresses=["127.0.0.1", "::1"], iceServers=[RTCIceServer(urls)])
    errors: list[Any] = []
    pc.on("icecandidateerror", errors.append)
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())  # nobody listens to icecandidate
    assert pc.localDescription is not None
    sdp = pc.localDescription.sdp
    assert "a=end-of-candidates" in sdp
    hosts = {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}
    assert hosts == {"127.0.0.1", "::1"}
    # "localhost" gave every address the resolver has for it, of either family, and
    # coturn answered on each (no icecandidateerror).
    assert pc.iceTransport is not None
    servers = set(pc.iceTransport.agent.config.stun_servers)
    system = {
        (str(info[4][0]), stun_server)
        for info in socket.getaddrinfo("localhost", stun_server, type=socket.SOCK_DGRAM)
    }
    assert servers == system | {("::1", stun_server)}
    assert ("127.0.0.1", stun_server) in servers
    await asyncio.sleep(0)  # deliver queued events
    assert errors == []
    await pc.close()


async def test_trickle_code_is_not_held_back(stun_server: int) -> None:
    pc = ours(iceServers=[RTCIceServer(f"stun:127.0.0.1:{stun_server}")])
    rec = Recorder(pc)  # listens to icecandidate: trickle
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    assert "a=end-of-candidates" not in pc.localDescription.sdp  # returned before gathering ended
    await rec.wait_for(lambda: None in rec.candidates)
    assert "a=end-of-candidates" in pc.localDescription.sdp
    await pc.close()


async def test_silent_stun_server_ends_the_wait_with_an_error_event() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # receives, never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    from unbroken.ice import IceConfig

    pc = ours(
        iceServers=[{"urls": f"stun:127.0.0.1:{port}"}],
        iceConfig=IceConfig(stun_rto=0.05, stun_attempts=2),
    )
    errors: list[Any] = []
    pc.on("icecandidateerror", errors.append)
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    assert "a=end-of-candidates" in pc.localDescription.sdp
    assert silent.recv(2048)  # the binding request did reach the server
    await until(lambda: errors)
    assert errors[0].errorCode == 701 and errors[0].url == f"stun:127.0.0.1:{port}"
    silent.close()
    await pc.close()


async def test_unresolvable_server_name_is_an_event_not_an_exception() -> None:
    url = "stun:stun.nonexistent.invalid:3478"  # RFC 6761: .invalid never resolves
    pc = ours(iceServers=[RTCIceServer(url)])  # the constructor does not raise
    errors: list[Any] = []
    pc.on("icecandidateerror", errors.append)
    pc.createDataChannel("chat")
    await pc.setLocalDescription(await pc.createOffer())
    assert pc.localDescription is not None
    assert "a=end-of-candidates" in pc.localDescription.sdp  # host candidates carry on
    await until(lambda: errors)
    assert (errors[0].url, errors[0].errorCode) == (url, 701)
    await pc.close()


# ---------------------------------------------------------------- 4: track event, echo


async def test_track_fires_during_set_remote_description_and_echo_answers_sendrecv() -> None:
    a, b = ours(), ours()
    sent = VideoStreamTrack()
    a.addTrack(sent)
    seen_during: list[str] = []

    @b.on("track")
    def on_track(track: Any) -> None:
        seen_during.append(b.signalingState)
        b.addTrack(track)  # aiortc's echo: send back what arrives, before answering

    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    assert seen_during == ["have-remote-offer"]  # fired before the call returned
    assert b.getReceivers()[0].track.id == sent.id  # from a=msid
    await b.setLocalDescription(await b.createAnswer())
    assert b.localDescription is not None
    assert "a=sendrecv" in b.localDescription.sdp
    got: list[Any] = []
    a.on("track", got.append)
    await a.setRemoteDescription(b.localDescription)
    assert len(got) == 1 and got[0].kind == "video"
    frame = await asyncio.wait_for(got[0].recv(), 10)  # the echo comes back
    assert frame.width == 640
    await a.close()
    await b.close()


async def test_echo_with_aiortc_offering(in_lo_ns: NetNs) -> None:
    a = aiortc_pc()
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    a.addTrack(AudioStreamTrack())

    @b.on("track")
    def on_track(track: Any) -> None:
        b.addTrack(track)

    got: list[Any] = []
    a.on("track", got.append)
    await exchange(a, b)
    assert len(got) == 1
    frame = await asyncio.wait_for(got[0].recv(), 10)
    assert frame.sample_rate == 48000
    await a.close()
    await b.close()


# ---------------------------------------------------------------- 5: codecs, bundle policy


def capability(kind: str, mime: str) -> Any:
    return next(c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType == mime)


def codec_names(sdp: str, kind: str) -> list[str]:
    section = sdp.split(f"m={kind} ", 1)[1].split("\nm=", 1)[0]
    formats = section.split("\n", 1)[0].split()[2:]
    names = dict(re.findall(r"a=rtpmap:(\d+) ([\w-]+)/", section))
    return [names[f] for f in formats]


async def test_codec_preferences_shape_the_offer() -> None:
    pc = ours()
    audio = pc.addTransceiver("audio")
    audio.setCodecPreferences([capability("audio", "audio/PCMU")])
    video = pc.addTransceiver("video")
    video.setCodecPreferences(
        [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    )
    offer = await pc.createOffer()
    assert codec_names(offer.sdp, "audio") == ["PCMU"]
    assert set(codec_names(offer.sdp, "video")) == {"H264"}
    await pc.close()


async def test_codec_preferences_shape_the_answer_and_what_is_sent(in_lo_ns: NetNs) -> None:
    a = aiortc_pc()
    a.addTrack(AudioStreamTrack())  # aiortc offers opus, G722, PCMU, PCMA
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got: list[Any] = []
    a.on("track", got.append)

    @b.on("track")
    def on_track(track: Any) -> None:
        transceiver = b.getTransceivers()[0]
        transceiver.setCodecPreferences(
            [capability("audio", "audio/PCMA"), capability("audio", "audio/PCMU")]
        )
        b.addTrack(AudioStreamTrack())

    await a.setLocalDescription(await a.createOffer())
    assert codec_names(a.localDescription.sdp, "audio")[0] == "opus"
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    assert b.localDescription is not None
    assert codec_names(b.localDescription.sdp, "audio") == ["PCMA", "PCMU"]
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(got[0].recv(), 10)  # media flows with the preferred codec
    # aiortc's private (name-mangled) encoder: the codec really in use.
    await until(lambda: b.getSenders()[0]._RTCRtpSender__encoder is not None)  # type: ignore[attr-defined]
    assert type(b.getSenders()[0]._RTCRtpSender__encoder).__name__ == "PcmaEncoder"  # type: ignore[attr-defined]
    await a.close()
    await b.close()


async def test_bundle_policies_never_silently_max_bundle() -> None:
    for policy in ("balanced", RTCBundlePolicy.BALANCED, "max-compat"):
        pc = ours(bundlePolicy=policy)
        pc.addTransceiver("audio")
        pc.addTransceiver("video")
        with pytest.raises(NotSupportedError, match="max-bundle"):
            await pc.createOffer()
        with pytest.raises(NotSupportedError):
            await pc.setLocalDescription()
        assert pc.signalingState == "stable"
        await pc.close()
    # One m-section is one transport under every policy: nothing differs, nothing refused.
    a, b = ours(bundlePolicy="balanced"), ours(bundlePolicy="max-compat")
    await open_channel_pair(a, b)
    await a.close()
    await b.close()


# ---------------------------------------------------------------- 6: remote close


async def test_remote_close_is_closed_at_once_for_ours_and_aiortc(in_lo_ns: NetNs) -> None:
    for closer_is_aiortc in (False, True):
        closer: Any = (
            aiortc_pc() if closer_is_aiortc else RTCPeerConnection(RTCConfiguration(iceServers=[]))
        )
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        channel, remote = await open_channel_pair(closer, pc)
        rec = Recorder(pc)
        closed = asyncio.Event()
        remote.on("close", closed.set)
        await closer.close()
        await asyncio.wait_for(closed.wait(), 5)
        await rec.wait_for(lambda pc=pc: pc.connectionState == "closed")
        # No "connecting", "disconnected" or "failed" on the way: closed at once.
        assert rec.states("connectionstatechange") == ["closed"]
        assert rec.states("iceconnectionstatechange") == ["closed"]
        assert pc.signalingState == "closed"
        with pytest.raises(InvalidStateError):
            await pc.createOffer()


# ---------------------------------------------------------------- 7: the smaller points


def test_transceivers_and_channels_before_the_loop_runs() -> None:
    """aiortc's older examples build the connection, then run the loop."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        a, b = ours(), ours()
        a.addTransceiver("audio")
        channel = a.createDataChannel("early")
        assert a.iceTransport is None  # made once the loop runs

        async def run() -> None:
            remote: asyncio.Future[Any] = loop.create_future()
            b.on("datachannel", lambda c: None if remote.done() else remote.set_result(c))
            await exchange(a, b)
            other = await asyncio.wait_for(remote, 10)
            got: asyncio.Future[Any] = loop.create_future()
            other.on("message", lambda m: None if got.done() else got.set_result(m))
            await until(lambda: channel.readyState == "open")
            channel.send("hello")
            assert await asyncio.wait_for(got, 10) == "hello"
            await a.close()
            await b.close()

        loop.run_until_complete(run())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_offer_without_media_sections() -> None:
    a, b = ours(), ours()
    await exchange(a, b)  # neither raises
    assert a.localDescription is not None
    assert "m=" not in a.localDescription.sdp
    assert (a.signalingState, b.signalingState) == ("stable", "stable")
    a.createDataChannel("later")  # and the session goes on from there
    await open_channel_pair(a, b)
    await a.close()
    await b.close()


async def test_answer_changing_an_m_line_kind_is_refused() -> None:
    a, b = ours(), ours()
    a.addTransceiver("audio")
    await a.setLocalDescription(await a.createOffer())
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription(await b.createAnswer())
    assert b.localDescription is not None
    answer = b.localDescription.sdp
    swapped = answer.replace("m=audio 9 UDP/TLS/RTP/SAVPF", "m=video 9 UDP/TLS/RTP/SAVPF")
    with pytest.raises(InvalidAccessError):
        await a.setRemoteDescription(RTCSessionDescription(swapped, "answer"))
    assert a.signalingState == "have-local-offer"
    c = ours()
    await c.setRemoteDescription(a.localDescription)
    local = (await c.createAnswer()).sdp.replace("m=audio 9", "m=video 9")
    with pytest.raises(InvalidAccessError):
        await c.setLocalDescription(RTCSessionDescription(local, "answer"))
    for pc in (a, b, c):
        await pc.close()


async def test_offer_without_rtcp_mux_is_refused() -> None:
    a, b = ours(), ours()
    a.addTransceiver("audio")
    await a.setLocalDescription(await a.createOffer())
    assert a.localDescription is not None
    offer = a.localDescription.sdp.replace("a=rtcp-mux\r\n", "")
    with pytest.raises(InvalidAccessError, match="rtcp-mux"):
        await b.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    with pytest.raises(ValueError):  # what aiortc raises, for code written against it
        await b.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    assert b.signalingState == "stable"
    await a.close()
    await b.close()


async def test_aiortc_legacy_sctp_offer_is_answered_in_kind(in_lo_ns: NetNs) -> None:
    a = aiortc_pc()
    a._sctpLegacySdp = True  # aiortc's switch for the old "DTLS/SCTP 5000" + a=sctpmap form
    b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channel, remote = await open_channel_pair(a, b)
    assert re.search(r"^m=application \d+ DTLS/SCTP 5000", a.localDescription.sdp, re.M)
    assert b.localDescription is not None
    answer = b.localDescription.sdp
    assert "DTLS/SCTP 5000" in answer and "a=sctpmap:5000 webrtc-datachannel" in answer
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    remote.on("message", lambda m: None if got.done() else got.set_result(m))
    channel.send("legacy")
    assert await asyncio.wait_for(got, 10) == "legacy"
    await a.close()
    await b.close()


# ---------------------------------------------------------------- the seam's private members


def test_aiortc_private_members_we_use_exist() -> None:
    """peerconnection/aiortc_seam.py names what it touches; aiortc 1.16 must have it."""
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCSctpTransport

    from unbroken.peerconnection import aiortc_seam

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        dtls = RTCDtlsTransport(None, [RTCCertificate.generateCertificate()])  # type: ignore[arg-type]
        for name in aiortc_seam.DTLS_MEMBERS:
            assert hasattr(dtls, name), name
        sctp = RTCSctpTransport(dtls)
        for name in aiortc_seam.SCTP_MEMBERS:
            assert hasattr(sctp, name), name
        assert not aiortc_seam.closed_by_peer(dtls)  # no session yet
    finally:
        asyncio.set_event_loop(None)
        loop.close()


async def test_lean_certificate_contexts_release_idle_buffers() -> None:
    """Our peer connections' DTLS runs on aiortc_seam.LeanCertificate, whose contexts free
    their record buffers when idle (tests/test_aiortc_contract.py checks the mode bit; a
    context in use can no longer be asked), and data still flows."""
    from pc_helpers import make_pc, negotiate, trickle
    from unbroken.peerconnection.aiortc_seam import LeanCertificate

    a, b = make_pc(), make_pc()
    try:
        trickle(a, b)
        got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_channel(channel: Any) -> None:
            channel.on("message", lambda m: None if got.done() else got.set_result(m))

        b.on("datachannel", on_channel)
        channel = a.createDataChannel("idle")
        channel.on("open", lambda: channel.send("after the handshake"))
        await negotiate(a, b)
        assert await asyncio.wait_for(got, 10) == "after the handshake"
        for pc in (a, b):
            assert pc.sctp is not None
            certificate = pc._certificate
            assert isinstance(certificate, LeanCertificate)
            # The live DTLS transport presents (and so was built from) that certificate.
            local = pc.sctp.transport.getLocalParameters().fingerprints
            assert [f.value for f in local] == [f.value for f in certificate.getFingerprints()]
    finally:
        await a.close()
        await b.close()


async def test_connections_share_one_context_and_present_their_own_certificates() -> None:
    """Twenty peer connections handshaking at once: one DTLS context between them all,
    and each presents its own certificate (the one its SDP fingerprint names; the peer
    checks it too, so a mix-up would also fail the handshake)."""
    from pc_helpers import make_pc, negotiate, trickle
    from unbroken.peerconnection.aiortc_seam import LeanCertificate

    async def connected() -> tuple[Any, Any]:
        a, b = make_pc(), make_pc()
        trickle(a, b)
        opened = asyncio.Event()
        a.createDataChannel("c").on("open", opened.set)
        await negotiate(a, b)
        await asyncio.wait_for(opened.wait(), 20)
        return a, b

    pairs = await asyncio.gather(*(connected() for _ in range(10)))
    try:
        contexts = set()
        for pair in pairs:
            for pc in pair:
                assert pc.sctp is not None
                ssl = pc.sctp.transport._ssl
                contexts.add(id(ssl.get_context()))
                certificate = pc._certificate
                assert isinstance(certificate, LeanCertificate)
                assert ssl.get_app_data() is certificate
                presented = ssl.get_certificate().to_cryptography()
                assert presented == certificate._cert
        assert len(contexts) == 1
    finally:
        for pair in pairs:
            for pc in pair:
                await pc.close()
