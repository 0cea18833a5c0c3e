"""mDNS host candidates: resolution with zeroconf, and what reaches the ICE agent.

Two namespaces the test makes, joined by a veth pair (multicast works on veth; on `lo`
it does not: lo has no MULTICAST flag, a zeroconf query there gets no answer). Our side
lives in namespace A (10.202.0.1); namespace B (10.202.0.2) runs a real mDNS responder
(zeroconf publishing a name, as a browser's responder does) and the remote ICE peer.
The remote candidates are browser-shaped: ``<uuid>.local`` in place of the address.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import pytest
import pytest_asyncio
from zeroconf import ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from interop.netns import NetNs, netns_available
from prereq import require
from unbroken import RTCConfiguration, RTCPeerConnection
from unbroken.ice import Candidate, IceTransportState
from unbroken.ice.candidate import HostnameCandidateError, is_mdns_name
from unbroken.runtime import AddressFilter, IceConnection
from unbroken.runtime.mdns import MdnsResolver, RemoteCandidates, mdns_interfaces

pytestmark = [pytest.mark.netns]
asyncio_module = pytest.mark.asyncio(loop_scope="module")

OURS, THEIRS = "10.202.0.1", "10.202.0.2"
UP = (IceTransportState.CONNECTED, IceTransportState.COMPLETED)


def _require() -> None:
    require(netns_available())


class Lan:
    """Namespaces A (ours) and B (theirs) on one veth link."""

    def __init__(self) -> None:
        self.a = NetNs.create(prefix="ubm")
        try:
            self.b = NetNs.create(prefix="ubm")
        except BaseException:
            self.a.delete()
            raise
        try:
            self.a.ip(
                "link",
                "add",
                "mdnsa",
                "type",
                "veth",
                "peer",
                "name",
                "mdnsb",
                "netns",
                self.b.name,
            )
            for ns, dev, ip in ((self.a, "mdnsa", OURS), (self.b, "mdnsb", THEIRS)):
                ns.ip("addr", "add", f"{ip}/24", "dev", dev)
                ns.ip("link", "set", dev, "up")
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        self.a.delete()
        self.b.delete()


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    _require()
    made = Lan()
    try:
        yield made
    finally:
        made.delete()


@pytest.fixture
def in_a(lan: Lan) -> Iterator[Lan]:
    """The test's thread (its event loop, sockets and zeroconf) in namespace A."""
    with lan.a.entered():
        yield lan


class Responder:
    """A real mDNS responder in namespace B: zeroconf answering for published host names."""

    def __init__(self, zc: AsyncZeroconf) -> None:
        self.zc = zc
        self._infos: list[ServiceInfo] = []

    async def publish(self, name: str, *addresses: str) -> None:
        """Answer A queries for `name` (a host name of a throwaway service) with `addresses`."""
        info = ServiceInfo(
            "_unbroken-test._udp.local.",
            f"{uuid.uuid4().hex[:12]}._unbroken-test._udp.local.",
            addresses=[socket.inet_aton(a) for a in addresses],
            port=9,
            server=name + ".",
        )
        # Unique throwaway names: no probing (draft §3.1.1 step 4 skips it too).
        await self.zc.async_register_service(info, cooperating_responders=True)
        self._infos.append(info)


@pytest_asyncio.fixture(loop_scope="module")
async def responder(lan: Lan) -> AsyncIterator[Responder]:
    with lan.b.entered():
        zc = AsyncZeroconf(interfaces=[THEIRS])
    try:
        yield Responder(zc)
    finally:
        await zc.async_close()


def new_name() -> str:
    return f"{uuid.uuid4()}.local"


# ------------------------------------------------------------------ the parser


def test_parser_accepts_mdns_host_candidates_only() -> None:
    name = "1f4712db-ea17-4bcf-a596-105139dfd8bf.local"
    line = f"candidate:1 1 udp 2122262783 {name} 54596 typ host generation 0 ufrag abcd network-cost 999"
    cand = Candidate.from_sdp(line)
    assert (cand.host, cand.port, cand.is_mdns, cand.ufrag) == (name, 54596, True, "abcd")
    assert cand.to_sdp() == line
    assert (
        is_mdns_name("ABC.LOCAL") and not is_mdns_name("a.b.local") and not is_mdns_name(".local")
    )
    # Draft §3.2.1 step 1: more than one dot, or not .local: processed as a hostname,
    # which we do not resolve (browsers ignore them).
    for other in ("a.b.local", "example.com", "printer"):
        with pytest.raises(HostnameCandidateError):
            Candidate.from_sdp(f"candidate:1 1 udp 1 {other} 9 typ host")
    with pytest.raises(HostnameCandidateError):
        Candidate.from_sdp(f"candidate:1 1 udp 1 {name} 9 typ srflx raddr 0.0.0.0 rport 9")


