"""Unit tests of the sans-IO IceAgent: raw STUN bytes in, exact virtual times.

Two ways of driving it:
- a *lone* agent faced by a peer written by hand here: its checks are built with
  unbroken.stun and its answers to the agent's checks too, so every attribute, key and
  source address is under the test's control (forgeries, role conflicts, 403s);
- a `Duo`: two real agents joined in memory, each one's datagrams_to_send() moved into
  the other's receive(), with a virtual clock stepped from get_timer() to get_timer().

Time is exact: deadlines are asserted as the values the agent must compute.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import pytest

from unbroken import stun
from unbroken.addresses import Address, Transmit
from unbroken.ice import (
    Candidate,
    CandidateErrorEvent,
    Deadline,
    Event,
    GatheringComplete,
    GatheringStateChanged,
    GenerationReleased,
    IceAgent,
    IceConfig,
    IceError,
    IceGatheringState,
    IceTransportState,
    InvalidCredentialsError,
    LocalCandidateGathered,
    PairState,
    RoleChanged,
    SelectedPairChanged,
    StateChanged,
    UnknownGenerationError,
    candidate_priority,
    pair_priority,
)

S = IceTransportState

A_ADDR: Address = ("192.0.2.1", 40000)
B_ADDR: Address = ("198.51.100.1", 50000)
PEER: Address = ("203.0.113.9", 60000)  # the hand-written peer of a lone agent
PEER2: Address = ("203.0.113.10", 60001)
STRANGER: Address = ("203.0.113.66", 6666)
SERVER: Address = ("198.51.100.200", 3478)
PEER_UFRAG, PEER_PWD = "peerUfrag", "peerPasswordPeerPassword+/"
PEER_KEY = stun.short_term_key(PEER_PWD)
PEER_TB = 2**63  # the hand-written peer's tie-breaker
PRFLX = candidate_priority("prflx", 65535)
TID = bytes(range(1, 13))


# ------------------------------------------------------------------ raw STUN helpers


def make_request(
    username: str | None,
    key: bytes | None,
    *,
    tid: bytes = TID,
    priority: int | None = PRFLX,
    controlling: int | None = None,
    controlled: int | None = None,
    use_candidate: bool = False,
    other: Iterable[tuple[int, bytes]] = (),
) -> bytes:
    """A Binding request with exactly the given attributes."""
    msg = stun.Message(
        method=stun.Method.BINDING,
        message_class=stun.MessageClass.REQUEST,
        transaction_id=tid,
        username=username,
        priority=priority,
        ice_controlling=controlling,
        ice_controlled=controlled,
        use_candidate=use_candidate,
        other=list(other),
    )
    return stun.encode(msg, integrity_key=key, fingerprint=True)


def key_of(agent: IceAgent) -> bytes:
    return stun.short_term_key(agent.local_credentials[1])


def check_for(agent: IceAgent, **attrs: object) -> bytes:
    """A valid check from the hand-written peer (controlling unless told otherwise)."""
    if "controlling" not in attrs and "controlled" not in attrs:
        attrs["controlling"] = PEER_TB
    return make_request(
        f"{agent.local_credentials[0]}:{PEER_UFRAG}",
        key_of(agent),
        **attrs,  # type: ignore[arg-type]
    )


def decoded(out: list[Transmit]) -> list[tuple[Transmit, stun.Message]]:
    return [(t, stun.decode(t.data)) for t in out]


def requests_in(out: list[Transmit]) -> list[tuple[Transmit, stun.Message]]:
    return [(t, m) for t, m in decoded(out) if m.message_class is stun.MessageClass.REQUEST]


def responses_in(out: list[Transmit]) -> list[tuple[Transmit, stun.Message]]:
    return [(t, m) for t, m in decoded(out) if m.message_class is not stun.MessageClass.REQUEST]


def respond(
    agent: IceAgent,
    tx: Transmit,
    now: float,
    *,
    code: int | None = None,
    key: bytes | None = PEER_KEY,
    source: Address | None = None,
) -> None:
    """Answer the agent's request `tx` as the peer would (or as a forger would)."""
    req = stun.decode(tx.data)
    if code is None:
        msg = stun.success_response(req, xor_mapped_address=tx.local)
    else:
        msg = stun.error_response(req, code, "test")
    agent.receive(stun.encode(msg, integrity_key=key), tx.local, source or tx.remote, now)


def drain(agent: IceAgent) -> list[Event]:
    events = []
    while (event := agent.next_event()) is not None:
        events.append(event)
    return events


def snapshot(agent: IceAgent) -> tuple[object, ...]:
    """Everything a rejected input must leave untouched."""
    return (
        agent.state,
        agent.controlling,
        agent.selected_pair,
        [(p.id, p.state, p.priority) for p in agent.pairs()],
        [
            (len(g.remote_candidates), len(g.pending_checks), g.remote_ufrag)
            for g in agent.generations()
        ],
    )


def remote_cand(
    address: Address, priority: int = 2130706431, ufrag: str | None = None, **kw: object
) -> Candidate:
    fields: dict[str, object] = {
        "foundation": "1",
        "component": 1,
        "transport": "udp",
        "priority": priority,
        "host": address[0],
        "port": address[1],
        "type": "host",
        "ufrag": ufrag,
    }
    fields.update(kw)
    return Candidate(**fields)  # type: ignore[arg-type]


def lone(
    *,
    controlling: bool = False,
    config: IceConfig | None = None,
    seed: int = 1,
    now: float = 0.0,
    remote: bool = True,
) -> IceAgent:
    """An agent on base A_ADDR, gathered, with the hand-written peer's credentials."""
    agent = IceAgent(controlling=controlling, rng=random.Random(seed), config=config)
    agent.add_base(A_ADDR, now)
    agent.gather(now)
    if remote:
        agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, now)
    drain(agent)
    return agent


def established(
    *, controlling: bool = False, now: float = 0.0, config: IceConfig | None = None
) -> IceAgent:
    """A lone agent with a selected pair (A_ADDR, PEER), reached through real checks."""
    agent = lone(controlling=controlling, now=now, config=config)
    role = {"controlled": PEER_TB} if controlling else {"controlling": PEER_TB}
    agent.receive(check_for(agent, use_candidate=not controlling, **role), A_ADDR, PEER, now)
    for _ in range(3):
        reqs = requests_in(agent.datagrams_to_send())
        if agent.selected_pair is not None or not reqs:
            break
        for tx, _msg in reqs:
            respond(agent, tx, now)
    assert agent.selected_pair is not None and agent.selected_pair.path == (A_ADDR, PEER)
    assert agent.datagrams_to_send() == []
    drain(agent)
    return agent


def run_lone(
    agent: IceAgent,
    until: float,
    answer: Callable[[Transmit, stun.Message, float], None] | None = None,
) -> list[tuple[float, Transmit]]:
    """Step a lone agent's timers up to `until`; `answer` sees each request it sends."""
    sent: list[tuple[float, Transmit]] = []
    spins = 0
    last = -1.0
    while (timer := agent.get_timer()) is not None and timer.at <= until:
        spins = spins + 1 if timer.at == last else 0
        assert spins < 100, f"timer spin at {timer}"
        last = timer.at
        agent.handle_timer(timer.at)
        while out := agent.datagrams_to_send():  # answers may trigger more at once
            for tx in out:
                sent.append((timer.at, tx))
                msg = stun.decode(tx.data)
                if answer is not None and msg.message_class is stun.MessageClass.REQUEST:
                    answer(tx, msg, timer.at)
    return sent


# ------------------------------------------------------------------ two agents in memory


E = TypeVar("E", bound=Event)


