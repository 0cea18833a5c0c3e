"""Restart soaks: two peer connections, perfect negotiation, messages both ways, many restarts.

Theory of operation. An `Endpoint` is one RTCPeerConnection seen from the test: a
browser's (`PageEndpoint`, in a harness page) or ours (`ChildEndpoint`, in its own
process, tests/interop/ours_process.py). Both are driven with the same W3C calls and
report the same events, so any two can be joined: ours with a browser, a browser with
itself (the baseline of benchmarks/browser_restart.py), ours with ours.

`Negotiator` is the application's signaling, written the way webrtc-pc's "perfect
negotiation" example is: each side negotiates whenever its peer connection fires
negotiationneeded, and a glare (both offered at once) is settled by roles: the
*impolite* side ignores the incoming offer, the *polite* side rolls its own offer back
(an explicit setLocalDescription({type: "rollback"})) and answers. Which side is polite
is the caller's choice; the soaks make ours polite, so our rollback of a restart offer
is exercised, and the browser never has to roll back. Each side's signaling work runs
in one task at a time (an inbox), so "am I in the middle of an offer?" is never a race,
and descriptions and candidates reach the other side in the order they were made,
as over one ordered signaling channel. A candidate that the receiver refuses because it
belongs to an offer the receiver ignored is dropped (perfect negotiation's
`ignoreOffer`); any other refusal is a failure.

`Soak.restart(who)` calls restartIce() on one side or both, lets negotiationneeded do the
rest, and waits until both sides' getStats() show the selected pair on candidates of the
new generation: the local and remote candidates' `usernameFragment` equal the ufrags of
that side's current local and remote descriptions, which both changed. Each side reports
its selected pair as it changes ("selected" events: polled in a page every 10 ms, pushed
by our child at every selectedpairchange), so the time to completion is read from those
reports, all stamped with the test process's monotonic clock on arrival.

`Pumps` send a numbered message every 10 ms each way on a reliable ordered channel; at
the end both stop, the channels drain, and each side must have received exactly what
the other sent, in order, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from unbroken.sdp import ice_ufrags

from .browser import BrowserPeerConnection, Changes, HarnessError, PageError
from .ours_process import ChildError, OursProcess

log = logging.getLogger(__name__)

TIMEOUT = 10.0
#: Messages each side must receive before a restart starts (the channel is flowing).
MARGIN = 10
LABEL = "chat"
INTERVAL_MS = 10

#: The restart order of the issue: ours, theirs, ours, ours, theirs, theirs, both at
#: once, then alternating; 20 in all.
SOAK_ORDER: tuple[str, ...] = (
    "ours",
    "theirs",
    "ours",
    "ours",
    "theirs",
    "theirs",
    "both",
    *(("ours", "theirs") * 7)[:13],
)


def ufrag_of(description: dict[str, str] | None) -> str | None:
    """The first a=ice-ufrag of a description dict (None for no description)."""
    found = [] if description is None else ice_ufrags(description["sdp"])
    return found[0] if found else None


class Refused(Exception):
    """The peer connection rejected a call (a W3C error); `name` is its error name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


class Endpoint(Protocol):
    """One RTCPeerConnection driven by the test (see the module docstring)."""

    name: str
    candidates: asyncio.Queue[dict[str, Any] | None]
    changes: Changes

    @property
    def negotiation_needed(self) -> int: ...
    @property
    def selected_history(self) -> list[tuple[dict[str, Any], float]]: ...
    async def set_local_description(
        self, description: dict[str, str] | None = None
    ) -> dict[str, str] | None: ...
    async def set_remote_description(self, description: dict[str, str]) -> None: ...
    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None: ...
    async def signaling_state(self) -> str: ...
    async def restart_ice(self) -> None: ...
    async def create_data_channel(self, label: str) -> None: ...
    def channel_state(self, label: str) -> str | None: ...
    def messages(self, label: str) -> list[str]: ...
    def arrival_times(self, label: str) -> list[float]: ...
    async def start_pump(self, label: str, prefix: str, interval_ms: int) -> None: ...
    async def stop_pump(self, label: str) -> int: ...
    async def watch_selected(self) -> None: ...
    async def selected_now(self) -> dict[str, Any]: ...
    async def add_audio(self) -> None: ...
    async def inbound_audio_packets(self) -> int: ...
    async def connection_state(self) -> str: ...
    def diagnostics(self) -> str: ...