def test_interfaces_asked_on() -> None:
    assert mdns_interfaces(["127.0.0.1", "10.0.0.1", "2001:db8::1"]) == ("10.0.0.1",)
    assert mdns_interfaces(["::1", "fe80::1", "2001:db8::1"]) == ("2001:db8::1",)
    assert mdns_interfaces(["127.0.0.1"]) == ()


# ------------------------------------------------------------------ the resolver


@pytest_asyncio.fixture(loop_scope="module")
async def resolver(in_a: Lan) -> AsyncIterator[MdnsResolver]:
    made = MdnsResolver([OURS])
    try:
        yield made
    finally:
        await made.close()


@asyncio_module
async def test_resolves_a_published_name(resolver: MdnsResolver, responder: Responder) -> None:
    name = new_name()
    await responder.publish(name, THEIRS)
    assert await resolver.resolve(name) == THEIRS
    assert await resolver.resolve(name.upper()) == THEIRS  # DNS names ignore case
    assert resolver.counters["resolved"] == 2


@asyncio_module
async def test_unresolved_name_is_none_and_counted_once_for_concurrent_askers(
    resolver: MdnsResolver,
) -> None:
    name = new_name()
    first, second = await asyncio.gather(
        resolver.resolve(name, timeout=0.5), resolver.resolve(name, timeout=0.5)
    )
    assert (first, second) == (None, None)
    assert resolver.counters["unresolved"] == 1  # one query for both


@asyncio_module
async def test_name_with_two_addresses_is_ignored(
    resolver: MdnsResolver, responder: Responder
) -> None:
    name = new_name()
    await responder.publish(name, THEIRS, "10.202.0.3")
    assert await resolver.resolve(name) is None
    assert resolver.counters["ambiguous"] == 1  # draft §3.2.2


@asyncio_module
async def test_name_for_loopback_is_ignored(resolver: MdnsResolver, responder: Responder) -> None:
    name = new_name()
    await responder.publish(name, "127.0.0.1")
    assert await resolver.resolve(name) is None
    assert resolver.counters["unusable"] == 1


@asyncio_module
async def test_names_that_are_not_mdns_are_not_asked(resolver: MdnsResolver) -> None:
    for name in ("a.b.local", "example.com", "x.local.evil", ""):
        assert await resolver.resolve(name) is None
    assert resolver.counters["invalid"] == 4
    assert resolver.counters["resolved"] + resolver.counters["unresolved"] == 0


@asyncio_module
async def test_without_an_interface_nothing_resolves(in_a: Lan) -> None:
    lonely = MdnsResolver([])
    assert await lonely.resolve(new_name()) is None
    assert lonely.counters["unavailable"] == 1
    await lonely.close()


@asyncio_module
async def test_shared_resolver_is_one_per_loop_namespace_and_interfaces(in_a: Lan) -> None:
    first = MdnsResolver.shared([OURS])
    again = MdnsResolver.shared([OURS])
    other = MdnsResolver.shared([])
    assert first is again and first is not other
    first.release()
    other.release()
    assert MdnsResolver.shared([OURS]) is first  # one reference was still held
    first.release()
    first.release()
    assert MdnsResolver.shared([OURS]) is not first  # the last release closed it


# ------------------------------------------------------------------ the intake and the agent


class Pair:
    """Our IceConnection in A (controlled), theirs in B (controlling), on real UDP."""

    def __init__(self, lan: Lan) -> None:
        self.lan = lan
        with lan.a.entered():
            self.ours = IceConnection(
                controlling=False, address_filter=AddressFilter(addresses=(OURS,))
            )
        with lan.b.entered():
            self.theirs = IceConnection(
                controlling=True, address_filter=AddressFilter(addresses=(THEIRS,))
            )
        self.their_candidates: list[tuple[Candidate, str]] = []
        self._changed = asyncio.Event()
        for conn in (self.ours, self.theirs):
            conn.on("statechange", lambda _s: self._changed.set())
        self.theirs.on("candidate", lambda c, u: self.their_candidates.append((c, u)))
        #: False: they learn our address from our checks only (peer-reflexive), so no
        #: check of theirs can reach us before we know their candidate.
        self.tell_theirs = True
        self.ours.on("candidate", self._ours_gathered)
        self.ours.on("gatheringcomplete", lambda u: self.theirs.add_remote_candidate(None, u))

    def _ours_gathered(self, candidate: Candidate, ufrag: str) -> None:
        if self.tell_theirs:
            self.theirs.add_remote_candidate(candidate.with_ufrag(ufrag))

    async def start(self) -> None:
        self.ours.set_remote_credentials(*self.theirs.local_credentials)
        self.theirs.set_remote_credentials(*self.ours.local_credentials)
        with self.lan.a.entered():
            await self.ours.gather()
        with self.lan.b.entered():
            await self.theirs.gather()

    async def until(self, predicate: Any, timeout: float = 10.0) -> None:
        async def wait() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def their_host(self) -> tuple[Candidate, str]:
        (found,) = [(c, u) for c, u in self.their_candidates if c.type == "host"]
        return found

    async def close(self) -> None:
        await self.ours.close()
        await self.theirs.close()


