"""Relay candidates (RFC 8445 §5.1.1.2) from TURN allocations, sans-IO, for the ICE agent.

Theory of operation
-------------------
`RelayGatherer` owns one `TurnClient` per (TURN server, base, generation): gathering on a
base starts one allocation per configured server of the base's address family. To the
rest of the agent a relay candidate is just another base: its *relayed address* is both
the candidate and its base, so pairs, checks, consent and data keep their usual
`(base, remote)` form. The gatherer translates at the edges:

- out: a datagram the agent queued from a relayed address goes through
  `send(relayed, peer, data)`, which wraps it (Send indication or ChannelData, and the
  permission and channel requests it needs) into bytes for the server;
- in: a datagram on a base from a client's server goes to `receive()`, which gives back
  what peers sent as (relayed address, peer, payload), fed to the agent as if received
  on the relayed address.

UDP servers share the base's own socket (`Transmit(data, base, server)`), until the
server answers an Allocate with 437 (RFC 8656 §7.2: the base's 5-tuple already has an
allocation): then the gatherer asks for a UDP socket of the relay's own with
`RelaySocketOpen(key, local_ip)`, the driver answers `socket_opened(key, local)` (or
`socket_failed()`), and the client retries from it; its traffic then goes through that
socket (`Transmit(data, socket, server)`) until `RelaySocketClose(key)`. TCP and TLS
servers need a connection: the gatherer asks for one with `RelayStreamOpen(key, ...)`,
writes with `RelayStreamData(key, bytes)` and closes with `RelayStreamClose(key)`; the
driver answers with `stream_opened()`, `stream_data()` and `stream_closed()`. The
allocation starts once the connection is up.

Results come out of `poll()` as `RelayReady` (make the candidate), `RelayFailed` (an
icecandidateerror; gathering still completes) and `RelayGone` (the relayed address is
dead: its pairs fail). A generation's allocations are released (`close()`, a Refresh
with LIFETIME 0) when the agent releases the generation, so an old allocation keeps
serving the old pair until a restart's new generation has selected (make before break).
"""

from __future__ import annotations

import collections
import itertools
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..addresses import Address, Transmit, is_ipv6
from ..turn import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    Deallocated,
    NewLocalPortNeeded,
    Redirected,
    TurnClient,
    TurnState,
)
from ..turn.events import ERROR_UNREACHABLE
from .candidate import Candidate, candidate_priority, foundation_for
from .events import CandidateErrorEvent, Event

if TYPE_CHECKING:
    from .agent import IceAgent
    from .checklist import Generation

logger = logging.getLogger(__name__)

# RFC 8445 §5.1.2.1 leaves the local preference to us; relays reached over UDP rank above
# TCP, above TLS (as libwebrtc orders them), then the usual per-base order.
TRANSPORT_PREFERENCE = {"udp": 2, "tcp": 1, "tls": 0}


@dataclass(frozen=True)
class RelayServer:
    """One `turn:`/`turns:` URL resolved to an address, with its credentials.

    `transport` is how the server is reached: "udp", "tcp", "tls" (or "dtls", which is
    reported as an icecandidateerror: not implemented). `server_name` is the URL's host,
    checked against the certificate over TLS.
    """

    url: str
    address: Address
    transport: str
    username: str
    credential: str
    server_name: str = ""


@dataclass(frozen=True)
class RelayOptions:
    """TURN client timers: how fast an unreachable server is given up, and lifetimes."""

    rto: float = 0.25
    attempts: int = 4
    stream_timeout: float = 5.0
    lifetime: int = 600
    permission_lifetime: float = 300.0
    channel_lifetime: float = 600.0


@dataclass(frozen=True)
class RelayStreamOpen(Event):
    """Driver command: open a TCP (or TLS, `transport` "tls") connection from `local_ip`
    to `server` for relay `key`; answer with stream_opened() or stream_closed()."""

    key: int
    server: Address
    transport: str
    server_name: str
    local_ip: str


@dataclass(frozen=True)
class RelayStreamData(Event):
    """Driver command: write `data` on relay `key`'s connection."""

    key: int
    data: bytes


@dataclass(frozen=True)
class RelayStreamClose(Event):
    """Driver command: close relay `key`'s connection."""

    key: int


