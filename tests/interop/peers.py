"""The Python side of interop tests: RTCPeerConnection implementations behind one face.

Theory of operation. A test talks to its Python peer only through `PythonPeer`:
descriptions and candidates as plain dicts, the way they travel through signalling.
`PYTHON_PEERS` maps a name to a factory; the `python_peer` fixture is parametrized
over it, so adding our own RTCPeerConnection here runs every interop test against it.
Peers must be created while the thread is in the test namespace (the fixture sees to
that), so that their sockets and interface lists are the namespace's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from .browser import Changes

__all__ = [
    "PYTHON_PEERS",
    "PYTHON_PEER_ADDRESS",
    "AiortcPeer",
    "PeerChannel",
    "PythonPeer",
    "UnbrokenPeer",
]

#: aioice (aiortc) never offers 127.0.0.1 as a host candidate, so the namespace gets a
#: second loopback address for the Python peer. Chromium gathers 127.0.0.1.
PYTHON_PEER_ADDRESS = "127.0.0.2"


class PeerChannel:
    """A data channel of the Python peer, with received messages recorded in order.

    Works with any channel of aiortc's shape (pyee events "open", "message", "close";
    `readyState`; `send`), which includes ours: unbroken reuses aiortc's SCTP.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.label: str = channel.label
        self.messages: list[str | bytes] = []
        #: time.monotonic() at which each message arrived, parallel to `messages`.
        self.arrivals: list[float] = []
        self._changed = Changes()
        channel.on("message", self._on_message)
        channel.on("open", self._changed.notify)
        channel.on("close", self._changed.notify)

    def _on_message(self, message: str | bytes) -> None:
        self.messages.append(message)
        self.arrivals.append(time.monotonic())
        self._changed.notify()

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            await self._changed.wait_for(predicate, timeout)
        except TimeoutError:
            raise AssertionError(
                f"python peer: timed out after {timeout}s waiting for {what} on {self.label!r} "
                f"(readyState={self.channel.readyState}, {len(self.messages)} messages)"
            ) from None

    async def wait_open(self, timeout: float = 10.0) -> None:
        """Wait until the channel's readyState is "open"."""
        await self._wait(lambda: self.channel.readyState == "open", timeout, "open")

    async def wait_messages(self, count: int, timeout: float = 10.0) -> list[str | bytes]:
        """Wait for at least `count` messages; return all received so far."""
        await self._wait(lambda: len(self.messages) >= count, timeout, f"{count} messages")
        return list(self.messages)

    def send(self, data: str | bytes) -> None:
        self.channel.send(data)


class PythonPeer(Protocol):
    """What an interop test needs from the Python RTCPeerConnection under test.

    Descriptions and candidates are plain dicts, as they travel through signalling:
    {"type", "sdp"} and RTCIceCandidateInit {"candidate", "sdpMid", "sdpMLineIndex",
    "usernameFragment"}.
    """

    name: str
    #: Trickled local candidates (None at the end), or None if the implementation puts
    #: every candidate in its descriptions and never trickles (aiortc).
    candidates: asyncio.Queue[dict[str, Any] | None] | None

    def create_data_channel(self, label: str) -> PeerChannel: ...
    def add_audio_track(self) -> None: ...
    async def offer(self) -> dict[str, str]: ...
    async def answer(self, offer: dict[str, str]) -> dict[str, str]: ...
    async def accept(self, answer: dict[str, str]) -> None: ...
    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None: ...
    async def wait_channel(self, label: str, timeout: float = 10.0) -> PeerChannel: ...
    async def wait_track(self, kind: str, timeout: float = 10.0) -> Any: ...
    async def close(self) -> None: ...