@pytest_asyncio.fixture(loop_scope="module")
async def pair(in_a: Lan) -> AsyncIterator[Pair]:
    made = Pair(in_a)
    try:
        yield made
    finally:
        await made.close()


def generation(conn: IceConnection) -> Any:
    return conn.agent.generations()[-1]


@asyncio_module
async def test_mdns_candidate_reaches_the_agent_with_its_address(
    pair: Pair, responder: Responder
) -> None:
    intake = RemoteCandidates(pair.ours, timeout=5.0)
    pair.tell_theirs = False
    await pair.start()
    host, ufrag = pair.their_host()
    name = new_name()
    await responder.publish(name, host.host)
    assert intake.add(replace(host, host=name).with_ufrag(ufrag, 0)) is True
    intake.end_of_candidates(ufrag)
    await intake.settled()
    (remote,) = generation(pair.ours).remote_candidates
    # The generation (ufrag) is kept; the name became the address it stands for.
    assert (remote.host, remote.port, remote.type, remote.ufrag) == (
        THEIRS,
        host.port,
        "host",
        ufrag,
    )
    assert generation(pair.ours).remote_end_of_candidates
    assert intake.counters["mdns_resolved"] == 1
    await pair.until(lambda: pair.ours.state in UP and pair.theirs.state in UP)
    assert pair.ours.agent.selected_pair is not None
    assert pair.ours.agent.selected_pair.remote.address == (THEIRS, host.port)


@asyncio_module
async def test_check_before_resolution_makes_prflx_and_no_duplicate(
    pair: Pair, responder: Responder
) -> None:
    """Draft §5.3: their check arrives before the name resolves; one candidate, one pair."""
    intake = RemoteCandidates(pair.ours, timeout=10.0)
    await pair.start()
    host, ufrag = pair.their_host()
    name = new_name()  # not published yet: the question goes unanswered for now
    intake.add(replace(host, host=name).with_ufrag(ufrag, 0))
    intake.end_of_candidates(ufrag)
    assert intake.pending == 1
    # End-of-candidates waits for the name (the agent would drop a candidate after it).
    assert not generation(pair.ours).remote_end_of_candidates
    await pair.until(lambda: pair.ours.state in UP and pair.theirs.state in UP)
    (learned,) = generation(pair.ours).remote_candidates
    assert (learned.type, learned.address) == ("prflx", (THEIRS, host.port))
    pairs = list(generation(pair.ours).pairs)
    assert intake.pending == 1
    await responder.publish(name, THEIRS)  # zeroconf keeps asking; the answer comes now
    await intake.settled()
    assert intake.counters["mdns_resolved"] == 1
    assert intake.counters["mdns_dropped"] == 1  # the agent already had that address
    assert pair.ours.agent.counters["remote_candidate_duplicate"] == 1
    assert generation(pair.ours).remote_candidates == [learned]
    assert generation(pair.ours).pairs == pairs
    assert generation(pair.ours).remote_end_of_candidates
    assert pair.ours.state in UP


@asyncio_module
async def test_resolution_after_close_is_dropped_quietly(pair: Pair) -> None:
    intake = RemoteCandidates(pair.ours, timeout=10.0)
    await pair.start()
    host, ufrag = pair.their_host()
    intake.add(replace(host, host=new_name()).with_ufrag(ufrag, 0))
    assert intake.pending == 1
    await pair.ours.close()  # closes the intake: the resolution is cancelled
    await intake.settled()
    assert intake.pending == 0 and intake.resolver is None
    assert intake.add(host.with_ufrag(ufrag, 0)) is False


# ------------------------------------------------------------------ the peer connection


