"""Shared helpers of the RTCPeerConnection benchmarks: loopback-only isolation, peers, wiring.

Isolation. aiortc gathers through aioice, which offers a host candidate on every local
address except 127.0.0.1 and binds each socket to that address; it has no address
filter. On a machine with a LAN interface it would therefore offer only the LAN address.
So the benchmarks run their whole event loop inside a network namespace they create
(tests/interop/netns.py): it has only `lo`, holding 127.0.0.1 and 127.0.0.2. aiortc,
unmodified, gathers 127.0.0.2; ours is told to use 127.0.0.1 (hostAddresses). Nothing
in the namespace can reach any other host. As a second guard, candidate lines that are
not on 127.0.0.0/8 are stripped from every aiortc description before it is passed on,
and every run checks that each pair in use is on 127.0.0.0/8 at both ends. Without root
(no namespace) aioice's address enumeration is replaced with one that returns
127.0.0.1 (`_common.AioiceLoopback`); the JSON results record which was used.

Signaling is in process and in order per direction: a trickled candidate reaches the
peer only after the description of its generation (its ufrag) was applied there, as
over a real signaling channel. aiortc never trickles: its candidates are in its SDP.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import AioiceLoopback

from unbroken import RTCConfiguration as OurConfiguration
from unbroken import RTCPeerConnection as OurPeerConnection
from unbroken import RTCSessionDescription as OurDescription
from unbroken.sdp import ice_ufrags

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "interop"))
if TYPE_CHECKING:  # mypy knows tests/interop/netns.py by its package name only
    from interop.netns import NetNs, netns_available
else:
    from netns import NetNs, netns_available

OURS = "ours"
AIORTC = "aiortc"
OUR_ADDRESS = "127.0.0.1"
AIORTC_ADDRESS = "127.0.0.2"  # the namespace's second loopback address (aioice skips 127.0.0.1)


# ------------------------------------------------------------------ isolation


@contextlib.contextmanager
def loopback_only() -> Iterator[str]:
    """Run the block where only loopback exists; yields a description of how.

    Enter it around `asyncio.run(...)`: the loop thread must create every socket (and
    enumerate interfaces) inside the namespace.
    """
    reason = netns_available()
    if reason is None:
        ns = NetNs.create("ubbench", extra_addresses=[f"{AIORTC_ADDRESS}/8"])
        try:
            with ns.entered():
                yield f"network namespace with only lo (127.0.0.1 ours, {AIORTC_ADDRESS} aiortc)"
        finally:
            ns.delete()
    else:
        with AioiceLoopback():
            yield f"no namespace ({reason}); aioice host addresses replaced by 127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1."""
    return host.startswith("127.") or host == "::1"


# ------------------------------------------------------------------ peers


def new_pc(kind: str, ice_config: Any = None) -> Any:
    """A peer connection of the given kind, with no ICE server of any sort."""
    if kind == OURS:
        return OurPeerConnection(
            OurConfiguration(hostAddresses=[OUR_ADDRESS], iceConfig=ice_config)
        )
    from aiortc import RTCConfiguration, RTCPeerConnection

    # ALWAYS iceServers=[]: aiortc's default names a public STUN server.
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def kind_of(pc: Any) -> str:
    return OURS if isinstance(pc, OurPeerConnection) else AIORTC


def loopback_sdp(sdp: str) -> str:
    """The SDP without candidate lines off loopback (aiortc's are all in the SDP)."""
    kept = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            fields = line.split()
            if len(fields) < 5 or not is_loopback(fields[4]):
                continue
        kept.append(line)
    return "\r\n".join(kept) + "\r\n"


def description_for(target: Any, desc: Any) -> Any:
    """`desc` as the target's library wants it, loopback candidates only."""
    sdp = loopback_sdp(desc.sdp)
    if kind_of(target) == OURS:
        return OurDescription(sdp=sdp, type=desc.type)
    from aiortc import RTCSessionDescription

    return RTCSessionDescription(sdp=sdp, type=desc.type)


def ufrag_of(sdp: str) -> str:
    """The first a=ice-ufrag value of an SDP."""
    found = ice_ufrags(sdp)
    if not found:
        raise ValueError("no a=ice-ufrag in the description")
    return found[0]