class Duo:
    """Two agents joined by a lossless, zero-delay link, driven by a virtual clock."""

    def __init__(
        self,
        *,
        seed: int = 1,
        config: IceConfig | None = None,
        a_controlling: bool = True,
        b_controlling: bool = False,
        trickle: bool = True,
        end_of_candidates: bool = True,
    ) -> None:
        self.now = 0.0
        self.a = IceAgent(controlling=a_controlling, rng=random.Random(seed), config=config)
        self.b = IceAgent(controlling=b_controlling, rng=random.Random(seed + 1000), config=config)
        self.at = {A_ADDR: self.a, B_ADDR: self.b}
        self.events: dict[str, list[tuple[float, Event]]] = {"a": [], "b": []}
        self.app: dict[str, list[bytes]] = {"a": [], "b": []}
        self.wire: list[tuple[float, Transmit]] = []
        self.unrouted: list[Transmit] = []
        self.blocked: set[tuple[Address, Address]] = set()  # (source, destination) dropped
        self.trickle = trickle
        self.end_of_candidates = end_of_candidates

    def name(self, agent: IceAgent) -> str:
        return "a" if agent is self.a else "b"

    def other(self, agent: IceAgent) -> IceAgent:
        return self.b if agent is self.a else self.a

    def connect(self, limit: float = 2.0) -> None:
        self.a.add_base(A_ADDR, self.now)
        self.b.add_base(B_ADDR, self.now)
        self.a.set_remote_credentials(*self.b.local_credentials, self.now)
        self.b.set_remote_credentials(*self.a.local_credentials, self.now)
        self.a.gather(self.now)
        self.b.gather(self.now)
        self.pump()
        assert self.run_while(lambda: not (self.usable(self.a) and self.usable(self.b)), limit)

    @staticmethod
    def usable(agent: IceAgent) -> bool:
        return agent.state in (S.CONNECTED, S.COMPLETED)

    def restart(self) -> None:
        """a offers a restart and b answers with one of its own; both apply at once."""
        a_creds = self.a.restart(self.now)
        b_creds = self.b.restart(self.now)
        self.b.set_remote_credentials(*a_creds, self.now)
        self.a.set_remote_credentials(*b_creds, self.now, local_ufrag=a_creds[0])
        self.pump()

    def deliver(self, tx: Transmit) -> None:
        self.wire.append((self.now, tx))
        if (tx.local, tx.remote) in self.blocked:
            return
        dst = self.at.get(tx.remote)
        if dst is None:
            self.unrouted.append(tx)
            return
        payload = dst.receive(tx.data, tx.remote, tx.local, self.now)
        if payload is not None:
            self.app[self.name(dst)].append(payload)

    def send_app(self, agent: IceAgent, data: bytes) -> bool:
        tx = agent.send(data, self.now)
        if tx is not None:
            self.deliver(tx)
        return tx is not None

    def pump(self) -> None:
        """Move datagrams and trickle candidates until both agents are quiet."""
        busy = True
        while busy:
            busy = False
            for agent in (self.a, self.b):
                out = agent.drain()  # the runtime's and the simulator's drain routine too
                self._on_events(agent, out.events)
                for tx in out.transmits:
                    busy = True
                    self.deliver(tx)

    def _on_events(self, agent: IceAgent, events: list[Event]) -> None:
        other = self.other(agent)
        for event in events:
            self.events[self.name(agent)].append((self.now, event))
            if not self.trickle:
                continue
            if isinstance(event, LocalCandidateGathered):
                cand = event.candidate.with_ufrag(event.ufrag, event.generation)
                other.add_remote_candidate(cand, self.now)
            elif isinstance(event, GatheringComplete) and self.end_of_candidates:
                other.end_of_remote_candidates(self.now, event.ufrag)

    def next_deadline(self) -> float | None:
        times = [t.at for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        return min(times) if times else None

    def run(self, duration: float) -> None:
        end = self.now + duration
        self.run_while(lambda: True, duration)
        self.now = end

    def run_while(self, cond: Callable[[], bool], limit: float) -> bool:
        """Step timers while `cond()` holds, for at most `limit` seconds; True if it stopped."""
        end = self.now + limit
        spins = 0
        while cond():
            deadline = self.next_deadline()
            if deadline is None or deadline > end:
                return False
            spins = spins + 1 if deadline <= self.now else 0
            assert spins < 100, "an agent keeps asking for the same instant"
            self.now = max(self.now, deadline)
            for agent in (self.a, self.b):
                timer = agent.get_timer()
                if timer is not None and timer.at <= self.now:
                    agent.handle_timer(self.now)
            self.pump()
        return True

    def of(self, name: str, kind: type[E]) -> list[tuple[float, E]]:
        """The (time, event) pairs of one kind that agent `name` reported."""
        return [(t, e) for t, e in self.events[name] if isinstance(e, kind)]


@pytest.fixture
def duo() -> Duo:
    d = Duo()
    d.connect()
    return d


# ------------------------------------------------------------------ authentication


def test_valid_check_is_answered_and_learned() -> None:
    agent = lone()
    agent.receive(check_for(agent, priority=12345), A_ADDR, PEER, 0.0)
    out = decoded(agent.datagrams_to_send())
    assert [m.message_class for _, m in out] == [
        stun.MessageClass.SUCCESS,
        stun.MessageClass.REQUEST,
    ]
    (resp_tx, resp), (check_tx, check) = out
    assert (resp_tx.local, resp_tx.remote) == (A_ADDR, PEER)
    assert resp.transaction_id == TID and resp.xor_mapped_address == PEER
    assert stun.check_integrity(resp, key_of(agent)) and resp.has_fingerprint
    assert resp.username is None  # RFC 5389 §10.1.2: no USERNAME in responses
    # The triggered check goes back at once (RFC 8445 §7.3.1.4), signed with the peer's pwd.
    assert (check_tx.local, check_tx.remote) == (A_ADDR, PEER)
    assert check.username == f"{PEER_UFRAG}:{agent.local_credentials[0]}"
    assert stun.check_integrity(check, PEER_KEY)
    assert check.ice_controlled == agent.tie_breaker and check.ice_controlling is None
    # A peer-reflexive candidate with the request's PRIORITY (RFC 8445 §7.3.1.3).
    (gen,) = agent.generations()
    (prflx,) = gen.remote_candidates
    assert (prflx.type, prflx.address, prflx.priority, prflx.ufrag) == (
        "prflx",
        PEER,
        12345,
        PEER_UFRAG,
    )
    assert agent.state is S.CHECKING


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("wrong local ufrag", 401),
        ("no remote ufrag", 401),
        ("wrong password", 401),
        ("no integrity", 400),
        ("no username", 400),
        ("no priority", 400),
        ("no role", 400),
    ],
)
def test_bad_checks_are_rejected_and_change_nothing(case: str, code: int) -> None:
    agent = lone()
    ufrag = agent.local_credentials[0]
    good = f"{ufrag}:{PEER_UFRAG}"
    data = {
        "wrong local ufrag": make_request(f"xx{ufrag}:{PEER_UFRAG}", key_of(agent), controlling=1),
        "no remote ufrag": make_request(f"{ufrag}:", key_of(agent), controlling=1),
        "wrong password": make_request(good, b"not the password", controlling=1),
        "no integrity": make_request(good, None, controlling=1),
        "no username": make_request(None, key_of(agent), controlling=1),
        "no priority": make_request(good, key_of(agent), controlling=1, priority=None),
        "no role": make_request(good, key_of(agent)),
    }[case]
    before, timer = snapshot(agent), agent.get_timer()
    for source in (PEER, STRANGER):
        assert agent.receive(data, A_ADDR, source, 0.0) is None
        ((tx, resp),) = decoded(agent.datagrams_to_send())
        assert tx.remote == source and resp.message_class is stun.MessageClass.ERROR
        assert resp.error_code is not None and resp.error_code[0] == code
        if code == 401:
            # RFC 5389 §10.1.2: the key is unknown, so no MESSAGE-INTEGRITY.
            assert not resp.has_integrity
    assert snapshot(agent) == before
    assert agent.counters[f"stun_rejected_{code}"] == 2
    assert drain(agent) == [] and agent.get_timer() == timer


