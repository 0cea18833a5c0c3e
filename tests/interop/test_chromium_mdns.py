"""Chromium with default settings: mDNS host candidates and bundlePolicy "balanced".

Chromium runs without the flags that make the other interop tests see real addresses
(`--disable-features=WebRtcHideLocalIpsWithMdns`, `--allow-loopback-in-peer-connection`)
and without `--use-fake-ui-for-media-stream` (a page with media permission is shown real
addresses too). So it gathers on its LAN interface only, hides that address behind a
``<uuid>.local`` name, and answers mDNS questions for it, as on a user's machine.

Layout: two namespaces the module makes, joined by a veth pair, where multicast works:
Chromium (and its harness page's server, on its own loopback) in one at 10.204.0.1, our
peer in the other at 10.204.0.2. Chromium's namespace routes by default through our
peer's address (without a default route Chromium, denied address enumeration, gathers
nothing); our namespace does not forward, so nothing leaves the two.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from unbroken.runtime.mdns import RemoteCandidates

from .browser import BrowserPage, Chromium, chromium_missing
from .conftest import require
from .netns import NetNs, netns_available
from .peers import UnbrokenPeer
from .test_chromium_restart import Connected, Pumps, Session, ufrag_of

pytestmark = [
    pytest.mark.browser,
    pytest.mark.netns,
    pytest.mark.asyncio(loop_scope="module"),
]

log = logging.getLogger(__name__)

BROWSER_IP, PEER_IP = "10.204.0.1", "10.204.0.2"
TIMEOUT = 10.0

#: Flags of CHROMIUM_FLAGS that a default Chromium does not have (see the module doc).
NOT_DEFAULT = frozenset(
    {
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--allow-loopback-in-peer-connection",
        "--use-fake-ui-for-media-stream",
    }
)


class DefaultChromium(Chromium):
    """Chromium with the harness flags minus those that turn off mDNS candidates."""

    def _argv(self, profile: str, url: str) -> list[str]:
        return [arg for arg in super()._argv(profile, url) if arg not in NOT_DEFAULT]


class Lan:
    """Chromium's namespace and ours on one veth link."""

    def __init__(self) -> None:
        self.browser = NetNs.create(prefix="ubd")
        try:
            self.peer = NetNs.create(prefix="ubd")
        except BaseException:
            self.browser.delete()
            raise
        try:
            self.browser.ip(
                "link",
                "add",
                "ubdb",
                "type",
                "veth",
                "peer",
                "name",
                "ubdp",
                "netns",
                self.peer.name,
            )
            for ns, dev, ip in ((self.browser, "ubdb", BROWSER_IP), (self.peer, "ubdp", PEER_IP)):
                ns.ip("addr", "add", f"{ip}/24", "dev", dev)
                ns.ip("link", "set", dev, "up")
            self.browser.ip("route", "add", "default", "via", PEER_IP)
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        self.browser.delete()
        self.peer.delete()


@pytest.fixture(scope="module")
def lan() -> Iterator[Lan]:
    require(netns_available())
    made = Lan()
    try:
        yield made
    finally:
        made.delete()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium(lan: Lan) -> AsyncIterator[Chromium]:
    """Overrides conftest's: Chromium with default mDNS behaviour, in the browser namespace."""
    require(chromium_missing())
    browser = DefaultChromium(lan.browser)
    try:
        await browser.start()
        yield browser
    finally:
        await browser.close()


@pytest.fixture
def in_peer_ns(lan: Lan) -> Iterator[Lan]:
    """The test's thread (event loop, our sockets, the mDNS resolver) in our namespace."""
    with lan.peer.entered():
        yield lan


@pytest_asyncio.fixture(loop_scope="module")
async def peer(in_peer_ns: Lan) -> AsyncIterator[UnbrokenPeer]:
    made = UnbrokenPeer(address=PEER_IP)
    try:
        yield made
    finally:
        await made.close()


@pytest_asyncio.fixture(loop_scope="module")
async def sessions() -> AsyncIterator[list[Session]]:
    made: list[Session] = []
    yield made
    for session in made:
        await session.close()


def candidate_lines(gathered: list[dict[str, object] | None]) -> list[dict[str, object]]:
    return [c for c in gathered if c is not None and c.get("candidate")]


def intake_of(peer: UnbrokenPeer) -> RemoteCandidates:
    assert peer.pc.iceTransport is not None
    return RemoteCandidates.of(peer.pc.iceTransport)


