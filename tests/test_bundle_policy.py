"""BUNDLE and the peer's bundlePolicy: only the bundle transport's candidates are paired.

Chromium's default bundlePolicy ("balanced") offers audio and data with a transport of
their own each until the answer (RFC 8843 §7.2: a unique address:port per bundled
m-section) and trickles candidates for both; once our answer bundles, it drops the
data m-section's transport (§7.4). Its candidates can only fail, and checking them held
"completed" back by about 6 s. Candidates of an offer's non-tag bundled m-sections are
ignored; in an answer, every bundled m-section shares the tag's transport (§10).

chromium_balanced_offer.sdp is an offer captured from Chromium 156 with its default
configuration (audio recvonly + a data channel), its address changed to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from pc_helpers import Recorder, make_pc
from unbroken import RTCPeerConnection
from unbroken.runtime.mdns import RemoteCandidates

OFFER = (Path(__file__).parent / "data" / "sdp" / "chromium_balanced_offer.sdp").read_text()
TAG_PORT, DATA_PORT = 53367, 47917  # the audio (BUNDLE tag) and data transports' ports


def remote_ports(pc: RTCPeerConnection) -> set[int]:
    """Ports of the remote candidates our agent holds, in every generation."""
    assert pc.iceTransport is not None
    return {c.port for gen in pc.iceTransport.agent.generations() for c in gen.remote_candidates}


def paired_ports(pc: RTCPeerConnection) -> set[int]:
    assert pc.iceTransport is not None
    return {p.remote.port for p in pc.iceTransport.agent.pairs()}


async def test_offer_candidates_of_other_bundled_sections_are_ignored() -> None:
    pc = make_pc()
    try:
        await pc.setRemoteDescription({"type": "offer", "sdp": OFFER})
        assert pc.iceTransport is not None
        intake = RemoteCandidates.of(pc.iceTransport)
        # From the SDP: the tag's UDP candidate only (TCP ones are not usable by us).
        assert remote_ports(pc) == {TAG_PORT}
        assert intake.counters["bundle_other_transport"] == 2  # mid 1's two lines

        def trickled(port: int, **where: Any) -> dict[str, Any]:
            line = f"candidate:7 1 udp 2122260223 127.0.0.1 {port} typ host generation 0"
            return {"candidate": line, "usernameFragment": "iVi8", **where}

        await pc.addIceCandidate(trickled(40001, sdpMid="1", sdpMLineIndex=1))
        await pc.addIceCandidate(trickled(40002, sdpMLineIndex=1))  # by index alone
        await pc.addIceCandidate(trickled(40003, sdpMid="0", sdpMLineIndex=0))
        await pc.setLocalDescription()  # our answer bundles both on the tag's transport
        await pc.addIceCandidate(trickled(40004, sdpMid="1", sdpMLineIndex=1))  # late
        assert remote_ports(pc) == {TAG_PORT, 40003}
        assert intake.counters["bundle_other_transport"] == 5
        assert DATA_PORT not in paired_ports(pc) and 40001 not in paired_ports(pc)
        # The remote description shows what was added, in the tag's m-section.
        remote = pc.remoteDescription
        assert remote is not None and "40003" in remote.sdp and "40001" not in remote.sdp
    finally:
        await pc.close()


class Link:
    """Two of our peer connections, candidates and end-of-candidates forwarded both ways."""

    def __init__(self, offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[BaseException] = []
        self.rewrite_offerer_mid: str | None = None  # send the offerer's candidates as this mid
        offerer.on("icecandidate", lambda c: self._forward(c, answerer, True))
        answerer.on("icecandidate", lambda c: self._forward(c, offerer, False))

    def _forward(self, candidate: Any, target: RTCPeerConnection, from_offerer: bool) -> None:
        init = candidate.toJSON() if candidate is not None else None
        if init is not None and not from_offerer and self.rewrite_offerer_mid is not None:
            init["sdpMid"], init["sdpMLineIndex"] = self.rewrite_offerer_mid, None
        self.tasks.append(asyncio.ensure_future(self._guard(target.addIceCandidate(init))))

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except Exception as exc:
            self.errors.append(exc)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_dead_transport_of_a_balanced_offer_is_never_checked() -> None:
    """The offerer's other transport (dead here) is not paired; completed follows at once."""
    offerer, answerer = make_pc(), make_pc()
    link = Link(offerer, answerer)
    recorder = Recorder(answerer)
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    silent_port = silent.getsockname()[1]
    try:
        offerer.addTransceiver("audio", "sendrecv")
        offerer.createDataChannel("chat")
        await offerer.setLocalDescription()
        offer = offerer.localDescription
        assert offer is not None and "a=group:BUNDLE 0 1" in offer.sdp
        # Trickled, as Chromium's: the offer does not end the candidates (the Link does).
        await answerer.setRemoteDescription(
            {"type": "offer", "sdp": offer.sdp.replace("a=end-of-candidates\r\n", "")}
        )
        # What balanced Chromium trickles for its data transport, which it drops once our
        # answer bundles: a socket that never answers.
        dead = f"candidate:9 1 udp 2122260223 127.0.0.1 {silent_port} typ host generation 0"
        await answerer.addIceCandidate({"candidate": dead, "sdpMid": "1", "sdpMLineIndex": 1})
        await answerer.setLocalDescription()
        await offerer.setRemoteDescription(answerer.localDescription)
        await recorder.wait_for(lambda: answerer.iceConnectionState == "completed", 10)
        assert recorder.states("iceconnectionstatechange") == ["checking", "connected", "completed"]
        assert silent_port not in paired_ports(answerer)
        assert answerer.iceTransport is not None
        assert RemoteCandidates.of(answerer.iceTransport).counters["bundle_other_transport"] == 1
        report = await answerer.getStats()
        remote_ids = {
            s["remoteCandidateId"] for s in report.values() if s["type"] == "candidate-pair"
        }
        assert all(report[i].get("port") != silent_port for i in remote_ids if i in report)
        assert link.errors == []
    finally:
        silent.close()
        await link.close()
        await offerer.close()
        await answerer.close()


async def test_answer_candidates_of_any_bundled_section_are_used() -> None:
    """RFC 8843 §10: in an answer, candidates of every bundled m-section are the bundle's."""
    offerer, answerer = make_pc(), make_pc()
    try:
        offerer.addTransceiver("audio", "sendrecv")
        offerer.createDataChannel("chat")
        await offerer.setLocalDescription()
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription()
        answer = answerer.localDescription
        assert answer is not None and "a=group:BUNDLE 0 1" in answer.sdp
        bare = "".join(
            line
            for line in answer.sdp.splitlines(keepends=True)
            if not line.startswith(("a=candidate:", "a=end-of-candidates"))
        )
        await offerer.setRemoteDescription({"type": "answer", "sdp": bare})
        line = "candidate:7 1 udp 2122260223 127.0.0.1 40005 typ host generation 0"
        await offerer.addIceCandidate({"candidate": line, "sdpMid": "1", "sdpMLineIndex": 1})
        assert remote_ports(offerer) == {40005}
        assert offerer.iceTransport is not None
        assert RemoteCandidates.of(offerer.iceTransport).counters["bundle_other_transport"] == 0
    finally:
        await offerer.close()
        await answerer.close()