def test_wrong_password_before_remote_credentials_is_not_kept_as_early_check() -> None:
    agent = lone(remote=False)
    agent.receive(
        make_request(f"{agent.local_credentials[0]}:{PEER_UFRAG}", b"x", controlling=1),
        A_ADDR,
        PEER,
        0.0,
    )
    agent.datagrams_to_send()
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, 0.0)
    assert agent.pairs() == [] and agent.datagrams_to_send() == []


def test_unknown_comprehension_required_attribute_gets_420() -> None:
    agent = lone()
    before = snapshot(agent)
    data = check_for(agent, other=[(0x7F01, b"abcd"), (0x7F02, b"")])
    agent.receive(data, A_ADDR, PEER, 0.0)
    ((_, resp),) = decoded(agent.datagrams_to_send())
    assert resp.error_code is not None and resp.error_code[0] == 420
    assert resp.unknown_attributes == (0x7F01, 0x7F02)
    # RFC 5389 §7.3, §10.1.2: checked after authentication, so the answer is signed.
    assert stun.check_integrity(resp, key_of(agent))
    assert snapshot(agent) == before and agent.counters["stun_rejected_420"] == 1


def test_unknown_attribute_in_unauthenticated_request_gets_401_not_420() -> None:
    agent = lone()
    data = make_request(
        f"{agent.local_credentials[0]}:{PEER_UFRAG}", b"bad", controlling=1, other=[(0x7F01, b"")]
    )
    agent.receive(data, A_ADDR, STRANGER, 0.0)
    ((_, resp),) = decoded(agent.datagrams_to_send())
    assert resp.error_code is not None and resp.error_code[0] == 401


def test_unknown_comprehension_optional_attribute_is_ignored() -> None:
    agent = lone()
    agent.receive(check_for(agent, other=[(0xC0FF, b"xyz")]), A_ADDR, PEER, 0.0)
    out = decoded(agent.datagrams_to_send())
    assert out[0][1].message_class is stun.MessageClass.SUCCESS


def test_check_on_unknown_base_is_dropped_and_counted() -> None:
    agent = lone()
    agent.receive(check_for(agent), ("192.0.2.99", 1), PEER, 0.0)
    assert agent.datagrams_to_send() == [] and agent.pairs() == []
    assert agent.counters["stun_on_unknown_base"] == 1


def test_early_check_is_learned_once_credentials_arrive() -> None:
    # RFC 8445 §7.3.1.3: a check may beat the answer; it is answered and remembered.
    agent = lone(remote=False)
    agent.receive(check_for(agent, use_candidate=True), A_ADDR, PEER, 0.0)
    ((_, resp),) = decoded(agent.datagrams_to_send())
    assert resp.message_class is stun.MessageClass.SUCCESS
    assert agent.pairs() == []
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, 0.5)
    ((tx, check),) = requests_in(agent.datagrams_to_send())
    assert tx.remote == PEER and check.username == f"{PEER_UFRAG}:{agent.local_credentials[0]}"
    (pair,) = agent.pairs()
    assert pair.use_candidate_received and agent.selected_pair is None
    respond(agent, tx, 0.5)
    assert agent.selected_pair is pair


def test_early_check_for_other_remote_ufrag_is_not_learned() -> None:
    agent = lone(remote=False)
    data = make_request(f"{agent.local_credentials[0]}:otherUfrag", key_of(agent), controlling=1)
    agent.receive(data, A_ADDR, PEER, 0.0)
    agent.datagrams_to_send()
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, 0.0)
    assert agent.pairs() == [] and agent.datagrams_to_send() == []


# ------------------------------------------------------------------ selection needs a valid check


def test_use_candidate_alone_selects_nothing() -> None:
    agent = lone()
    agent.receive(check_for(agent, use_candidate=True), A_ADDR, PEER, 0.0)
    ((tx, _),) = requests_in(agent.datagrams_to_send())
    assert agent.selected_pair is None
    # A forged answer (wrong key, then no integrity) is discarded; retransmits go on.
    respond(agent, tx, 0.01, key=b"forged")
    respond(agent, tx, 0.01, key=None)
    assert agent.selected_pair is None
    assert agent.counters["stun_response_bad_integrity"] == 2
    (pair,) = agent.pairs()
    assert pair.state is PairState.IN_PROGRESS
    assert agent.get_timer() == Deadline(0.1, "check retransmit")
    respond(agent, tx, 0.02)
    assert agent.selected_pair is pair


@pytest.mark.parametrize("source", [STRANGER, (PEER[0], PEER[1] + 1)])
def test_response_from_other_address_fails_the_pair(source: Address) -> None:
    # RFC 8445 §7.2.5.2.1: source and destination must be symmetric.
    agent = lone()
    agent.receive(check_for(agent, use_candidate=True), A_ADDR, PEER, 0.0)
    ((tx, _),) = requests_in(agent.datagrams_to_send())
    respond(agent, tx, 0.01, source=source)
    (pair,) = agent.pairs()
    assert pair.state is PairState.FAILED and agent.selected_pair is None
    assert not any(isinstance(e, SelectedPairChanged) for e in drain(agent))
    # The genuine answer, arriving later, belongs to no transaction any more.
    respond(agent, tx, 0.02)
    assert agent.selected_pair is None and agent.counters["stun_unknown_transaction"] == 1


def test_forged_answer_to_nomination_does_not_select() -> None:
    agent = lone(controlling=True)
    agent.receive(check_for(agent, controlled=PEER_TB), A_ADDR, PEER, 0.0)
    ((tx, check),) = requests_in(agent.datagrams_to_send())
    respond(agent, tx, 0.0)
    ((tx, nomination),) = requests_in(agent.datagrams_to_send())
    assert nomination.use_candidate and not check.use_candidate
    respond(agent, tx, 0.0, key=stun.short_term_key("x" * 22))
    respond(agent, tx, 0.0, source=STRANGER)
    assert agent.selected_pair is None


def test_response_with_unknown_transaction_is_counted() -> None:
    agent = established()
    before = snapshot(agent)
    resp = stun.Message(stun.Method.BINDING, stun.MessageClass.SUCCESS, bytes(12))
    agent.receive(stun.encode(resp, integrity_key=PEER_KEY), A_ADDR, PEER, 1.0)
    assert agent.counters["stun_unknown_transaction"] == 1 and snapshot(agent) == before


# ------------------------------------------------------------------ role conflicts (RFC 8445 §7.3.1.1)


def test_tie_breakers_are_64_bit_and_differ() -> None:
    a = IceAgent(controlling=True, rng=random.Random(1))
    b = IceAgent(controlling=True, rng=random.Random(2))
    assert 0 < a.tie_breaker < 2**64 - 1 and a.tie_breaker != b.tie_breaker


@pytest.mark.parametrize("delta", [-1, 0])
def test_controlling_with_larger_or_equal_tie_breaker_answers_487(delta: int) -> None:
    agent = lone(controlling=True)
    before = snapshot(agent)
    data = check_for(agent, controlling=agent.tie_breaker + delta)
    agent.receive(data, A_ADDR, PEER, 0.0)
    ((_, resp),) = decoded(agent.datagrams_to_send())
    assert resp.error_code is not None and resp.error_code[0] == 487
    assert stun.check_integrity(resp, key_of(agent))
    assert agent.controlling and snapshot(agent) == before
    assert drain(agent) == [] and agent.counters["stun_rejected_487"] == 1