@dataclass(frozen=True)
class RelaySocketOpen(Event):
    """Driver command: bind a UDP socket on `local_ip` (a port of its own, like a base)
    for relay `key`, whose server answered 437 on the base's; answer with
    socket_opened() or socket_failed()."""

    key: int
    local_ip: str


@dataclass(frozen=True)
class RelaySocketClose(Event):
    """Driver command: close relay `key`'s own UDP socket."""

    key: int


@dataclass(frozen=True)
class RelayReady:
    """An allocation succeeded: `relayed` is a relay candidate of `generation` on `base`."""

    generation: int
    base: Address
    relayed: Address
    mapped: Address | None
    server: RelayServer
    local_preference: int


@dataclass(frozen=True)
class RelayFailed:
    """No allocation: the icecandidateerror (webrtc-pc §4.8.2) fields, and its generation."""

    generation: int
    address: str
    port: int
    url: str
    error_code: int
    error_text: str


@dataclass(frozen=True)
class RelayGone:
    """An allocation that existed is gone (lost, expired, its connection closed)."""

    generation: int
    relayed: Address


RelayOutcome = RelayReady | RelayFailed | RelayGone


@dataclass(eq=False)
class _Relay:
    key: int
    server: RelayServer
    base: Address
    generation: int
    index: int  # the base's position, for the local preference
    client: TurnClient | None
    stream_local: Address | None = None
    socket_local: Address | None = None  # a UDP socket of its own, after a 437 (RFC 8656 §7.2)
    socket_asked: bool = False  # RelaySocketOpen sent: RelaySocketClose is owed
    relayed: Address | None = None
    settled: bool = False  # RelayReady or RelayFailed reported (gathering counted it)
    closing: bool = False
    unsent: list[bytes] = field(default_factory=list)  # stream bytes awaiting a connection


@dataclass
class _Output:
    transmits: list[Transmit] = field(default_factory=list)
    commands: list[Event] = field(default_factory=list)
    outcomes: list[RelayOutcome] = field(default_factory=list)


def relay_local_preference(host: str, index: int, transport: str) -> int:
    """RFC 8445 §5.1.2.1 local preference of a relay candidate: transport to the server
    first (UDP > TCP > TLS), then IPv6 above IPv4, then earlier bases above later ones."""
    family = 0x2000 if is_ipv6(host) else 0
    return (TRANSPORT_PREFERENCE.get(transport, 0) << 14) + family + max(0, 0x1FFF - index)


