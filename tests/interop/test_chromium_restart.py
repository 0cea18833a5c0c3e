"""ICE restarts between Chromium and our RTCPeerConnection, with data and media flowing.

Each test connects headless Chromium (in the module's namespace) and our peer over an
ordered signalling channel (`Session`), starts a numbered message every 10 ms each way,
restarts ICE (started by Chromium, by `restartIce()`, by `createOffer(iceRestart=True)`,
or by both in turn), and then checks what webrtc-pc and RFC 8829 promise: both sides'
current descriptions carry the new ufrags, both sides select a pair of the new
generation, the iceConnectionState sequences are the make-before-break ones (a healthy
connection stays connected), and every message arrives, in order, none lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from unbroken.sdp import ice_ufrags

from .browser import (
    BrowserDataChannel,
    BrowserPage,
    BrowserPeerConnection,
    Changes,
    HarnessTimeout,
    poll_until,
)
from .netns import NetNs
from .peers import PeerChannel, UnbrokenPeer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.netns,
    pytest.mark.asyncio(loop_scope="module"),
]

log = logging.getLogger(__name__)

TIMEOUT = 10.0
#: Messages each side must receive before a restart starts and after it has finished.
MARGIN = 10


def ufrag_set(sdp: str) -> set[str]:
    """The a=ice-ufrag values in an SDP, as a set."""
    return set(ice_ufrags(sdp))


def ufrag_of(description: Any) -> str:
    """The one ufrag of a (bundled) description, as a dict or an RTCSessionDescription."""
    assert description is not None, "no description"
    sdp = description["sdp"] if isinstance(description, dict) else description.sdp
    found = ufrag_set(sdp)
    assert len(found) == 1, f"expected one bundled ufrag, got {found}"
    return found.pop()


@pytest_asyncio.fixture(loop_scope="module")
async def peer(in_netns: NetNs) -> AsyncIterator[UnbrokenPeer]:
    """Our RTCPeerConnection, its sockets made inside the namespace."""
    made = UnbrokenPeer()
    try:
        yield made
    finally:
        await made.close()


class Session:
    """Chromium's peer connection and ours, joined by an ordered signalling channel.

    Candidates trickle both ways in background tasks. As on a real signalling channel,
    a candidate reaches the other side only after the description it belongs to (its
    usernameFragment): the exchange methods record each description's ufrag once the
    receiver has applied it, and the forwarders wait for that. End-of-candidates is
    passed on with the generation's ufrag.
    """

    def __init__(self, browser: BrowserPeerConnection, peer: UnbrokenPeer) -> None:
        self.browser = browser
        self.peer = peer
        self.known_by_browser: set[str] = set()  # remote ufrags Chromium has applied
        self.known_by_peer: set[str] = set()  # remote ufrags our peer has applied
        self._known = Changes()
        self.failures: list[BaseException] = []
        self._tasks = [
            asyncio.ensure_future(self._guard(self._to_peer())),
            asyncio.ensure_future(self._guard(self._to_browser())),
        ]

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by check() and close()
            self.failures.append(exc)
            self._known.notify()

    def check(self) -> None:
        """Raise the first error a forwarder met (a candidate Chromium or we refused)."""
        if self.failures:
            raise AssertionError(f"trickling a candidate failed: {self.failures[0]!r}") from (
                self.failures[0]
            )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.check()

    async def _wait_known(self, known: set[str], ufrag: str, who: str) -> None:
        try:
            await self._known.wait_for(lambda: ufrag in known, TIMEOUT)
        except TimeoutError:
            raise AssertionError(
                f"a candidate for ufrag {ufrag} waited {TIMEOUT}s for {who} to apply its "
                f"description (applied: {sorted(known)})"
            ) from None

    async def _to_peer(self) -> None:
        ufrag: str | None = None
        mid: str | None = None
        while True:
            candidate = await self.browser.candidates.get()
            if candidate is None or not candidate.get("candidate"):
                if ufrag is not None:  # end of that generation's candidates
                    await self.peer.add_ice_candidate(
                        {"candidate": "", "sdpMid": mid, "usernameFragment": ufrag}
                    )
                ufrag = None
                continue
            ufrag, mid = candidate["usernameFragment"], candidate["sdpMid"]
            await self._wait_known(self.known_by_peer, ufrag, "our peer")
            await self.peer.add_ice_candidate(candidate)

    async def _to_browser(self) -> None:
        assert self.peer.candidates is not None
        ufrag: str | None = None
        while True:
            candidate = await self.peer.candidates.get()
            if candidate is None:
                if ufrag is not None:
                    await self.browser.add_ice_candidate(None)
                ufrag = None
                continue
            ufrag = candidate["usernameFragment"]
            await self._wait_known(self.known_by_browser, ufrag, "Chromium")
            await self.browser.add_ice_candidate(candidate)

    def _applied(self, known: set[str], description: dict[str, str]) -> None:
        known.add(ufrag_of(description))
        self._known.notify()

    async def browser_offers(
        self, gathered: Callable[[dict[str, Any]], bool] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Chromium's implicit offer, our answer; returns (offer, answer).

        With `gathered`, Chromium gets our answer only once it has trickled a candidate
        matching it (applying an answer can end gathering on a transport it bundles away).
        """
        offer = await self.browser.set_local_description()
        await self.peer.pc.setRemoteDescription(offer)
        self._applied(self.known_by_peer, offer)  # its candidates may come before our answer
        await self.peer.pc.setLocalDescription()
        answer = self.peer.local()
        if gathered is not None:
            await self.browser.wait_gathered(gathered, TIMEOUT)
        await self.browser.set_remote_description(answer)
        self._applied(self.known_by_browser, answer)
        self.check()
        return offer, answer

    async def peer_offers(self, ice_restart: bool = False) -> tuple[dict[str, str], dict[str, str]]:
        """Our offer (createOffer(iceRestart) + setLocalDescription), Chromium's answer."""
        offer = await self.peer.offer(ice_restart=ice_restart)
        await self.browser.set_remote_description(offer)
        self._applied(self.known_by_browser, offer)
        answer = await self.browser.set_local_description()
        await self.peer.accept(answer)
        self._applied(self.known_by_peer, answer)
        self.check()
        return offer, answer


