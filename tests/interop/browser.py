"""Headless Chromium or Firefox in a network namespace, driven step by step from Python.

Theory of operation. `launch_chromium(ns)` (or `launch_firefox(ns)`, or
`launch_browser(kind, ns)`) opens an aiohttp server on a loopback socket created inside
the namespace, starts the browser there (through `ip netns exec`) on the harness page
(page/index.html + page/harness.js), and waits for the page to connect back over a
WebSocket. No driver (Playwright, CDP, Marionette) sits in between: the page itself
runs JSON commands and reports events, so the only moving parts are one browser
process tree and one socket. The browser runs under reaper.py, which reaps the whole
tree before it exits and takes it down if the test process dies.

- `Browser` owns the process, the server and the current `BrowserPage`;
  `Browser.new_page()` navigates to a fresh page (a new JS context, all peer
  connections gone) for the next test. `Chromium` and `Firefox` differ only in how the
  process is started (flags, or a profile with a user.js); everything else is shared.
- Firefox needs a namespace with an address that has a default route
  (`add_default_route`): it gathers no host candidate otherwise.
- `BrowserPage.call()` sends one command and awaits its reply, with a timeout; a
  rejected promise in the page raises `PageError` carrying the DOMException name
  (`InvalidStateError`, `OperationError`, ...).
- `BrowserPeerConnection` mirrors one RTCPeerConnection in the page. Events arrive in
  page order and are recorded: trickled candidates (`candidates` queue), the state
  history with page and local timestamps, negotiationneeded, data channel messages,
  tracks. `wait_for_*` methods wait on those records, never by sleeping.
- Every failure (timeout, page error, browser exit) carries a diagnostic with the
  page's console, uncaught errors and the tail of the browser's stderr.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import WSMsgType, web

from .netns import NetNs

__all__ = [
    "BROWSERS",
    "CHROMIUM_FLAGS",
    "FIREFOX_PREFS",
    "Browser",
    "BrowserDataChannel",
    "BrowserGone",
    "BrowserPage",
    "BrowserPeerConnection",
    "Changes",
    "Chromium",
    "ConsoleEntry",
    "Firefox",
    "HarnessError",
    "HarnessTimeout",
    "PageError",
    "StateChange",
    "add_default_route",
    "browser_missing",
    "chromium_executable",
    "chromium_missing",
    "firefox_executable",
    "firefox_missing",
    "launch_browser",
    "launch_chromium",
    "launch_firefox",
    "poll_until",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

PAGE_DIR = Path(__file__).parent / "page"
REAPER = Path(__file__).parent / "reaper.py"

#: Flags from DESIGN.md ("Testing on these machines"). The last three make Chromium
#: gather loopback host candidates with real addresses (no mDNS names); without them
#: it gathers nothing usable in a namespace that has only `lo`.
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--use-fake-ui-for-media-stream",
    # Harmless extras: keep timers and media running in a page nobody looks at, and let
    # the synthetic audio source (an AudioContext) start without a user gesture.
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--enable-logging=stderr",
    "--v=0",
)

#: Chromium stderr lines that say nothing about a failure (no D-Bus, no GPU here).
NOISE = re.compile(
    r"dbus|bluez|idle_linux|vaapi|sandbox_linux|unexpected operator|source: chrome://"
)

#: user.js of the Firefox profile. The first two are from DESIGN.md: without them Firefox
#: hides host addresses behind mDNS names and gathers no loopback candidate. The media
#: ones give getUserMedia a fake device with no prompt and let audio play unprompted.
#: The rest keep Firefox off the network (updates, telemetry, safe browsing, remote
#: settings, captive portal and connectivity probes, prefetching, plugin downloads) and
#: its timers exact (privacy.reduceTimerPrecision rounds performance.now()).
FIREFOX_PREFS: dict[str, bool | int | str] = {
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.peerconnection.ice.loopback": True,
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "privacy.reduceTimerPrecision": False,
    "devtools.console.stdout.content": True,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.update.disabledForTesting": True,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.page": 0,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.ping-centre.telemetry": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.safebrowsing.provider.google.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.search.update": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.tabs.warnOnClose": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "media.gmp-manager.url": "",
    "media.gmp-provider.enabled": False,
    "media.gmp-gmpopenh264.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.http.speculative-parallel-limit": 0,
    "network.proxy.type": 0,
    "services.settings.server": "",
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.startup.max_resumed_crashes": -1,
}

#: Profile directories are named PREFIX + PID + "-...": a later run deletes a killed run's.
PROFILE_PREFIX = "unbroken-chromium-"
FIREFOX_PROFILE_PREFIX = "unbroken-firefox-"
DEFAULT_TIMEOUT = 10.0
STDERR_LINES = 200


def chromium_executable() -> str | None:
    """The Chromium binary to use: $UNBROKEN_CHROMIUM, else /usr/bin/chromium if present."""
    path = os.environ.get("UNBROKEN_CHROMIUM", "/usr/bin/chromium")
    return path if os.access(path, os.X_OK) else None


def chromium_missing() -> str | None:
    """Return None if Chromium can be launched, else why not."""
    if chromium_executable() is None:
        return (
            "Chromium not found at $UNBROKEN_CHROMIUM or /usr/bin/chromium "
            "(install it with scripts/install-test-deps.sh)"
        )
    return None


def firefox_executable() -> str | None:
    """The Firefox binary to use: $UNBROKEN_FIREFOX, else /usr/bin/firefox-esr if present."""
    path = os.environ.get("UNBROKEN_FIREFOX", "/usr/bin/firefox-esr")
    return path if os.access(path, os.X_OK) else None


def firefox_missing() -> str | None:
    """Return None if Firefox can be launched, else why not."""
    if firefox_executable() is None:
        return (
            "Firefox not found at $UNBROKEN_FIREFOX or /usr/bin/firefox-esr "
            "(install it with scripts/install-test-deps.sh)"
        )
    return None


def browser_missing(kind: str) -> str | None:
    """Return None if the browser of this kind ("chromium", "firefox") can be launched."""
    return {"chromium": chromium_missing, "firefox": firefox_missing}[kind]()


def add_default_route(ns: NetNs, subnet: str = "10.203.0") -> str:
    """Give `ns` an address with a default route; return that address.

    Firefox gathers host candidates only on an interface with a default route (DESIGN.md).
    A veth pair made inside the namespace, SUBNET.1 on one end and SUBNET.2 on the other,
    with the default route via SUBNET.2: both ends are local addresses of the namespace,
    forwarding is off in a new namespace, so nothing routed there leaves it.
    """
    ns.ip("link", "add", "ubveth0", "type", "veth", "peer", "name", "ubveth1")
    ns.ip("addr", "add", f"{subnet}.1/24", "dev", "ubveth0")
    ns.ip("addr", "add", f"{subnet}.2/24", "dev", "ubveth1")
    ns.ip("link", "set", "ubveth0", "up")
    ns.ip("link", "set", "ubveth1", "up")
    ns.ip("route", "add", "default", "via", f"{subnet}.2")
    return f"{subnet}.1"


class Changes:
    """Wake waiters whenever something changed; they re-check their own condition.

    `notify()` is synchronous, so plain callbacks (pyee handlers) can call it.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    @property
    def event(self) -> asyncio.Event:
        """The event the next `notify()` sets (take it before checking a condition)."""
        return self._event

    async def wait_for(self, predicate: Callable[..., bool], timeout: float) -> None:
        """Return once `predicate()` is true; raise asyncio.TimeoutError after `timeout`."""

        async def loop() -> None:
            while not predicate():
                await self._event.wait()

        await asyncio.wait_for(loop(), timeout)


