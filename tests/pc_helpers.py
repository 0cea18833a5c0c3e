"""Two of our RTCPeerConnections on 127.0.0.1 with in-process signaling, for API tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from unbroken import RTCConfiguration, RTCPeerConnection
from unbroken.ice import IceConfig
from unbroken.sdp import ice_ufrags

LOOPBACK = ["127.0.0.1"]


class Recorder:
    """Records a peer connection's events in order, and lets a test wait for one."""

    def __init__(self, pc: RTCPeerConnection) -> None:
        self.pc = pc
        self.events: list[tuple[str, Any]] = []
        self.candidates: list[Any] = []
        self._changed = asyncio.Event()
        for name, read in (
            ("iceconnectionstatechange", lambda: pc.iceConnectionState),
            ("connectionstatechange", lambda: pc.connectionState),
            ("signalingstatechange", lambda: pc.signalingState),
            ("icegatheringstatechange", lambda: pc.iceGatheringState),
        ):
            pc.on(name, self._recorder(name, read))
        pc.on("negotiationneeded", self._recorder("negotiationneeded", lambda: None))
        pc.on("icecandidate", self._on_candidate)

    def _recorder(self, name: str, read: Callable[[], Any]) -> Callable[[], None]:
        def record() -> None:
            self.events.append((name, read()))
            self._changed.set()

        return record

    def _on_candidate(self, candidate: Any) -> None:
        self.candidates.append(candidate)
        self._changed.set()

    def states(self, name: str) -> list[Any]:
        """The values a state event reported, in order."""
        return [value for event, value in self.events if event == name]

    def count(self, name: str) -> int:
        return sum(1 for event, _ in self.events if event == name)

    async def wait_for(self, predicate: Callable[..., bool], timeout: float = 5.0) -> None:
        """Wait until predicate() holds, re-checked at every recorded event."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)


def make_pc(**options: Any) -> RTCPeerConnection:
    """A peer connection gathering on 127.0.0.1 only."""
    ice = options.pop("iceConfig", None) or IceConfig()
    return RTCPeerConnection(RTCConfiguration(hostAddresses=LOOPBACK, iceConfig=ice, **options))


def trickle(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    """Forward each side's trickled candidates to the other, as a signaling channel would."""
    loop = asyncio.get_running_loop()

    def forward(target: RTCPeerConnection) -> Callable[[Any], None]:
        def on_candidate(candidate: Any) -> None:
            if candidate is not None:
                loop.create_task(target.addIceCandidate(candidate.toJSON()))

        return on_candidate

    a.on("icecandidate", forward(b))
    b.on("icecandidate", forward(a))


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    """One offer/answer exchange started by `offerer` (implicit descriptions)."""
    await offerer.setLocalDescription()
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription()
    await offerer.setRemoteDescription(answerer.localDescription)


def ufrag_of(sdp: str) -> str:
    """The first a=ice-ufrag value in an SDP."""
    found = ice_ufrags(sdp)
    assert found, "no ice-ufrag"
    return found[0]