@pytest_asyncio.fixture(loop_scope="module")
async def session_factory() -> AsyncIterator[
    Callable[[BrowserPeerConnection, UnbrokenPeer], Session]
]:
    """Sessions closed (forwarders stopped, their errors raised) at the end of the test."""
    made: list[Session] = []

    def make(browser: BrowserPeerConnection, peer: UnbrokenPeer) -> Session:
        session = Session(browser, peer)
        made.append(session)
        return session

    yield make
    for session in made:
        await session.close()


START_PUMP = """
const ch = h.peer(arg.pc).channel(arg.label);
const pump = { sent: 0 };
pump.timer = setInterval(() => {
  ch.send(arg.prefix + pump.sent);
  pump.sent += 1;
}, arg.interval);
window.unbrokenPumps = window.unbrokenPumps || {};
window.unbrokenPumps[arg.label] = pump;
return null;
"""

STOP_PUMP = """
const pump = window.unbrokenPumps[arg.label];
clearInterval(pump.timer);
return pump.sent;
"""


class Pumps:
    """A numbered message every 10 ms each way: "c0", "c1", ... from Chromium, "p0", ... from us.

    The Python side paces with asyncio.sleep (a sender's clock, not synchronisation).
    `check()` stops both and asserts that each side received exactly what the other sent,
    in order.
    """

    INTERVAL = 0.010

    def __init__(self, page: BrowserPage, browser: BrowserDataChannel, peer: PeerChannel) -> None:
        self.page = page
        self.browser = browser
        self.peer = peer
        self.browser_start = len(browser.messages)
        self.peer_start = len(peer.messages)
        self.sent_by_peer = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._browser_stopped = False

    async def __aenter__(self) -> Pumps:
        args = {
            "pc": self.browser.pc.id,
            "label": self.browser.label,
            "prefix": "c",
            "interval": 10,
        }
        await self.page.evaluate(START_PUMP, args)
        self._task = asyncio.ensure_future(self._send())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop both senders, also when the test failed (check() has stopped them already)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        if not self._browser_stopped and self.page.closed is None:
            self._browser_stopped = True
            await self.page.evaluate(STOP_PUMP, {"label": self.browser.label})

    async def _send(self) -> None:
        while not self._stop.is_set():
            if self.peer.channel.readyState != "open":
                raise AssertionError(f"our channel is {self.peer.channel.readyState} while sending")
            self.peer.send(f"p{self.sent_by_peer}")
            self.sent_by_peer += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.INTERVAL)

    def received(self) -> tuple[int, int]:
        """(messages Chromium received, messages we received) since start()."""
        return len(self.browser.messages) - self.browser_start, len(
            self.peer.messages
        ) - self.peer_start

    async def flowing(self, more: int = MARGIN) -> None:
        """Wait until each side has received `more` further messages."""
        at_browser, at_peer = self.received()
        await self.browser.wait_messages(self.browser_start + at_browser + more)
        await self.peer.wait_messages(self.peer_start + at_peer + more)

    async def check(self) -> None:
        """Stop both senders; every message must arrive, in order, exactly once."""
        self._browser_stopped = True
        sent_by_browser = int(await self.page.evaluate(STOP_PUMP, {"label": self.browser.label}))
        self._stop.set()
        assert self._task is not None
        await self._task
        got_browser = (await self.browser.wait_messages(self.browser_start + self.sent_by_peer))[
            self.browser_start :
        ]
        got_peer = (await self.peer.wait_messages(self.peer_start + sent_by_browser))[
            self.peer_start :
        ]
        assert got_browser == [f"p{i}" for i in range(self.sent_by_peer)]
        assert got_peer == [f"c{i}" for i in range(sent_by_browser)]
        log.info(
            "%d + %d messages; longest gap at Chromium %.0f ms, at ours %.0f ms",
            self.sent_by_peer,
            sent_by_browser,
            max_gap(self.browser.arrivals[self.browser_start :]),
            1000 * max_gap(self.peer.arrivals[self.peer_start :]),
        )