class Peers:
    """Two of our peer connections: `theirs` in B offers, `ours` in A answers.

    Their candidates reach us browser-shaped: the address replaced with a name that the
    responder in B publishes (or not), as Chromium does with default settings.
    """

    def __init__(self, lan: Lan, responder: Responder) -> None:
        self.lan = lan
        self.responder = responder
        with lan.a.entered():
            self.ours = RTCPeerConnection(RTCConfiguration(hostAddresses=[OURS]))
        with lan.b.entered():
            self.theirs = RTCPeerConnection(RTCConfiguration(hostAddresses=[THEIRS]))
        self.names: dict[str, str] = {}  # address -> published name
        self.trickled: list[dict[str, Any]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[BaseException] = []
        self.theirs.on("icecandidate", self._from_theirs)
        self.ours.on("icecandidate", self._from_ours)

    def _from_theirs(self, candidate: Any) -> None:
        if candidate is None:
            init: dict[str, Any] = {"candidate": "", "sdpMid": "0"}
        else:
            init = candidate.toJSON()
            address = candidate.address
            init["candidate"] = init["candidate"].replace(
                f" {address} ", f" {self.names[address]} "
            )
        self.trickled.append(init)
        self.tasks.append(asyncio.ensure_future(self._guard(self.ours.addIceCandidate(init))))

    def _from_ours(self, candidate: Any) -> None:
        init = candidate.toJSON() if candidate is not None else None
        self.tasks.append(asyncio.ensure_future(self._guard(self.theirs.addIceCandidate(init))))

    async def _guard(self, work: Any) -> None:
        try:
            await work
        except BaseException as exc:
            self.errors.append(exc)

    async def connect(self) -> tuple[Any, Any]:
        name = new_name()
        self.names[THEIRS] = name
        await self.responder.publish(name, THEIRS)
        channel = self.theirs.createDataChannel("chat")
        with self.lan.b.entered():
            await self.theirs.setLocalDescription()
        offer = self.theirs.localDescription
        assert offer is not None
        # The candidates gathered so far are in the offer: browser-shaped there too.
        sdp = offer.sdp.replace(f" {THEIRS} ", f" {name} ")
        await self.ours.setRemoteDescription({"type": "offer", "sdp": sdp})
        await self.ours.setLocalDescription()
        await self.theirs.setRemoteDescription(self.ours.localDescription)
        opened: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.ours.on("datachannel", lambda ch: None if opened.done() else opened.set_result(ch))
        theirs_open = asyncio.Event()
        channel.on("open", theirs_open.set)
        ours = await asyncio.wait_for(opened, 10)
        await asyncio.wait_for(theirs_open.wait(), 10)
        return channel, ours

    async def close(self) -> None:
        await self.ours.close()
        await self.theirs.close()
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest_asyncio.fixture(loop_scope="module")
async def peers(in_a: Lan, responder: Responder) -> AsyncIterator[Peers]:
    made = Peers(in_a, responder)
    try:
        yield made
    finally:
        await made.close()


async def exchange(sender: Any, receiver: Any, text: str) -> None:
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    receiver.on("message", lambda m: None if got.done() else got.set_result(m))
    sender.send(text)
    assert await asyncio.wait_for(got, 10) == text


@asyncio_module
async def test_peer_connection_with_browser_shaped_candidates(peers: Peers) -> None:
    theirs_channel, ours_channel = await peers.connect()
    await exchange(theirs_channel, ours_channel, "to ours")
    await exchange(ours_channel, theirs_channel, "to theirs")
    assert peers.errors == []
    assert all(".local " in c["candidate"] for c in peers.trickled if c["candidate"])
    assert peers.ours.iceTransport is not None
    intake = RemoteCandidates.of(peers.ours.iceTransport)
    await intake.settled()
    assert intake.counters["mdns_resolved"] >= 1
    pair = peers.ours.iceTransport.agent.selected_pair
    assert pair is not None and pair.remote.host == THEIRS


@asyncio_module
async def test_add_ice_candidate_returns_before_the_name_resolves(peers: Peers) -> None:
    """addIceCandidate resolves once the candidate is processed; a dead name is counted."""
    await peers.connect()
    assert peers.ours.iceTransport is not None
    intake = RemoteCandidates.of(peers.ours.iceTransport)
    await intake.settled()
    before = intake.counters["mdns_unresolved"]
    line = f"candidate:9 1 udp 2113937151 {new_name()} 40000 typ host generation 0 network-cost 999"
    await peers.ours.addIceCandidate({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0})
    assert intake.pending == 1  # returned while the question is still out
    await intake.settled()  # the resolver's timeout (10 s) ends it
    assert intake.counters["mdns_unresolved"] == before + 1
    assert peers.ours.iceConnectionState in ("connected", "completed")


@asyncio_module
async def test_hostname_candidates_are_ignored_not_errors(peers: Peers) -> None:
    await peers.connect()
    assert peers.ours.iceTransport is not None
    intake = RemoteCandidates.of(peers.ours.iceTransport)
    line = "candidate:9 1 udp 2113937151 relay.example.com 40000 typ host"
    await peers.ours.addIceCandidate({"candidate": line, "sdpMid": "0"})
    assert intake.counters["hostname"] == 1
