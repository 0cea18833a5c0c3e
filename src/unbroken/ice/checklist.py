"""Candidate pairs and generations: the data the agent's check lists are made of.

A generation is one ICE session between one set of local credentials and one set of
remote credentials (RFC 8445 §9: a restart changes both). Each has its own candidates,
pairs, triggered-check queue and nomination; the agent keeps older generations alive
until a newer one selects a pair (make before break), then drains and drops them.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field

from .. import stun
from ..addresses import Address
from .candidate import Candidate, pair_priority


class PairState(enum.Enum):
    """RFC 8445 §6.1.2.6 candidate pair states."""

    FROZEN = "frozen"
    WAITING = "waiting"
    IN_PROGRESS = "in-progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


PENDING_STATES = frozenset({PairState.FROZEN, PairState.WAITING, PairState.IN_PROGRESS})


@dataclass(eq=False, slots=True)
class CandidatePair:
    """A local candidate (by its base) and a remote candidate, with check and traffic state.

    Slotted: over 30 fields, an instance dict no longer shares its keys (1.5 KB a pair).
    """

    id: str
    local: Candidate
    remote: Candidate
    priority: int
    generation: int  # the index of `owner`, for stats and events
    state: PairState = PairState.FROZEN
    nominated: bool = False
    use_candidate_received: bool = False
    consent_revoked: bool = False
    last_received: float | None = None
    last_consent: float | None = None
    # Our checks on the pair in use (consent.py): the next one consent needs at the
    # latest, when we last sent one (or began using the pair), where in the role's
    # keepalive span the next one falls (0..1, drawn per check); when the peer's last
    # check arrived, and the last answer to ours or data (last_received is either).
    next_keepalive: float | None = None
    last_check_sent: float = 0.0
    keepalive_draw: float = 0.0
    last_check_received: float | None = None
    last_answer_or_data: float | None = None
    last_sent: float | None = None  # application data, by IceAgent.send
    current_rtt: float | None = None
    total_rtt: float = 0.0
    rtt_samples: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    packets_sent: int = 0
    packets_received: int = 0
    requests_sent: int = 0
    requests_received: int = 0
    responses_sent: int = 0
    responses_received: int = 0
    consent_requests_sent: int = 0
    mapped_seen: bool = False  # a success response told us how the peer sees us
    # The generation the pair belongs to (`generation` is its index). The agent always
    # sets it; None only for a pair built on its own (priority arithmetic in tests).
    owner: Generation | None = field(default=None, repr=False)

    @property
    def base(self) -> Address:
        """The local transport address packets of this pair leave from."""
        assert self.local.base is not None
        return self.local.base

    @property
    def path(self) -> tuple[Address, Address]:
        """The 5-tuple (UDP implied): local base and remote address."""
        return (self.base, self.remote.address)

    def set_priority(self, controlling: bool) -> None:
        """Recompute the pair priority for our role (RFC 8445 §6.1.2.3)."""
        if controlling:
            self.priority = pair_priority(self.local.priority, self.remote.priority)
        else:
            self.priority = pair_priority(self.remote.priority, self.local.priority)

    def record_rtt(self, rtt: float) -> None:
        """Note one round-trip sample from a check or consent response."""
        self.current_rtt = rtt
        self.total_rtt += rtt
        self.rtt_samples += 1


@dataclass
class PendingCheck:
    """A valid check received before the peer's credentials were known (RFC 8445 §7.3.1.3)."""

    local: Address
    remote: Address
    priority: int
    use_candidate: bool
    remote_ufrag: str


@dataclass(eq=False)
class Generation:
    """One ICE session: local and remote credentials, candidates, check list."""

    index: int
    ufrag: str
    pwd: str
    remote_ufrag: str | None = None
    remote_pwd: str | None = None
    remote_lite: bool = False
    gathering_started: bool = False
    gathering_complete: bool = False
    gathering_pending: int = 0  # server queries (srflx; TURN allocations later) unanswered
    local_candidates: list[Candidate] = field(default_factory=list)
    remote_candidates: list[Candidate] = field(default_factory=list)
    remote_end_of_candidates: bool = False
    pairs: list[CandidatePair] = field(default_factory=list)
    pairs_by_path: dict[tuple[Address, Address], CandidatePair] = field(default_factory=dict)
    triggered: deque[CandidatePair] = field(default_factory=deque)
    pending_checks: list[PendingCheck] = field(default_factory=list)
    selected: CandidatePair | None = None
    nominating: CandidatePair | None = None
    first_valid_at: float | None = None
    next_check_at: float = 0.0
    exhausted_at: float | None = None
    failed: bool = False
    draining_until: float | None = None
    role_before_restart: bool | None = None  # restored if the restart is rolled back
    hold_checks_until: float | None = None  # answering a restart: see IceAgent.restart
    checks_sent: bool = False  # a check of ours went out (roles: see Selector.adopt_role)
    bases: list[Address] | None = None  # the sockets it gathers on (set when gathering starts)
    _local_key: stun.ShortTermKey | None = field(default=None, repr=False)
    _remote_key: stun.ShortTermKey | None = field(default=None, repr=False)

    def local_key(self) -> stun.ShortTermKey:
        """Our password's MESSAGE-INTEGRITY key, its HMAC state prepared once."""
        key = self._local_key
        if key is None or key.password != self.pwd:
            key = self._local_key = stun.ShortTermKey(self.pwd)
        return key

    def remote_key(self) -> stun.ShortTermKey:
        """The peer's password's key (set_remote may change the password: rebuilt then)."""
        assert self.remote_pwd is not None, "no remote credentials yet"
        key = self._remote_key
        if key is None or key.password != self.remote_pwd:
            key = self._remote_key = stun.ShortTermKey(self.remote_pwd)
        return key

    @property
    def has_remote(self) -> bool:
        """True once the peer's credentials for this generation are known."""
        return self.remote_pwd is not None

    @property
    def draining(self) -> bool:
        """True after a newer generation took over: receive only, send nothing."""
        return self.draining_until is not None

    def checks_pending(self) -> bool:
        """True while some pair may still be checked."""
        if self.triggered:
            return True
        for p in self.pairs:  # the state derivation asks after every input: no generator
            if p.state in PENDING_STATES:
                return True
        return False

    def has_waiting_work(self) -> bool:
        """True when a check could be sent at the next pacing slot."""
        if self.triggered:
            return True
        for p in self.pairs:  # get_timer asks after every input: no generator
            if p.state is PairState.WAITING or p.state is PairState.FROZEN:
                return True
        return False

    def next_ordinary_pair(self) -> CandidatePair | None:
        """RFC 8445 §6.1.4.2: the best Waiting pair, else unfreeze the best Frozen one."""
        waiting = [p for p in self.pairs if p.state is PairState.WAITING]
        if waiting:
            return max(waiting, key=lambda p: p.priority)
        frozen = [p for p in self.pairs if p.state is PairState.FROZEN]
        if frozen:
            return max(frozen, key=lambda p: p.priority)
        return None

    def unfreeze_foundation(self, foundation: str) -> None:
        """RFC 8445 §7.2.5.3.3: a success unfreezes pairs sharing its local foundation."""
        for p in self.pairs:
            if p.state is PairState.FROZEN and p.local.foundation == foundation:
                p.state = PairState.WAITING