def max_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


class Connected:
    """A connected session with its "chat" channel open on both sides."""

    def __init__(
        self,
        page: BrowserPage,
        session: Session,
        browser_chat: BrowserDataChannel,
        peer_chat: PeerChannel,
    ) -> None:
        self.page = page
        self.session = session
        self.browser = session.browser
        self.peer = session.peer
        self.browser_chat = browser_chat
        self.peer_chat = peer_chat

    async def ufrags(self) -> tuple[str, str]:
        """(Chromium's ufrag, ours) in the current descriptions, the same on both sides."""
        browser_side = await self.browser.descriptions()
        browser_ufrag = ufrag_of(browser_side["currentLocalDescription"])
        peer_ufrag = ufrag_of(self.peer.pc.currentLocalDescription)
        assert ufrag_of(browser_side["currentRemoteDescription"]) == peer_ufrag
        assert ufrag_of(self.peer.pc.currentRemoteDescription) == browser_ufrag
        return browser_ufrag, peer_ufrag

    async def wait_selected(self, browser_ufrag: str, peer_ufrag: str) -> None:
        """Wait until both sides send on a pair of the generation with these ufrags."""

        def browser_on(pair: dict[str, Any] | None) -> bool:
            return bool(pair and pair["local"]["usernameFragment"] == browser_ufrag)

        try:
            await poll_until(
                self.browser.selected_pair,
                browser_on,
                TIMEOUT,
                what=f"Chromium on ufrag {browser_ufrag}",
            )
            await poll_until(
                self.peer_selected_ufrag,
                lambda ufrag: ufrag == peer_ufrag,
                TIMEOUT,
                what=f"our peer on ufrag {peer_ufrag}",
            )
        except HarnessTimeout as exc:
            raise HarnessTimeout(f"{exc}\n{await self.describe()}") from None

    async def describe(self) -> str:
        """Both sides' ICE roles, candidate pairs and our state history, for failures."""
        lines = [f"roles (Chromium, ours): {await self.roles()}"]
        for pair in await self.browser.get_stats("candidate-pair"):
            lines.append(
                f"  chromium pair {pair.get('id')}: {pair.get('state')} "
                f"nominated={pair.get('nominated')} local={pair.get('localCandidateId')}"
            )
        report = await self.peer.pc.getStats()
        for pair in report.values():
            if pair["type"] == "candidate-pair":
                lines.append(
                    f"  our pair {pair['id']}: {pair['state']} nominated={pair['nominated']} "
                    f"local={pair['localCandidateId']}"
                )
        lines.append(f"our history: {self.peer.history}")
        return "\n".join(lines)

    async def peer_selected_ufrag(self) -> str | None:
        """The local ufrag of our selected pair, read from getStats like Chromium's."""
        report = await self.peer.pc.getStats()
        transport = next(s for s in report.values() if s["type"] == "transport")
        pair = report.get(transport["selectedCandidatePairId"] or "")
        if pair is None:
            return None
        local = report.get(pair["localCandidateId"])
        return local["usernameFragment"] if local is not None else None

    async def roles(self) -> tuple[str, str]:
        """(Chromium's, our) ICE role, from each side's transport stats."""
        (browser,) = await self.browser.get_stats("transport")
        report = await self.peer.pc.getStats()
        (ours,) = [s for s in report.values() if s["type"] == "transport"]
        return str(browser.get("iceRole")), str(ours["iceRole"])

    def marks(self) -> tuple[int, int]:
        """Where both state histories are now (to read what a restart changed)."""
        return len(self.browser.history), len(self.peer.history)

    def since(self, marks: tuple[int, int], prop: str) -> tuple[list[str], list[str]]:
        """(Chromium's, ours) values of `prop` reported since `marks`."""
        browser_mark, peer_mark = marks
        browser = [c.state for c in self.browser.history[browser_mark:] if c.property == prop]
        peer = [state for name, state in self.peer.history[peer_mark:] if name == prop]
        return browser, peer


