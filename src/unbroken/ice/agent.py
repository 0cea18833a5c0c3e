"""The ICE agent (RFC 8445, trickle RFC 8838, consent RFC 7675), sans-IO, with restarts.

Theory of operation
-------------------
The agent owns no socket and reads no clock. Its driver (the asyncio runtime, or the
simulated network in tests) gives it:

- local *bases*: the UDP sockets it may use (`add_base`, `remove_base`);
- commands: `gather`, `restart`, `set_remote_credentials`, `add_remote_candidate`,
  `end_of_remote_candidates`, `send`, `close`;
- input: `receive(data, local, remote, now)` for every datagram on a base, and
  `handle_timer(now)` when the deadline from `get_timer()` is reached.

and pulls from it: `datagrams_to_send()` (Transmit: bytes, base, destination),
`next_event()` (events.py) and `get_timer()` (a Deadline with a reason).

A *generation* (checklist.py) is one pair of local and remote credentials. `restart`
opens a new one with fresh credentials and fresh gathering on the same bases. Older
generations keep carrying data and consent until the newest selects a pair (make before
break, RFC 8445 §9, RFC 8839 §4.4.3.1.1); then the switch is reported and the older
ones drain for `release_delay` (accepting what is in flight, sending nothing) and go.

The state (states.py) is derived from facts after every input and reported on change.

This module keeps the public API, input dispatch (STUN requests and responses, data),
generations, check lists and state derivation. The rest, one concept per module:
transactions.py (outstanding STUN requests and their retransmission), gathering.py
(candidates, one gatherer per type), nomination.py (what the controlling and controlled
roles do), consent.py (RFC 7675 consent, keepalives, silence of the pair in use) and
relay.py (TURN allocations as relay candidates, reached through `self._relays`).
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections import Counter, deque
from dataclasses import dataclass, replace

from .. import stun
from ..addresses import Address, Transmit, normalize_ip
from ..errors import UnbrokenError
from .candidate import (
    CANDIDATE_TYPES,
    MAX_PRIORITY,
    PAIRED_TYPES,
    Candidate,
    candidate_priority,
    foundation_for,
)
from .checklist import PENDING_STATES, CandidatePair, Generation, PairState, PendingCheck
from .config import IceConfig
from .consent import OUTAGE_SILENCE, Consent
from .events import (
    BaseReleased,
    Event,
    GenerationReleased,
    MappedAddressChanged,
    RoleChanged,
    SelectedPairChanged,
    StateChanged,
)
from .gathering import Gathering, family
from .nomination import Selector, selector_for
from .ratelimit import TokenBucket
from .relay import AgentRelays
from .states import ALLOWED, IceGatheringState, IceTransportState, StateFacts, derive_state
from .transactions import RETRANSMIT_REASON, Transaction, Transactions, TxKind

logger = logging.getLogger(__name__)

_NEVER = float("inf")  # get_timer's "no deadline yet"

ICE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
UFRAG_LENGTH = 8  # RFC 8839 §5.4: at least 4 characters (24 bits of randomness)
PWD_LENGTH = 24  # RFC 8839 §5.4: at least 22 characters (128 bits)


class IceError(UnbrokenError, ValueError):
    """A command the agent cannot carry out (bad argument or wrong moment).

    A ValueError too, as it always was, so existing `except ValueError` still catches it.
    """


class InvalidCredentialsError(IceError):
    """Remote ufrag or pwd outside RFC 8839 §5.4 (length or ice-char)."""


class UnknownGenerationError(IceError):
    """A candidate or end-of-candidates names a ufrag no generation has."""


@dataclass(frozen=True)
class Deadline:
    """When the agent wants handle_timer called, and why (for logs).

    `coalescible`: nothing is timed by it exactly (the keepalive and consent check on the
    pair in use, randomized by 20% anyway, and the path-silence heuristic, 1.5 s of
    silence where 1.55 s changes nothing), so a driver may run it a little late and
    serve many agents' deadlines with one wakeup (runtime/connection.py). Deadlines that
    time a state (disconnected, consent expiry), a retransmit or pacing never are.
    """

    at: float
    reason: str
    coalescible: bool = False


@dataclass(frozen=True)
class Output:
    """What the agent has for its driver after an input: see IceAgent.drain()."""

    transmits: list[Transmit]
    events: list[Event]
    deadline: Deadline | None


def generate_credentials(rng: random.Random) -> tuple[str, str]:
    """RFC 8839 §5.4 credentials (ufrag, pwd) drawn from `rng`."""
    ufrag = "".join(rng.choice(ICE_CHARS) for _ in range(UFRAG_LENGTH))
    pwd = "".join(rng.choice(ICE_CHARS) for _ in range(PWD_LENGTH))
    return ufrag, pwd


def validate_credentials(ufrag: str, pwd: str) -> None:
    """Raise InvalidCredentialsError unless ufrag/pwd follow RFC 8839 §5.4."""
    for name, value, low in (("ufrag", ufrag, 4), ("pwd", pwd, 22)):
        if not isinstance(value, str):
            raise InvalidCredentialsError(f"ice-{name} must be a string")
        if not low <= len(value) <= 256:
            raise InvalidCredentialsError(
                f"ice-{name} must be {low} to 256 characters, got {len(value)}"
            )
        if any(c not in ICE_CHARS for c in value):
            raise InvalidCredentialsError(
                f"ice-{name} has characters outside ALPHA / DIGIT / + / /"
            )


def _checked_remote(cand: Candidate) -> Candidate | None:
    """`cand` with its address in canonical form, or None when it is out of range.

    The ranges of RFC 8839 §5.1 and RFC 8445 §5.1.2.1 (what from_sdp enforces), for
    candidates built in code rather than parsed.
    """
    if (
        cand.type not in CANDIDATE_TYPES
        or not isinstance(cand.port, int)
        or not 1 <= cand.port <= 65535
        or not isinstance(cand.priority, int)
        or not 1 <= cand.priority <= MAX_PRIORITY
        or not isinstance(cand.host, str)
        or "%" in cand.host  # a zone id names one of the peer's interfaces
    ):
        return None
    try:
        host = normalize_ip(cand.host)
    except ValueError:
        return None
    if not _unicast(host):
        return None
    return cand if host == cand.host else replace(cand, host=host)


def _unicast(host: str) -> bool:
    """False for addresses no check may go to: multicast, broadcast, unspecified.

    A candidate of 224.0.0.1 or ff02::1 would make us spray checks at a whole network
    (issue 7); RFC 8445 §5.1.1.1 gathers unicast addresses only, so a peer has none other.
    """
    ip = ipaddress.ip_address(host)
    return not (ip.is_multicast or ip.is_unspecified or host == "255.255.255.255")


class IceAgent:
    """A full ICE agent for one component (BUNDLE, rtcp-mux), driven sans-IO."""

    def __init__(
        self,
        *,
        controlling: bool,
        rng: random.Random,
        config: IceConfig | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.config = config or IceConfig()
        self.config.validate()
        self._rng = rng
        # Role behaviour (nomination, conflicts) as an object: a role change swaps it.
        self._selector: Selector = selector_for(controlling, self)
        self.tie_breaker = rng.getrandbits(64)
        self._bases: list[Address] = []
        self._generations: list[Generation] = []
        self._transactions = Transactions(rng)
        self._transmits: list[Transmit] = []
        self._events: deque[Event] = deque()
        self._selected: CandidatePair | None = None
        self._receiving = False
        self._state = IceTransportState.NEW
        self._gathering = Gathering(self)
        self._consent = Consent(self)
        self._closed = False
        self._touched = False  # a STUN message was processed since the last drain()
        self._ever_connected = False
        self._pair_counter = 0
        self.counters: Counter[str] = Counter()
        # Error replies to unauthenticated requests (see IceConfig.error_reply_rate).
        self._error_replies = TokenBucket()
        self._last_deadline: Deadline | None = None  # get_timer's last answer (frozen)
        self._last_facts: StateFacts | None = None  # _update_state's last (state follows)
        # Encoded check requests by content: a consent check differs from the last one
        # on its pair only in its transaction id (issue 9); a handful of entries at most.
        self._request_templates: dict[tuple[str, str, int, bool, bool, int], tuple[int, bytes]] = {}
        self._relays = AgentRelays(self, rng)  # TURN allocations (relay.py)
        self._new_generation(credentials)

    # ----------------------------------------------------------------- properties

    @property
    def controlling(self) -> bool:
        """Our current role (a role conflict may change it, RFC 8445 §7.3.1.1)."""
        return self._selector.controlling

    @property
    def state(self) -> IceTransportState:
        """The W3C RTCIceTransportState."""
        return self._state

    @property
    def gathering_state(self) -> IceGatheringState:
        """The W3C gathering state of the newest generation."""
        return self._gathering.state

    @property
    def local_credentials(self) -> tuple[str, str]:
        """The newest generation's (ufrag, pwd)."""
        gen = self._generations[-1]
        return gen.ufrag, gen.pwd

    @property
    def remote_credentials(self) -> tuple[str, str] | None:
        """The newest generation's remote (ufrag, pwd), once known."""
        gen = self._generations[-1]
        if gen.remote_ufrag is None or gen.remote_pwd is None:
            return None
        return gen.remote_ufrag, gen.remote_pwd

    @property
    def generation(self) -> int:
        """The index of the newest generation (0 before any restart)."""
        return self._generations[-1].index

    @property
    def selected_pair(self) -> CandidatePair | None:
        """The pair data is sent on, if any."""
        return self._selected

    @property
    def bases(self) -> tuple[Address, ...]:
        """The local transport addresses the driver gave us."""
        return tuple(self._bases)

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    def generations(self) -> tuple[Generation, ...]:
        """Live generations, oldest first (for stats and tests)."""
        return tuple(self._generations)

    def local_candidates(self) -> list[Candidate]:
        """The newest generation's local candidates so far."""
        return list(self._generations[-1].local_candidates)

    def pairs(self) -> list[CandidatePair]:
        """Every pair of every live generation."""
        return [p for g in self._generations for p in g.pairs]

    def generate_credentials(self) -> tuple[str, str]:
        """Fresh (ufrag, pwd) from the agent's random source, without using them yet."""
        return generate_credentials(self._rng)

    # ----------------------------------------------------------------- commands

    def add_base(self, address: Address, now: float) -> None:
        """A local socket the agent may use; gathers on it if gathering is under way."""
        if self._closed or address in self._bases:
            return
        self._bases.append(address)
        gen = self._generations[-1]
        if gen.bases is not None:
            gen.bases.append(address)
        if gen.gathering_started and not gen.gathering_complete:
            self._gathering.gather_base(gen, address, len(self._bases) - 1, now)
            self._gathering.check_complete(gen)
        self._update_state(now)

    def remove_base(self, address: Address, now: float) -> None:
        """A local socket is gone (address removed): its pairs fail at once."""
        self._remove_base(address, now)
        self._update_state(now)

    def _remove_base(self, address: Address, now: float) -> None:
        if address not in self._bases:
            return
        self._bases.remove(address)
        self._relays.base_removed(address, now)
        for gen in self._generations:
            if gen.bases is not None and address in gen.bases:
                gen.bases.remove(address)
            for pair in gen.pairs:
                if pair.base == address:
                    pair.state = PairState.FAILED
            self._note_exhausted(gen, now)
        for tx in self._transactions.remove_where(lambda tx: tx.local == address):
            if tx.kind is TxKind.SRFLX:
                self._gathering.on_abandoned(tx)  # never answered: gathering goes on
        if self._selected is not None and self._selected.base == address:
            self._lose_selected(now, "local address removed")

    def gather(self, now: float) -> None:
        """Start gathering for the newest generation (JSEP: at setLocalDescription)."""
        gen = self._generations[-1]
        if self._closed or gen.gathering_started:
            return
        self._gathering.start(gen, self._bases, now)
        self._update_state(now)

    def restart(
        self,
        now: float,
        credentials: tuple[str, str] | None = None,
        *,
        controlling: bool | None = None,
        remove_bases: tuple[Address, ...] = (),
        new_bases: tuple[Address, ...] | None = None,
        answering: bool = False,
    ) -> tuple[str, str]:
        """Begin a new generation: new credentials, fresh gathering and check list (RFC 8445 §9).

        The selected pair of an older generation keeps carrying data until the new one
        selects a pair. `controlling` sets the role for the new generation (roles are
        decided anew on each restart, see docs/ice.md); `remove_bases` are local
        addresses that vanished, dropped in the same step so that no `failed` is reported
        between losing them and restarting. `new_bases`, when given, are the only sockets
        the new generation uses (fresh ports, as browsers do: libwebrtc keeps one
        connection per remote address and generation, and a reused port makes it confuse
        generations); older bases go with the generations that use them (BaseReleased).
        `answering`: the peer offered this restart; our own checks wait up to
        IceConfig.answer_check_hold for the peer's, so that ours do not reach it before
        our answer does (libwebrtc then learns our new address as a low-priority
        peer-reflexive candidate of no known generation and prunes it for good next to
        the old pair; docs/ice.md). Returns the new local (ufrag, pwd).
        """
        if self._closed:
            raise IceError("the agent is closed")
        if credentials is None:
            credentials = self.generate_credentials()
        self._check_new_credentials(credentials)  # before anything changes
        for base in remove_bases:
            self._remove_base(base, now)
        role_before = self.controlling
        if controlling is not None:
            self._set_role(controlling)
        for tx in self._transactions.live_checks():
            tx.cancel()  # the older generations' checks stop here (a late answer still counts)
        gen = self._new_generation(credentials)
        gen.role_before_restart = role_before
        if answering:
            gen.hold_checks_until = now + self.config.answer_check_hold
        if new_bases is not None:
            gen.bases = list(new_bases)
            self._bases.extend(b for b in new_bases if b not in self._bases)
        self.gather(now)
        self._trim_generations(now)
        self._update_state(now)
        return gen.ufrag, gen.pwd

    def set_role(self, controlling: bool) -> None:
        """Set our role (JSEP: the offerer controls, RFC 8839 §4.2.3); pair priorities follow."""
        self._set_role(controlling)

    def abandon(self, ufrag: str, now: float) -> bool:
        """Drop the newest generation if it has `ufrag` and selected nothing (JSEP rollback).

        The previous generation becomes the newest again; returns True when one was dropped.
        """
        gen = self._generations[-1]
        if len(self._generations) < 2 or gen.ufrag != ufrag or gen.selected is not None:
            return False
        self._release(gen)
        if gen.role_before_restart is not None:
            self._set_role(gen.role_before_restart)  # the restart's role goes with it
        self._gathering.update_state()
        self._update_state(now)
        return True

    def set_remote_credentials(
        self,
        ufrag: str,
        pwd: str,
        now: float,
        *,
        local_ufrag: str | None = None,
        lite: bool = False,
    ) -> None:
        """The peer's credentials for the generation whose local ufrag is `local_ufrag`.

        Without `local_ufrag`, the newest generation. Setting different credentials on a
        generation that has some is an error: the peer restarted, so must we (RFC 8445 §9).
        """
        validate_credentials(ufrag, pwd)
        if self._closed:
            raise IceError("the agent is closed")
        gen = self._generation_by_local(local_ufrag) if local_ufrag else self._generations[-1]
        if gen is None:
            raise UnknownGenerationError(f"no generation has local ufrag {local_ufrag!r}")
        if gen.has_remote:
            if (gen.remote_ufrag, gen.remote_pwd) == (ufrag, pwd):
                return
            raise IceError("the remote credentials changed without a local restart")
        if any(g.remote_ufrag == ufrag for g in self._generations):
            raise IceError("these remote credentials belong to an older generation")
        gen.remote_ufrag, gen.remote_pwd, gen.remote_lite = ufrag, pwd, lite
        if lite and not self.controlling:
            # RFC 8445 §6.1.1: a full agent facing a lite one is controlling.
            self._set_role(True)
        gen.next_check_at = now
        self._note_exhausted(gen, now)
        for pending in gen.pending_checks:
            if pending.remote_ufrag == ufrag:
                self._learn_from_request(gen, pending, now)
        gen.pending_checks.clear()
        self._update_state(now)

    def add_remote_candidate(self, candidate: Candidate, now: float) -> bool:
        """Add a trickled remote candidate to the generation its ufrag names.

        No ufrag means the newest generation with remote credentials (RFC 8838 §13). An
        unknown ufrag raises UnknownGenerationError. Returns False when the candidate was
        dropped (older generation, unusable or out of range, after end-of-candidates,
        duplicate or over the limit).
        """
        if self._closed:
            raise IceError("the agent is closed")
        gen = self._generation_for_remote(candidate.ufrag)
        if gen is not self._generations[-1] and gen.draining:
            self.counters["remote_candidate_old_generation"] += 1
            return False
        if candidate.transport != "udp" or candidate.component != 1:
            self.counters["remote_candidate_unusable"] += 1
            return False
        checked = _checked_remote(candidate)
        if checked is None:
            self.counters["remote_candidate_invalid"] += 1
            return False
        candidate = checked
        if gen.remote_end_of_candidates:
            # RFC 8838 §13: after end-of-candidates, newly received candidates are ignored.
            self.counters["remote_candidate_after_end"] += 1
            return False
        if any(c.address == candidate.address for c in gen.remote_candidates):
            self.counters["remote_candidate_duplicate"] += 1
            return False
        if len(gen.remote_candidates) >= self.config.max_remote_candidates:
            self.counters["remote_candidate_over_limit"] += 1
            return False
        gen.remote_candidates.append(candidate)
        gen.exhausted_at = None
        self._relays.permit(gen, candidate.host, now)
        for local in gen.local_candidates:
            if local.type in PAIRED_TYPES:
                self._add_pair(gen, local, candidate, now)
        self._update_state(now)
        return True

    def end_of_remote_candidates(self, now: float, ufrag: str | None = None) -> None:
        """The peer has given every candidate of that generation (RFC 8838 §13)."""
        if self._closed:
            return
        gen = self._generation_for_remote(ufrag)
        gen.remote_end_of_candidates = True
        self._note_exhausted(gen, now)
        self._check_failed(gen, now)
        self._update_state(now)

    def send(self, data: bytes, now: float) -> Transmit | None:
        """Application data on the selected pair, or None (dropped) when there is none."""
        pair = self._selected
        if pair is None or pair.consent_revoked or self._closed:
            self.counters["send_no_pair"] += 1
            return None
        pair.last_sent = now  # data that may need resending after an outage (PathResumed)
        pair.bytes_sent += len(data)
        pair.packets_sent += 1
        if self._relays.is_relayed(pair.base):  # via the TURN server: queued, not returned
            self._relays.send(pair.base, pair.remote.address, data, now)
            return None
        return Transmit(data, pair.base, pair.remote.address)

    def close(self, now: float) -> None:
        """Stop everything; the state becomes closed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._transactions.clear()
        self._transmits.clear()
        self._relays.close(now)  # releases go out with the next drain
        self._selected = None
        self._update_state(now)

    # ----------------------------------------------------------------- I/O

    def receive(self, data: bytes, local: Address, remote: Address, now: float) -> bytes | None:
        """One datagram that arrived on base `local` from `remote`.

        STUN is consumed; other data from a known pair is returned for the layer above
        (DTLS, RTP), anything else is dropped and counted.
        """
        if self._closed:
            return None
        if not data:
            self.counters["empty_datagram"] += 1  # nothing to demultiplex; DTLS would choke
            return None
        if self._relays.owns(local, remote):  # a TURN server's datagram (relay.py)
            return self._relays.receive(data, local, remote, now)
        if 64 <= data[0] <= 79:  # RFC 7983 §7: ChannelData, only ever from our TURN servers
            self.counters["channel_data_not_from_relay"] += 1
            return None
        if data[0] < 4:  # RFC 7983 §7: 0..3 is STUN
            self._receive_stun(data, local, remote, now)
            return None
        pair = self._selected
        if pair is None or pair.base != local or pair.remote.address != remote:
            pair = self._find_pair(local, remote)
            # RFC 8445 §12.1: be ready to receive on any pair the peer may use: one that
            # succeeded, or one whose authenticated checks we answered (the peer may send
            # on it before our own check on it completes, as libwebrtc does on restart).
            if (
                pair is None
                or pair.consent_revoked
                or (pair.state is not PairState.SUCCEEDED and pair.requests_received == 0)
            ):
                if self._early_check_from(local, remote):
                    # The peer checked us (authenticated) before its answer reached us, and
                    # sends already: accept, as the pair will exist once the answer does.
                    self.counters["data_before_answer"] += 1
                    return data
                self.counters["data_from_stranger"] += 1
                return None
        pair.bytes_received += len(data)
        pair.packets_received += 1
        if pair is self._selected:
            self._consent.note_resumed(pair, now)
        pair.last_received = pair.last_answer_or_data = now
        if pair is not self._selected:
            self._consent.maybe_follow(pair, now)  # the peer sends on another path: ours died?
        elif not self._receiving:
            self._update_state(now)
        return data

    def has_output(self) -> bool:
        """True when the last inputs queued datagrams or events, or may have moved the
        deadline: a driver that skips drain() otherwise (junk, plain data) loses nothing."""
        return self._touched or bool(self._transmits or self._events)

    def drain(self) -> Output:
        """Take every queued datagram and event, and the next deadline.

        The one routine every driver (asyncio runtime, simulated network, test harness)
        runs after every input, so none of them can forget a part of it.
        """
        transmits = self.datagrams_to_send()  # first: relaying may queue events
        events = list(self._events)
        self._events.clear()
        self._touched = False
        return Output(transmits, events, self.get_timer())

    def datagrams_to_send(self) -> list[Transmit]:
        """STUN datagrams queued by the last inputs (drained)."""
        out, self._transmits = self._transmits, []
        return self._relays.wrap(out)  # relayed addresses' datagrams go via their server

    def relay_stream_opened(self, key: int, local: Address, now: float) -> None:
        """The driver opened the TCP/TLS connection a RelayStreamOpen asked for."""
        self._relays.stream_opened(key, local, now)

    def relay_stream_data(self, key: int, data: bytes, now: float) -> list[bytes]:
        """Bytes from a TURN server connection; returns application data relayed in it."""
        return self._relays.stream_data(key, data, now)

    def relay_stream_closed(self, key: int, now: float, reason: str = "") -> None:
        """A TURN server connection closed or could not be opened."""
        self._relays.stream_closed(key, now, reason)

    def relay_socket_opened(self, key: int, local: Address, now: float) -> None:
        """The driver bound the UDP socket a RelaySocketOpen asked for, at `local`."""
        self._relays.socket_opened(key, local, now)

    def relay_socket_failed(self, key: int, now: float, reason: str = "") -> None:
        """The driver could not bind the UDP socket a RelaySocketOpen asked for."""
        self._relays.socket_failed(key, now, reason)

    def next_event(self) -> Event | None:
        """The oldest unread event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> Deadline | None:
        """The next time handle_timer must run, with its reason; None when idle."""
        if self._closed:
            return None
        # Runs after every input: plain comparisons, and only the winner becomes a
        # Deadline (a frozen dataclass, slow to build). Ties keep the earlier reason.
        best_at = _NEVER
        best_reason = ""
        best_coalescible = False
        tx = self._transactions.earliest()
        if tx is not None:
            best_at, best_reason = tx.next_at, RETRANSMIT_REASON[tx.kind]
        at = self._relays.get_timer()
        if at is not None and at < best_at:
            best_at, best_reason = at, "turn"
        newest = self._generations[-1]
        selector = self._selector
        for gen in self._generations:
            at = gen.draining_until  # gen.draining, without a property call
            if at is not None:
                if at < best_at:
                    best_at, best_reason = at, f"release generation {gen.index}"
                continue
            if (
                gen is newest
                and gen.has_remote
                and gen.gathering_started
                and gen.has_waiting_work()
            ):
                at = max(gen.next_check_at, gen.hold_checks_until or 0.0)
                if at < best_at:
                    best_at, best_reason = at, f"pacing generation {gen.index}"
            at = selector.nomination_due(gen)
            if at is not None and at < best_at:
                best_at, best_reason = at, "nomination"
            if (
                gen.exhausted_at is not None
                and not gen.failed
                and gen.selected is None
                and gen.gathering_complete
            ):
                at = gen.exhausted_at + self.config.failed_timeout
                if at < best_at:
                    best_at, best_reason = at, "failed timeout"
        consent = self._consent
        at = consent.silence_due()
        if at is not None and at < best_at:
            # Coalescible: it moves with every datagram heard, and an exact timer re-armed
            # that often costs an idle controlled end more than its keepalive (issue 9).
            best_at, best_reason, best_coalescible = at, "path silence", True
        pair = self._selected
        if pair is not None:
            # The one deadline a driver may run late (Deadline.coalescible): its interval
            # is randomized by 20% anyway, and idle connections can share a wakeup.
            at = consent.keepalive_due(pair)
            if at is not None and at < best_at:
                best_at, best_reason, best_coalescible = at, "consent check", True
            if pair.last_consent is not None:
                at = pair.last_consent + self.config.consent_timeout
                if at < best_at:
                    best_at, best_reason, best_coalescible = at, "consent expiry", False
            if self._receiving and pair.last_received is not None:
                at = pair.last_received + self.config.disconnected_timeout
                if at < best_at:
                    best_at, best_reason, best_coalescible = at, "disconnected", False
        if best_at is _NEVER:
            return None
        last = self._last_deadline  # unchanged since the last call, mostly: reuse it
        if (
            last is None
            or last.at != best_at
            or last.coalescible is not best_coalescible
            or last.reason != best_reason
        ):
            last = self._last_deadline = Deadline(best_at, best_reason, best_coalescible)
        return last

    def handle_timer(self, now: float) -> None:
        """Do whatever is due at `now`: retransmits, paced checks, consent, state timeouts."""
        if self._closed:
            return
        self._relays.handle_timer(now)
        for tx in self._transactions.due(now):
            self._transaction_timer(tx, now)
        newest = self._generations[-1]
        for gen in list(self._generations):
            if gen.draining:
                if gen.draining_until is not None and now >= gen.draining_until:
                    self._release(gen)
                continue
            # RFC 8445 §14: checks are paced per agent. Only the newest generation checks;
            # older ones keep their selected pair's consent and nothing else, so a peer
            # restarting in a loop cannot multiply our check rate (issue 7).
            if (
                gen is newest
                and gen.has_remote
                and gen.gathering_started
                and now >= gen.next_check_at
                and now >= (gen.hold_checks_until or 0.0)
            ):
                if self._send_next_check(gen, now):
                    gen.next_check_at = now + self.config.ta
            self._selector.maybe_nominate(gen, now)
            self._check_failed(gen, now)
        self._consent.handle_timer(now)
        self._update_state(now)

    # ----------------------------------------------------------------- generations

    def _new_generation(self, credentials: tuple[str, str] | None) -> Generation:
        if credentials is None:
            credentials = self.generate_credentials()
        self._check_new_credentials(credentials)
        ufrag, pwd = credentials
        index = self._generations[-1].index + 1 if self._generations else 0
        gen = Generation(index=index, ufrag=ufrag, pwd=pwd)
        self._generations.append(gen)
        return gen

    def _check_new_credentials(self, credentials: tuple[str, str]) -> None:
        validate_credentials(*credentials)
        if any(g.ufrag == credentials[0] for g in self._generations):
            raise IceError("a restart needs a new ufrag")

    def _trim_generations(self, now: float) -> None:
        """Bound memory when restarts pile up: drop the oldest unselected generations."""
        while len(self._generations) > self.config.max_generations:
            victim = next(
                (
                    g
                    for g in self._generations[:-1]
                    if self._selected is None or g.index != self._selected.generation
                ),
                None,
            )
            if victim is None:
                break
            self._release(victim)

    def _generation_by_local(self, ufrag: str) -> Generation | None:
        for gen in self._generations:
            if gen.ufrag == ufrag:
                return gen
        return None

    def _generation_for_remote(self, ufrag: str | None) -> Generation:
        if ufrag is None:
            for gen in reversed(self._generations):
                if gen.has_remote:
                    return gen
            raise UnknownGenerationError("no remote credentials have been set")
        for gen in self._generations:
            if gen.remote_ufrag == ufrag:
                return gen
        raise UnknownGenerationError(f"no generation has remote ufrag {ufrag!r}")

    def _release(self, gen: Generation) -> None:
        """Forget a generation: its credentials answer nothing any more."""
        if gen not in self._generations:
            return
        self._generations.remove(gen)
        self._relays.release_generation(gen)
        self._transactions.remove_where(lambda tx: tx.generation is gen)
        self._events.append(GenerationReleased(gen.index, gen.ufrag))
        logger.debug("released generation %d", gen.index)
        self._release_unused_bases()

    def _release_unused_bases(self) -> None:
        """Bases no live generation uses any more: forgotten, and reported to be closed."""
        if any(g.bases is None for g in self._generations):
            return  # a generation that has not gathered yet may use any base
        in_use = {b for g in self._generations for b in g.bases or ()}
        for base in [b for b in self._bases if b not in in_use]:
            self._bases.remove(base)
            self._events.append(BaseReleased(base))

    # ----------------------------------------------------------------- pairs and checks

    def _add_pair(
        self,
        gen: Generation,
        local: Candidate,
        remote: Candidate,
        now: float,
        *,
        learned: bool = False,
    ) -> CandidatePair | None:
        if family(local.host) != family(remote.host) or local.base is None:
            return None
        path = (local.base, remote.address)
        existing = gen.pairs_by_path.get(path)
        if existing is not None:
            return existing
        limit = self.config.max_pairs + (self.config.max_prflx_candidates if learned else 0)
        if len(gen.pairs) >= limit:
            self.counters["pair_over_limit"] += 1
            return None
        self._pair_counter += 1
        pair = CandidatePair(
            id=f"CP{gen.index}-{self._pair_counter}",
            local=local,
            remote=remote,
            priority=0,
            generation=gen.index,
            owner=gen,
        )
        pair.set_priority(self.controlling)
        # RFC 8445 §6.1.2.6: one Waiting pair per foundation, the rest Frozen.
        busy = any(
            p.local.foundation == local.foundation and p.state in PENDING_STATES for p in gen.pairs
        )
        pair.state = PairState.FROZEN if busy else PairState.WAITING
        gen.pairs.append(pair)
        gen.pairs_by_path[path] = pair
        gen.exhausted_at = None
        if gen.next_check_at < now:
            gen.next_check_at = now
        return pair

    def _find_pair(self, local: Address, remote: Address) -> CandidatePair | None:
        for gen in reversed(self._generations):
            pair = gen.pairs_by_path.get((local, remote))
            if pair is not None:
                return pair
        return None

    def _send_next_check(self, gen: Generation, now: float) -> bool:
        """Send one paced check: triggered first, then ordinary (RFC 8445 §6.1.4.2)."""
        while gen.triggered:
            pair = gen.triggered.popleft()
            if pair in gen.pairs and not pair.consent_revoked:
                self._send_check(gen, pair, now, nominate=False)
                return True
        ordinary = gen.next_ordinary_pair()
        if ordinary is None:
            return False
        self._send_check(gen, ordinary, now, nominate=False)
        return True

    def _check_request(
        self, gen: Generation, pair: CandidatePair | None, tid: bytes, nominate: bool
    ) -> bytes:
        assert gen.remote_ufrag is not None and gen.remote_pwd is not None
        local_pref = (pair.local.priority >> 8) & 0xFFFF if pair is not None else 0xFFFF
        # The encoded attributes by everything they hold: a consent check differs from the
        # last one on its pair only in its transaction id, so only the HMAC and the CRC
        # are computed again (issue 9).
        content = (gen.remote_ufrag, gen.ufrag, local_pref, nominate, self.controlling,
                   self.tie_breaker)  # fmt: skip
        templates = self._request_templates
        template = templates.get(content)
        if template is None:
            msg = stun.Message(
                method=stun.Method.BINDING,
                message_class=stun.MessageClass.REQUEST,
                transaction_id=tid,
                username=f"{gen.remote_ufrag}:{gen.ufrag}",
                # RFC 8445 §7.1.1: the priority a peer-reflexive candidate of ours would have.
                priority=candidate_priority("prflx", local_pref),
                use_candidate=nominate,
            )
            self._selector.stamp(msg, self.tie_breaker)
            if len(templates) >= 16:  # restarts change the ufrags: keep the cache small
                templates.clear()
            template = templates[content] = stun.encode_template(msg)
        msg_type, body = template
        return stun.sign(msg_type, tid, body, gen.remote_key())

    def _send_check(
        self, gen: Generation, pair: CandidatePair, now: float, *, nominate: bool
    ) -> None:
        """A connectivity check on `pair` (RFC 8445 §7.2.4), nominating or not."""
        transactions = self._transactions
        # A new check on a pair supersedes its outstanding one (RFC 8445 §7.2.5.4).
        for tx in transactions.live_checks(pair):
            if tx.nominate and not nominate:
                return  # never let an ordinary check cancel a nomination
            tx.cancel()
        tid = transactions.new_tid()
        data = self._check_request(gen, pair, tid, nominate)
        if pair.state is not PairState.SUCCEEDED:
            pair.state = PairState.IN_PROGRESS
        pair.requests_sent += 1
        gen.checks_sent = True
        tx = transactions.start(
            tid=tid, kind=TxKind.CHECK, data=data, local=pair.base, remote=pair.remote.address,
            generation=gen, now=now, rto=self.config.check_rto,
            max_attempts=self.config.max_check_attempts, pair=pair, nominate=nominate,
        )  # fmt: skip
        self._transmits.append(tx.transmit())

    def _transaction_timer(self, tx: Transaction, now: float) -> None:
        """A request's timeout: send it again, or act on its failure once attempts are spent."""
        again = self._transactions.retransmit(tx, now, self.config)
        if again is not None:
            self._transmits.append(again)
            if tx.pair is not None:
                tx.pair.requests_sent += 1
            return
        if tx.cancelled:
            return
        if tx.kind is TxKind.SRFLX:
            self._gathering.on_timeout(tx, now)
        elif tx.kind is TxKind.CHECK and tx.pair is not None:
            self._check_failed_pair(tx.generation, tx.pair, now)

    def _check_failed_pair(self, gen: Generation, pair: CandidatePair, now: float) -> None:
        if pair.state is not PairState.SUCCEEDED:
            pair.state = PairState.FAILED
        if gen.nominating is pair:
            gen.nominating = None
            pair.state = PairState.FAILED
        self._note_exhausted(gen, now)

    def _note_exhausted(self, gen: Generation, now: float) -> None:
        if gen.exhausted_at is None and gen.has_remote and not gen.checks_pending():
            if not any(p.state is PairState.SUCCEEDED for p in gen.pairs):
                gen.exhausted_at = now

    def _check_failed(self, gen: Generation, now: float) -> None:
        """Declare a generation failed when its checks are over without a pair."""
        if gen.failed or gen.selected is not None or gen.exhausted_at is None:
            return
        if gen.checks_pending() or any(p.state is PairState.SUCCEEDED for p in gen.pairs):
            gen.exhausted_at = None
            return
        if not gen.gathering_complete:
            return
        if gen.remote_end_of_candidates or now >= gen.exhausted_at + self.config.failed_timeout:
            gen.failed = True
            logger.info("generation %d failed: no pair worked", gen.index)

    # ----------------------------------------------------------------- STUN input

    def _receive_stun(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """One STUN datagram: the cheapest checks first, so junk costs next to nothing.

        Size, header and method from the raw bytes; a response's transaction id is looked
        up before anything is parsed; a request must pass `_screen_request` (FINGERPRINT,
        our ufrag) before it is decoded and its HMAC computed. Every drop is counted.
        """
        if len(data) > self.config.max_stun_size:
            self.counters["stun_oversize"] += 1
            return
        header = stun.read_header(data)
        if header is None:
            self.counters["stun_malformed"] += 1
            return
        method, message_class, tid = header
        if method != stun.Method.BINDING:
            self.counters["stun_unexpected_method"] += 1
            return
        if message_class is stun.MessageClass.REQUEST:
            if not self._screen_request(data, tid, local, remote, now):
                return
        elif message_class is stun.MessageClass.INDICATION:
            self.counters["stun_indication"] += 1  # RFC 7675 §5: indications are ignored
            return
        elif tid not in self._transactions:
            # RFC 5389 §7.3: a response must match a transaction in progress.
            self.counters["stun_unknown_transaction"] += 1
            return
        try:
            msg = stun.decode(data)
        except stun.StunError:
            self.counters["stun_malformed"] += 1
            return
        self._touched = True  # from here on the deadline may move: has_output() says so
        if message_class is stun.MessageClass.REQUEST:
            if not msg.has_fingerprint:  # from a known remote (the screen let it through)
                self.counters["stun_bad_fingerprint"] += 1
                return
            self._handle_request(msg, local, remote, now)
        else:
            self._handle_response(msg, local, remote, now)

    def _screen_request(
        self, data: bytes, tid: bytes, local: Address, remote: Address, now: float
    ) -> bool:
        """True when a request may be decoded and authenticated; else it was dropped.

        Nothing here builds a Message or computes an HMAC: a stranger's flood of junk or
        of requests meant for nobody here costs a CRC and a short attribute walk each.
        Requests from the remote address of a pair we have (consent checks, mostly) skip
        the screen: decoding and authenticating them is the work we are here for.
        """
        if local not in self._bases and not self._relays.is_relayed(local):
            self.counters["stun_on_unknown_base"] += 1
            return False
        pair = self._selected
        if pair is not None and pair.base == local and pair.remote.address == remote:
            return True
        if self._find_pair(local, remote) is not None:
            return True
        if not stun.fingerprint_ok(data):
            # RFC 8445 §7.2.2/§7.3: checks carry FINGERPRINT; RFC 5389 §7.3: a message
            # without a valid one is discarded silently (so there is nothing to reflect).
            self.counters["stun_bad_fingerprint"] += 1
            return False
        try:
            ours = stun.username_prefix(data)
        except stun.StunError:
            self.counters["stun_malformed"] += 1
            return False
        if ours is None:
            self.counters["stun_no_username"] += 1
            self._reject_unauthenticated(tid, local, remote, 400, "Bad Request", now)
            return False
        for gen in self._generations:
            if ours == gen.ufrag.encode():
                return True
        self.counters["stun_unknown_ufrag"] += 1
        self._reject_unauthenticated(tid, local, remote, 401, "Unauthorized", now)
        return False

    def _respond(
        self, msg: stun.Message, local: Address, remote: Address, key: stun.IntegrityKey | None
    ) -> None:
        self._transmits.append(
            Transmit(stun.encode(msg, integrity_key=key, fingerprint=True), local, remote)
        )

    def _reject(
        self, request: stun.Message, local: Address, remote: Address, code: int, reason: str
    ) -> None:
        """An unsigned error reply to an authenticated request's sender (not rate-limited)."""
        self.counters[f"stun_rejected_{code}"] += 1
        self._respond(stun.error_response(request, code, reason), local, remote, None)

    def _reject_unauthenticated(
        self, tid: bytes, local: Address, remote: Address, code: int, reason: str, now: float
    ) -> None:
        """A 400/401 to a request that failed authentication, within the reply budget.

        RFC 5389 §10.1.2 asks for the reply, but its destination is unverified: beyond
        IceConfig.error_reply_rate the reply is withheld (a reflection amplifier otherwise).
        """
        config = self.config
        if not self._error_replies.take(now, config.error_reply_rate, config.error_reply_burst):
            self.counters["stun_error_reply_rate_limited"] += 1
            return
        request = stun.Message(stun.Method.BINDING, stun.MessageClass.REQUEST, tid)
        self._reject(request, local, remote, code, reason)

    def _handle_request(
        self, msg: stun.Message, local: Address, remote: Address, now: float
    ) -> None:
        """RFC 8445 §7.3: authenticate, resolve role conflicts, answer, learn, trigger.

        `_screen_request` has already checked the base, FINGERPRINT and our ufrag.
        """
        tid = msg.transaction_id
        if msg.username is None or not msg.has_integrity:
            # RFC 5389 §10.1.2
            self.counters["stun_no_integrity"] += 1
            self._reject_unauthenticated(tid, local, remote, 400, "Bad Request", now)
            return
        ours, _, theirs = msg.username.partition(":")
        gen = self._generation_by_local(ours)
        if gen is None or not theirs:
            self.counters["stun_unknown_ufrag"] += 1
            self._reject_unauthenticated(tid, local, remote, 401, "Unauthorized", now)
            return
        key = gen.local_key()
        self.counters["stun_integrity_checked"] += 1
        if not stun.check_integrity(msg, key):
            self.counters["stun_bad_integrity"] += 1
            self._reject_unauthenticated(tid, local, remote, 401, "Unauthorized", now)
            return
        known = gen.pairs_by_path.get((local, remote))
        if known is not None and known.consent_revoked:
            # RFC 7675 §5.1: after consent is lost these credentials are never used on
            # that 5-tuple again, not even to answer (only a restart brings it back).
            self.counters["stun_on_revoked_pair"] += 1
            return
        if msg.unknown_required:
            # RFC 5389 §7.3: after authentication, so the 420 is signed (§10.1.2).
            unknown = msg.unknown_required
            self._respond(
                stun.error_response(msg, 420, "Unknown Attribute", unknown=unknown),
                local,
                remote,
                key,
            )
            self.counters["stun_rejected_420"] += 1
            return
        if msg.priority is None or (msg.ice_controlling is None and msg.ice_controlled is None):
            self._reject(msg, local, remote, 400, "Bad Request")  # RFC 8445 §7.1.1
            return
        if gen.has_remote and gen.remote_ufrag != theirs:
            # The peer's half of USERNAME names another of its generations (RFC 8445
            # §7.3.1.1 "ufrag:ufrag"): a check across generations. Answering it would let
            # the peer select a pair whose credentials neither side uses any more
            # (libwebrtc does exactly that); 401 as libwebrtc answers such checks.
            self.counters["stun_cross_generation"] += 1
            self._reject(msg, local, remote, 401, "Unauthorized")
            return
        if gen.bases is not None and local not in gen.bases:
            # Another generation's socket: no pair of this one can live there, and a
            # success answer would let the peer select a pair we never create.
            self.counters["stun_base_of_other_generation"] += 1
            return
        # Roles are judged on the newest generation only: while a restart's signaling is
        # in flight the peer's checks on the old pair may carry its previous role, and a
        # conflict there would flip the role the restart just set (docs/ice.md).
        if gen is self._generations[-1]:
            if gen.index > 0 and not gen.checks_sent:
                self._selector.adopt_role(msg)  # see Selector.adopt_role
            elif self._selector.role_conflict(msg, local, remote, key):
                return
        if gen.has_remote and not gen.draining and not self._can_learn(gen, local, remote):
            # Answering would let the peer select a pair we cannot have (issue 7): stay
            # silent, as for a lost packet; its check fails and it tries other pairs.
            self.counters["stun_check_not_learnable"] += 1
            return
        # What _respond(success_response(...)) sends, without building a Message (issue 9).
        self._transmits.append(Transmit(stun.binding_success(tid, remote, key), local, remote))
        pending = PendingCheck(local, remote, msg.priority, msg.use_candidate, theirs)
        if gen.draining:
            # Consent checks on an old generation: answered, and they count as receiving.
            pair = gen.pairs_by_path.get((local, remote))
            if pair is not None:
                pair.requests_received += 1
                pair.responses_sent += 1
                self._consent.mark_received(pair, now, check=True)
            return
        if not gen.has_remote:
            if len(gen.pending_checks) < self.config.max_pairs:
                gen.pending_checks.append(pending)  # RFC 8445 §7.3.1.3 (early checks)
            return
        self._learn_from_request(gen, pending, now)
        self._update_state(now)

    def _set_role(self, controlling: bool) -> None:
        """Take a role: its selector replaces the other's, and pair priorities follow."""
        if controlling == self.controlling:
            return
        self._selector = selector_for(controlling, self)
        for gen in self._generations:
            for pair in gen.pairs:
                pair.set_priority(controlling)
        self._events.append(RoleChanged(controlling))

    def _can_learn(self, gen: Generation, local: Address, remote: Address) -> bool:
        """True when a check from `remote` on `local` can have its pair in `gen`.

        Peer-reflexive candidates and their pairs have a budget of their own
        (max_prflx_candidates), so junk trickled by signaling cannot crowd out the
        candidate the peer really checks from.
        """
        if (local, remote) in gen.pairs_by_path:
            return True
        if not any(c.type in PAIRED_TYPES and c.base == local for c in gen.local_candidates):
            return False  # gathering has not reached this base yet
        known = any(c.address == remote for c in gen.remote_candidates)
        if not known and self._prflx_count(gen) >= self.config.max_prflx_candidates:
            return False
        return len(gen.pairs) < self.config.max_pairs + self.config.max_prflx_candidates

    @staticmethod
    def _prflx_count(gen: Generation) -> int:
        return sum(1 for c in gen.remote_candidates if c.type == "prflx")

    def _learn_from_request(self, gen: Generation, check: PendingCheck, now: float) -> None:
        """After answering a valid check: peer-reflexive candidate, pair, triggered check."""
        pair = gen.pairs_by_path.get((check.local, check.remote))
        # A pair's remote candidate is in remote_candidates (which only grows): the
        # search is for checks on a path without a pair (consent checks have one).
        remote = pair.remote if pair is not None else None
        if remote is None:
            remote = next((c for c in gen.remote_candidates if c.address == check.remote), None)
        if remote is None:
            if self._prflx_count(gen) >= self.config.max_prflx_candidates:
                self.counters["remote_candidate_over_limit"] += 1
                return
            remote = Candidate(
                foundation=foundation_for("prflx", check.remote[0]),
                component=1,
                transport="udp",
                priority=min(max(check.priority, 1), 2**31 - 1),
                host=check.remote[0],
                port=check.remote[1],
                type="prflx",
                ufrag=gen.remote_ufrag,
            )  # RFC 8445 §7.3.1.3
            gen.remote_candidates.append(remote)
        if pair is None:
            local = next(
                (
                    c
                    for c in gen.local_candidates
                    if c.type in PAIRED_TYPES and c.base == check.local
                ),
                None,
            )
            if local is None:
                return  # gathering has not reached this base yet
            pair = self._add_pair(gen, local, remote, now, learned=True)
            if pair is None:
                return
        pair.requests_received += 1
        pair.responses_sent += 1
        gen.hold_checks_until = None  # the peer has our answer: check freely
        self._consent.mark_received(pair, now, check=True)
        if check.use_candidate and self._selector.on_use_candidate(gen, pair, now):
            return  # RFC 8445 §7.3.1.5: the peer nominated a valid pair
        self._consent.maybe_follow(pair, now)
        if (
            pair.state in (PairState.FROZEN, PairState.WAITING, PairState.FAILED)
            and pair not in gen.triggered
            and gen is self._generations[-1]  # older generations check no more (handle_timer)
        ):
            if pair.state is PairState.FAILED:
                pair.state = PairState.WAITING
            gen.triggered.append(pair)  # RFC 8445 §7.3.1.4
            gen.exhausted_at = None
            # Skip the pacing wait when no check went out within the last Ta.
            if gen.next_check_at <= now:
                if self._send_next_check(gen, now):
                    gen.next_check_at = now + self.config.ta

    def _handle_response(
        self, msg: stun.Message, local: Address, remote: Address, now: float
    ) -> None:
        tx = self._transactions.get(msg.transaction_id)
        if tx is None:
            self.counters["stun_unknown_transaction"] += 1
            return
        if tx.kind is TxKind.SRFLX:
            self._transactions.remove(tx)
            self._gathering.on_response(tx, msg, now)
            return
        gen = tx.generation
        if not stun.check_integrity(msg, gen.remote_key()):
            self.counters["stun_response_bad_integrity"] += 1  # RFC 8445 §7.2.5.1: discard
            return
        self._transactions.remove(tx)
        pair = tx.pair
        assert pair is not None
        if (local, remote) != (tx.local, tx.remote):
            # RFC 8445 §7.2.5.2.1: a non-symmetric response fails the check.
            self._check_failed_pair(gen, pair, now)
            return
        if msg.message_class is stun.MessageClass.ERROR:
            self._handle_error_response(gen, tx, msg, now)
            return
        pair.responses_received += 1
        pair.record_rtt(now - tx.sent_at)
        pair.last_consent = now
        self._consent.mark_received(pair, now)
        if tx.kind is TxKind.CONSENT:
            # mark_received updated the state if this answer changed it; nothing else can.
            self._note_mapped(gen, pair, msg.xor_mapped_address, now)
            return
        self._check_succeeded(gen, pair, tx.nominate, now)
        self._note_mapped(gen, pair, msg.xor_mapped_address, now)

    def _handle_error_response(
        self, gen: Generation, tx: Transaction, msg: stun.Message, now: float
    ) -> None:
        pair = tx.pair
        assert pair is not None
        code = msg.error_code[0] if msg.error_code else 0
        if code == 487 and gen is not self._generations[-1]:
            self.counters["role_conflict_old_generation"] += 1  # see _handle_request
            return
        if code == 487:
            # RFC 8445 §7.2.5.1: take the role opposite to the one the check carried, "if
            # it has not already done so" (a second 487 must not flip it back), then check
            # the pair again (a consent check is simply repeated at its next interval).
            sent_controlling = stun.decode(tx.data).ice_controlling is not None
            self._set_role(not sent_controlling)
            if tx.kind is TxKind.CHECK:
                if gen.nominating is pair:
                    gen.nominating = None
                if not gen.draining:
                    gen.triggered.append(pair)
            return
        if code == 403:
            self._consent.revoke(pair, now, f"error {code}")  # RFC 7675 §5.2
            return
        if tx.kind is TxKind.CONSENT:
            # RFC 7675 §5.1: an error response does not refresh consent; only a 403 revokes
            # it at once, anything else lets it run out at consent_timeout.
            self.counters["consent_error_response"] += 1
            return
        self._check_failed_pair(gen, pair, now)
        self._update_state(now)

    def _note_mapped(
        self, gen: Generation, pair: CandidatePair, mapped: Address | None, now: float
    ) -> None:
        """RFC 8445 §7.2.5.3.1: the address the peer saw our check come from.

        The pair's local candidate becomes the candidate with that address (the srflx one
        behind a NAT; a new peer-reflexive one otherwise). A later change on the pair in
        use means a NAT rebound our mapping: reported, and healed without a restart (the
        controlling side's consent checks nominate, so the peer follows; docs/ice.md).
        """
        if mapped is None or pair.consent_revoked:
            return
        if mapped != pair.local.address:  # the usual answer needs no parsing
            try:
                mapped = (normalize_ip(mapped[0]), mapped[1])
            except ValueError:
                return
        first, pair.mapped_seen = not pair.mapped_seen, True
        if pair.local.address == mapped:
            return
        local = next(
            (c for c in gen.local_candidates if c.address == mapped and c.base == pair.base),
            None,
        )
        if local is None:
            if len(gen.local_candidates) >= self.config.max_local_candidates:
                self.counters["local_prflx_over_limit"] += 1
                return
            local = Candidate(
                foundation=foundation_for("prflx", pair.base[0]),
                component=1,
                transport="udp",
                priority=candidate_priority("prflx", (pair.local.priority >> 8) & 0xFFFF),
                host=mapped[0],
                port=mapped[1],
                type="prflx",
                related_address=pair.base[0],
                related_port=pair.base[1],
                generation=gen.index,
                ufrag=gen.ufrag,
                base=pair.base,
            )
            gen.local_candidates.append(local)  # never signalled (RFC 8445 §7.2.5.3.1)
        previous = pair.local
        pair.local = local
        if not first:
            self.counters["mapped_address_changed"] += 1
            logger.info(
                "%s: the peer now sees us at %s (was %s): NAT rebinding", pair.id, mapped,
                previous.address,
            )  # fmt: skip
            self._events.append(
                MappedAddressChanged(previous.address, mapped, gen.index, self.controlling)
            )

    def _check_succeeded(
        self, gen: Generation, pair: CandidatePair, nominated: bool, now: float
    ) -> None:
        """RFC 8445 §7.2.5.3: the pair is valid; unfreeze, nominate, select."""
        pair.state = PairState.SUCCEEDED
        gen.exhausted_at = None
        if gen.first_valid_at is None:
            gen.first_valid_at = now
        gen.unfreeze_foundation(pair.local.foundation)
        if gen.draining:
            return
        if self._selector.selects_on_success(pair, nominated):
            self._selector.select(gen, pair, now)
        else:
            self._selector.maybe_nominate(gen, now)
            self._consent.maybe_follow(pair, now)
        self._update_state(now)

    # ----------------------------------------------------------------- the pair in use

    def _use(self, gen: Generation, pair: CandidatePair, now: float) -> None:
        """Send data on `pair` from now on; report it; retire older generations."""
        current = self._selected
        self._selected = pair
        self._ever_connected = True
        self._consent.begin(pair, now)
        previous = current.generation if current is not None else None
        outage = (
            current is None
            or current.last_received is None
            or (now - current.last_received > OUTAGE_SILENCE)
        )
        self._events.append(
            SelectedPairChanged(pair.local, pair.remote, gen.index, previous, outage)
        )
        logger.info(
            "selected %s (generation %d) %s -> %s",
            pair.id,
            gen.index,
            pair.base,
            pair.remote.address,
        )
        retired = [g for g in self._generations if g.index < gen.index and not g.draining]
        for older in retired:
            older.draining_until = now + self.config.release_delay
            older.triggered.clear()
        if retired:  # they keep their consent checks, and nothing else
            self._transactions.remove_where(
                lambda tx: tx.generation in retired and tx.kind is not TxKind.CONSENT
            )
        self._update_state(now)

    def _lose_selected(self, now: float, why: str) -> None:
        pair = self._selected
        assert pair is not None
        self._selected = None
        gen = pair.owner
        if gen is not None:
            gen.selected = None
            if gen is self._generations[-1]:
                gen.failed = True
        self._events.append(SelectedPairChanged(None, None, None, pair.generation))
        logger.info("no selected pair any more: %s", why)

    def _early_check_from(self, local: Address, remote: Address) -> bool:
        gen = self._generations[-1]
        return any(p.local == local and p.remote == remote for p in gen.pending_checks)

    # ----------------------------------------------------------------- state

    def _update_state(self, now: float) -> None:
        self._relays.clock = max(self._relays.clock, now)  # what relayed sends are timed with
        pair = self._selected
        newest = self._generations[-1]
        receiving = (
            pair is not None
            and pair.last_received is not None
            # The same sum get_timer() announces: `now - last < timeout` can round the
            # other way at the deadline and leave the driver spinning on it.
            and now < pair.last_received + self.config.disconnected_timeout
        )
        self._receiving = receiving
        sel_gen = pair.owner if pair is not None else None
        completed = (
            sel_gen is not None
            and sel_gen.gathering_complete
            and sel_gen.remote_end_of_candidates
            and not sel_gen.checks_pending()
        )
        facts = StateFacts(
            closed=self._closed,
            has_selected=pair is not None,
            receiving=receiving,
            restarting=(pair is not None and newest.index > pair.generation)
            or (pair is None and newest.index > 0 and not newest.failed),
            newest_checking=newest.has_remote and bool(newest.remote_candidates or newest.pairs),
            newest_failed=newest.failed,
            completed=completed,
            ever_connected=self._ever_connected,
        )
        if facts == self._last_facts:
            return  # the state is derive_state(facts) alone: unchanged
        state = derive_state(facts)
        if state is IceTransportState.COMPLETED and self._state not in (
            IceTransportState.CONNECTED,
            IceTransportState.COMPLETED,
        ):
            self._set_state(IceTransportState.CONNECTED)  # browsers always pass through connected
        self._set_state(state)
        self._last_facts = facts

    def _set_state(self, state: IceTransportState) -> None:
        if state is not self._state:
            if state not in ALLOWED[self._state]:
                # A bug in derive_state or its facts: never report what webrtc-pc forbids.
                raise RuntimeError(f"ICE state {self._state.value} -> {state.value} is not allowed")
            previous, self._state = self._state, state
            self._events.append(StateChanged(state, previous))
            logger.debug("state %s -> %s", previous.value, state.value)