def test_controlling_with_smaller_tie_breaker_becomes_controlled() -> None:
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER2, priority=1000), 0.0)
    (old_pair,) = agent.pairs()
    local = old_pair.local.priority
    assert old_pair.priority == pair_priority(local, 1000)
    agent.receive(check_for(agent, controlling=agent.tie_breaker + 1), A_ADDR, PEER, 0.0)
    (resp_tx, resp), *_ = decoded(agent.datagrams_to_send())
    assert resp.message_class is stun.MessageClass.SUCCESS
    assert not agent.controlling
    assert RoleChanged(False) in drain(agent)
    # Pair priorities follow the new role (RFC 8445 §6.1.2.3).
    assert old_pair.priority == pair_priority(1000, local)


@pytest.mark.parametrize("delta", [-1, 0])
def test_controlled_with_smaller_or_equal_tie_breaker_becomes_controlling(delta: int) -> None:
    agent = lone(controlling=False)
    data = check_for(agent, controlled=agent.tie_breaker - 1 - delta)
    agent.receive(data, A_ADDR, PEER, 0.0)
    out = decoded(agent.datagrams_to_send())
    assert out[0][1].message_class is stun.MessageClass.SUCCESS
    assert agent.controlling and RoleChanged(True) in drain(agent)
    # Its own checks now carry ICE-CONTROLLING.
    ((_, check),) = [(t, m) for t, m in out if m.message_class is stun.MessageClass.REQUEST]
    assert check.ice_controlling == agent.tie_breaker and check.ice_controlled is None


def test_controlled_with_larger_tie_breaker_does_not_switch() -> None:
    # Our tie-breaker is compared with theirs: theirs is bigger, so they must switch.
    agent = lone(controlling=False)
    agent.receive(check_for(agent, controlled=agent.tie_breaker + 1), A_ADDR, PEER, 0.0)
    ((_, resp),) = decoded(agent.datagrams_to_send())
    assert resp.error_code is not None and resp.error_code[0] == 487
    assert not agent.controlling and drain(agent) == [] and agent.pairs() == []


def test_our_check_answered_487_switches_role_and_rechecks() -> None:
    # RFC 8445 §7.2.5.1.
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    (tx, check), *_ = requests_in([t for _, t in run_lone(agent, 0.0)])
    assert check.ice_controlling == agent.tie_breaker
    respond(agent, tx, 0.001, code=487)
    assert not agent.controlling and RoleChanged(False) in drain(agent)
    # The pair is checked again, at the next pacing slot, in the new role.
    timer = agent.get_timer()
    assert timer is not None and timer.at == 0.02 and timer.reason == "pacing generation 0"
    ((_, again),) = requests_in([t for _, t in run_lone(agent, 0.02)])
    assert again.ice_controlled == agent.tie_breaker and again.transaction_id != tid_of(tx)


def tid_of(tx: Transmit) -> bytes:
    return stun.decode(tx.data).transaction_id


def test_two_487s_for_checks_sent_in_one_role_switch_once() -> None:
    # "switch to the controlled role if it has not already done so" (RFC 8445 §7.2.5.1).
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    agent.add_remote_candidate(remote_cand(PEER2, priority=1000), 0.0)
    sent = [t for _, t in run_lone(agent, 0.02)]
    assert [t.remote for t in sent] == [PEER, PEER2]
    for tx in sent:
        respond(agent, tx, 0.03, code=487)
    assert not agent.controlling
    assert [e for e in drain(agent) if isinstance(e, RoleChanged)] == [RoleChanged(False)]


def test_487_with_bad_integrity_is_ignored() -> None:
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    ((_, tx),) = run_lone(agent, 0.0)
    drain(agent)
    respond(agent, tx, 0.001, code=487, key=b"forged")
    assert agent.controlling and drain(agent) == []


@pytest.mark.parametrize("both_controlling", [True, False])
def test_two_agents_in_the_same_role_resolve_it(both_controlling: bool) -> None:
    d = Duo(a_controlling=both_controlling, b_controlling=both_controlling)
    d.connect()
    assert d.a.controlling != d.b.controlling
    # RFC 8445 §7.3.1.1: the larger tie-breaker ends up controlling; only the agent
    # that had the wrong role switches, once.
    winner = d.a if d.a.tie_breaker > d.b.tie_breaker else d.b
    loser = d.other(winner)
    assert winner.controlling and not loser.controlling
    switched, kept = (loser, winner) if both_controlling else (winner, loser)
    assert [e for _, e in d.of(d.name(switched), RoleChanged)] == [RoleChanged(switched is winner)]
    assert d.of(d.name(kept), RoleChanged) == []
    a_pair, b_pair = d.a.selected_pair, d.b.selected_pair
    assert a_pair is not None and b_pair is not None
    assert a_pair.path == (A_ADDR, B_ADDR) and b_pair.path == (B_ADDR, A_ADDR)
    assert a_pair.priority == b_pair.priority  # both sides agree once roles are settled


# ------------------------------------------------------------------ remote ICE-lite


def test_remote_lite_peer_makes_us_controlling_and_we_nominate() -> None:
    agent = lone(remote=False)
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, 0.0, lite=True)
    assert agent.controlling and drain(agent) == [RoleChanged(True)]
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    seen: list[stun.Message] = []

    def lite_answers(tx: Transmit, msg: stun.Message, now: float) -> None:
        # The lite side only answers (RFC 8445 §2.5), after checking our credentials.
        assert stun.check_integrity(msg, PEER_KEY)
        assert msg.ice_controlling is not None
        seen.append(msg)
        respond(agent, tx, now)

    run_lone(agent, 0.1, lite_answers)
    assert [m.use_candidate for m in seen] == [False, True]
    pair = agent.selected_pair
    assert pair is not None and pair.path == (A_ADDR, PEER) and pair.nominated
    assert agent.state is S.CONNECTED


def test_lite_agent_and_controlling_full_agent_connect_in_a_duo() -> None:
    # b declared lite to a: a stays controlling, b never has to nominate.
    d = Duo()
    d.a.add_base(A_ADDR, 0.0)
    d.b.add_base(B_ADDR, 0.0)
    d.a.set_remote_credentials(*d.b.local_credentials, 0.0, lite=True)
    d.b.set_remote_credentials(*d.a.local_credentials, 0.0)
    d.a.gather(0.0)
    d.b.gather(0.0)
    d.pump()
    assert d.run_while(lambda: d.b.selected_pair is None or d.a.selected_pair is None, 1.0)
    assert d.a.controlling and not d.b.controlling


# ------------------------------------------------------------------ credentials


@pytest.mark.parametrize(
    ("ufrag", "pwd"),
    [
        ("abc", "a" * 22),  # ufrag shorter than 4
        ("abcd", "a" * 21),  # pwd shorter than 22
        ("a" * 257, "a" * 22),
        ("abcd", "a" * 257),
        ("ab:d", "a" * 22),
        ("abcd", "a" * 21 + "="),
        ("abcd", "a" * 21 + "\u00e9"),
        ("ab d", "a" * 22),
        ("", ""),
    ],
)
def test_invalid_remote_credentials_raise(ufrag: str, pwd: str) -> None:
    agent = lone(remote=False)
    with pytest.raises(InvalidCredentialsError):
        agent.set_remote_credentials(ufrag, pwd, 0.0)
    assert agent.remote_credentials is None
    assert issubclass(InvalidCredentialsError, ValueError)


def test_credentials_bounds_are_accepted() -> None:
    agent = lone(remote=False)
    agent.set_remote_credentials("a+/9", "b" * 22, 0.0)
    assert agent.remote_credentials == ("a+/9", "b" * 22)
    other = lone(remote=False)
    other.set_remote_credentials("a" * 256, "b" * 256, 0.0)


def test_changed_remote_credentials_without_restart_are_refused() -> None:
    agent = lone()
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, 0.0)  # the same again: fine
    with pytest.raises(IceError):
        agent.set_remote_credentials("otherUfrag", PEER_PWD, 0.0)
    agent.restart(0.0)
    with pytest.raises(IceError):  # an older generation's remote ufrag
        agent.set_remote_credentials(PEER_UFRAG, "c" * 22, 0.0)
    with pytest.raises(UnknownGenerationError):
        agent.set_remote_credentials("newUfrag", "c" * 22, 0.0, local_ufrag="nope")