async def connect(
    page: BrowserPage,
    peer: UnbrokenPeer,
    make_session: Callable[[BrowserPeerConnection, UnbrokenPeer], Session],
    offerer: str,
    audio: bool = False,
) -> Connected:
    """Connect Chromium and our peer with a "chat" channel; `offerer` makes the first offer."""
    # With audio and data, Chromium's default bundlePolicy ("balanced") gathers a second
    # transport for the data m-section in its first offer and trickles its candidate, then
    # drops that transport when our answer bundles. RFC 8843 §10 applies trickled candidates
    # of any bundled m-section to the bundle, so we check that dead candidate until its
    # checks run out (6.3 s) and reach "completed" only then. max-bundle gathers one.
    browser = await page.create_pc({"iceServers": [], "bundlePolicy": "max-bundle"})
    session = make_session(browser, peer)
    if audio:
        peer.add_audio_track()
    if offerer == "chromium":
        if audio:
            await browser.add_transceiver("audio", "recvonly")
        await browser.create_data_channel("chat")
        await session.browser_offers()
    else:
        peer.create_data_channel("chat")
        await session.peer_offers()
    browser_chat = await browser.wait_channel("chat")
    peer_chat = await peer.wait_channel("chat")
    await browser.wait_for_state("connectionState", "connected")
    await peer.wait_for_state("connectionState", "connected")
    return Connected(page, session, browser_chat, peer_chat)