class HarnessError(Exception):
    """Something went wrong driving the browser; the message carries diagnostics."""


class PageError(HarnessError):
    """A command was rejected in the page; `name` is the JS error name (a DOMException's)."""

    def __init__(self, cmd: str, name: str, message: str, stack: str, diagnostics: str) -> None:
        super().__init__(f"{cmd}: {name}: {message}\n{stack}\n{diagnostics}")
        self.cmd = cmd
        self.name = name
        self.js_message = message
        self.stack = stack


class HarnessTimeout(HarnessError, TimeoutError):
    """A reply or a condition did not arrive in time."""


class BrowserGone(HarnessError):
    """The page disconnected or Chromium exited while something was pending."""


async def poll_until(
    read: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool],
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = 0.05,
    what: str = "a condition",
) -> T:
    """Call `read()` until `predicate` holds for its result; return that result.

    For values with no change event (getStats): a condition wait with a deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = await read()
        if predicate(value):
            return value
        if time.monotonic() >= deadline:
            raise HarnessTimeout(f"timed out after {timeout}s polling for {what}; last: {value!r}")
        await asyncio.sleep(interval)


@dataclass(frozen=True)
class ConsoleEntry:
    """One console message or uncaught error from the page."""

    level: str  # "log", "info", "warn", "error", "debug", or "pageerror"
    text: str
    t_page: float  # epoch milliseconds, page clock


@dataclass(frozen=True)
class StateChange:
    """One state change of a peer connection, as the page reported it."""

    property: str  # iceConnectionState, connectionState, signalingState, iceGatheringState
    state: str
    t_page: float  # epoch milliseconds when the page saw it
    t: float  # time.monotonic() when Python received it


@dataclass
class BrowserDataChannel:
    """A data channel in the page, as seen through its events."""

    pc: BrowserPeerConnection
    label: str
    origin: str  # "local" (createDataChannel) or "remote" (ondatachannel)
    state: str = "connecting"
    channel_id: int | None = None
    messages: list[str | bytes] = field(default_factory=list, repr=False)
    #: Page time (epoch ms) at which each message arrived, parallel to `messages`.
    arrivals: list[float] = field(default_factory=list, repr=False)
    #: time.monotonic() when Python got each message's event, parallel to `messages`.
    received: list[float] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list)

    async def send(self, data: str | bytes) -> None:
        """Send a text or binary message on the channel."""
        await self.pc.send(self.label, data)

    async def wait_open(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the channel is open; fail at once if it closes first."""

        def check() -> bool:
            if self.state in ("closing", "closed"):
                raise HarnessError(f"data channel {self.label!r} is {self.state}, not open")
            return self.state == "open"

        await self.pc.page.wait_until(check, timeout, f"data channel {self.label!r} open")

    async def wait_messages(
        self, count: int, timeout: float = DEFAULT_TIMEOUT
    ) -> list[str | bytes]:
        """Wait until at least `count` messages arrived; return all received so far."""
        await self.pc.page.wait_until(
            lambda: len(self.messages) >= count,
            timeout,
            lambda: f"{count} messages on data channel {self.label!r} (have {len(self.messages)})",
        )
        return list(self.messages)

    async def close(self) -> None:
        """Close the channel in the page."""
        await self.pc.page.call("closeChannel", pc=self.pc.id, label=self.label)


