"""The asyncio driver of the sans-IO IceAgent, and the ICE transport aiortc's DTLS runs on.

Theory of operation
-------------------
`IceConnection` owns the UDP sockets (one per allowed local address, kept across
restarts), one timer armed at the agent's next deadline, and the drain loop: after every
input it sends what the agent queued and dispatches its events. The timer is a
`loop.call_at` of its own, except for a coalescible deadline (the keepalive, consent
check and path-silence heuristic of an idle pair, `Deadline.coalescible`): that one is
rounded up to a TIMER_SLOT and filed in the loop's `_Wheel`, so one wakeup serves every
connection due in the slot.
Datagrams are demultiplexed by first byte (RFC 7983): STUN goes to the agent, DTLS and
RTP from a known pair go to a queue that `_recv()` reads.

It is also the ICE transport of aiortc's RTCDtlsTransport, which touches exactly
`role`, `await _send(data)` and `await _recv()` (aiortc 1.16, rtcdtlstransport.py). One
object serves the whole connection, across any number of restarts, so DTLS and
everything above it never notice a restart. `_recv()` raises only after close();
`_send()` without a usable pair drops the packet, as a lossy link would.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import secrets
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any, cast
from weakref import WeakKeyDictionary

from pyee.asyncio import AsyncIOEventEmitter

from ..addresses import Address
from ..ice import (
    BaseReleased,
    Candidate,
    CandidateErrorEvent,
    Event,
    GatheringComplete,
    GatheringStateChanged,
    IceAgent,
    IceConfig,
    IceGatheringState,
    IceTransportState,
    LocalCandidateGathered,
    MappedAddressChanged,
    PathResumed,
    PathSilent,
    SelectedPairChanged,
    StateChanged,
)
from ..ice.relay import (
    RelaySocketClose,
    RelaySocketOpen,
    RelayStreamClose,
    RelayStreamData,
    RelayStreamOpen,
)
from .demux import Kind, classify
from .interfaces import AddressFilter, select_addresses
from .pinned import PINNING_SUPPORTED, PinnedSocket, base_closed, bind_base
from .relay_streams import RelayStreams

logger = logging.getLogger(__name__)

TIMER_SLOT = 0.05
"""Coalescible deadlines (Deadline.coalescible: keepalives, consent checks, path silence)
are rounded up to a multiple of this, in loop time, so that the keepalives of every
connection in the process due within one slot go out in one loop turn, and their answers
come back together: at idle a wakeup and its cold caches cost more than the work (issue
9). Keepalive intervals are randomized by 20% anyway (RFC 7675 §5.1), and path silence
is a heuristic of 1.5 s: 50 ms later changes nothing. Deadlines that time a state
(disconnected, consent expiry), a retransmit or pacing are never rounded."""


class _Randomness(random.Random):
    """The agents' randomness: os.urandom for whatever must be unpredictable, a Mersenne
    Twister for keepalive jitter.

    Transaction ids, credentials and the tie-breaker come from `getrandbits`, `randbytes`
    and `choice` (which draws through `getrandbits`): the operating system's generator,
    as SystemRandom's. `random()` only spreads keepalives and consent checks over their
    interval (RFC 7675 §5.1: to avoid synchronisation, not secrecy); a system call for
    each of those cost an idle connection 1.5% of its CPU time (issue 9).
    """

    def getrandbits(self, k: int) -> int:
        return _SYSTEM.getrandbits(k)

    def randbytes(self, n: int) -> bytes:
        return os.urandom(n)


_SYSTEM = secrets.SystemRandom()
_RANDOMNESS = _Randomness()
"""Shared by every connection: an instance each would cost each one 2.5 KB of state."""


class _Wheel:
    """The coalesced deadlines of every connection on one event loop: one asyncio timer
    per TIMER_SLOT instant, not one per connection.

    Filing a connection under a slot, or taking it out when its deadline moves, is a dict
    operation: no TimerHandle and no heap push (whose comparisons run in Python). The
    slot's timer, made with its first entry, runs every connection still filed there.
    """

    __slots__ = ("_loop", "_slots", "fired", "ran")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[float, dict[IceConnection, None]] = {}
        self.fired = 0  # loop timers that ran (one per slot)
        self.ran = 0  # connection timers they ran

    def arm(self, conn: IceConnection, slot: float) -> None:
        """Run conn._on_timer() at `slot` (a multiple of TIMER_SLOT)."""
        members = self._slots.get(slot)
        if members is None:
            members = self._slots[slot] = {}
            self._loop.call_at(slot, self._fire, slot)
        members[conn] = None

    def disarm(self, conn: IceConnection, slot: float) -> None:
        """Undo arm(conn, slot)."""
        members = self._slots.get(slot)
        if members is not None:
            members.pop(conn, None)

    def _fire(self, slot: float) -> None:
        members = self._slots.pop(slot, {})
        self.fired += 1
        self.ran += len(members)
        for conn in members:
            try:
                conn._on_timer()
            except Exception:  # as a Handle would: report it, and run the others
                logger.exception("timer of %r failed", conn)


_WHEELS: WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = WeakKeyDictionary()


def wheel_of(loop: asyncio.AbstractEventLoop) -> _Wheel:
    """The loop's one _Wheel of coalesced deadlines."""
    wheel = _WHEELS.get(loop)
    if wheel is None:
        wheel = _WHEELS[loop] = _Wheel(loop)
    return wheel