START_PUMP = """
const ch = h.peer(arg.pc).channel(arg.label);
const pump = { sent: 0, errors: [] };
const start = performance.now();
const tick = () => {
  if (ch.readyState === "open") {
    ch.send(arg.prefix + pump.sent);
    pump.sent += 1;
  } else {
    pump.errors.push(`channel ${ch.readyState} at send ${pump.sent}`);
  }
  // A fixed schedule, like the child's: no drift after a late tick.
  const ticks = Math.floor((performance.now() - start) / arg.interval) + 1;
  pump.timer = setTimeout(tick, Math.max(0, start + ticks * arg.interval - performance.now()));
};
window.unbrokenPumps = window.unbrokenPumps || {};
window.unbrokenPumps[`${arg.pc}/${arg.label}`] = pump;
tick();
return null;
"""

STOP_PUMP = """
const pump = window.unbrokenPumps[`${arg.pc}/${arg.label}`];
clearTimeout(pump.timer);
return { sent: pump.sent, errors: pump.errors };
"""


class PageEndpoint:
    """A browser's RTCPeerConnection in a harness page."""

    def __init__(self, name: str, pc: BrowserPeerConnection) -> None:
        self.name = name
        self.pc = pc
        self.candidates = pc.candidates
        self.changes = pc.page.changes
        self.pump_errors: list[str] = []

    @property
    def negotiation_needed(self) -> int:
        return self.pc.negotiation_needed

    @property
    def selected_history(self) -> list[tuple[dict[str, Any], float]]:
        return self.pc.selected_history

    async def _guard(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except PageError as exc:
            raise Refused(exc.name, exc.js_message) from exc

    async def set_local_description(
        self, description: dict[str, str] | None = None
    ) -> dict[str, str] | None:
        result: dict[str, str] | None = await self._guard(
            self.pc.set_local_description(description)
        )
        return result

    async def set_remote_description(self, description: dict[str, str]) -> None:
        await self._guard(self.pc.set_remote_description(description))

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        await self._guard(self.pc.add_ice_candidate(candidate))

    async def signaling_state(self) -> str:
        return await self.pc.signaling_state()

    async def connection_state(self) -> str:
        return await self.pc.connection_state()

    async def restart_ice(self) -> None:
        await self.pc.restart_ice()

    async def create_data_channel(self, label: str) -> None:
        await self.pc.create_data_channel(label, ordered=True)

    def channel_state(self, label: str) -> str | None:
        channel = self.pc.channels.get(label)
        return None if channel is None else channel.state

    def messages(self, label: str) -> list[str]:
        channel = self.pc.channels.get(label)
        return [] if channel is None else [str(m) for m in channel.messages]

    def arrival_times(self, label: str) -> list[float]:
        """Arrival times on the test's monotonic clock, from the page's own timestamps.

        Page times are exact but on the page's clock; the offset is the smallest
        (receipt - page time) seen, the delivery with the least transport delay.
        """
        channel = self.pc.channels.get(label)
        if channel is None or not channel.arrivals:
            return []
        offset = min(
            r - a / 1000.0 for a, r in zip(channel.arrivals, channel.received, strict=True)
        )
        return [a / 1000.0 + offset for a in channel.arrivals]

    async def start_pump(self, label: str, prefix: str, interval_ms: int) -> None:
        args = {"pc": self.pc.id, "label": label, "prefix": prefix, "interval": interval_ms}
        await self.pc.page.evaluate(START_PUMP, args)

    async def stop_pump(self, label: str) -> int:
        result = await self.pc.page.evaluate(STOP_PUMP, {"pc": self.pc.id, "label": label})
        self.pump_errors += result["errors"]
        return int(result["sent"])

    async def watch_selected(self) -> None:
        await self.pc.watch_selected(INTERVAL_MS)

    async def selected_now(self) -> dict[str, Any]:
        return await self.pc.selected_info()

    async def add_audio(self) -> None:
        tracks = await self.pc.add_user_media(audio=True)
        assert [t["kind"] for t in tracks] == ["audio"], tracks

    async def inbound_audio_packets(self) -> int:
        stats = await self.pc.inbound_rtp("audio")
        return sum(int(s.get("packetsReceived", 0)) for s in stats)

    def diagnostics(self) -> str:
        return f"=== {self.name}\n{self.pc.page.diagnostics(60)}"


class ChildEndpoint:
    """Our RTCPeerConnection in its own process (`OursProcess`)."""

    def __init__(self, name: str, child: OursProcess) -> None:
        self.name = name
        self.child = child
        self.candidates = child.candidates
        self.changes = child.changed
        self.pump_errors: list[str] = []

    @property
    def negotiation_needed(self) -> int:
        return self.child.negotiation_needed

    @property
    def selected_history(self) -> list[tuple[dict[str, Any], float]]:
        return self.child.selected_history

    async def _guard(self, call: Awaitable[Any]) -> Any:
        try:
            return await call
        except ChildError as exc:
            raise Refused(exc.name, str(exc)) from exc

    async def set_local_description(
        self, description: dict[str, str] | None = None
    ) -> dict[str, str] | None:
        result: dict[str, str] | None = await self._guard(
            self.child.call("setLocalDescription", description=description)
        )
        return result

    async def set_remote_description(self, description: dict[str, str]) -> None:
        await self._guard(self.child.call("setRemoteDescription", description=description))

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        await self._guard(self.child.call("addIceCandidate", candidate=candidate))

    async def signaling_state(self) -> str:
        return str((await self.child.call("states"))["signalingState"])

    async def connection_state(self) -> str:
        return str((await self.child.call("states"))["connectionState"])

    async def restart_ice(self) -> None:
        await self.child.call("restartIce")

    async def create_data_channel(self, label: str) -> None:
        await self.child.call("createDataChannel", label=label)

    def channel_state(self, label: str) -> str | None:
        return self.child.channel_states.get(label)

    def messages(self, label: str) -> list[str]:
        return list(self.child.messages.get(label, []))

    def arrival_times(self, label: str) -> list[float]:
        return list(self.child.arrivals.get(label, []))

    async def start_pump(self, label: str, prefix: str, interval_ms: int) -> None:
        await self.child.call("startPump", label=label, prefix=prefix, interval=interval_ms / 1000)

    async def stop_pump(self, label: str) -> int:
        result = await self.child.call("stopPump", label=label)
        self.pump_errors += result["errors"]
        return int(result["sent"])

    async def watch_selected(self) -> None:
        """Nothing to start: the child reports at every selectedpairchange by itself."""

    async def selected_now(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.child.call("selected")
        return result

    async def add_audio(self) -> None:
        await self.child.call("addAudioTrack")

    async def inbound_audio_packets(self) -> int:
        return int(await self.child.call("inboundPackets", kind="audio"))

    def diagnostics(self) -> str:
        return f"=== {self.name}\n{self.child.log_tail(120)}"


async def wait_any(
    changes: Sequence[Changes],
    predicate: Callable[[], bool],
    timeout: float,
    what: str | Callable[[], str],
) -> None:
    """Wait until `predicate()` holds, re-checked whenever any of `changes` is notified."""
    deadline = time.monotonic() + timeout
    while True:
        events = [c.event for c in changes]  # before the check: no wake-up is lost
        if predicate():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            text = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout}s waiting for {text}")
        waiters = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()


@dataclasses.dataclass
class LogEntry:
    """One signaling step, for the failure report."""

    t: float
    side: str
    what: str


class Side:
    """One endpoint's half of the signaling: its inbox, worker and candidate forwarder."""

    def __init__(self, negotiator: Negotiator, endpoint: Endpoint, polite: bool) -> None:
        self.negotiator = negotiator
        self.endpoint = endpoint
        self.polite = polite
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.peer: Side | None = None
        self.ignored_ufrags: set[str] = set()  # remote offers ignored (impolite in a glare)
        self.busy = False
        self.offers = 0
        self.collisions = 0
        self.rollbacks = 0
        self._seen_nn = 0
        self.sent_ufrags: set[str] = set()  # ufrags of the descriptions sent to the peer
        self.held: list[dict[str, Any]] = []  # candidates whose description is not sent yet
        self._last_eoc: str | None = None
        self._last_ufrag: str | None = None
        self._last_mid: str | None = None

    def note(self, what: str) -> None:
        self.negotiator.log.append(LogEntry(time.monotonic(), self.endpoint.name, what))
        log.debug("%s: %s", self.endpoint.name, what)

    @property
    def idle(self) -> bool:
        return not self.busy and self.inbox.empty()

    async def watch_negotiation_needed(self) -> None:
        """Turn each negotiationneeded event into an inbox item (in order)."""
        while True:
            await self.endpoint.changes.wait_for(
                lambda: self.endpoint.negotiation_needed > self._seen_nn, 3600
            )
            self._seen_nn = self.endpoint.negotiation_needed
            self.inbox.put_nowait(("negotiate", None))

    async def forward_candidates(self) -> None:
        """Trickle this side's candidates to the peer's inbox, end-of-candidates with its ufrag."""
        assert self.peer is not None
        while True:
            candidate = await self.endpoint.candidates.get()
            if candidate is not None and candidate.get("candidate"):
                self._last_ufrag = candidate.get("usernameFragment")
                self._last_mid = candidate.get("sdpMid")
                self._send_candidate(candidate)
                continue
            # End of a gathering round: Firefox sends an empty candidate (with its ufrag)
            # and then null, Chromium null only, ours null. Pass one end-of-candidates on,
            # naming its generation so the receiver applies it to the right one.
            ufrag = (candidate or {}).get("usernameFragment") or self._last_ufrag
            if ufrag is None or ufrag == self._last_eoc:
                continue
            self._last_eoc = ufrag
            mid = (candidate or {}).get("sdpMid", self._last_mid) or "0"
            self._send_candidate({"candidate": "", "sdpMid": mid, "usernameFragment": ufrag})

    def _send_candidate(self, candidate: dict[str, Any]) -> None:
        """Candidates follow their description on the channel (they come out of
        setLocalDescription before its result does): hold them until it is sent."""
        assert self.peer is not None
        if candidate.get("usernameFragment") in self.sent_ufrags:
            self.note(
                f"trickled {candidate.get('candidate') or 'end'} ({candidate.get('usernameFragment')})"
            )
            self.peer.inbox.put_nowait(("candidate", candidate))
        else:
            self.held.append(candidate)

    def _send_description(self, description: dict[str, str]) -> None:
        assert self.peer is not None
        self.peer.inbox.put_nowait(("description", description))
        ufrag = ufrag_of(description)
        if ufrag is not None and ufrag not in self.sent_ufrags:
            self.sent_ufrags.add(ufrag)
            held, self.held = self.held, []
            for candidate in held:
                self._send_candidate(candidate)

    async def work(self) -> None:
        """Handle the inbox one item at a time (perfect negotiation)."""
        assert self.peer is not None
        while True:
            kind, item = await self.inbox.get()
            self.busy = True
            try:
                if kind == "negotiate":
                    await self._negotiate()
                elif kind == "description":
                    await self._on_description(item)
                else:
                    await self._on_candidate(item)
            except BaseException as exc:
                self.note(f"FAILED handling {kind}: {exc!r}")
                self.negotiator.failures.append(exc)
                raise
            finally:
                self.busy = False
                self.negotiator.changes.notify()

    async def _negotiate(self) -> None:
        assert self.peer is not None
        state = await self.endpoint.signaling_state()
        if state != "stable":
            # webrtc-pc fires negotiationneeded again once stable if still needed.
            self.note(f"negotiationneeded in {state}: skipped")
            return
        offer = await self.endpoint.set_local_description()
        assert offer is not None and offer["type"] == "offer", offer
        self.offers += 1
        self.note(f"offer ufrag {ufrag_of(offer)}")
        self._send_description(offer)

    async def _on_description(self, description: dict[str, str]) -> None:
        assert self.peer is not None
        ufrag = ufrag_of(description)
        state = await self.endpoint.signaling_state()
        collision = description["type"] == "offer" and state != "stable"
        if collision:
            self.collisions += 1
            if not self.polite:
                assert ufrag is not None
                self.ignored_ufrags.add(ufrag)
                self.note(f"glare: ignored the peer's offer ufrag {ufrag} (impolite)")
                return
            await self.endpoint.set_local_description({"type": "rollback", "sdp": ""})
            self.rollbacks += 1
            self.note("glare: rolled back our offer (polite)")
        await self.endpoint.set_remote_description(description)
        cands = re.findall(r"^a=candidate:.*$", description["sdp"], re.MULTILINE)
        self.note(
            f"applied remote {description['type']} ufrag {ufrag} with {len(cands)} candidates"
        )
        if description["type"] == "offer":
            answer = await self.endpoint.set_local_description()
            assert answer is not None and answer["type"] == "answer", answer
            self.note(f"answer ufrag {ufrag_of(answer)}")
            self._send_description(answer)

    async def _on_candidate(self, candidate: dict[str, Any]) -> None:
        try:
            await self.endpoint.add_ice_candidate(candidate)
        except Refused as exc:
            if candidate.get("usernameFragment") in self.ignored_ufrags:
                return  # of an offer this side ignored: perfect negotiation drops it
            self.note(f"candidate refused: {candidate!r}: {exc}")
            raise


class Negotiator:
    """Perfect negotiation between two endpoints (see the module docstring)."""

    def __init__(self, a: Endpoint, b: Endpoint, polite: str) -> None:
        self.log: list[LogEntry] = []
        self.failures: list[BaseException] = []
        self.changes = Changes()
        self.a = Side(self, a, polite == a.name)
        self.b = Side(self, b, polite == b.name)
        assert self.a.polite != self.b.polite, "exactly one side is polite"
        self.a.peer, self.b.peer = self.b, self.a
        self._tasks: list[asyncio.Task[None]] = []
        for side in (self.a, self.b):
            self._tasks += [
                asyncio.ensure_future(side.watch_negotiation_needed()),
                asyncio.ensure_future(side.forward_candidates()),
                asyncio.ensure_future(side.work()),
            ]

    @property
    def idle(self) -> bool:
        return self.a.idle and self.b.idle

    def check(self) -> None:
        """Raise the first signaling failure (a description or candidate refused)."""
        if self.failures:
            raise AssertionError(f"signaling failed: {self.failures[0]!r}") from self.failures[0]

    def transcript(self, since: float = 0.0) -> str:
        return "\n".join(f"  {e.t:.3f} {e.side}: {e.what}" for e in self.log if e.t >= since)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


@dataclasses.dataclass
class RestartResult:
    """One restart of a soak, measured."""

    index: int
    who: str  # "ours", "theirs" or "both" (or the name of the side for baselines)
    started: float  # time.monotonic() just before restartIce()
    completed: dict[str, float]  # side name -> time its selected pair was on the new generation
    old: dict[str, tuple[str | None, str | None]]  # side -> (local, remote) ufrag before
    new: dict[str, tuple[str | None, str | None]]  # side -> after
    roles: dict[str, str | None]
    pairs: dict[str, str]
    offers: int = 0
    gaps: dict[str, float] = dataclasses.field(default_factory=dict)  # receiver -> longest gap

    @property
    def latency(self) -> float:
        """From the restart call until both sides' selected pairs are on the new generation."""
        return max(self.completed.values()) - self.started

    def describe(self) -> str:
        parts = [f"#{self.index:2d} {self.who:6s} {1000 * self.latency:7.1f} ms"]
        for name in self.completed:
            parts.append(
                f"{name}: {self.old[name][0]}->{self.new[name][0]} role={self.roles.get(name)} "
                f"pair={self.pairs.get(name)} gap={1000 * self.gaps.get(name, 0):.0f}ms"
            )
        return "  ".join(parts)


def on_new_generation(info: dict[str, Any], old: tuple[str | None, str | None]) -> bool:
    """The selected pair is on the current descriptions' candidates, and those changed."""
    return bool(
        info["localUfrag"] is not None
        and info["localUfrag"] == info["currentLocalUfrag"]
        and info["remoteUfrag"] == info["currentRemoteUfrag"]
        and info["currentLocalUfrag"] != old[0]
        and info["currentRemoteUfrag"] != old[1]
    )


def longest_gap(times: Sequence[float], start: float, end: float) -> float:
    """The longest interval between consecutive arrivals that overlaps [start, end]."""
    best = 0.0
    for a, b in zip(times, times[1:], strict=False):
        if b >= start and a <= end:
            best = max(best, b - a)
    return best


class Soak:
    """Two connected endpoints with a "chat" channel, pumps, and timed restarts.

    `a` is ours in the browser soaks (or the first page connection in a baseline), `b`
    the other side; "ours" restarts `a`, "theirs" restarts `b`.
    """

    def __init__(self, a: Endpoint, b: Endpoint, polite: str) -> None:
        self.a, self.b = a, b
        self.sides = {a.name: a, b.name: b}
        self.negotiator = Negotiator(a, b, polite)
        self.results: list[RestartResult] = []
        self.sent: dict[str, int] = {}
        self.prefix = {a.name: "a", b.name: "b"}
        self._pumping = False

    @property
    def changes(self) -> list[Changes]:
        return [self.a.changes, self.b.changes, self.negotiator.changes]

    async def wait(
        self, predicate: Callable[[], bool], what: str | Callable[[], str], timeout: float = TIMEOUT
    ) -> None:
        def check() -> bool:
            self.negotiator.check()
            return predicate()

        try:
            await wait_any(self.changes, check, timeout, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.diagnostics()}") from None

    async def connect(self, offerer: Endpoint, audio: bool = False) -> None:
        """`offerer` creates the channel (and both add audio first if asked); wait until open."""
        if audio:
            await self.a.add_audio()
            await self.b.add_audio()
        await offerer.create_data_channel(LABEL)
        await self.wait(
            lambda: all(s.channel_state(LABEL) == "open" for s in self.sides.values()),
            "the data channel open on both sides",
        )
        for side in self.sides.values():
            await side.watch_selected()
        await self.wait(self._settled, "both sides settled on a selected pair")

    def _settled(self) -> bool:
        if not self.negotiator.idle:
            return False
        for side in self.sides.values():
            if not side.selected_history:
                return False
            info = side.selected_history[-1][0]
            if not (
                info["localUfrag"] is not None
                and info["localUfrag"] == info["currentLocalUfrag"]
                and info["remoteUfrag"] == info["currentRemoteUfrag"]
            ):
                return False
        return True

    # -- pumps ------------------------------------------------------------------------
    async def start_pumps(self) -> None:
        for name, side in self.sides.items():
            await side.start_pump(LABEL, self.prefix[name], INTERVAL_MS)
        self._pumping = True
        await self.flowing()

    def received(self) -> dict[str, int]:
        return {name: len(side.messages(LABEL)) for name, side in self.sides.items()}

    async def flowing(self, more: int = MARGIN) -> None:
        """Wait until each side has received `more` further messages."""
        start = self.received()
        await self.wait(
            lambda: all(len(s.messages(LABEL)) >= start[n] + more for n, s in self.sides.items()),
            lambda: f"{more} more messages each way (from {start}, now {self.received()})",
        )

    async def stop_and_check(self) -> None:
        """Stop both pumps, let the channels drain, and compare: exactly once, in order."""
        for name, side in self.sides.items():
            self.sent[name] = await side.stop_pump(LABEL)
        self._pumping = False
        other = {self.a.name: self.b, self.b.name: self.a}
        with contextlib.suppress(AssertionError):
            await self.wait(
                lambda: all(len(other[n].messages(LABEL)) >= self.sent[n] for n in self.sides),
                "every message delivered",
            )
        for name in self.sides:
            got = other[name].messages(LABEL)
            want = [f"{self.prefix[name]}{i}" for i in range(self.sent[name])]
            if got != want:
                raise AssertionError(
                    f"{other[name].name} did not receive exactly what {name} sent: "
                    f"{describe_difference(got, want)}\n{self.report()}\n{self.diagnostics()}"
                )
        for side in self.sides.values():
            errors = getattr(side, "pump_errors", [])
            assert not errors, f"{side.name}'s sender found its channel not open: {errors[:5]}"

    # -- restarts ------------------------------------------------------------------------
    async def restart(self, who: str, index: int = 0, timeout: float = TIMEOUT) -> RestartResult:
        """restartIce() on `who` ("ours" = a, "theirs" = b, "both"), wait until done.

        Returns when both sides' selected pairs are on the new generation (or raises after
        TIMEOUT with everything both sides reported).
        """
        await self.wait(lambda: self.negotiator.idle, "signaling idle before a restart")
        old: dict[str, tuple[str | None, str | None]] = {}
        for name, side in self.sides.items():
            info = await side.selected_now()
            old[name] = (info["currentLocalUfrag"], info["currentRemoteUfrag"])
        marks = {name: len(side.selected_history) for name, side in self.sides.items()}
        offers = self.negotiator.a.offers + self.negotiator.b.offers
        restarting = {"ours": [self.a], "theirs": [self.b], "both": [self.a, self.b]}[who]
        started = time.monotonic()
        await asyncio.gather(*(side.restart_ice() for side in restarting))
        completed: dict[str, float] = {}

        def done() -> bool:
            for name, side in self.sides.items():
                if name in completed:
                    continue
                for info, t in side.selected_history[marks[name] :]:
                    if on_new_generation(info, old[name]):
                        completed[name] = t
                        break
            return len(completed) == 2

        await self.wait(
            done,
            lambda: (
                f"restart #{index} ({who}) to complete on both sides "
                f"(done: {sorted(completed)}; old ufrags {old})"
            ),
            timeout,
        )
        result = RestartResult(index, who, started, dict(completed), old, {}, {}, {})
        # The same condition read straight from getStats, after the fact: both sides still
        # on the new generation, and each side's current remote ufrag is the other's local.
        infos = {name: await side.selected_now() for name, side in self.sides.items()}
        for name, info in infos.items():
            result.new[name] = (info["currentLocalUfrag"], info["currentRemoteUfrag"])
            result.roles[name] = info["role"]
            result.pairs[name] = f"{info['local']} -> {info['remote']}"
        a, b = infos[self.a.name], infos[self.b.name]
        assert a["currentLocalUfrag"] == b["currentRemoteUfrag"], (a, b)
        assert b["currentLocalUfrag"] == a["currentRemoteUfrag"], (a, b)
        for name, info in infos.items():
            assert on_new_generation(info, old[name]), (
                f"{name} left the new generation after restart #{index}: {info} "
                f"(old {old[name]})\n{self.diagnostics()}"
            )
        result.offers = self.negotiator.a.offers + self.negotiator.b.offers - offers
        self.results.append(result)
        return result

    def measure_gaps(self, settle: float = 0.1) -> None:
        """Fill each result's longest delivery gap per receiver over [call, done + settle]."""
        for name, side in self.sides.items():
            times = side.arrival_times(LABEL)
            for result in self.results:
                end = max(result.completed.values()) + settle
                result.gaps[name] = longest_gap(times, result.started, end)

    async def run(self, order: Sequence[str]) -> list[RestartResult]:
        """The restarts in `order`, each after the channel is seen flowing."""
        for index, who in enumerate(order):
            result = await self.restart(who, index)
            log.info("%s", result.describe())
            await self.flowing()
        return self.results

    # -- reports -------------------------------------------------------------------------
    def report(self) -> str:
        self.measure_gaps()
        return "restarts:\n" + "\n".join(f"  {r.describe()}" for r in self.results)

    def diagnostics(self) -> str:
        parts = [
            "signaling transcript (last 60):",
            "\n".join(self.negotiator.transcript().splitlines()[-60:]),
        ]
        for side in self.sides.values():
            history = side.selected_history[-8:]
            parts.append(f"{side.name} selected reports (last {len(history)}):")
            parts += [f"  {t:.3f} {info}" for info, t in history]
        parts += [side.diagnostics() for side in self.sides.values()]
        return "\n".join(parts)

    async def close(self) -> None:
        if self._pumping:
            for side in self.sides.values():
                with contextlib.suppress(Exception):
                    await side.stop_pump(LABEL)
        await self.negotiator.close()


def describe_difference(got: list[str], want: list[str]) -> str:
    """Where two message sequences differ: counts, missing, duplicated, first reordering."""
    missing = sorted(set(want) - set(got), key=lambda m: int(m[1:]))
    dupes = len(got) - len(set(got))
    first = next((i for i, (g, w) in enumerate(zip(got, want, strict=False)) if g != w), None)
    return (
        f"sent {len(want)}, received {len(got)}; missing {len(missing)} "
        f"{missing[:10]}{'...' if len(missing) > 10 else ''}; {dupes} duplicates; "
        f"first difference at index {first}"
        + (f" (got {got[first]!r}, want {want[first]!r})" if first is not None else "")
    )


__all__ = [
    "SOAK_ORDER",
    "ChildEndpoint",
    "Endpoint",
    "HarnessError",
    "Negotiator",
    "PageEndpoint",
    "Refused",
    "RestartResult",
    "Soak",
    "longest_gap",
    "ufrag_of",
    "wait_any",
]


def child_log_path(directory: Path, name: str) -> Path:
    """Where a child's log goes (one file per child per test)."""
    return directory / f"{name}.log"