def test_restart_needs_new_valid_credentials() -> None:
    agent = lone()
    with pytest.raises(IceError):
        agent.restart(0.0, credentials=agent.local_credentials)
    with pytest.raises(InvalidCredentialsError):
        agent.restart(0.0, credentials=("abc", "x" * 22))
    ufrag, pwd = agent.restart(0.0)
    assert agent.local_credentials == (ufrag, pwd) and agent.generation == 1
    assert len(ufrag) >= 4 and len(pwd) >= 22


# ------------------------------------------------------------------ remote candidates


def test_unknown_ufrag_raises_unknown_generation() -> None:
    agent = lone()
    with pytest.raises(UnknownGenerationError):
        agent.add_remote_candidate(remote_cand(PEER, ufrag="nobody"), 0.0)
    with pytest.raises(UnknownGenerationError):
        agent.end_of_remote_candidates(0.0, "nobody")
    fresh = lone(remote=False)
    with pytest.raises(UnknownGenerationError):
        fresh.add_remote_candidate(remote_cand(PEER), 0.0)  # no description applied yet
    assert issubclass(UnknownGenerationError, ValueError)


@pytest.mark.parametrize(
    "bogus",
    [
        {"host": "not-an-ip"},
        {"host": "example.com"},
        {"host": "fe80::1%eth0"},
        {"host": ""},
        {"port": 0},
        {"port": 65536},
        {"port": -1},
        {"priority": 0},
        {"priority": 2**31},
        {"priority": 10**30},
        {"type": "foo"},
        {"transport": "tcp"},
        {"transport": "sctp"},
        {"component": 2},
    ],
    ids=repr,
)
def test_bogus_candidates_are_dropped_and_counted(bogus: dict[str, Any]) -> None:
    agent = lone()
    before = snapshot(agent)
    cand = dataclasses.replace(remote_cand(PEER), **bogus)
    assert agent.add_remote_candidate(cand, 0.0) is False
    assert snapshot(agent) == before
    assert sum(agent.counters.values()) == 1


def test_candidate_address_is_normalized() -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    agent.add_base(("2001:db8::1", 5000), 0.0)
    agent.gather(0.0)
    agent.set_remote_credentials(PEER_UFRAG, PEER_PWD, 0.0)
    assert agent.add_remote_candidate(remote_cand(("2001:DB8:0::2", 9)), 0.0)
    (pair,) = agent.pairs()
    assert pair.remote.address == ("2001:db8::2", 9)


def test_duplicate_and_other_family_candidates() -> None:
    agent = lone()
    assert agent.add_remote_candidate(remote_cand(PEER), 0.0)
    assert agent.add_remote_candidate(remote_cand(PEER, priority=5), 0.0) is False
    assert agent.counters["remote_candidate_duplicate"] == 1
    # IPv6 against an IPv4-only agent: kept, but nothing to pair it with.
    assert agent.add_remote_candidate(remote_cand(("2001:db8::9", 9)), 0.0)
    assert len(agent.pairs()) == 1


def test_limits_on_candidates_and_pairs() -> None:
    agent = lone(config=IceConfig(max_remote_candidates=5, max_pairs=3))
    added = [
        agent.add_remote_candidate(remote_cand((f"203.0.113.{i}", 9)), 0.0) for i in range(1, 8)
    ]
    assert added == [True] * 5 + [False] * 2
    assert agent.counters["remote_candidate_over_limit"] == 2
    assert len(agent.pairs()) == 3 and agent.counters["pair_over_limit"] == 2
    # Peer-reflexive candidates learned from authenticated checks have a budget of their
    # own: junk trickled through signaling cannot crowd out the address the peer really
    # checks from, and a check is answered only when its pair exists (issue 7.3: the peer
    # selected a pair we never created, and the session stayed half-connected).
    agent.receive(check_for(agent), A_ADDR, ("203.0.113.200", 9), 0.0)
    ((_, resp),) = responses_in(agent.datagrams_to_send())
    assert resp.message_class is stun.MessageClass.SUCCESS
    assert len(agent.generations()[0].remote_candidates) == 6
    assert (A_ADDR, ("203.0.113.200", 9)) in agent.generations()[0].pairs_by_path
    assert agent.counters["remote_candidate_over_limit"] == 2


def test_trickled_candidates_at_any_time_of_their_generation() -> None:
    agent = lone()
    assert agent.add_remote_candidate(remote_cand(PEER), 0.0)
    run_lone(agent, 0.05)  # checks under way
    assert agent.add_remote_candidate(remote_cand(PEER2, ufrag=PEER_UFRAG), 0.06)
    assert {p.remote.address for p in agent.pairs()} == {PEER, PEER2}
    sel = established()
    assert sel.add_remote_candidate(remote_cand(PEER2), 1.0)  # after selection
    assert sel.selected_pair is not None and sel.selected_pair.path == (A_ADDR, PEER)


def test_candidates_after_end_of_candidates_are_ignored() -> None:
    # RFC 8838 §13: "it MUST ignore any newly received candidates".
    agent = lone()
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    agent.end_of_remote_candidates(0.0, PEER_UFRAG)
    assert agent.add_remote_candidate(remote_cand(PEER2), 0.1) is False
    assert agent.counters["remote_candidate_after_end"] == 1
    assert [p.remote.address for p in agent.pairs()] == [PEER]


def test_end_of_candidates_before_any_candidate() -> None:
    agent = lone()
    agent.end_of_remote_candidates(0.0)
    assert agent.generations()[0].remote_end_of_candidates
    # A peer-reflexive candidate from a check is still learned (RFC 8838 §13 is about
    # trickled candidates).
    agent.receive(check_for(agent), A_ADDR, PEER, 0.0)
    assert len(agent.pairs()) == 1


def test_old_generation_candidates_never_pair_with_the_new_one() -> None:
    duo = Duo(end_of_candidates=False)
    duo.connect()
    old_b_ufrag = duo.b.generations()[0].ufrag
    duo.restart()
    new_b_ufrag = duo.b.local_credentials[0]
    old_gen, new_gen = duo.a.generations()
    assert old_gen.remote_ufrag == old_b_ufrag and new_gen.remote_ufrag == new_b_ufrag
    x = ("198.51.100.77", 7)
    # Before the new generation has selected: the old one is live, so it takes it.
    assert duo.a.add_remote_candidate(remote_cand(x, ufrag=old_b_ufrag), duo.now)
    assert x in {p.remote.address for p in old_gen.pairs}
    assert x not in {p.remote.address for p in new_gen.pairs}
    duo.run_while(lambda: duo.a.selected_pair is None or duo.a.selected_pair.generation < 1, 1.0)
    assert all(p.remote.ufrag == new_b_ufrag for p in new_gen.pairs)
    # Now it drains: more candidates for it are dropped and counted.
    y = ("198.51.100.78", 7)
    assert duo.a.add_remote_candidate(remote_cand(y, ufrag=old_b_ufrag), duo.now) is False
    assert duo.a.counters["remote_candidate_old_generation"] == 1
    assert y not in {p.remote.address for p in duo.a.pairs()}
    # No ufrag means the newest generation (RFC 8838 §13).
    assert duo.a.add_remote_candidate(remote_cand(y), duo.now)
    assert y in {p.remote.address for p in new_gen.pairs}
    # Once released, the old ufrag is unknown.
    duo.run(4.0)
    with pytest.raises(UnknownGenerationError):
        duo.a.add_remote_candidate(remote_cand(("198.51.100.79", 7), ufrag=old_b_ufrag), duo.now)