@pytest.mark.parametrize("offerer", ["chromium", "python"])
async def test_mdns_candidates_connect_and_survive_restarts_by_each_side(
    page: BrowserPage, peer: UnbrokenPeer, sessions: list[Session], offerer: str
) -> None:
    browser = await page.create_pc({"iceServers": []})  # every other setting by default
    session = Session(browser, peer)
    sessions.append(session)
    if offerer == "chromium":
        await browser.create_data_channel("chat")
        await session.browser_offers()
    else:
        peer.create_data_channel("chat")
        await session.peer_offers()
    c = Connected(
        page, session, await browser.wait_channel("chat"), await peer.wait_channel("chat")
    )
    await browser.wait_for_state("connectionState", "connected")
    await peer.wait_for_state("connectionState", "connected")

    # Chromium hid its address: every candidate it trickled carries a name, not an IP.
    udp = [c for c in candidate_lines(browser.gathered) if " udp " in str(c["candidate"])]
    assert udp and all(".local " in str(c["candidate"]) for c in udp), udp
    assert BROWSER_IP not in "".join(str(c["candidate"]) for c in candidate_lines(browser.gathered))

    async with Pumps(page, c.browser_chat, c.peer_chat) as pumps:
        await pumps.flowing()
        # Chromium restarts: restartIce(), its offer, our answer.
        before = browser.negotiation_needed
        await browser.restart_ice()
        await browser.wait_negotiation_needed(before + 1)
        offer, answer = await session.browser_offers()
        await c.wait_selected(ufrag_of(offer), ufrag_of(answer))
        await pumps.flowing()
        # We restart: createOffer(iceRestart=True), Chromium's answer.
        offer, answer = await session.peer_offers(ice_restart=True)
        await c.wait_selected(ufrag_of(answer), ufrag_of(offer))
        await pumps.flowing()
        await pumps.check()  # every message, both ways, exactly once and in order

    intake = intake_of(peer)
    await intake.settled()
    assert intake.counters["mdns_resolved"] >= 1, intake.counters
    assert intake.counters["mdns_unresolved"] == 0, intake.counters
    assert peer.pc.iceTransport is not None
    pair = peer.pc.iceTransport.agent.selected_pair
    assert pair is not None and pair.remote.host == BROWSER_IP  # the name's address
    log.info(
        "intake %s, resolver %s",
        dict(intake.counters),
        intake.resolver and dict(intake.resolver.counters),
    )


async def test_default_bundle_policy_pairs_only_the_bundle_transport(
    page: BrowserPage, peer: UnbrokenPeer, sessions: list[Session]
) -> None:
    """Chromium offers audio and data with bundlePolicy "balanced": two transports until our
    answer bundles them. Candidates of the data transport are never paired, so our side goes
    checking, connected, completed, with no dead checks holding "completed" back."""
    browser = await page.create_pc({"iceServers": []})
    session = Session(browser, peer)
    sessions.append(session)
    await browser.add_transceiver("audio", "recvonly")
    await browser.create_data_channel("chat")
    # Chromium stops gathering for the data transport once our answer bundles it, so on a
    # loaded machine it may have trickled nothing for it by then: it gets our answer once
    # it trickled one (what we do with such a candidate is what this test checks).
    offer, _ = await session.browser_offers(gathered=lambda c: c.get("sdpMid") != "0")
    assert "a=group:BUNDLE 0 1" in offer["sdp"]
    await browser.wait_channel("chat")
    await peer.wait_channel("chat")
    await browser.wait_gathering_complete()
    await peer.wait_until(
        lambda: peer.pc.iceConnectionState == "completed", "iceConnectionState completed"
    )
    assert peer.state_history("iceConnectionState") == ["checking", "connected", "completed"]
    # ... and the forwarder has handed it to our peer (trickled in the background).
    await peer.wait_until(
        lambda: intake_of(peer).counters["bundle_other_transport"] >= 1,
        lambda: f"a data-transport candidate reaching us (intake {intake_of(peer).counters})",
    )

    other = [c for c in candidate_lines(browser.gathered) if c.get("sdpMid") != "0"]
    assert other, "Chromium gathered no candidate for its second transport (not balanced?)"
    other_ports = {int(str(c["candidate"]).split()[5]) for c in other}
    assert peer.pc.iceTransport is not None
    paired = {p.remote.port for p in peer.pc.iceTransport.agent.pairs()}
    assert not paired & other_ports, (paired, other_ports)
    log.info("bundle test: intake %s, history %s", dict(intake_of(peer).counters), peer.history)
    assert intake_of(peer).counters["bundle_other_transport"] >= 1
    (browser_transport,) = await browser.get_stats("transport")
    assert browser_transport.get("iceState") in ("connected", "completed")