def pairs_in_use(pc: Any) -> list[tuple[str, str]]:
    """(local host, remote host) of every pair carrying data now."""
    if kind_of(pc) == OURS:
        pair = pc.iceTransport.agent.selected_pair if pc.iceTransport is not None else None
        return [] if pair is None else [(pair.local.host, pair.remote.host)]
    transport = pc.sctp.transport.transport if pc.sctp is not None else None
    if transport is None:
        return []
    nominated = transport.iceGatherer._connection._nominated  # aioice: no public accessor
    return [(p.local_candidate.host, p.remote_candidate.host) for p in nominated.values()]


def assert_loopback(*pcs: Any) -> None:
    """Every pair in use by these peer connections is on loopback at both ends."""
    for pc in pcs:
        pairs = pairs_in_use(pc)
        if not pairs:
            raise AssertionError(f"{kind_of(pc)}: no pair in use")
        for local, remote in pairs:
            if not (is_loopback(local) and is_loopback(remote)):
                raise AssertionError(f"{kind_of(pc)}: pair {local} -> {remote} is not loopback")


# ------------------------------------------------------------------ signaling


class Trickle:
    """One direction of an in-order signaling channel for trickled candidates.

    A candidate (or end-of-candidates) is delivered once the description of its
    generation (its ufrag) was applied at the target; earlier ones wait, as they would
    behind the description on a real channel. aiortc never trickles; it is given no
    end-of-candidates (its own SDP gathering is complete before it answers).
    """

    def __init__(self, source: Any, target: Any) -> None:
        self.source, self.target = source, target
        self.delivered: set[str] = set()
        self.pending: list[tuple[str, Any]] = []
        self.errors: list[BaseException] = []
        self.tasks: set[asyncio.Task[None]] = set()
        if kind_of(source) == OURS:
            source.on("icecandidate", self._on_candidate)

    def described(self, ufrag: str) -> None:
        """The target applied a description with this ufrag: release its candidates."""
        self.delivered.add(ufrag)
        waiting, self.pending = self.pending, []
        for owner, candidate in waiting:
            self._forward(owner, candidate)

    def _on_candidate(self, candidate: Any) -> None:
        if candidate is not None:
            ufrag = candidate.usernameFragment
        else:  # end-of-candidates of the source's current generation
            ufrag = ufrag_of(self.source.localDescription.sdp)
        self._forward(ufrag, candidate)

    def _forward(self, ufrag: str, candidate: Any) -> None:
        if ufrag not in self.delivered:
            self.pending.append((ufrag, candidate))
            return
        if candidate is None and kind_of(self.target) != OURS:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(ufrag, candidate))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, ufrag: str, candidate: Any) -> None:
        try:
            if kind_of(self.target) == OURS:
                if candidate is None:
                    end = {"candidate": "", "sdpMLineIndex": 0, "usernameFragment": ufrag}
                    await self.target.addIceCandidate(end)
                else:
                    await self.target.addIceCandidate(candidate.toJSON())
            else:
                from aiortc.sdp import candidate_from_sdp

                converted = candidate_from_sdp(candidate.candidate.removeprefix("candidate:"))
                converted.sdpMid = candidate.sdpMid
                converted.sdpMLineIndex = candidate.sdpMLineIndex
                await self.target.addIceCandidate(converted)
        except Exception as exc:  # reported by check(), not lost in a task
            self.errors.append(exc)

    def check(self) -> None:
        """Raise the first delivery error, if any."""
        if self.errors:
            raise self.errors[0]