def test_checks_with_old_generation_credentials_do_not_reach_the_new_one(duo: Duo) -> None:
    old_a_ufrag = duo.a.local_credentials[0]
    old_b_ufrag, old_b_pwd = duo.b.local_credentials
    duo.restart()
    duo.run(0.5)
    old_gen, new_gen = duo.b.generations()
    assert old_gen.draining
    sizes = (len(old_gen.pairs), len(new_gen.pairs), len(new_gen.remote_candidates))
    # A check with the old credentials from a new address, while the old generation
    # drains: answered (in-flight consent), but nothing is learned, in either generation.
    data = make_request(
        f"{old_b_ufrag}:{old_a_ufrag}", stun.short_term_key(old_b_pwd), controlling=1
    )
    duo.b.receive(data, B_ADDR, ("192.0.2.50", 1), duo.now)
    ((_, resp),) = decoded(duo.b.datagrams_to_send())
    assert resp.message_class is stun.MessageClass.SUCCESS
    assert (len(old_gen.pairs), len(new_gen.pairs), len(new_gen.remote_candidates)) == sizes
    # Once released, the old credentials authenticate nothing.
    duo.run(3.0)
    assert [g.index for g in duo.b.generations()] == [1]
    duo.b.receive(data, B_ADDR, ("192.0.2.50", 1), duo.now)
    ((_, resp),) = decoded(duo.b.datagrams_to_send())
    assert resp.error_code is not None and resp.error_code[0] == 401


# ------------------------------------------------------------------ consent (RFC 7675)


def test_keepalive_jitter_and_consent_deadlines() -> None:
    config = IceConfig(keepalive_interval=1.0)
    agent = established(config=config)
    timer = agent.get_timer()
    assert timer is not None and timer.reason == "consent check"
    last = 0.0
    intervals = []
    for _ in range(40):
        timer = agent.get_timer()
        assert timer is not None and timer.reason == "consent check"
        intervals.append(timer.at - last)
        last = timer.at
        agent.handle_timer(timer.at)
        ((tx, msg),) = requests_in(agent.datagrams_to_send())
        assert tx.remote == PEER and not msg.use_candidate
        assert stun.check_integrity(msg, PEER_KEY)
        respond(agent, tx, timer.at)
    # RFC 7675 §5.1: each interval randomized within 0.8..1.2 of the period.
    assert all(0.8 <= i <= 1.2 for i in intervals)
    assert max(intervals) - min(intervals) > 0.1  # and really randomized
    assert agent.state is S.CONNECTED


def test_disconnected_exactly_at_last_received_plus_timeout() -> None:
    # A `now` where float rounding makes (t + 2.5) - t < 2.5: the state must still
    # change at the deadline the agent announced, or the driver spins on it.
    t0 = 14.313240448014996
    assert (t0 + 2.5) - t0 < 2.5
    agent = established(now=t0)
    assert agent.selected_pair is not None and agent.selected_pair.last_received == t0
    while (timer := agent.get_timer()) is not None and timer.reason != "disconnected":
        agent.handle_timer(timer.at)
        agent.datagrams_to_send()  # consent checks go unanswered
        drain(agent)  # earlier events (PathSilent at 1.5 s)
    assert timer is not None and timer.at == t0 + 2.5
    agent.handle_timer(timer.at)
    assert agent.state is S.DISCONNECTED
    assert drain(agent) == [StateChanged(S.DISCONNECTED, S.CONNECTED)]
    # Anything from the pair brings it back.
    agent.receive(b"\x17data", A_ADDR, PEER, timer.at + 0.1)
    # cast: mypy keeps the DISCONNECTED narrowing from above across receive()
    assert cast(S, agent.state) is S.CONNECTED


def test_disconnected_timer_in_a_duo(duo: Duo) -> None:
    duo.run(1.0)
    duo.blocked.add((B_ADDR, A_ADDR))
    last = duo.a.selected_pair.last_received if duo.a.selected_pair else None
    assert last is not None
    duo.run(3.0)
    (t,) = [
        t for t, e in duo.events["a"] if isinstance(e, StateChanged) and e.state is S.DISCONNECTED
    ]
    assert t == last + 2.5
    duo.blocked.clear()
    duo.run(1.5)
    assert duo.a.state is S.CONNECTED or duo.a.state is S.COMPLETED


def test_consent_expires_exactly_and_nothing_more_is_sent() -> None:
    t0 = 3.0
    agent = established(now=t0)
    sent = run_lone(agent, t0 + 29.999)
    assert agent.selected_pair is not None
    timer = agent.get_timer()
    assert timer is not None and timer.at == t0 + 30.0
    # A consent answer for a check sent before expiry, arriving after it, is discarded.
    late = sent[-1][1]
    agent.handle_timer(timer.at)
    assert agent.selected_pair is None and agent.state is S.FAILED
    events = drain(agent)
    assert SelectedPairChanged(None, None, None, 0) in events
    respond(agent, late, t0 + 30.5)
    assert agent.selected_pair is None
    assert_silent_towards_peer(agent, t0 + 31.0)


def assert_silent_towards_peer(agent: IceAgent, now: float) -> None:
    """After consent loss: no data, no STUN of these credentials to that 5-tuple."""
    assert agent.send(b"\x17payload", now) is None
    assert agent.receive(b"\x17payload", A_ADDR, PEER, now) is None
    # The peer's checks on that 5-tuple are not answered and trigger nothing.
    agent.receive(check_for(agent, use_candidate=True, tid=b"z" * 12), A_ADDR, PEER, now)
    assert [t for t in agent.datagrams_to_send() if t.remote == PEER] == []
    sent = run_lone(agent, now + 60.0)
    assert [t for _, t in sent if t.remote == PEER] == []
    assert agent.selected_pair is None
    (pair,) = [p for p in agent.pairs() if p.path == (A_ADDR, PEER)]
    assert pair.consent_revoked and pair.state is PairState.FAILED


def test_403_to_a_consent_check_revokes_at_once() -> None:
    agent = established()
    timer = agent.get_timer()
    assert timer is not None and timer.reason == "consent check"
    agent.handle_timer(timer.at)
    ((tx, _),) = requests_in(agent.datagrams_to_send())
    respond(agent, tx, timer.at, code=403)
    assert agent.selected_pair is None and agent.state is S.FAILED
    assert drain(agent)[0] == SelectedPairChanged(None, None, None, 0)
    assert_silent_towards_peer(agent, timer.at)


def test_forged_403_changes_nothing() -> None:
    agent = established()
    timer = agent.get_timer()
    assert timer is not None
    agent.handle_timer(timer.at)
    ((tx, _),) = requests_in(agent.datagrams_to_send())
    respond(agent, tx, timer.at, code=403, key=None)
    respond(agent, tx, timer.at, code=403, key=b"forged")
    assert agent.selected_pair is not None and agent.state is S.CONNECTED


@pytest.mark.parametrize("code", [400, 487, 500])
def test_other_errors_to_a_consent_check_do_not_revoke(code: int) -> None:
    # RFC 7675 §5.1-5.2: only a success refreshes consent, only a 403 revokes it at once.
    agent = established()
    timer = agent.get_timer()
    assert timer is not None
    agent.handle_timer(timer.at)
    ((tx, _),) = requests_in(agent.datagrams_to_send())
    respond(agent, tx, timer.at, code=code)
    pair = agent.selected_pair
    assert pair is not None and not pair.consent_revoked and agent.state is S.CONNECTED
    # A 487 still settles the role (RFC 8445 §7.2.5.1): the check said controlled.
    assert agent.controlling is (code == 487)
    # Errors alone never keep consent alive: it expires 30 s after the last success.
    run_lone(agent, 30.0, lambda tx, msg, now: respond(agent, tx, now, code=code))
    assert agent.selected_pair is None and pair.consent_revoked