class RelayGatherer:
    """Every TURN allocation of an ICE agent, keyed by (server, base, generation)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng
        self._keys = itertools.count(1)
        self._relays: dict[int, _Relay] = {}
        self._by_relayed: dict[Address, _Relay] = {}
        self._out = _Output()
        self.dropped = 0  # relayed payloads for an address with no live allocation
        self.counters: collections.Counter[str] = collections.Counter()
        """TURN client events by name (Refreshed, ChannelBound, ...), for stats and tests."""

    # ----------------------------------------------------------------- queries

    @staticmethod
    def _udp_local(relay: _Relay) -> Address:
        """Where a UDP relay's traffic with its server goes: its own socket, else the base."""
        return relay.socket_local or relay.base

    def is_relayed(self, address: Address) -> bool:
        """True when `address` is a live relayed address (a relay candidate's base)."""
        return address in self._by_relayed

    def owns(self, local: Address, remote: Address) -> bool:
        """True when a datagram on base `local` from `remote` is a UDP server's traffic."""
        return any(
            r.client is not None
            and r.server.transport == "udp"
            and self._udp_local(r) == local
            and r.client.server == remote
            for r in self._relays.values()
        )

    def relayed_addresses(self, generation: int) -> list[Address]:
        """The live relayed addresses of `generation`."""
        return [a for a, r in self._by_relayed.items() if r.generation == generation]

    def __len__(self) -> int:
        return len(self._relays)

    # ----------------------------------------------------------------- commands

    def start(
        self,
        generation: int,
        base: Address,
        index: int,
        servers: Iterable[RelayServer],
        options: RelayOptions,
        now: float,
    ) -> int:
        """Allocate on every server of the base's family; returns how many were started
        (each one settles later, ready or failed, for gathering to complete)."""
        started = 0
        for server in servers:
            if is_ipv6(server.address[0]) != is_ipv6(base[0]):
                continue
            started += 1
            self._start_one(generation, base, index, server, options, now)
        return started

    def _start_one(
        self,
        generation: int,
        base: Address,
        index: int,
        server: RelayServer,
        options: RelayOptions,
        now: float,
    ) -> None:
        key = next(self._keys)
        if server.transport not in ("udp", "tcp", "tls"):
            relay = _Relay(key, server, base, generation, index, None)
            self._relays[key] = relay
            self._fail(relay, ERROR_UNREACHABLE, f"TURN over {server.transport} is not supported")
            return
        try:
            client = TurnClient(
                server.address,
                server.username,
                server.credential,
                transport=server.transport,
                lifetime=options.lifetime,
                permission_lifetime=options.permission_lifetime,
                channel_lifetime=options.channel_lifetime,
                rto=options.rto,
                max_sends=options.attempts,
                stream_timeout=options.stream_timeout,
                rng=self._rng,
            )
        except ValueError as exc:  # a credential SASLprep refuses (checked earlier by the pc)
            relay = _Relay(key, server, base, generation, index, None)
            self._relays[key] = relay
            self._fail(relay, ERROR_UNREACHABLE, str(exc))
            return
        relay = _Relay(key, server, base, generation, index, client)
        self._relays[key] = relay
        if server.transport == "udp":
            client.allocate(now)
        else:
            self._out.commands.append(
                RelayStreamOpen(key, server.address, server.transport, server.server_name, base[0])
            )

    def send(self, relayed: Address, peer: Address, data: bytes, now: float) -> bool:
        """Relay `data` from our relayed address to `peer`; False when it cannot go."""
        relay = self._by_relayed.get(relayed)
        if relay is None or relay.client is None:
            self.dropped += 1
            return False
        return relay.client.send(peer, data, now)

    def permit(self, generation: int, peer_ip: str, now: float) -> None:
        """Install a permission for a remote candidate's IP at once, so that the peer's
        checks to our relay pass before ours have gone out (RFC 8656 §9)."""
        for relay in self._by_relayed.values():
            if relay.generation == generation and relay.client is not None:
                relay.client.create_permission(peer_ip, now)

    def release_generation(self, generation: int, now: float) -> None:
        """The agent dropped `generation`: release its allocations (and stop pending ones)."""
        for relay in list(self._relays.values()):
            if relay.generation == generation:
                self._close(relay, now)

    def base_removed(self, base: Address, now: float) -> list[Address]:
        """A base socket is gone: its UDP allocations can never be used or released.

        Returns the relayed addresses that died with it (the agent fails their pairs).
        """
        gone: list[Address] = []
        for relay in list(self._relays.values()):
            if relay.base != base or relay.server.transport != "udp":
                continue  # (a relay on a socket of its own goes too: same local IP)
            if relay.relayed is not None:
                gone.append(relay.relayed)
            self._forget(relay)
        return gone

    def close(self, now: float) -> None:
        """The agent closes: release every allocation once (best effort, no retransmits)."""
        for relay in list(self._relays.values()):
            self._close(relay, now)

    # ----------------------------------------------------------------- input

    def receive(
        self, local: Address, remote: Address, data: bytes, now: float
    ) -> list[tuple[Address, Address, bytes]]:
        """A datagram from a UDP server on base `local`: (relayed, peer, payload) out."""
        for relay in self._relays.values():
            client = relay.client
            if (
                client is not None
                and relay.server.transport == "udp"
                and self._udp_local(relay) == local
                and client.server == remote
            ):
                return self._deliver(relay, client.receive(data, now))
        return []

    def stream_opened(self, key: int, local: Address, now: float) -> None:
        """The connection for relay `key` is up (from `local`): allocate on it."""
        relay = self._relays.get(key)
        if relay is None or relay.client is None:
            self._out.commands.append(RelayStreamClose(key))
            return
        relay.stream_local = local
        self._out.commands.extend(RelayStreamData(key, d) for d in relay.unsent)
        relay.unsent.clear()
        if relay.client.state is TurnState.IDLE:
            relay.client.allocate(now)
        elif relay.client.state is TurnState.WAITING_FOR_PORT:
            relay.client.retry_from_new_port(now)

    def stream_data(
        self, key: int, data: bytes, now: float
    ) -> list[tuple[Address, Address, bytes]]:
        """Bytes from relay `key`'s connection: (relayed, peer, payload) out."""
        relay = self._relays.get(key)
        if relay is None or relay.client is None:
            return []
        return self._deliver(relay, relay.client.receive(data, now))

    def stream_closed(self, key: int, now: float, reason: str = "") -> None:
        """Relay `key`'s connection closed or could not open: the allocation ends with it."""
        relay = self._relays.get(key)
        if relay is None or relay.client is None:
            return
        if relay.client.state is TurnState.IDLE:
            why = f"cannot connect to the TURN server{': ' + reason if reason else ''}"
            self._fail(relay, ERROR_UNREACHABLE, why)
            self._forget(relay)
            return
        relay.client.transport_closed(now)

    def socket_opened(self, key: int, local: Address, now: float) -> None:
        """Relay `key`'s own UDP socket is bound at `local`: allocate again from it."""
        relay = self._relays.get(key)
        if relay is None or relay.client is None:
            self._out.commands.append(RelaySocketClose(key))
            return
        relay.socket_local = local
        if relay.client.state is TurnState.WAITING_FOR_PORT:
            relay.client.retry_from_new_port(now)

    def socket_failed(self, key: int, now: float, reason: str = "") -> None:
        """Relay `key`'s own UDP socket could not be bound: the 437 stands."""
        relay = self._relays.get(key)
        if relay is None or relay.client is None:
            return
        relay.socket_asked = False
        self._fail(relay, 437, f"Allocation Mismatch, and no new local port: {reason}")
        self._forget(relay)

    # ----------------------------------------------------------------- timers

    def get_timer(self) -> float | None:
        """The earliest deadline of any client."""
        times = [
            at
            for r in self._relays.values()
            if r.client is not None and (at := r.client.get_timer()) is not None
        ]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run every client whose deadline is due."""
        for relay in list(self._relays.values()):
            client = relay.client
            if client is not None:
                at = client.get_timer()
                if at is not None and at <= now:
                    client.handle_timer(now)

    # ----------------------------------------------------------------- output

    def poll(self) -> tuple[list[Transmit], list[Event], list[RelayOutcome]]:
        """What the clients produced since the last poll: datagrams for UDP servers,
        driver commands (streams), and outcomes for the agent."""
        for relay in list(self._relays.values()):
            self._collect(relay)
        out, self._out = self._out, _Output()
        return out.transmits, out.commands, out.outcomes

    def _collect(self, relay: _Relay) -> None:
        client = relay.client
        if client is None:
            return
        while (event := client.next_event()) is not None:
            self._on_event(relay, event)
        data = client.data_to_send()
        if relay.server.transport == "udp":
            local = self._udp_local(relay)
            self._out.transmits.extend(Transmit(d, local, client.server) for d in data)
        elif relay.stream_local is not None:
            self._out.commands.extend(RelayStreamData(relay.key, d) for d in data)
        else:  # reconnecting (300, 437): written once the new connection is up
            relay.unsent.extend(data)
        if client.state in (TurnState.CLOSED, TurnState.FAILED) and relay.key in self._relays:
            self._forget(relay)

    def _on_event(self, relay: _Relay, event: object) -> None:
        self.counters[type(event).__name__] += 1
        if isinstance(event, AllocationSucceeded):
            relay.relayed = event.relayed
            if relay.closing:
                return
            self._by_relayed[event.relayed] = relay
            relay.settled = True
            pref = relay_local_preference(relay.base[0], relay.index, relay.server.transport)
            self._out.outcomes.append(
                RelayReady(
                    relay.generation, relay.base, event.relayed, event.mapped, relay.server, pref
                )
            )
        elif isinstance(event, AllocationFailed):
            self._fail(relay, event.error_code, event.error_text)
        elif isinstance(event, AllocationLost):
            logger.info("relay %s via %s lost: %s", relay.relayed, relay.server.url, event.reason)
            self._gone(relay)
        elif isinstance(event, NewLocalPortNeeded):
            self._new_port(relay)
        elif isinstance(event, Redirected) and relay.server.transport != "udp":
            self._out.commands.append(RelayStreamClose(relay.key))
            relay.stream_local = None
            self._out.commands.append(
                RelayStreamOpen(
                    relay.key, event.server, relay.server.transport, event.server[0], relay.base[0]
                )
            )
        elif isinstance(event, Deallocated):
            self._gone(relay)

    def _new_port(self, relay: _Relay) -> None:
        """437 on Allocate (RFC 8656 §7.2): move to a new local port. Over TCP/TLS that is
        a new connection; over UDP the base is the agent's socket, so the relay gets a
        socket of its own (the client allows one move: a second 437 fails it)."""
        if relay.server.transport == "udp":
            relay.socket_asked = True
            self._out.commands.append(RelaySocketOpen(relay.key, relay.base[0]))
            return
        self._out.commands.append(RelayStreamClose(relay.key))
        relay.stream_local = None
        self._out.commands.append(
            RelayStreamOpen(
                relay.key,
                relay.server.address,
                relay.server.transport,
                relay.server.server_name,
                relay.base[0],
            )
        )

    # ----------------------------------------------------------------- endings

    def _deliver(
        self, relay: _Relay, relayed: list[tuple[Address, bytes]]
    ) -> list[tuple[Address, Address, bytes]]:
        if relay.relayed is None or relay.closing:
            self.dropped += len(relayed)
            return []
        return [(relay.relayed, peer, payload) for peer, payload in relayed]

    def _fail(self, relay: _Relay, code: int, text: str) -> None:
        if relay.settled or relay.closing:
            return
        relay.settled = True
        host, port = relay.stream_local or relay.base
        self._out.outcomes.append(
            RelayFailed(relay.generation, host, port, relay.server.url, code, text)
        )

    def _gone(self, relay: _Relay) -> None:
        was = relay.relayed
        if was is not None and self._by_relayed.get(was) is relay:
            del self._by_relayed[was]
            if not relay.closing:
                self._out.outcomes.append(RelayGone(relay.generation, was))
        if not relay.settled:
            self._fail(relay, ERROR_UNREACHABLE, "allocation ended before it was used")

    def _close(self, relay: _Relay, now: float) -> None:
        relay.closing = True
        if relay.relayed is not None and self._by_relayed.get(relay.relayed) is relay:
            del self._by_relayed[relay.relayed]
        client = relay.client
        if client is None or client.state in (TurnState.CLOSED, TurnState.FAILED):
            self._forget(relay)
            return
        # One release, no retransmits: the base socket (or connection) goes with the
        # generation, and the server frees the allocation at its lifetime's end anyway.
        client.close(now)
        self._collect(relay)
        self._forget(relay)

    def _forget(self, relay: _Relay) -> None:
        self._relays.pop(relay.key, None)
        if relay.relayed is not None and self._by_relayed.get(relay.relayed) is relay:
            del self._by_relayed[relay.relayed]
        if relay.server.transport != "udp" and relay.client is not None:
            # Flush the release (if any) before the connection goes.
            data = relay.client.data_to_send()
            if relay.stream_local is not None:
                self._out.commands.extend(RelayStreamData(relay.key, d) for d in data)
            self._out.commands.append(RelayStreamClose(relay.key))
        relay.client = None if relay.server.transport != "udp" else relay.client
        if relay.client is not None:
            data = relay.client.data_to_send()
            local = self._udp_local(relay)
            self._out.transmits.extend(Transmit(d, local, relay.client.server) for d in data)
            relay.client = None
        if relay.socket_asked:  # after the release above: the driver sends, then closes
            relay.socket_asked = False
            self._out.commands.append(RelaySocketClose(relay.key))


class AgentRelays:
    """The agent's side of relaying: starts allocations while gathering, turns their
    outcomes into relay candidates and icecandidateerrors, and translates datagrams
    between relayed addresses and the server (see the module docstring).

    It touches the agent through a handful of its internals (generations, events,
    transmits, candidate and pair creation), so that agent.py only carries one-line hooks.
    """

    def __init__(self, agent: IceAgent, rng: random.Random | None = None) -> None:
        self._agent = agent
        self.gatherer = RelayGatherer(rng)
        self.clock = 0.0  # the latest `now` any input brought (sans-IO: no clock read)

    # ----------------------------------------------------------------- gathering

    def gather(self, gen: Generation, base: Address, index: int, now: float) -> None:
        """Allocate on every TURN server for `gen` on `base` (gathering waits for each)."""
        config = self._agent.config
        if not config.turn_servers:
            return
        self.clock = max(self.clock, now)
        started = self.gatherer.start(
            gen.index, base, index, config.turn_servers, config.relay_options, now
        )
        gen.gathering_pending += started  # each allocation settles once, as a STUN query does
        self.pump(now)

    def permit(self, gen: Generation, peer_ip: str, now: float) -> None:
        """A remote candidate's IP: permissions on this generation's relays at once."""
        self.gatherer.permit(gen.index, peer_ip, now)

    # ----------------------------------------------------------------- datagrams

    def owns(self, local: Address, remote: Address) -> bool:
        """True when a datagram on `local` from `remote` is a TURN server's."""
        # Runs for every datagram: the dict's truth, not a __len__ call, when relay-less.
        return bool(self.gatherer._relays) and self.gatherer.owns(local, remote)

    def receive(self, data: bytes, local: Address, remote: Address, now: float) -> bytes | None:
        """A UDP server's datagram: what peers sent goes to the agent as if it had arrived
        on the relayed address; returns the application data among it (one at most)."""
        self.clock = max(self.clock, now)
        self._agent._touched = True  # the client's deadline may have moved
        out = None
        for relayed, peer, payload in self.gatherer.receive(local, remote, data, now):
            got = self._agent.receive(payload, relayed, peer, now)
            out = got if got is not None else out
        self.pump(now)
        return out

    def stream_data(self, key: int, data: bytes, now: float) -> list[bytes]:
        """Bytes from a TCP/TLS server connection: application data out, in order."""
        self.clock = max(self.clock, now)
        self._agent._touched = True
        out = []
        for relayed, peer, payload in self.gatherer.stream_data(key, data, now):
            got = self._agent.receive(payload, relayed, peer, now)
            if got is not None:
                out.append(got)
        self.pump(now)
        return out

    def stream_opened(self, key: int, local: Address, now: float) -> None:
        """The driver connected relay `key`'s stream from `local`."""
        self.clock = max(self.clock, now)
        self.gatherer.stream_opened(key, local, now)
        self.pump(now)

    def stream_closed(self, key: int, now: float, reason: str = "") -> None:
        """Relay `key`'s stream closed (or never opened)."""
        self.clock = max(self.clock, now)
        self.gatherer.stream_closed(key, now, reason)
        self.pump(now)

    def socket_opened(self, key: int, local: Address, now: float) -> None:
        """The driver bound relay `key`'s own UDP socket at `local` (after a 437)."""
        self.clock = max(self.clock, now)
        self.gatherer.socket_opened(key, local, now)
        self.pump(now)

    def socket_failed(self, key: int, now: float, reason: str = "") -> None:
        """The driver could not bind relay `key`'s own UDP socket."""
        self.clock = max(self.clock, now)
        self.gatherer.socket_failed(key, now, reason)
        self.pump(now)

    def is_relayed(self, address: Address) -> bool:
        """True for a live relayed address (a relay candidate's base)."""
        return self.gatherer.is_relayed(address)

    def send(self, relayed: Address, peer: Address, data: bytes, now: float) -> bool:
        """Data from a relayed address to `peer`, through its server."""
        self.clock = max(self.clock, now)
        ok = self.gatherer.send(relayed, peer, data, now)
        self.pump(now)
        return ok

    def wrap(self, transmits: list[Transmit]) -> list[Transmit]:
        """The agent's queued datagrams, those from relayed addresses sent via their server."""
        if not self.gatherer._relays:  # every drain: the dict's truth, not a __len__ call
            return transmits
        direct = []
        for tx in transmits:
            if self.gatherer.is_relayed(tx.local):
                self.gatherer.send(tx.local, tx.remote, tx.data, self.clock)
            else:
                direct.append(tx)
        relayed, commands, outcomes = self.gatherer.poll()
        self._agent._events.extend(commands)
        self._apply(outcomes, self.clock)
        if self._agent._transmits:
            self._agent._touched = True  # queued meanwhile: the driver drains again
        return direct + relayed

    # ----------------------------------------------------------------- timers and endings

    def get_timer(self) -> float | None:
        """The earliest TURN client deadline."""
        return self.gatherer.get_timer() if self.gatherer._relays else None

    def handle_timer(self, now: float) -> None:
        """Retransmits, refreshes and expiries due at `now`."""
        if not self.gatherer:
            return
        self.clock = max(self.clock, now)
        self.gatherer.handle_timer(now)
        self.pump(now)

    def release_generation(self, gen: Generation) -> None:
        """The generation is gone: release its allocations."""
        if self.gatherer:
            self.gatherer.release_generation(gen.index, self.clock)
            self.pump(self.clock)

    def base_removed(self, base: Address, now: float) -> None:
        """A base socket vanished: the relays on it die with it."""
        for relayed in self.gatherer.base_removed(base, now):
            self._remove_relayed(relayed, now)
        self.pump(now)

    def close(self, now: float) -> None:
        """The agent closes: every allocation is released (once, best effort)."""
        if self.gatherer:
            self.gatherer.close(now)
            self.pump(now)

    # ----------------------------------------------------------------- outcomes

    def pump(self, now: float) -> None:
        """Move the clients' output to the agent's queues and apply their outcomes."""
        transmits, commands, outcomes = self.gatherer.poll()
        agent = self._agent
        agent._transmits.extend(transmits)
        agent._events.extend(commands)
        if transmits or commands:
            agent._touched = True
        self._apply(outcomes, now)

    def _apply(self, outcomes: list[RelayOutcome], now: float) -> None:
        for outcome in outcomes:
            gen = self._generation(outcome.generation)
            if isinstance(outcome, RelayReady):
                if gen is not None:
                    self._ready(gen, outcome, now)
            elif isinstance(outcome, RelayFailed):
                self._agent._events.append(
                    CandidateErrorEvent(
                        outcome.address,
                        outcome.port,
                        outcome.url,
                        outcome.error_code,
                        outcome.error_text,
                    )
                )
                if gen is not None:
                    self._agent._gathering.query_done(gen)
            else:
                self._remove_relayed(outcome.relayed, now)

    def _generation(self, index: int) -> Generation | None:
        return next((g for g in self._agent._generations if g.index == index), None)

    def _ready(self, gen: Generation, ready: RelayReady, now: float) -> None:
        """RFC 8445 §5.1.1.2: the relayed address is a candidate and its own base."""
        base_host = ready.base[0]
        mapped = ready.mapped
        cand = Candidate(
            foundation=foundation_for(
                "relay", base_host, ready.server.transport, ready.server.address[0]
            ),
            component=1,
            transport="udp",
            priority=candidate_priority("relay", ready.local_preference),
            host=ready.relayed[0],
            port=ready.relayed[1],
            type="relay",
            related_address=mapped[0] if mapped else None,
            related_port=mapped[1] if mapped else None,
            generation=gen.index,
            ufrag=gen.ufrag,
            base=ready.relayed,
        )
        if gen.bases is not None and ready.relayed not in gen.bases:
            gen.bases.append(ready.relayed)
        for remote in gen.remote_candidates:
            self.gatherer.permit(gen.index, remote.host, now)
        self._agent._gathering.add_candidate(gen, cand, now)
        self._agent._gathering.query_done(gen)

    def _remove_relayed(self, relayed: Address, now: float) -> None:
        """The allocation is gone: its pairs fail, as when a base socket vanishes."""
        agent = self._agent
        if relayed not in agent._bases:
            agent._bases.append(relayed)  # so that the agent's own removal applies to it
        agent._remove_base(relayed, now)
        agent._update_state(now)


__all__ = [
    "TRANSPORT_PREFERENCE",
    "AgentRelays",
    "RelayFailed",
    "RelayGatherer",
    "RelayGone",
    "RelayOptions",
    "RelayOutcome",
    "RelayReady",
    "RelayServer",
    "RelaySocketClose",
    "RelaySocketOpen",
    "RelayStreamClose",
    "RelayStreamData",
    "RelayStreamOpen",
    "relay_local_preference",
]