class Signaling:
    """In-process signaling between an offerer and an answerer (both directions)."""

    def __init__(self, offerer: Any, answerer: Any) -> None:
        self.offerer, self.answerer = offerer, answerer
        self.to_answerer = Trickle(offerer, answerer)
        self.to_offerer = Trickle(answerer, offerer)

    async def exchange(
        self,
        offerer: Any | None = None,
        mark: Callable[[str], None] | None = None,
        **offer_options: Any,
    ) -> None:
        """One offer/answer exchange started by `offerer` (default: the original offerer).

        `mark(name)` is called after each step: offer, offer_applied, offer_delivered,
        answer, answer_applied, answer_delivered.
        """
        a = offerer or self.offerer
        b = self.answerer if a is self.offerer else self.offerer
        to_b = self.to_answerer if a is self.offerer else self.to_offerer
        to_a = self.to_offerer if a is self.offerer else self.to_answerer
        step = mark or (lambda name: None)
        offer = await a.createOffer(**offer_options)
        step("offer")
        await a.setLocalDescription(offer)
        step("offer_applied")
        await b.setRemoteDescription(description_for(b, a.localDescription))
        to_b.described(ufrag_of(a.localDescription.sdp))
        step("offer_delivered")
        answer = await b.createAnswer()
        step("answer")
        await b.setLocalDescription(answer)
        step("answer_applied")
        await a.setRemoteDescription(description_for(a, b.localDescription))
        to_a.described(ufrag_of(b.localDescription.sdp))
        step("answer_delivered")

    def check(self) -> None:
        """Raise the first candidate delivery error of either direction."""
        self.to_answerer.check()
        self.to_offerer.check()


# ------------------------------------------------------------------ a connected pair


class Link:
    """Two peer connections with one data channel, connected through `Signaling`.

    `marks` holds loop times (from `started`) of each negotiation step and of each side's
    channel opening (`open_offerer`, `open_answerer`).
    """

    def __init__(self, offerer: Any, answerer: Any) -> None:
        self.offerer, self.answerer = offerer, answerer
        self.signaling = Signaling(offerer, answerer)
        self.loop = asyncio.get_running_loop()
        self.started = 0.0
        self.marks: dict[str, float] = {}
        self.channel_offerer: Any = None
        self.channel_answerer: Any = None

    def mark(self, name: str) -> None:
        self.marks[name] = self.loop.time() - self.started

    async def connect(
        self, label: str = "bench", timeout: float = 10.0, **channel_options: Any
    ) -> None:
        """createDataChannel, then (timed from createOffer) negotiate until open on both sides."""
        self.channel_offerer = self.offerer.createDataChannel(label, **channel_options)
        opened = asyncio.Event()
        arrived = asyncio.Event()

        def on_open() -> None:
            self.mark("open_offerer")
            opened.set()

        def on_answerer_open() -> None:
            self.mark("open_answerer")
            arrived.set()

        def on_channel(channel: Any) -> None:
            self.channel_answerer = channel
            if channel.readyState == "open":
                on_answerer_open()
            else:
                channel.on("open", on_answerer_open)

        self.channel_offerer.on("open", on_open)

        self.answerer.on("datachannel", on_channel)
        for side, pc in (("offerer", self.offerer), ("answerer", self.answerer)):
            pc.on(
                "iceconnectionstatechange",
                self._state_marker(f"ice_{side}", pc, "iceConnectionState"),
            )
            pc.on(
                "connectionstatechange",
                self._state_marker(f"connected_{side}", pc, "connectionState"),
            )
        self.started = self.loop.time()
        await self.signaling.exchange(mark=self.mark)
        await asyncio.wait_for(asyncio.gather(opened.wait(), arrived.wait()), timeout)
        self.signaling.check()
        assert_loopback(self.offerer, self.answerer)

    def _state_marker(self, name: str, pc: Any, attribute: str) -> Callable[[], None]:
        """Mark `name` the first time `pc.<attribute>` reads connected (or completed)."""

        def on_change() -> None:
            if name not in self.marks and getattr(pc, attribute) in ("connected", "completed"):
                self.mark(name)

        return on_change

    @property
    def connect_time(self) -> float:
        """From createOffer until the channel is open on both sides."""
        return max(self.marks["open_offerer"], self.marks["open_answerer"])

    async def close(self) -> None:
        await self.offerer.close()
        await self.answerer.close()


async def connected(
    offerer_kind: str, answerer_kind: str, ice_config: Any = None, **channel_options: Any
) -> Link:
    """A new pair of the given kinds, connected, with an open data channel."""
    link = Link(new_pc(offerer_kind, ice_config), new_pc(answerer_kind, ice_config))
    try:
        await link.connect(**channel_options)
    except BaseException:
        await link.close()
        raise
    return link