async def restart_by_chromium(c: Connected) -> tuple[str, str]:
    """Chromium: restartIce(), negotiationneeded, then its offer and our answer."""
    before = c.browser.negotiation_needed
    await c.browser.restart_ice()
    await c.browser.wait_negotiation_needed(before + 1)
    offer, answer = await c.session.browser_offers()
    return ufrag_of(offer), ufrag_of(answer)


async def restart_by_restart_ice(c: Connected) -> tuple[str, str]:
    """Ours: pc.restartIce(), negotiationneeded, then our offer and Chromium's answer."""
    before = c.peer.negotiation_needed
    c.peer.pc.restartIce()
    await c.peer.wait_negotiation_needed(before + 1)
    offer, answer = await c.session.peer_offers()
    return ufrag_of(answer), ufrag_of(offer)


async def restart_by_ice_restart_offer(c: Connected) -> tuple[str, str]:
    """Ours: createOffer(iceRestart=True) + setLocalDescription, Chromium's answer."""
    offer, answer = await c.session.peer_offers(ice_restart=True)
    return ufrag_of(answer), ufrag_of(offer)


RESTARTS: dict[str, Callable[[Connected], Awaitable[tuple[str, str]]]] = {
    "chromium": restart_by_chromium,
    "restartIce": restart_by_restart_ice,
    "iceRestart-offer": restart_by_ice_restart_offer,
}


async def restart(c: Connected, how: str) -> None:
    """One restart of kind `how`, checked on both sides.

    Before: our transport is "completed" (both sides signalled end-of-candidates) and
    Chromium's "connected". After: both sides' current local and remote descriptions carry
    the new ufrags, both send on a pair of the new generation, and the states are those of
    make before break (see the asserts).
    """
    await c.peer.wait_until(
        lambda: c.peer.pc.iceConnectionState == "completed", "iceConnectionState completed"
    )
    assert (await c.browser.states())["iceConnectionState"] == "connected"
    old = await c.ufrags()
    marks = c.marks()
    new = await RESTARTS[how](c)
    assert new[0] != old[0] and new[1] != old[1], f"restart {how} kept a ufrag: {old} -> {new}"
    assert await c.ufrags() == new  # current descriptions on both sides, local and remote
    await c.wait_selected(*new)
    await c.peer.wait_for_state("iceConnectionState", "completed", since=marks[1])
    await c.browser.wait_for_state("iceGatheringState", "complete", since=marks[0])

    browser_ice, peer_ice = c.since(marks, "iceConnectionState")
    log.info("restart %s: iceConnectionState Chromium %s, ours %s", how, browser_ice, peer_ice)
    # The old pair stays usable until the new generation takes over, so neither side goes
    # through "checking" (webrtc-pc: checking means no usable connection). Chromium, never
    # "completed" here, stays "connected" with no event at all; ours goes completed ->
    # connected when the restart starts (webrtc-pc RTCIceTransportState) and completed
    # again once the new generation's checks and candidates are done.
    assert browser_ice == []
    assert peer_ice == ["connected", "completed"]
    assert c.since(marks, "connectionState") == ([], [])
    browser_offered = how == "chromium"
    browser_signaling, peer_signaling = c.since(marks, "signalingState")
    offerer, answerer = ["have-local-offer", "stable"], ["have-remote-offer", "stable"]
    assert browser_signaling == (offerer if browser_offered else answerer)
    assert peer_signaling == (answerer if browser_offered else offerer)
    # Chromium gathers again for the new generation. (Ours reports no gathering events:
    # host-only gathering completes at once and the agent stays "complete".)
    assert c.since(marks, "iceGatheringState")[0] == ["gathering", "complete"]
    states = await c.browser.states()
    assert (states["iceConnectionState"], states["connectionState"]) == ("connected", "connected")
    assert (c.peer.pc.iceConnectionState, c.peer.pc.connectionState) == ("completed", "connected")
    # Chromium re-determines ICE roles at a restart (libwebrtc's redetermine_role_on_ice_restart:
    # the restart's offerer controls) where RFC 8445 §9 keeps them, as we do; when the two
    # disagree a role conflict (487) settles it by tie-breaker. Either way the roles must end
    # up complementary.
    assert await c.roles() in (("controlling", "controlled"), ("controlled", "controlling"))