def test_role_conflict_while_connected_keeps_the_pair(duo: Duo) -> None:
    # The peer (authenticated) claims controlled with a smaller tie-breaker: b becomes
    # controlling too, a's next consent check meets a 487, and a yields. No pair is lost.
    assert duo.b.tie_breaker > duo.a.tie_breaker
    a_ufrag = duo.a.local_credentials[0]
    rogue = make_request(
        f"{duo.b.local_credentials[0]}:{a_ufrag}",
        key_of(duo.b),
        controlled=duo.b.tie_breaker - 1,
        tid=b"r" * 12,
    )
    duo.b.receive(rogue, B_ADDR, A_ADDR, duo.now)
    duo.pump()
    assert duo.b.controlling
    pairs = (duo.a.selected_pair, duo.b.selected_pair)
    duo.run(3.0)
    assert not duo.a.controlling and duo.b.controlling
    assert (duo.a.selected_pair, duo.b.selected_pair) == pairs
    assert duo.send_app(duo.a, b"\x17x") and duo.send_app(duo.b, b"\x17y")
    assert duo.app == {"a": [b"\x17y"], "b": [b"\x17x"]}


def test_403_to_an_ordinary_check_revokes_that_pair() -> None:
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    ((_, tx),) = run_lone(agent, 0.0)
    respond(agent, tx, 0.01, code=403)
    (pair,) = agent.pairs()
    assert pair.consent_revoked and pair.state is PairState.FAILED
    assert_silent_towards_peer(agent, 0.02)


# ------------------------------------------------------------------ data


def test_application_data_both_ways(duo: Duo) -> None:
    assert duo.send_app(duo.a, b"\x17hello") and duo.send_app(duo.b, b"\x80rtp")
    assert duo.app == {"a": [b"\x80rtp"], "b": [b"\x17hello"]}
    pair = duo.a.selected_pair
    assert pair is not None and pair.packets_sent == 1 and pair.bytes_received == 4


def test_data_from_strangers_is_dropped_and_counted(duo: Duo) -> None:
    state, pair = duo.b.state, duo.b.selected_pair
    for source in (STRANGER, (A_ADDR[0], A_ADDR[1] + 1), ("2001:db8::1", A_ADDR[1])):
        assert duo.b.receive(b"\x17evil", B_ADDR, source, duo.now) is None
    assert duo.b.receive(b"\x17evil", ("198.51.100.1", 1), A_ADDR, duo.now) is None
    assert duo.b.counters["data_from_stranger"] == 4
    assert (duo.b.state, duo.b.selected_pair) == (state, pair)
    assert duo.b.datagrams_to_send() == []


def test_empty_datagram_is_dropped_and_counted(duo: Duo) -> None:
    # An empty datagram from the peer's address is not data (DTLS would choke on it).
    assert duo.b.receive(b"", B_ADDR, A_ADDR, duo.now) is None
    assert duo.b.counters["empty_datagram"] == 1


def test_stun_that_is_not_a_binding_request_is_counted() -> None:
    agent = established()
    before = snapshot(agent)
    indication = stun.Message(stun.Method.BINDING, stun.MessageClass.INDICATION, TID)
    allocate = stun.Message(stun.Method.ALLOCATE, stun.MessageClass.REQUEST, TID)
    agent.receive(stun.encode(indication), A_ADDR, PEER, 1.0)
    agent.receive(stun.encode(allocate), A_ADDR, PEER, 1.0)
    agent.receive(b"\x00\x01\x00\x00garbage", A_ADDR, PEER, 1.0)
    assert agent.counters["stun_indication"] == 1
    assert agent.counters["stun_unexpected_method"] == 1
    assert agent.counters["stun_malformed"] == 1
    assert agent.datagrams_to_send() == [] and snapshot(agent) == before


def test_send_without_pair_drops_and_counts() -> None:
    agent = lone()
    assert agent.send(b"\x17x", 0.0) is None and agent.counters["send_no_pair"] == 1


# ------------------------------------------------------------------ gathering


def test_srflx_gathering_success() -> None:
    agent = IceAgent(
        controlling=True, rng=random.Random(1), config=IceConfig(stun_servers=(SERVER,))
    )
    agent.add_base(A_ADDR, 0.0)
    agent.gather(0.0)
    ((tx, req),) = decoded(agent.datagrams_to_send())
    assert (tx.local, tx.remote) == (A_ADDR, SERVER)
    assert req.message_class is stun.MessageClass.REQUEST and req.username is None
    assert agent.gathering_state is IceGatheringState.GATHERING
    events = drain(agent)
    assert [type(e) for e in events] == [GatheringStateChanged, LocalCandidateGathered]
    mapped = ("203.0.113.1", 61000)
    resp = stun.success_response(req, xor_mapped_address=mapped)
    agent.receive(stun.encode(resp), A_ADDR, SERVER, 0.03)
    events = drain(agent)
    assert [type(e) for e in events] == [
        LocalCandidateGathered,
        GatheringComplete,
        GatheringStateChanged,
    ]
    assert isinstance(events[0], LocalCandidateGathered)
    srflx = events[0].candidate
    assert (srflx.type, srflx.address) == ("srflx", mapped)
    assert (srflx.related_address, srflx.related_port) == A_ADDR
    assert srflx.priority == candidate_priority("srflx", 0x7FFF) == 1686110207
    assert srflx.base == A_ADDR and srflx.ufrag == agent.local_credentials[0]
    # cast: mypy keeps the GATHERING narrowing from above across receive()
    assert cast(IceGatheringState, agent.gathering_state) is IceGatheringState.COMPLETE


def test_srflx_gathering_timeout_reports_701_and_completes() -> None:
    config = IceConfig(stun_servers=(SERVER,))
    agent = IceAgent(controlling=True, rng=random.Random(1), config=config)
    agent.add_base(A_ADDR, 0.0)
    agent.gather(0.0)
    agent.datagrams_to_send()
    drain(agent)
    sent = run_lone(agent, 10.0)
    # RFC 5389 §7.2.1 doubling from stun_rto, stun_attempts transmissions in all.
    assert [t for t, _ in sent] == pytest.approx([0.25, 0.75, 1.75], abs=1e-12)
    assert all(tx.remote == SERVER for _, tx in sent)
    events = drain(agent)
    assert events[0] == CandidateErrorEvent(
        A_ADDR[0], A_ADDR[1], "stun:198.51.100.200:3478", 701, "STUN server did not answer"
    )
    assert isinstance(events[1], GatheringComplete)
    assert agent.gathering_state is IceGatheringState.COMPLETE


def test_srflx_error_response_reports_its_code() -> None:
    agent = IceAgent(
        controlling=True, rng=random.Random(1), config=IceConfig(stun_servers=(SERVER,))
    )
    agent.add_base(A_ADDR, 0.0)
    agent.gather(0.0)
    ((_, req),) = decoded(agent.datagrams_to_send())
    drain(agent)
    agent.receive(stun.encode(stun.error_response(req, 400, "nope")), A_ADDR, SERVER, 0.1)
    events = drain(agent)
    assert isinstance(events[0], CandidateErrorEvent) and events[0].error_code == 400
    assert agent.gathering_state is IceGatheringState.COMPLETE


def test_removing_a_base_during_srflx_gathering_still_completes() -> None:
    other: Address = ("192.0.2.2", 40001)
    config = IceConfig(stun_servers=(SERVER,))
    agent = IceAgent(controlling=True, rng=random.Random(1), config=config)
    agent.add_base(A_ADDR, 0.0)
    agent.add_base(other, 0.0)
    agent.gather(0.0)
    out = decoded(agent.datagrams_to_send())
    assert [t.local for t, _ in out] == [A_ADDR, other]
    agent.remove_base(other, 0.01)
    resp = stun.success_response(out[0][1], xor_mapped_address=("203.0.113.1", 1))
    agent.receive(stun.encode(resp), A_ADDR, SERVER, 0.02)
    assert agent.gathering_state is IceGatheringState.COMPLETE
    assert any(isinstance(e, GatheringComplete) for e in drain(agent))