class _Inbox:
    """DTLS and RTP datagrams waiting for `_recv()`, in order, then the close.

    What an asyncio.Queue did here, for a quarter of its 3.3 KB (four deques and an
    Event per connection end; issue 9): a deque, and the futures of readers waiting.
    """

    __slots__ = ("_items", "_waiters", "_closed")

    def __init__(self) -> None:
        self._items: deque[bytes] = deque()
        self._waiters: list[asyncio.Future[None]] | None = None
        self._closed = False

    def empty(self) -> bool:
        """True when no datagram waits (as asyncio.Queue.empty)."""
        return not self._items

    def put(self, data: bytes) -> None:
        """Queue one datagram for the reader."""
        self._items.append(data)
        if self._waiters:
            self._wake()

    def close(self) -> None:
        """No more datagrams: readers get what is queued, then ConnectionError."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> bytes:
        """The oldest datagram, waiting for one; ConnectionError once closed and empty."""
        while not self._items:
            if self._closed:
                raise ConnectionError("ICE transport closed")
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return self._items.popleft()


def _addr(raw: Any) -> Address:
    """asyncio gives IPv6 peers as 4-tuples; the agent speaks (host, port)."""
    return (str(raw[0]).split("%")[0], int(raw[1]))


class _Socket(asyncio.DatagramProtocol):
    """One local UDP socket, feeding its datagrams to the connection."""

    def __init__(self, owner: IceConnection) -> None:
        self.owner = owner
        self.transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.local = _addr(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.owner._datagram(data, self.local, _addr(addr))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, ...) surface here; consent handles the path.
        logger.debug("socket %s error: %s", self.local, exc)


class IceConnection(AsyncIOEventEmitter):  # type: ignore[misc]
    """An ICE agent on real UDP sockets; also the ICE transport aiortc's DTLS uses.

    Events (pyee): ``candidate`` (Candidate, ufrag), ``gatheringcomplete`` (ufrag),
    ``statechange`` (IceTransportState), ``gatheringstatechange`` (IceGatheringState),
    ``selectedpairchange`` (SelectedPairChanged), ``candidateerror`` (CandidateErrorEvent),
    ``mappedaddresschange`` (MappedAddressChanged), ``pathresumed`` (PathResumed),
    ``pathsilent`` (PathSilent),
    ``basereleased`` (Address: its socket
    was closed, no generation uses it any more).
    """

    def __init__(
        self,
        *,
        controlling: bool,
        config: IceConfig | None = None,
        address_filter: AddressFilter | None = None,
        rng: Any = None,
        credentials: tuple[str, str] | None = None,
        turn_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self._event_loop = asyncio.get_running_loop()
        self.agent = IceAgent(
            controlling=controlling,
            config=config,
            rng=rng or _RANDOMNESS,
            credentials=credentials,
        )
        self.address_filter = address_filter or AddressFilter()
        self._role = "controlling" if controlling else "controlled"
        self._sockets: dict[Address, _Socket] = {}
        self._inbox = _Inbox()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._wheel = wheel_of(self._event_loop)
        self._wheel_slot: float | None = None  # filed under this slot of the wheel
        self._closed = False
        self.dropped_undemuxable = 0
        self._state_waiters: list[
            tuple[Callable[[IceTransportState], bool], asyncio.Future[None]]
        ] = []
        self._pinned: PinnedSocket | None = None
        # TCP/TLS connections to TURN servers (the agent's RelayStream* commands).
        self._relay_streams = RelayStreams(
            on_opened=self._relay_opened,
            on_data=self._relay_data,
            on_closed=self._relay_closed,
            ssl_context=turn_ssl_context,
        )
        # UDP sockets of their own for TURN allocations refused 437 on a base's port.
        self._relay_sockets: dict[int, _Socket] = {}
        self._relay_binding: dict[int, asyncio.Task[None]] = {}
        self.on("selectedpairchange", self._repin)  # first listener: before any user's

    # ------------------------------------------------------------ DTLS seam

    @property
    def role(self) -> str:
        """ICE role at creation; aiortc's DTLS picks its client/server role from it once."""
        return self._role

    async def _recv(self) -> bytes:
        """The next DTLS/RTP datagram from the selected (or a draining) pair."""
        return await self._inbox.get()

    async def _send(self, data: bytes) -> None:
        """Send on the selected pair; dropped (like a lossy link) when there is none."""
        self.send(data)

    # ------------------------------------------------------------ commands

    @property
    def state(self) -> IceTransportState:
        """The W3C RTCIceTransportState."""
        return self.agent.state

    @property
    def gathering_state(self) -> IceGatheringState:
        """The W3C gathering state."""
        return self.agent.gathering_state

    @property
    def local_credentials(self) -> tuple[str, str]:
        """The newest generation's local (ufrag, pwd)."""
        return self.agent.local_credentials

    def set_role(self, controlling: bool) -> None:
        """Set the ICE role before checks start (JSEP: the offerer controls)."""
        self._role = "controlling" if controlling else "controlled"
        self.agent.set_role(controlling)
        self._flush()

    def abandon(self, ufrag: str) -> bool:
        """Roll back a restart that selected nothing yet (see IceAgent.abandon)."""
        try:
            return self.agent.abandon(ufrag, self._now())
        finally:
            self._flush()

    async def open_sockets(self, addresses: list[str] | None = None) -> None:
        """Bind one UDP socket per allowed local address (once; reused across restarts).

        `addresses` is the caller's fresh select_addresses() result, when it has one:
        enumerating interfaces (netlink) costs about 0.25 ms, so refresh does it once.
        """
        for ip in select_addresses(self.address_filter) if addresses is None else addresses:
            if any(base[0] == ip for base in self._sockets):
                continue
            self.agent.add_base(await self._bind(ip), self._now())
        self._flush()

    async def _bind(self, ip: str) -> Address:
        """A new UDP socket on `ip` (any port), registered for sending and receiving."""
        raw = bind_base(ip)  # SO_REUSEPORT: the selected pair gets its own (pinned.py)
        _, proto = await self._event_loop.create_datagram_endpoint(lambda: _Socket(self), sock=raw)
        assert isinstance(proto, _Socket)
        self._sockets[proto.local] = proto
        return proto.local

    async def refresh_addresses(self) -> None:
        """Follow address changes: close sockets on vanished addresses, open new ones."""
        allowed = select_addresses(self.address_filter)
        present = set(allowed)
        for base in list(self._sockets):
            if base[0] not in present:
                self.agent.remove_base(base, self._now())
                self._close_socket(base)
        await self.open_sockets(allowed)

    def _close_socket(self, base: Address) -> None:
        sock = self._sockets.pop(base, None)
        if sock is not None and sock.transport is not None:
            sock.transport.close()
            base_closed(base)

    async def gather(self) -> None:
        """Open the sockets and start gathering for the current generation."""
        await self.open_sockets()
        self.agent.gather(self._now())
        self._flush()

    def restart(
        self, credentials: tuple[str, str] | None = None, *, controlling: bool | None = None
    ) -> tuple[str, str]:
        """Start a new generation (make before break); returns the new local credentials."""
        try:
            return self.agent.restart(self._now(), credentials, controlling=controlling)
        finally:
            self._flush()

    async def restart_on_current_addresses(
        self,
        credentials: tuple[str, str] | None = None,
        *,
        controlling: bool | None = None,
        answering: bool = False,
    ) -> tuple[str, str]:
        """Follow address changes and restart in one step (see refresh_addresses).

        Sockets on new addresses open first; vanished ones go in the same agent step as
        the restart, so the selected pair's loss never shows as a `failed` before the
        restart's `checking`.
        """
        allowed = select_addresses(self.address_filter)
        present = set(allowed)
        vanished = tuple(base for base in self._sockets if base[0] not in present)
        # Fresh ports for the new generation, as browsers use: libwebrtc keeps one
        # connection per remote address and generation, so a port reused across
        # generations lets it pair a new generation with an old one (docs/ice.md).
        # The old sockets keep serving the old pair until the agent releases them.
        fresh = tuple([await self._bind(ip) for ip in allowed])
        try:
            creds = self.agent.restart(
                self._now(),
                credentials,
                controlling=controlling,
                remove_bases=vanished,
                new_bases=fresh,
                answering=answering,
            )
        except BaseException:
            for base in fresh:
                self._close_socket(base)
            raise
        finally:
            self._flush()
        for base in vanished:
            self._close_socket(base)
        return creds

    def set_remote_credentials(
        self, ufrag: str, pwd: str, *, local_ufrag: str | None = None, lite: bool = False
    ) -> None:
        """The peer's credentials for a generation (see IceAgent.set_remote_credentials)."""
        try:
            self.agent.set_remote_credentials(
                ufrag, pwd, self._now(), local_ufrag=local_ufrag, lite=lite
            )
        finally:
            self._flush()

    def add_remote_candidate(self, candidate: Candidate | None, ufrag: str | None = None) -> bool:
        """A trickled remote candidate; None means end-of-candidates for `ufrag`."""
        try:
            if candidate is None:
                self.agent.end_of_remote_candidates(self._now(), ufrag)
                return True
            return self.agent.add_remote_candidate(candidate, self._now())
        finally:
            self._flush()

    def send(self, data: bytes) -> bool:
        """Send application data on the selected pair; False when it was dropped."""
        if self._closed:
            return False
        tx = self.agent.send(data, self._now())
        if tx is None:
            if self.agent.has_output():  # relayed: queued for its TURN server
                self._flush()
                return True
            return False
        sock = self._sockets.get(tx.local)
        if sock is None or sock.transport is None:
            return False
        sock.transport.sendto(tx.data, tx.remote)
        return True

    async def wait_for_state(self, predicate: Callable[[IceTransportState], bool]) -> None:
        """Wait until the state satisfies `predicate` (checked now and on every change)."""
        if predicate(self.state):
            return
        fut: asyncio.Future[None] = self._event_loop.create_future()
        self._state_waiters.append((predicate, fut))
        await fut

    async def close(self) -> None:
        """Close the agent and the sockets; `_recv()` raises from now on."""
        if self._closed:
            return
        self._closed = True
        logger.debug("closing; agent counters: %s", dict(self.agent.counters))
        self.agent.close(self._now())
        self._flush()
        self._disarm()
        if self._pinned is not None:
            self._pinned.close()
            self._pinned = None
        for base, sock in self._sockets.items():
            if sock.transport is not None:
                sock.transport.close()
                base_closed(base)
        self._sockets.clear()
        for key in list(self._relay_sockets) + list(self._relay_binding):
            self._close_relay_socket(key)
        self._relay_streams.close_all()
        self._inbox.close()

    # ------------------------------------------------------------ driving the agent

    def _now(self) -> float:
        return self._event_loop.time()

    def _datagram(self, data: bytes, local: Address, remote: Address) -> None:
        kind = classify(data)
        # ChannelData (RFC 8656 §12.4) is a TURN server relaying to one of our relays.
        if kind not in (Kind.STUN, Kind.DTLS, Kind.RTP, Kind.TURN_CHANNEL):
            self.dropped_undemuxable += 1
            return
        payload = self.agent.receive(data, local, remote, self._now())
        if payload is not None:
            self._inbox.put(payload)
        # Drain after every input that changed something: application data can change
        # the state too (a disconnected pair receiving again). Junk and plain data skip
        # it; a deadline they moved (later) only makes the timer fire early.
        if self.agent.has_output():
            self._flush()

    def _relay_opened(self, key: int, local: Address) -> None:
        if not self._closed:
            self.agent.relay_stream_opened(key, local, self._now())
            self._flush()

    def _relay_data(self, key: int, data: bytes) -> None:
        if self._closed:
            return
        for payload in self.agent.relay_stream_data(key, data, self._now()):
            self._inbox.put(payload)
        self._flush()

    def _relay_closed(self, key: int, reason: str) -> None:
        if not self._closed:
            self.agent.relay_stream_closed(key, self._now(), reason)
            self._flush()

    def _on_timer(self) -> None:
        self._timer = None
        self._wheel_slot = None
        self._timer_at = None
        self.agent.handle_timer(self._now())
        self._flush()

    def _flush(self) -> None:
        """Send what the agent queued, dispatch its events, re-arm the one timer."""
        out = self.agent.drain()
        for tx in out.transmits:
            sock = self._sockets.get(tx.local) or self._relay_socket_at(tx.local)
            if sock is not None and sock.transport is not None:
                sock.transport.sendto(tx.data, tx.remote)
        for event in out.events:
            try:
                self._dispatch(event)
            except Exception:  # a user's handler must not break the drain loop
                logger.exception("event handler failed for %r", event)
        if self.agent.has_output():  # a handler called back into the agent
            self._flush()
            return
        deadline = self.agent.get_timer() if out.events else out.deadline
        at = deadline.at if deadline is not None else None
        coalesced = deadline is not None and deadline.coalescible
        if at is not None and coalesced:
            slot = math.ceil(at / TIMER_SLOT) * TIMER_SLOT
            at = slot if slot >= at else slot + TIMER_SLOT  # never early (float rounding)
        if at != self._timer_at:
            self._disarm()
            if at is not None and coalesced:
                self._wheel.arm(self, at)
                self._wheel_slot = at
            elif at is not None:
                self._timer = self._event_loop.call_at(at, self._on_timer)
            self._timer_at = at

    def _disarm(self) -> None:
        """Cancel the armed timer, whether an asyncio one or a slot of the wheel."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._wheel_slot is not None:
            self._wheel.disarm(self, self._wheel_slot)
            self._wheel_slot = None

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, LocalCandidateGathered):
            self.emit("candidate", event.candidate, event.ufrag)
        elif isinstance(event, GatheringComplete):
            self.emit("gatheringcomplete", event.ufrag)
        elif isinstance(event, StateChanged):
            self.emit("statechange", event.state)
            for waiter in list(self._state_waiters):
                predicate, fut = waiter
                if predicate(event.state):
                    self._state_waiters.remove(waiter)
                    if not fut.done():
                        fut.set_result(None)
        elif isinstance(event, GatheringStateChanged):
            self.emit("gatheringstatechange", event.state)
        elif isinstance(event, SelectedPairChanged):
            self.emit("selectedpairchange", event)
        elif isinstance(event, CandidateErrorEvent):
            self.emit("candidateerror", event)
        elif isinstance(event, MappedAddressChanged):
            self.emit("mappedaddresschange", event)
        elif isinstance(event, PathResumed):
            self.emit("pathresumed", event)
        elif isinstance(event, PathSilent):
            self.emit("pathsilent", event)
        elif isinstance(event, (RelayStreamOpen, RelayStreamData, RelayStreamClose)):
            self._relay_streams.handle(event)
        elif isinstance(event, RelaySocketOpen):
            self._close_relay_socket(event.key)
            task = self._event_loop.create_task(self._open_relay_socket(event))
            self._relay_binding[event.key] = task
        elif isinstance(event, RelaySocketClose):
            self._close_relay_socket(event.key)
        elif isinstance(event, BaseReleased):
            self._close_socket(event.address)
            self.emit("basereleased", event.address)

    async def _open_relay_socket(self, command: RelaySocketOpen) -> None:
        """Bind relay `key`'s own UDP socket, like a base (port quarantine included)."""
        try:
            raw = bind_base(command.local_ip)
            _, proto = await self._event_loop.create_datagram_endpoint(
                lambda: _Socket(self), sock=raw
            )
        except OSError as exc:
            self._relay_binding.pop(command.key, None)
            if not self._closed:
                self.agent.relay_socket_failed(command.key, self._now(), str(exc))
                self._flush()
            return
        self._relay_binding.pop(command.key, None)
        assert isinstance(proto, _Socket)
        self._relay_sockets[command.key] = proto
        if self._closed:
            self._close_relay_socket(command.key)
            return
        self.agent.relay_socket_opened(command.key, proto.local, self._now())
        self._flush()

    def _relay_socket_at(self, local: Address) -> _Socket | None:
        """The relay socket bound at `local` (a handful at most: a linear look is enough)."""
        return next((s for s in self._relay_sockets.values() if s.local == local), None)

    def _close_relay_socket(self, key: int) -> None:
        """Close relay `key`'s own UDP socket (or stop binding it); its port is quarantined."""
        task = self._relay_binding.pop(key, None)
        if task is not None:
            task.cancel()
        sock = self._relay_sockets.pop(key, None)
        if sock is not None and sock.transport is not None:
            sock.transport.close()
            base_closed(sock.local)

    def _repin(self, event: SelectedPairChanged) -> None:
        """Give the selected pair a receive buffer of its own (pinned.py), or none."""
        pair = self.agent.selected_pair
        target = (pair.base, pair.remote.address) if pair is not None else None
        old = self._pinned
        if old is not None and (old.local, old.remote) == target:
            return
        if old is not None:
            self._pinned = None
            # Not from inside the drain loop: close() delivers what is still queued.
            self._event_loop.call_soon(old.close)
        if target is None or not PINNING_SUPPORTED or self._closed:
            return
        if target[0] not in self._sockets:
            return
        try:
            self._pinned = PinnedSocket(self._event_loop, target[0], target[1], self._datagram)
        except OSError as exc:  # e.g. a base bound before SO_REUSEPORT: the base reads all
            logger.debug("no pinned socket for %s -> %s: %s", target[0], target[1], exc)