@pytest.mark.parametrize("offerer", ["chromium", "python"])
@pytest.mark.parametrize("how", sorted(RESTARTS))
async def test_restart_keeps_messages_flowing(
    page: BrowserPage,
    peer: UnbrokenPeer,
    session_factory: Callable[[BrowserPeerConnection, UnbrokenPeer], Session],
    offerer: str,
    how: str,
) -> None:
    """One restart of each kind, after either side's first offer; nothing lost, in order."""
    c = await connect(page, peer, session_factory, offerer)
    async with Pumps(page, c.browser_chat, c.peer_chat) as pumps:
        await pumps.flowing()
        await restart(c, how)
        await pumps.flowing()
        await pumps.check()


@pytest.mark.parametrize("offerer", ["chromium", "python"])
async def test_restarts_by_both_in_turn(
    page: BrowserPage,
    peer: UnbrokenPeer,
    session_factory: Callable[[BrowserPeerConnection, UnbrokenPeer], Session],
    offerer: str,
) -> None:
    """Chromium, restartIce(), iceRestart offer, Chromium again: one stream of messages."""
    c = await connect(page, peer, session_factory, offerer)
    negotiation_needed = peer.negotiation_needed
    async with Pumps(page, c.browser_chat, c.peer_chat) as pumps:
        await pumps.flowing()
        for how in ("chromium", "restartIce", "iceRestart-offer", "chromium"):
            await restart(c, how)
            await pumps.flowing()
        await pumps.check()
    assert peer.negotiation_needed == negotiation_needed + 1  # for restartIce() only


PLAY_AUDIO = """
const receiver = h.peer(arg.pc).pc.getReceivers().find((r) => r.track.kind === "audio");
const player = new Audio();
player.srcObject = new MediaStream([receiver.track]);
window.unbrokenPlayers = (window.unbrokenPlayers || []).concat([player]);
await player.play();
return null;
"""


async def decoded_samples(browser: BrowserPeerConnection) -> int:
    """Audio samples Chromium decoded from what it received (not concealment)."""
    stats = await browser.inbound_rtp("audio")
    return sum(
        int(s.get("totalSamplesReceived", 0)) - int(s.get("concealedSamples", 0)) for s in stats
    )


@pytest.mark.parametrize(("offerer", "how"), [("python", "chromium"), ("chromium", "restartIce")])
async def test_audio_keeps_arriving_after_restart(
    page: BrowserPage,
    peer: UnbrokenPeer,
    session_factory: Callable[[BrowserPeerConnection, UnbrokenPeer], Session],
    offerer: str,
    how: str,
) -> None:
    """aiortc's AudioStreamTrack sent by our peer is received and decoded in Chromium after
    the restart, once both sides are on the new generation (so over the new pair).

    The track plays in an <audio> element: Chromium decodes only what it plays out, and
    decoded samples (unlike packetsReceived) also prove the payload types still match.
    """
    c = await connect(page, peer, session_factory, offerer, audio=True)
    await c.browser.wait_track("audio")
    await page.evaluate(PLAY_AUDIO, {"pc": c.browser.id})
    await c.browser.wait_inbound_packets("audio", 10)
    await restart(c, how)
    packets = await c.browser.wait_inbound_packets("audio", 1)
    samples = await decoded_samples(c.browser)
    # 20 ms packets: 25 more is half a second of audio, all on the new pair, and at
    # 48 kHz at least a quarter second of it decoded.
    assert await c.browser.wait_inbound_packets("audio", packets + 25) >= packets + 25
    await poll_until(
        lambda: decoded_samples(c.browser),
        lambda n: n >= samples + 12000,
        TIMEOUT,
        what=f"Chromium decoding audio after the restart (had {samples} samples)",
    )
    await c.wait_selected(*await c.ufrags())  # still on the new generation