class AiortcPeer:
    """aiortc's RTCPeerConnection behind the PythonPeer interface (it never trickles)."""

    name = "aiortc"
    candidates: asyncio.Queue[dict[str, Any] | None] | None = None

    def __init__(self) -> None:
        from aiortc import RTCConfiguration, RTCPeerConnection

        # iceServers=[]: aiortc's default configuration points at a public STUN server.
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._channels: dict[str, PeerChannel] = {}
        self._tracks: list[Any] = []
        self._changed = Changes()
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)

    def _on_datachannel(self, channel: Any) -> None:
        self._channels[channel.label] = PeerChannel(channel)
        self._changed.notify()

    def _on_track(self, track: Any) -> None:
        self._tracks.append(track)
        self._changed.notify()

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        try:
            await self._changed.wait_for(predicate, timeout)
        except TimeoutError:
            raise AssertionError(
                f"aiortc peer: timed out after {timeout}s waiting for {what} "
                f"(connectionState={self.pc.connectionState}, "
                f"iceConnectionState={self.pc.iceConnectionState})"
            ) from None

    def create_data_channel(self, label: str) -> PeerChannel:
        channel = PeerChannel(self.pc.createDataChannel(label))
        self._channels[label] = channel
        return channel

    def add_audio_track(self) -> None:
        from aiortc.mediastreams import AudioStreamTrack

        self.pc.addTrack(AudioStreamTrack())  # 20 ms frames of silence, sent as Opus

    async def offer(self) -> dict[str, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self._local()

    async def answer(self, offer: dict[str, str]) -> dict[str, str]:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self._local()

    async def accept(self, answer: dict[str, str]) -> None:
        from aiortc import RTCSessionDescription

        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        from aiortc.sdp import candidate_from_sdp

        if candidate is None or not candidate.get("candidate"):
            await self.pc.addIceCandidate(None)
            return
        line = candidate["candidate"]
        ice = candidate_from_sdp(line.split(":", 1)[1] if line.startswith("candidate:") else line)
        ice.sdpMid = candidate.get("sdpMid")
        ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(ice)

    async def wait_channel(self, label: str, timeout: float = 10.0) -> PeerChannel:
        await self._wait(lambda: label in self._channels, timeout, f"data channel {label!r}")
        channel = self._channels[label]
        await channel.wait_open(timeout)
        return channel

    async def wait_track(self, kind: str, timeout: float = 10.0) -> Any:
        await self._wait(
            lambda: any(t.kind == kind for t in self._tracks), timeout, f"{kind} track"
        )
        return next(t for t in self._tracks if t.kind == kind)

    async def close(self) -> None:
        await self.pc.close()

    def _local(self) -> dict[str, str]:
        description = self.pc.localDescription
        return {"type": description.type, "sdp": description.sdp}


class UnbrokenPeer:
    """Our RTCPeerConnection behind the PythonPeer interface; it trickles.

    Host candidates only on the namespace's second loopback address (like aiortc's), so
    the two peers in a test never share an address by accident. Every state change is
    recorded in `history` as (property, value), in the order the events fired, and
    trickled candidates go to `candidates` (None ends a gathering round).
    """

    name = "unbroken"

    STATES = (
        ("iceconnectionstatechange", "iceConnectionState"),
        ("connectionstatechange", "connectionState"),
        ("signalingstatechange", "signalingState"),
        ("icegatheringstatechange", "iceGatheringState"),
    )

    def __init__(self, address: str = PYTHON_PEER_ADDRESS, **options: Any) -> None:
        from unbroken import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(hostAddresses=[address], **options))
        self.candidates: asyncio.Queue[dict[str, Any] | None] | None = asyncio.Queue()
        self.gathered: list[dict[str, Any] | None] = []
        self.history: list[tuple[str, str]] = []
        self.negotiation_needed = 0
        self._channels: dict[str, PeerChannel] = {}
        self._tracks: list[Any] = []
        self._changed = Changes()
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("track", self._on_track)
        self.pc.on("icecandidate", self._on_candidate)
        self.pc.on("negotiationneeded", self._on_negotiation_needed)
        for event, prop in self.STATES:
            self.pc.on(event, self._recorder(prop))

    def _recorder(self, prop: str) -> Callable[[], None]:
        def record() -> None:
            self.history.append((prop, getattr(self.pc, prop)))
            self._changed.notify()

        return record

    def _on_candidate(self, candidate: Any) -> None:
        init = candidate.toJSON() if candidate is not None else None
        self.gathered.append(init)
        assert self.candidates is not None
        self.candidates.put_nowait(init)
        self._changed.notify()

    def _on_negotiation_needed(self) -> None:
        self.negotiation_needed += 1
        self._changed.notify()

    def _on_datachannel(self, channel: Any) -> None:
        self._channels[channel.label] = PeerChannel(channel)
        self._changed.notify()

    def _on_track(self, track: Any) -> None:
        self._tracks.append(track)
        self._changed.notify()

    def state_history(self, prop: str) -> list[str]:
        """The successive values of one state property reported by events so far."""
        return [value for name, value in self.history if name == prop]

    async def wait_until(
        self, predicate: Callable[[], bool], what: str | Callable[[], str], timeout: float = 10.0
    ) -> None:
        """Wait until `predicate()` holds, re-checked at every event of this peer."""
        try:
            await self._changed.wait_for(predicate, timeout)
        except TimeoutError:
            text = what() if callable(what) else what
            raise AssertionError(
                f"unbroken peer: timed out after {timeout}s waiting for {text} "
                f"(signalingState={self.pc.signalingState}, "
                f"iceConnectionState={self.pc.iceConnectionState}, "
                f"connectionState={self.pc.connectionState}; history: {self.history})"
            ) from None

    async def wait_for_state(
        self, prop: str, state: str, since: int = 0, timeout: float = 10.0
    ) -> None:
        """Wait until an event from `history[since:]` on reported `prop` == `state`."""
        await self.wait_until(
            lambda: (prop, state) in self.history[since:], f"{prop} {state!r}", timeout
        )

    async def wait_negotiation_needed(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until negotiationneeded has fired at least `count` times in total."""
        await self.wait_until(
            lambda: self.negotiation_needed >= count,
            lambda: f"negotiationneeded x{count} (seen {self.negotiation_needed})",
            timeout,
        )

    async def next_candidate(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next trickled candidate (None at the end of a gathering round)."""
        assert self.candidates is not None
        try:
            return await asyncio.wait_for(self.candidates.get(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"unbroken peer: no ICE candidate within {timeout}s (gathered: {self.gathered})"
            ) from None

    def create_data_channel(self, label: str) -> PeerChannel:
        channel = PeerChannel(self.pc.createDataChannel(label))
        self._channels[label] = channel
        return channel

    def add_audio_track(self) -> None:
        from aiortc.mediastreams import AudioStreamTrack

        self.pc.addTrack(AudioStreamTrack())  # 20 ms frames of silence, sent as Opus

    async def offer(self, ice_restart: bool = False) -> dict[str, str]:
        """createOffer (with iceRestart if asked) and setLocalDescription; the local offer."""
        await self.pc.setLocalDescription(await self.pc.createOffer(iceRestart=ice_restart))
        return self.local()

    async def answer(self, offer: dict[str, str]) -> dict[str, str]:
        await self.pc.setRemoteDescription(offer)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.local()

    async def accept(self, answer: dict[str, str]) -> None:
        await self.pc.setRemoteDescription(answer)

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        await self.pc.addIceCandidate(candidate)
        self._changed.notify()  # a wait_until on what the candidate did re-checks

    async def wait_channel(self, label: str, timeout: float = 10.0) -> PeerChannel:
        await self.wait_until(lambda: label in self._channels, f"data channel {label!r}", timeout)
        channel = self._channels[label]
        await channel.wait_open(timeout)
        return channel

    async def wait_track(self, kind: str, timeout: float = 10.0) -> Any:
        await self.wait_until(
            lambda: any(t.kind == kind for t in self._tracks), f"{kind} track", timeout
        )
        return next(t for t in self._tracks if t.kind == kind)

    async def close(self) -> None:
        await self.pc.close()

    def local(self) -> dict[str, str]:
        """localDescription as a signalling dict, with the candidates gathered so far."""
        description = self.pc.localDescription
        assert description is not None
        return {"type": description.type, "sdp": description.sdp}


#: Python peer implementations by name; every test that takes `python_peer` runs once
#: per entry.
PYTHON_PEERS: dict[str, Callable[[], PythonPeer]] = {
    "aiortc": AiortcPeer,
    "unbroken": UnbrokenPeer,
}