def test_host_candidates_and_gathering_events() -> None:
    agent = IceAgent(controlling=True, rng=random.Random(1))
    agent.add_base(A_ADDR, 0.0)
    assert agent.gathering_state is IceGatheringState.NEW
    agent.gather(0.0)
    events = drain(agent)
    ufrag = agent.local_credentials[0]
    (cand,) = agent.local_candidates()
    # "gathering" is reported even when host gathering finishes at once (webrtc-pc).
    assert events == [
        GatheringStateChanged(IceGatheringState.GATHERING),
        LocalCandidateGathered(cand, ufrag, 0),
        GatheringComplete(ufrag, 0),
        GatheringStateChanged(IceGatheringState.COMPLETE),
    ]
    assert cand.priority == candidate_priority("host", 0x7FFF) and cand.base == A_ADDR


# ------------------------------------------------------------------ exact timers


def test_check_pacing_and_retransmission_schedule() -> None:
    agent = lone(controlling=True, config=IceConfig(failed_timeout=5.0))
    agent.add_remote_candidate(remote_cand(PEER, priority=2000), 0.0)
    agent.add_remote_candidate(remote_cand(PEER2, priority=1000), 0.0)
    sent = run_lone(agent, 6.33)
    first = [t for t, tx in sent if tx.remote == PEER]
    second = [t for t, tx in sent if tx.remote == PEER2]
    # Higher pair priority first, the next after Ta (RFC 8445 §6.1.4.2, §14.2).
    assert first[0] == 0.0 and second[0] == 0.02
    # RTO 100 ms doubling up to 1.6 s, 7 transmissions (RFC 8445 §14.3, RFC 5389 §7.2.1).
    assert first == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 4.7], abs=1e-12)
    assert [b - a for a, b in zip(first, second)] == pytest.approx([0.02] * 7, abs=1e-12)
    assert {p.state for p in agent.pairs()} == {PairState.FAILED}
    # Both failed at 6.32; without end-of-candidates the generation fails failed_timeout later.
    timer = agent.get_timer()
    assert timer is not None and timer.reason == "failed timeout"
    assert timer.at == pytest.approx(6.32 + 5.0, abs=1e-12)
    agent.handle_timer(timer.at - 1e-6)
    assert agent.state is S.CHECKING
    agent.handle_timer(timer.at)
    # cast: mypy keeps the CHECKING narrowing from above across handle_timer()
    assert cast(S, agent.state) is S.FAILED and agent.get_timer() is None


def test_end_of_candidates_fails_the_generation_without_waiting() -> None:
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER), 0.0)
    agent.end_of_remote_candidates(0.0, PEER_UFRAG)
    sent = run_lone(agent, 10.0)
    assert sent[-1][0] == pytest.approx(4.7, abs=1e-12)
    assert agent.state is S.FAILED
    assert [e for e in drain(agent) if isinstance(e, StateChanged)] == [
        StateChanged(S.CHECKING, S.NEW),
        StateChanged(S.FAILED, S.CHECKING),
    ]


def test_nomination_waits_for_better_pair_until_nomination_delay() -> None:
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER, priority=2000), 0.0)
    agent.add_remote_candidate(remote_cand(PEER2, priority=1000), 0.0)
    sent = dict((tx.remote, tx) for _, tx in run_lone(agent, 0.02))
    respond(agent, sent[PEER2], 0.03)  # the worse pair is valid first
    assert agent.datagrams_to_send() == []
    timer = agent.get_timer()
    assert timer is not None and (timer.at, timer.reason) == (0.03 + 0.05, "nomination")
    agent.handle_timer(timer.at)
    ((tx, msg),) = requests_in(agent.datagrams_to_send())
    assert tx.remote == PEER2 and msg.use_candidate


def test_nomination_is_immediate_when_nothing_better_is_pending() -> None:
    agent = lone(controlling=True)
    agent.add_remote_candidate(remote_cand(PEER, priority=2000), 0.0)
    agent.add_remote_candidate(remote_cand(PEER2, priority=1000), 0.0)
    sent = dict((tx.remote, tx) for _, tx in run_lone(agent, 0.02))
    respond(agent, sent[PEER], 0.03)
    ((tx, msg),) = requests_in(agent.datagrams_to_send())
    assert tx.remote == PEER and msg.use_candidate
    respond(agent, tx, 0.035)
    pair = agent.selected_pair
    assert pair is not None and pair.remote.address == PEER and pair.nominated


def test_restart_switches_then_releases_after_release_delay(duo: Duo) -> None:
    duo.run(0.5)
    duo.restart()
    assert duo.run_while(
        lambda: duo.a.selected_pair is None or duo.a.selected_pair.generation < 1, 1.0
    )
    ((t_switch, sel),) = [(t, e) for t, e in duo.of("a", SelectedPairChanged)][1:]
    assert (sel.generation, sel.previous_generation) == (1, 0)
    duo.run(5.0)
    ((t_release, rel),) = duo.of("a", GenerationReleased)
    assert t_release == t_switch + 3.0 and rel.generation == 0
    assert [g.index for g in duo.a.generations()] == [1]


def test_data_keeps_flowing_on_old_pair_during_restart(duo: Duo) -> None:
    old = duo.a.selected_pair
    duo.trickle = False  # the offer is still on its way: b knows nothing of it yet
    duo.a.restart(duo.now)
    duo.pump()
    assert duo.a.selected_pair is old and duo.send_app(duo.a, b"\x17during")
    assert duo.app["b"] == [b"\x17during"]
    # Make before break (RFC 8445 §9); webrtc-pc: completed goes to connected on restart.
    assert duo.a.state is S.CONNECTED


def test_connect_timeline_in_a_duo(duo: Duo) -> None:
    assert [e.state for _, e in duo.of("a", StateChanged)] == [
        S.CHECKING,
        S.CONNECTED,
        S.COMPLETED,
    ]
    sel = duo.a.selected_pair
    assert sel is not None and sel.path == (A_ADDR, B_ADDR) and sel.nominated
    assert duo.b.selected_pair is not None and duo.b.selected_pair.path == (B_ADDR, A_ADDR)
    assert duo.unrouted == []


def test_close_stops_everything(duo: Duo) -> None:
    duo.a.close(duo.now)
    assert duo.a.state is S.CLOSED and duo.a.closed
    assert duo.a.get_timer() is None and duo.a.send(b"\x17x", duo.now) is None
    assert duo.a.receive(b"\x17x", A_ADDR, B_ADDR, duo.now) is None
    with pytest.raises(IceError):
        duo.a.add_remote_candidate(remote_cand(PEER), duo.now)
    with pytest.raises(IceError):
        duo.a.restart(duo.now)
    duo.a.close(duo.now)  # idempotent
    assert drain(duo.a) == [StateChanged(S.CLOSED, S.COMPLETED)]


def test_config_validation() -> None:
    for bad in (
        IceConfig(ta=0),
        IceConfig(check_rto=-1),
        IceConfig(keepalive_interval=40.0),
        IceConfig(max_check_attempts=0),
    ):
        with pytest.raises(ValueError):
            IceAgent(controlling=True, rng=random.Random(1), config=bad)
    assert IceConfig(disconnected_timeout=1.0).keepalive == 0.4


def test_generation_integrity_keys_follow_the_passwords() -> None:
    """The prepared MESSAGE-INTEGRITY keys are cached per generation and rebuilt when a
    password changes, so a check is never signed or verified with a stale one."""
    from unbroken.ice.checklist import Generation

    gen = Generation(index=0, ufrag="abcd", pwd="p" * 22)
    assert gen.local_key() is gen.local_key()
    assert gen.local_key().key == stun.short_term_key("p" * 22)
    gen.remote_pwd = "q" * 22
    first = gen.remote_key()
    assert first is gen.remote_key() and first.key == b"q" * 22
    gen.remote_pwd = "r" * 22
    assert gen.remote_key().key == b"r" * 22