class BrowserPeerConnection:
    """An RTCPeerConnection living in the page, driven one call at a time."""

    def __init__(self, page: BrowserPage, pc_id: int) -> None:
        self.page = page
        self.id = pc_id
        #: Trickled candidates (RTCIceCandidateInit dicts) in order; None marks the end
        #: of a gathering round (there is one round per ICE generation).
        self.candidates: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        #: Every candidate ever trickled, including the None markers.
        self.gathered: list[dict[str, Any] | None] = []
        self.history: list[StateChange] = []
        self.negotiation_needed = 0
        self.channels: dict[str, BrowserDataChannel] = {}
        self.tracks: list[dict[str, Any]] = []
        self.candidate_errors: list[dict[str, Any]] = []
        #: "selected" reports of `watch_selected()`: (info, time.monotonic() on arrival).
        self.selected_history: list[tuple[dict[str, Any], float]] = []

    def __repr__(self) -> str:
        return f"<BrowserPeerConnection {self.id} in {self.page.session}>"

    async def _call(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        return await self.page.call(cmd, timeout=timeout, pc=self.id, **args)

    # -- JSEP --------------------------------------------------------------------
    async def create_data_channel(self, label: str, **options: Any) -> BrowserDataChannel:
        """pc.createDataChannel(label, options); options use the JS names (ordered, ...)."""
        info = await self._call("createDataChannel", label=label, options=options)
        channel = self.channels[label]  # the page's "datachannel" event came first
        channel.channel_id = info["channelId"]
        return channel

    async def create_offer(self, ice_restart: bool = False) -> dict[str, str]:
        """pc.createOffer({iceRestart}); returns {"type", "sdp"}."""
        result: dict[str, str] = await self._call(
            "createOffer", options={"iceRestart": ice_restart}
        )
        return result

    async def create_answer(self) -> dict[str, str]:
        """pc.createAnswer(); returns {"type", "sdp"}."""
        result: dict[str, str] = await self._call("createAnswer")
        return result

    async def set_local_description(
        self, description: dict[str, str] | None = None
    ) -> dict[str, str]:
        """pc.setLocalDescription(description), implicit when None; returns localDescription."""
        result: dict[str, str] = await self._call("setLocalDescription", description=description)
        return result

    async def set_remote_description(self, description: dict[str, str]) -> None:
        """pc.setRemoteDescription(description)."""
        await self._call("setRemoteDescription", description=description)

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        """pc.addIceCandidate(candidate); None signals end-of-candidates."""
        await self._call("addIceCandidate", candidate=candidate)

    async def restart_ice(self) -> None:
        """pc.restartIce(); the page then reports negotiationneeded (see wait_negotiation_needed)."""
        await self._call("restartIce")

    async def descriptions(self) -> dict[str, dict[str, str] | None]:
        """All six description attributes (localDescription, currentLocalDescription, ...)."""
        result: dict[str, dict[str, str] | None] = await self._call("descriptions")
        return result

    async def local_description(self) -> dict[str, str] | None:
        return (await self.descriptions())["localDescription"]

    async def current_local_description(self) -> dict[str, str] | None:
        return (await self.descriptions())["currentLocalDescription"]

    async def remote_description(self) -> dict[str, str] | None:
        return (await self.descriptions())["remoteDescription"]

    async def current_remote_description(self) -> dict[str, str] | None:
        return (await self.descriptions())["currentRemoteDescription"]

    # -- states --------------------------------------------------------------------
    async def states(self) -> dict[str, str]:
        """The four state attributes read now in the page."""
        result: dict[str, str] = await self._call("states")
        return result

    async def ice_connection_state(self) -> str:
        return (await self.states())["iceConnectionState"]

    async def connection_state(self) -> str:
        return (await self.states())["connectionState"]

    async def signaling_state(self) -> str:
        return (await self.states())["signalingState"]

    async def ice_gathering_state(self) -> str:
        return (await self.states())["iceGatheringState"]

    def state_history(self, prop: str) -> list[str]:
        """The successive values of one state property reported by events so far."""
        return [c.state for c in self.history if c.property == prop]

    def last_state(self, prop: str) -> str | None:
        """The last reported value of a state property (None before any change event)."""
        states = self.state_history(prop)
        return states[-1] if states else None

    async def wait_for_state(
        self,
        prop: str,
        state: str | Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        since: int | None = None,
    ) -> StateChange:
        """Wait until the latest reported value of `prop` is `state` (or one of several).

        With `since` (a `len(pc.history)` taken earlier), only changes recorded from that
        index on count: use it to wait for a *new* transition, e.g. after a restart.
        Returns the matching change.
        """
        wanted = {state} if isinstance(state, str) else set(state)

        def found() -> StateChange | None:
            for change in reversed(self.history[since or 0 :]):
                if change.property == prop:
                    return change if change.state in wanted else None
            return None

        await self.page.wait_until(
            lambda: found() is not None,
            timeout,
            lambda: (
                f"pc {self.id} {prop} in {sorted(wanted)} (history: {self.state_history(prop)})"
            ),
        )
        result = found()
        assert result is not None
        return result

    async def wait_gathering_complete(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, str]:
        """Wait for iceGatheringState "complete"; return localDescription (with candidates)."""
        await self.wait_for_state("iceGatheringState", "complete", timeout)
        description = await self.local_description()
        assert description is not None
        return description

    async def wait_negotiation_needed(
        self, count: int = 1, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Wait until negotiationneeded has fired at least `count` times in total."""
        await self.page.wait_until(
            lambda: self.negotiation_needed >= count,
            timeout,
            lambda: f"pc {self.id} negotiationneeded x{count} (seen {self.negotiation_needed})",
        )

    async def wait_gathered(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = DEFAULT_TIMEOUT
    ) -> dict[str, Any]:
        """Wait until the page has trickled a candidate matching `predicate`; return it."""

        def found() -> dict[str, Any] | None:
            return next((c for c in self.gathered if c is not None and predicate(c)), None)

        await self.page.wait_until(
            lambda: found() is not None,
            timeout,
            lambda: f"pc {self.id} trickling a matching candidate (gathered: {self.gathered})",
        )
        result = found()
        assert result is not None
        return result

    async def next_candidate(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | None:
        """The next trickled candidate (None at the end of a gathering round)."""
        self.page.check_loop()
        try:
            return await asyncio.wait_for(self.candidates.get(), timeout)
        except TimeoutError:
            raise HarnessTimeout(
                f"no ICE candidate from pc {self.id} within {timeout}s\n" + self.page.diagnostics()
            ) from None

    # -- data ------------------------------------------------------------------------
    def channel(self, label: str) -> BrowserDataChannel:
        """The data channel with this label (created here or announced by the remote)."""
        try:
            return self.channels[label]
        except KeyError:
            raise HarnessError(f"pc {self.id} has no data channel {label!r}") from None

    async def wait_channel(
        self, label: str, timeout: float = DEFAULT_TIMEOUT
    ) -> BrowserDataChannel:
        """Wait for a data channel with this label to exist and be open."""
        await self.page.wait_until(
            lambda: label in self.channels, timeout, f"pc {self.id} data channel {label!r}"
        )
        channel = self.channels[label]
        await channel.wait_open(timeout)
        return channel

    async def send(self, label: str, data: str | bytes) -> None:
        """channel.send(data) on the channel with this label."""
        if isinstance(data, bytes):
            await self._call("send", label=label, data=base64.b64encode(data).decode(), binary=True)
        else:
            await self._call("send", label=label, data=data, binary=False)

    def messages(self, label: str) -> list[str | bytes]:
        """Messages received so far on a channel, in order."""
        return list(self.channel(label).messages)

    # -- media and stats -----------------------------------------------------------------
    async def add_transceiver(self, kind: str, direction: str = "sendrecv") -> dict[str, Any]:
        """pc.addTransceiver(kind, {direction}); e.g. ("audio", "recvonly") to receive."""
        result: dict[str, Any] = await self._call(
            "addTransceiver", kind=kind, init={"direction": direction}
        )
        return result

    async def add_track(self, kind: str) -> dict[str, Any]:
        """Add a synthetic track (oscillator audio or painted-canvas video) to send."""
        result: dict[str, Any] = await self._call("addTrack", kind=kind)
        return result

    async def wait_track(self, kind: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        """Wait for an ontrack event of this kind; return its details (kind, trackId, mid)."""
        await self.page.wait_until(
            lambda: any(t["kind"] == kind for t in self.tracks),
            timeout,
            f"pc {self.id} ontrack {kind}",
        )
        return next(t for t in self.tracks if t["kind"] == kind)

    async def get_stats(self, type: str | None = None) -> list[dict[str, Any]]:
        """pc.getStats() as a list of stats dicts, optionally only those of one type."""
        stats: list[dict[str, Any]] = await self._call("getStats")
        return [s for s in stats if type is None or s.get("type") == type]

    async def inbound_rtp(self, kind: str) -> list[dict[str, Any]]:
        """The inbound-rtp stats of one kind ("audio" or "video")."""
        return [s for s in await self.get_stats("inbound-rtp") if s.get("kind") == kind]

    async def wait_inbound_packets(
        self, kind: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT, poll: float = 0.05
    ) -> int:
        """Poll getStats until inbound-rtp of `kind` has `count` packets; return the count.

        Stats have no change event, so this polls (a condition wait with a deadline).
        """

        async def received() -> int:
            return sum(int(s.get("packetsReceived", 0)) for s in await self.inbound_rtp(kind))

        try:
            return await poll_until(
                received, lambda n: n >= count, timeout, poll, f"{count} inbound {kind} packets"
            )
        except HarnessTimeout as exc:
            raise HarnessTimeout(f"pc {self.id}: {exc}\n{self.page.diagnostics()}") from None

    async def selected_pair(self) -> dict[str, Any] | None:
        """The selected candidate pair with its local and remote candidate stats inlined."""
        stats = {s["id"]: s for s in await self.get_stats()}
        for s in stats.values():
            if s.get("type") == "transport" and s.get("selectedCandidatePairId"):
                pair = dict(stats[s["selectedCandidatePairId"]])
                pair["local"] = stats.get(pair.get("localCandidateId", ""))
                pair["remote"] = stats.get(pair.get("remoteCandidateId", ""))
                return pair
        return None

    async def add_user_media(self, audio: bool = True, video: bool = False) -> list[dict[str, Any]]:
        """getUserMedia from the browser's fake devices, every track added with addTrack."""
        result: list[dict[str, Any]] = await self._call("addUserMedia", audio=audio, video=video)
        return result

    async def selected_info(self) -> dict[str, Any]:
        """The selected pair's ufrags and addresses, the current ufrags and the ICE role.

        Keys: localUfrag, remoteUfrag (of the selected pair's candidates, from getStats),
        currentLocalUfrag, currentRemoteUfrag (of the current descriptions), local,
        remote ("type address:port"), role.
        """
        result: dict[str, Any] = await self._call("selected")
        return result

    async def watch_selected(self, interval_ms: int = 10) -> None:
        """Report `selected_info()` whenever it changes, into `selected_history`.

        Polls getStats in the page every `interval_ms` (Firefox has no
        selectedcandidatepairchange event), and at once on the event where it exists.
        """
        await self._call("watchSelected", interval=interval_ms)

    @property
    def last_selected(self) -> dict[str, Any] | None:
        """The latest "selected" report (None before `watch_selected()` reported)."""
        return self.selected_history[-1][0] if self.selected_history else None

    async def close(self) -> None:
        """pc.close()."""
        await self._call("closePc")

    # -- events from the page -------------------------------------------------------------
    def _on_event(self, name: str, msg: dict[str, Any], now: float) -> None:
        if name == "icecandidate":
            candidate = msg.get("candidate")
            self.gathered.append(candidate)
            self.candidates.put_nowait(candidate)
        elif name == "statechange":
            self.history.append(StateChange(msg["property"], msg["state"], msg["t"], now))
        elif name == "negotiationneeded":
            self.negotiation_needed += 1
        elif name == "datachannel":
            label = msg["label"]
            self.channels[label] = BrowserDataChannel(
                self, label, msg["origin"], msg["state"], msg.get("channelId")
            )
        elif name == "channelstate":
            self.channels[msg["label"]].state = msg["state"]
        elif name == "channelerror":
            self.channels[msg["label"]].errors.append(msg["message"])
        elif name == "message":
            data = msg["data"]
            channel = self.channels[msg["label"]]
            channel.messages.append(base64.b64decode(data) if msg["binary"] else data)
            channel.arrivals.append(msg["t"])
            channel.received.append(now)
        elif name == "track":
            self.tracks.append(msg)
        elif name == "icecandidateerror":
            self.candidate_errors.append(msg)
        elif name == "selected":
            self.selected_history.append((msg["info"], now))


class BrowserPage:
    """One load of the harness page: a command channel plus the events it reports."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.chromium = browser  # the name from before Firefox joined; same object
        self.session = session
        self.console: list[ConsoleEntry] = []
        self.errors: list[ConsoleEntry] = []  # uncaught errors and unhandled rejections
        self.peers: dict[int, BrowserPeerConnection] = {}
        self.user_agent = ""
        self._ws: web.WebSocketResponse | None = None
        self._next_id = 1
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._changed = Changes()
        self._closed: str | None = None

    def __repr__(self) -> str:
        return f"<BrowserPage {self.session}>"

    @property
    def closed(self) -> str | None:
        """Why the page is gone, or None while it is connected."""
        return self._closed

    @property
    def changes(self) -> Changes:
        """Notified at every reply and event from the page."""
        return self._changed

    def check_loop(self) -> None:
        """Fail clearly when used from another event loop than the one Chromium runs on.

        Without this, replies land on the other loop and the call just times out.
        """
        if asyncio.get_running_loop() is not self.browser.loop:
            raise HarnessError(
                "the browser is used from another event loop than the one it was launched "
                "on; with the module-scoped fixtures, mark the test module with "
                'pytestmark = pytest.mark.asyncio(loop_scope="module")'
            )

    async def call(self, cmd: str, timeout: float | None = None, **args: Any) -> Any:
        """Run one command in the page and return its result."""
        self.check_loop()
        if self._closed is not None or self._ws is None:
            raise BrowserGone(f"{cmd}: page is gone ({self._closed})\n" + self.diagnostics())
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        msg_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (cmd, future)
        try:
            await self._ws.send_str(json.dumps({"id": msg_id, "cmd": cmd, "args": args}))
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise HarnessTimeout(
                f"{cmd}: no reply from the page within {timeout}s\n" + self.diagnostics()
            ) from None
        finally:
            self._pending.pop(msg_id, None)

    async def create_pc(self, config: dict[str, Any] | None = None) -> BrowserPeerConnection:
        """new RTCPeerConnection(config); config uses the JS names (iceServers, ...).

        The default is {"iceServers": []}: no STUN server, per the network rule.
        """
        pc_id = await self.call("createPc", config={"iceServers": []} if config is None else config)
        peer = BrowserPeerConnection(self, int(pc_id))
        self.peers[peer.id] = peer
        return peer

    async def evaluate(self, source: str, arg: Any = None, timeout: float | None = None) -> Any:
        """Run `source` as the body of an async function(arg, h) in the page.

        `h.peer(id).pc` is the RTCPeerConnection with that id; return a JSON value.
        """
        return await self.call("evaluate", timeout=timeout, source=source, arg=arg)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str]
    ) -> None:
        """Wait until `predicate()` holds, re-checked on every event from the page.

        `what` names the condition in the error; a callable is evaluated at failure time,
        so it can show the state reached.
        """

        self.check_loop()

        def describe() -> str:
            return what() if callable(what) else what

        def check() -> bool:
            if predicate():
                return True
            if self._closed is not None:
                raise BrowserGone(f"waiting for {describe()}: page is gone ({self._closed})")
            return False

        try:
            await self._changed.wait_for(check, timeout)
        except TimeoutError:
            raise HarnessTimeout(
                f"timed out after {timeout}s waiting for {describe()}\n" + self.diagnostics()
            ) from None
        except BrowserGone as exc:
            raise BrowserGone(f"{exc}\n{self.diagnostics()}") from None

    def diagnostics(self, lines: int = 40) -> str:
        """Console, uncaught errors, peer states and Chromium's stderr tail, for failures."""
        parts = [f"--- page {self.session} ({self._closed or 'connected'})"]
        if self.errors:
            parts.append("uncaught page errors:")
            parts += [f"  {e.text}" for e in self.errors[-10:]]
        if self.console:
            parts.append(f"console (last {min(lines, len(self.console))}):")
            parts += [f"  [{e.level}] {e.text}" for e in self.console[-lines:]]
        for peer in self.peers.values():
            states = ", ".join(
                f"{p}={peer.last_state(p)}"
                for p in (
                    "signalingState",
                    "iceGatheringState",
                    "iceConnectionState",
                    "connectionState",
                )
            )
            channels = ", ".join(
                f"{c.label!r}={c.state}/{len(c.messages)} msgs" for c in peer.channels.values()
            )
            parts.append(f"pc {peer.id}: {states}; channels: {channels or 'none'}")
        parts.append(self.browser.stderr_tail(lines))
        return "\n".join(parts)

    # -- transport ------------------------------------------------------------------
    async def _serve(self, ws: web.WebSocketResponse) -> None:
        self._ws = ws
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._dispatch(json.loads(msg.data))
                elif msg.type == WSMsgType.ERROR:
                    log.warning("page %s: websocket error %s", self.session, ws.exception())
        finally:
            self._mark_closed("control socket closed")

    def _mark_closed(self, reason: str) -> None:
        if self._closed is None:
            self._closed = reason
        for cmd, future in self._pending.values():
            if not future.done():
                future.set_exception(
                    BrowserGone(f"{cmd}: page went away ({reason})\n" + self.diagnostics())
                )
        self._changed.notify()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "reply":
            entry = self._pending.get(msg["id"])
            if entry is not None and not entry[1].done():
                cmd, future = entry
                if msg["ok"]:
                    future.set_result(msg.get("result"))
                else:
                    err = msg["error"]
                    future.set_exception(
                        PageError(
                            cmd, err["name"], err["message"], err["stack"], self.diagnostics()
                        )
                    )
        elif kind == "event":
            self._on_event(msg)
        self._changed.notify()

    def _on_event(self, msg: dict[str, Any]) -> None:
        name = msg["event"]
        if name == "console":
            self.console.append(ConsoleEntry(msg["level"], msg["text"], msg["t"]))
            log.debug("page %s console.%s: %s", self.session, msg["level"], msg["text"])
        elif name == "pageerror":
            entry = ConsoleEntry("pageerror", f"{msg['message']}\n{msg['stack']}", msg["t"])
            self.errors.append(entry)
            self.console.append(entry)
            log.warning("page %s uncaught error: %s", self.session, msg["message"])
        elif "pc" in msg:
            peer = self.peers.get(msg["pc"])
            if peer is not None:
                peer._on_event(name, msg, time.monotonic())


class Browser:
    """A browser process in a namespace plus the server its harness page talks to.

    Subclasses say how to start the process (`_argv`); the server, the pages, the
    output capture and the shutdown are shared.
    """

    kind = "browser"
    profile_prefix = PROFILE_PREFIX

    def __init__(
        self,
        ns: NetNs,
        executable: str | None = None,
        extra_flags: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        self.ns = ns
        found = executable or self._default_executable()
        if found is None:
            raise HarnessError(browser_missing(self.kind) or f"no {self.kind}")
        self.executable: str = found
        self.extra_flags = tuple(extra_flags)
        self.host = host
        self.page: BrowserPage | None = None
        self.loop = asyncio.get_running_loop()  # the loop every page call must run on
        self.port = 0
        self.pid: int | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._proc: asyncio.subprocess.Process | None = None
        self._runner: web.AppRunner | None = None
        self._profile: str | None = None
        self._hello: dict[str, asyncio.Future[BrowserPage]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._exited: asyncio.Future[int | None] | None = None

    @staticmethod
    def _default_executable() -> str | None:
        raise NotImplementedError

    def _argv(self, profile: str, url: str) -> list[str]:
        """The browser's command line (after the namespace and reaper prefix)."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/page/index.html"

    def stderr_tail(self, lines: int = 40) -> str:
        """The last lines the browser wrote to stderr (its log and console lines).

        D-Bus complaints (there is no bus here) are left out: they are noise.
        """
        tail = [line for line in self._stderr if not NOISE.search(line)][-lines:]
        head = f"--- {self.kind} stderr (last {len(tail)} lines)"
        if self._exited is not None and self._exited.done():
            head += f"; {self.kind} exited with {self._exited.result()}"
        return "\n".join([head, *tail])

    async def start(self, timeout: float = 30.0) -> BrowserPage:
        """Start the server and the browser, and wait for the first page to connect."""
        _sweep_stale_profiles()
        self._profile = tempfile.mkdtemp(prefix=f"{self.profile_prefix}{os.getpid()}-")
        app = web.Application()
        app.router.add_get("/ws", self._ws_handler)
        app.router.add_static("/page/", PAGE_DIR)
        app.router.add_get("/favicon.ico", _no_content)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with self.ns.entered():  # the listening socket belongs to the namespace
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()

        session = uuid.uuid4().hex
        hello = self._expect(session)
        argv = [
            *self.ns.exec_prefix(),
            sys.executable,
            str(REAPER),  # reaps the whole tree before it exits: no zombies left behind
            *self._argv(self._profile, f"{self.url}?session={session}"),
        ]
        log.info("starting %s", " ".join(argv))
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, so close() reaches every child
        )
        self.pid = self._proc.pid
        self._exited = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._read_output()))
        self._tasks.append(asyncio.create_task(self._watch_exit()))
        self.page = await self._await_hello(hello, session, timeout)
        return self.page

    async def new_page(self, timeout: float = 15.0) -> BrowserPage:
        """Navigate to a fresh harness page (new JS context, no peer connections)."""
        if self.page is None:
            raise HarnessError(f"{self.kind} is not started")
        session = uuid.uuid4().hex
        hello = self._expect(session)
        old = self.page
        await old.call("navigate", url=f"{self.url}?session={session}")
        self.page = await self._await_hello(hello, session, timeout)
        return self.page

    def _expect(self, session: str) -> asyncio.Future[BrowserPage]:
        future: asyncio.Future[BrowserPage] = asyncio.get_running_loop().create_future()
        self._hello[session] = future
        return future

    async def _await_hello(
        self, hello: asyncio.Future[BrowserPage], session: str, timeout: float
    ) -> BrowserPage:
        assert self._exited is not None
        waiting: set[asyncio.Future[Any]] = {hello, self._exited}
        try:
            await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._hello.pop(session, None)
        if hello.done():
            return hello.result()
        hello.cancel()
        if self._exited.done():
            raise BrowserGone(
                f"{self.kind} exited ({self._exited.result()}) before the page connected\n"
                + self.stderr_tail()
            )
        raise HarnessTimeout(
            f"the harness page did not connect within {timeout}s\n" + self.stderr_tail()
        )

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        session = request.query.get("session", "")
        future = self._hello.get(session)
        if future is None or future.done():
            log.warning("unexpected page connection for session %r", session)
            return web.Response(status=409, text="unknown session")
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=64 * 1024 * 1024)
        await ws.prepare(request)
        first = await ws.receive()
        if first.type != WSMsgType.TEXT:
            await ws.close()
            return ws
        hello = json.loads(first.data)
        page = BrowserPage(self, session)
        page.user_agent = hello.get("userAgent", "")
        page._ws = ws  # ready for calls before anyone sees the page
        if not future.done():
            future.set_result(page)
        await page._serve(ws)
        return ws

    async def _read_output(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self._stderr.append(line)
            log.debug("%s: %s", self.kind, line)

    async def _watch_exit(self) -> None:
        assert self._proc is not None and self._exited is not None
        code = await self._proc.wait()
        self._exited.set_result(code)
        if self.page is not None:
            self.page._mark_closed(f"{self.kind} exited with {code}")

    async def close(self) -> None:
        """Stop the browser and every process it started, the server, and delete the profile.

        SIGTERM goes to the whole process group; the reaper at its head exits once every
        descendant is reaped, so when this returns no Chromium process is left, not even
        a zombie. SIGKILL follows if that takes more than 5 s.
        """
        if self.page is not None and self.page._ws is not None:
            with contextlib.suppress(Exception):
                await self.page._ws.close()
        if self._proc is not None and self._proc.returncode is None:
            await self._kill_group(signal.SIGTERM, wait=5.0)
            if self._proc.returncode is None:
                await self._kill_group(signal.SIGKILL, wait=5.0)
        # Children (renderer, GPU, network service) share the group: sweep stragglers
        # and wait until they are gone, so no Chromium outlives the fixture.
        if self.pid is not None:
            deadline = time.monotonic() + 5.0
            while _live_group_members(self.pid) and time.monotonic() < deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.pid, signal.SIGKILL)
                await asyncio.sleep(0.05)
            left = _live_group_members(self.pid)
            if left:
                log.warning("%s processes still alive after close: %s", self.kind, left)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)

    async def _kill_group(self, sig: int, wait: float) -> None:
        assert self._proc is not None and self.pid is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._proc.wait(), wait)


class Chromium(Browser):
    """Headless Chromium with the flags of DESIGN.md (`CHROMIUM_FLAGS`)."""

    kind = "chromium"
    profile_prefix = PROFILE_PREFIX

    @staticmethod
    def _default_executable() -> str | None:
        return chromium_executable()

    def _argv(self, profile: str, url: str) -> list[str]:
        return [
            self.executable,
            *CHROMIUM_FLAGS,
            *self.extra_flags,
            f"--user-data-dir={profile}",
            url,
        ]


class Firefox(Browser):
    """Headless Firefox ESR on a fresh profile whose user.js holds `FIREFOX_PREFS`.

    `extra_prefs` add to or override them. The namespace needs an address with a
    default route (`add_default_route`).
    """

    kind = "firefox"
    profile_prefix = FIREFOX_PROFILE_PREFIX

    def __init__(
        self,
        ns: NetNs,
        executable: str | None = None,
        extra_flags: Sequence[str] = (),
        host: str = "127.0.0.1",
        extra_prefs: dict[str, bool | int | str] | None = None,
    ) -> None:
        super().__init__(ns, executable, extra_flags, host)
        self.prefs = {**FIREFOX_PREFS, **(extra_prefs or {})}

    @staticmethod
    def _default_executable() -> str | None:
        return firefox_executable()

    def _argv(self, profile: str, url: str) -> list[str]:
        lines = [f"user_pref({json.dumps(k)}, {json.dumps(v)});" for k, v in self.prefs.items()]
        Path(profile, "user.js").write_text("\n".join(lines) + "\n")
        return [
            self.executable,
            "--headless",
            "--no-remote",
            "--profile",
            profile,
            *self.extra_flags,
            url,
        ]


#: Browser classes by kind.
BROWSERS: dict[str, type[Browser]] = {"chromium": Chromium, "firefox": Firefox}


def _sweep_stale_profiles() -> None:
    """Delete profile directories left by test runs that were killed (their pid is gone)."""
    pattern = re.compile(
        rf"^(?:{re.escape(PROFILE_PREFIX)}|{re.escape(FIREFOX_PROFILE_PREFIX)})(\d+)-"
    )
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        match = pattern.match(name)
        if match is not None and not os.path.exists(f"/proc/{match.group(1)}"):
            shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)


async def _no_content(_request: web.Request) -> web.Response:
    return web.Response(status=204)


def _live_group_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` that are not zombies (read from /proc)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


@contextlib.asynccontextmanager
async def launch_browser(
    kind: str,
    ns: NetNs,
    executable: str | None = None,
    extra_flags: Sequence[str] = (),
    timeout: float = 30.0,
) -> AsyncIterator[Browser]:
    """Run the browser of this kind in `ns` on the harness page for the `async with` block."""
    browser = BROWSERS[kind](ns, executable, extra_flags)
    try:
        await browser.start(timeout)
        yield browser
    finally:
        await browser.close()


@contextlib.asynccontextmanager
async def launch_chromium(
    ns: NetNs,
    executable: str | None = None,
    extra_flags: Sequence[str] = (),
    timeout: float = 30.0,
) -> AsyncIterator[Chromium]:
    """Run Chromium in `ns` on the harness page for the `async with` block."""
    chromium = Chromium(ns, executable, extra_flags)
    try:
        await chromium.start(timeout)
        yield chromium
    finally:
        await chromium.close()


@contextlib.asynccontextmanager
async def launch_firefox(
    ns: NetNs,
    executable: str | None = None,
    extra_flags: Sequence[str] = (),
    timeout: float = 30.0,
) -> AsyncIterator[Firefox]:
    """Run Firefox in `ns` (which needs `add_default_route`) for the `async with` block."""
    firefox = Firefox(ns, executable, extra_flags)
    try:
        await firefox.start(timeout)
        yield firefox
    finally:
        await firefox.close()
