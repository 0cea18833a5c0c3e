"""Tests for unbroken.jsep.session: the sans-IO JSEP session, driven directly.

Two endpoints each pair a JsepSession with a real sans-IO IceAgent (no sockets: the
agent only keeps generations and credentials here) and carry out the actions the
session returns, as the peer connection does. The tables give sequences of offers,
answers, pranswers and rollbacks; each row asserts the signaling states, the actions
returned, and the ICE credentials in force on both sides, for every restart rule of
../shared/DESIGN.md ("ICE restart: the rules"). A hypothesis test runs random sequences
and checks the session's invariants after each call.
"""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unbroken import sdp as sdplib
from unbroken.ice.agent import IceAgent, generate_credentials
from unbroken.jsep import (
    Action,
    AnswerApplied,
    DropOldCandidates,
    IceView,
    JsepSession,
    RestartIce,
    SetIceRole,
    SetRemoteCredentials,
    SignalingState,
    StartGathering,
    StartTransports,
    application_section,
    credentials_of,
)
from unbroken.jsep.credentials import Credentials
from unbroken.jsep.errors import JsepAccessError, JsepStateError

S = SignalingState
FINGERPRINT = [("sha-256", ":".join(["AB"] * 32))]


def description(
    creds: Credentials | None, setup: str, *, lite: bool = False
) -> sdplib.SessionDescription:
    """A one m-section (data) description; `creds` None: the m-section is rejected."""
    section = application_section("0")
    if creds is None:
        section.port = 0
        return sdplib.SessionDescription(media=[section])
    section.ice_ufrag, section.ice_pwd = creds
    section.fingerprints = list(FINGERPRINT)
    section.setup = setup
    return sdplib.SessionDescription(media=[section], group_bundle=[["0"]], ice_lite=lite)


@dataclass
class Endpoint:
    """A JSEP session and the real ICE agent it drives, as RTCPeerConnection pairs them."""

    name: str
    seed: int
    lite: bool = False
    session: JsepSession = field(init=False)
    agent: IceAgent = field(init=False)
    actions: list[Action] = field(default_factory=list)  # of the last call

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.session = JsepSession(lambda: generate_credentials(rng))
        self.agent = IceAgent(
            controlling=True,
            rng=random.Random(self.seed + 1000),
            credentials=self.session.credentials.current,
        )

    # ---------------------------------------------------------------- the runtime's part

    def view(self) -> IceView:
        generations = self.agent.generations()
        return IceView(
            remote_credentials=self.agent.remote_credentials,
            local_ufrags=frozenset(g.ufrag for g in generations),
            remote_ufrags=frozenset(g.remote_ufrag for g in generations if g.remote_ufrag),
        )

    def carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            self.actions.append(action)
            if isinstance(action, SetIceRole):
                self.agent.set_role(action.controlling)
            elif isinstance(action, RestartIce):
                self.agent.restart(
                    0.0,
                    action.credentials,
                    controlling=action.controlling,
                    answering=action.answering,
                )
            elif isinstance(action, SetRemoteCredentials):
                creds = action.description.credentials
                assert creds is not None
                self.agent.set_remote_credentials(
                    *creds,
                    0.0,
                    local_ufrag=action.local_ufrag,
                    lite=action.description.desc.ice_lite,
                )
                if action.local_ufrag is not None and self.session.awaits_answer(
                    action.description
                ):
                    self.session.remote_restart_applied()
            elif isinstance(action, StartGathering):
                self.agent.gather(0.0)

    # ---------------------------------------------------------------- the W3C calls

    def offer(self, restart: bool = False) -> sdplib.SessionDescription:
        return description(self.session.create_offer(restart), "actpass", lite=self.lite)

    def answer(self) -> sdplib.SessionDescription:
        creds, _ = self.session.create_answer()
        setup = "passive" if self.session.dtls_role == "server" else "active"
        return description(creds, setup, lite=self.lite)

    def set_local(self, sdp_type: str, desc: sdplib.SessionDescription) -> list[Action]:
        self.actions = []
        creds, transport = self.session.check_local(sdp_type, desc, self.view())
        step = self.session.apply_local(sdp_type, desc, creds, transport)
        self.carry_out(step.actions)
        self.carry_out(self.session.finish_local(step))
        return self.actions

    def set_remote(self, sdp_type: str, desc: sdplib.SessionDescription) -> list[Action]:
        self.actions = []
        creds = self.session.check_remote(sdp_type, desc, self.view())
        step = self.session.plan_remote(sdp_type, desc, creds, self.view())
        self.carry_out(step.actions)
        self.carry_out(self.session.finish_remote(step))
        return self.actions

    def rollback(self, source: str) -> list[Action]:
        self.actions = []
        self.carry_out(self.session.rollback(source, lambda ufrag: self.agent.abandon(ufrag, 0.0)))
        return self.actions

    @property
    def creds(self) -> Credentials:
        return self.session.credentials.current

    @property
    def state(self) -> SignalingState:
        return self.session.signaling


def negotiate(a: Endpoint, b: Endpoint, restart: bool = False) -> None:
    """A complete offer/answer from `a` to `b`."""
    offer = a.offer(restart)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    answer = b.answer()
    b.set_local("answer", answer)
    a.set_remote("answer", answer)


def kinds(actions: list[Action]) -> list[str]:
    return [type(action).__name__ for action in actions]


@pytest.fixture
def pair() -> tuple[Endpoint, Endpoint]:
    return Endpoint("a", 1), Endpoint("b", 2)


# ---------------------------------------------------------------- signaling sequences

# (operations, signaling state of a and of b afterwards). An operation is
# (endpoint, call): "lo" set a local offer, "ro" take the other's pending offer,
# "la"/"lp" answer/pranswer it, "ra"/"rp" take the other's answer/pranswer,
# "rbl"/"rbr" roll back a local/remote description.
SEQUENCES: list[tuple[list[tuple[str, str]], SignalingState, SignalingState]] = [
    ([("a", "lo")], S.HAVE_LOCAL_OFFER, S.STABLE),
    ([("a", "lo"), ("b", "ro")], S.HAVE_LOCAL_OFFER, S.HAVE_REMOTE_OFFER),
    ([("a", "lo"), ("b", "ro"), ("b", "la"), ("a", "ra")], S.STABLE, S.STABLE),
    ([("a", "lo"), ("b", "ro"), ("b", "lp")], S.HAVE_LOCAL_OFFER, S.HAVE_LOCAL_PRANSWER),
    (
        [("a", "lo"), ("b", "ro"), ("b", "lp"), ("a", "rp")],
        S.HAVE_REMOTE_PRANSWER,
        S.HAVE_LOCAL_PRANSWER,
    ),
    (
        [("a", "lo"), ("b", "ro"), ("b", "lp"), ("a", "rp"), ("b", "la"), ("a", "ra")],
        S.STABLE,
        S.STABLE,
    ),
    ([("a", "lo"), ("a", "rbl")], S.STABLE, S.STABLE),
    ([("a", "lo"), ("b", "ro"), ("b", "rbr")], S.HAVE_LOCAL_OFFER, S.STABLE),
    ([("a", "lo"), ("b", "ro"), ("b", "lp"), ("b", "rbl")], S.HAVE_LOCAL_OFFER, S.STABLE),
    # Glare: both offer; b (polite) rolls back and takes a's offer (perfect negotiation).
    (
        [("a", "lo"), ("b", "lo"), ("b", "rbl"), ("b", "ro")],
        S.HAVE_LOCAL_OFFER,
        S.HAVE_REMOTE_OFFER,
    ),
    (
        [("a", "lo"), ("b", "lo"), ("b", "rbl"), ("b", "ro"), ("b", "la"), ("a", "ra")],
        S.STABLE,
        S.STABLE,
    ),
    # A second negotiation the other way round after the first.
    (
        [("a", "lo"), ("b", "ro"), ("b", "la"), ("a", "ra"), ("b", "lo"), ("a", "ro")],
        S.HAVE_REMOTE_OFFER,
        S.HAVE_LOCAL_OFFER,
    ),
]


def run(ops: list[tuple[str, str]], a: Endpoint, b: Endpoint) -> None:
    peers = {"a": (a, b), "b": (b, a)}
    sent: dict[str, sdplib.SessionDescription] = {}
    for who, op in ops:
        me, other = peers[who]
        if op == "lo":
            sent[who] = me.offer()
            me.set_local("offer", sent[who])
        elif op in ("la", "lp"):
            sent[who] = me.answer()
            me.set_local("answer" if op == "la" else "pranswer", sent[who])
        elif op == "ro":
            me.set_remote("offer", sent[other.name])
        elif op in ("ra", "rp"):
            me.set_remote("answer" if op == "ra" else "pranswer", sent[other.name])
        elif op == "rbl":
            me.rollback("local")
        elif op == "rbr":
            me.rollback("remote")


@pytest.mark.parametrize(("ops", "state_a", "state_b"), SEQUENCES)
def test_signaling_sequences(
    ops: list[tuple[str, str]], state_a: SignalingState, state_b: SignalingState
) -> None:
    a, b = Endpoint("a", 1), Endpoint("b", 2)
    run(ops, a, b)
    assert (a.state, b.state) == (state_a, state_b)
    for end in (a, b):
        stable = end.state is S.STABLE
        assert stable == (end.session.pending_local is None and end.session.pending_remote is None)
        assert end.agent.local_credentials == end.creds  # ICE runs with the book's credentials


# (state reached by the operations, a call that JSEP forbids there)
FORBIDDEN: list[tuple[list[tuple[str, str]], str, str]] = [
    ([], "local", "answer"),
    ([], "local", "pranswer"),
    ([], "remote", "answer"),
    ([("a", "lo")], "remote", "offer"),
    ([("a", "lo")], "local", "answer"),
    ([("b", "lo"), ("a", "ro")], "local", "offer"),
    ([("b", "lo"), ("a", "ro")], "remote", "answer"),
]


@pytest.mark.parametrize(("ops", "source", "sdp_type"), FORBIDDEN)
def test_forbidden_transitions_change_nothing(
    ops: list[tuple[str, str]], source: str, sdp_type: str
) -> None:
    a, b = Endpoint("a", 1), Endpoint("b", 2)
    run(ops, a, b)
    before = (a.state, a.session.pending_local, a.session.pending_remote, a.creds)
    desc = description(b.creds, "actpass")
    with pytest.raises(JsepStateError):
        if source == "local":
            a.set_local(sdp_type, description(a.creds, "actpass"))
        else:
            a.set_remote(sdp_type, desc)
    assert (a.state, a.session.pending_local, a.session.pending_remote, a.creds) == before


# (state reached by the operations, the rollback JSEP forbids there)
FORBIDDEN_ROLLBACKS: list[tuple[list[tuple[str, str]], str]] = [
    ([], "local"),
    ([], "remote"),
    ([("a", "lo")], "remote"),  # a local offer is rolled back locally
    ([("b", "lo"), ("a", "ro")], "local"),
]


@pytest.mark.parametrize(("ops", "source"), FORBIDDEN_ROLLBACKS)
def test_forbidden_rollbacks(ops: list[tuple[str, str]], source: str) -> None:
    a, b = Endpoint("a", 1), Endpoint("b", 2)
    run(ops, a, b)
    before = (a.state, a.session.pending_local, a.session.pending_remote)
    with pytest.raises(JsepStateError):
        a.rollback(source)
    assert (a.state, a.session.pending_local, a.session.pending_remote) == before


def test_closed_session_refuses_everything() -> None:
    a = Endpoint("a", 1)
    a.session.close()
    with pytest.raises(JsepStateError):
        a.offer()
    with pytest.raises(JsepStateError):
        a.set_local("offer", description(a.creds, "actpass"))
    with pytest.raises(JsepStateError):
        a.session.create_answer()


def test_create_answer_needs_a_remote_offer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, _ = pair
    with pytest.raises(JsepStateError, match="needs a remote offer"):
        a.session.create_answer()


# ---------------------------------------------------------------- actions of a negotiation


def test_first_negotiation_actions(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    offer = a.offer()
    # RFC 8839 §4.2.3: the offerer controls; gathering starts with the first description.
    assert a.set_local("offer", offer) == [SetIceRole(controlling=True), StartGathering()]
    actions = b.set_remote("offer", offer)
    assert kinds(actions) == ["SetIceRole", "SetRemoteCredentials"]
    assert actions[0] == SetIceRole(controlling=False)
    remote = actions[1]
    assert isinstance(remote, SetRemoteCredentials) and remote.local_ufrag is None
    assert remote.description.credentials == a.creds
    answer = b.answer()
    assert b.set_local("answer", answer) == [
        StartGathering(),
        DropOldCandidates(),
        AnswerApplied(local=True),
        StartTransports(),
    ]
    actions = a.set_remote("answer", answer)
    assert kinds(actions) == [
        "SetRemoteCredentials",
        "DropOldCandidates",
        "AnswerApplied",
        "StartTransports",
    ]
    first = actions[0]
    assert isinstance(first, SetRemoteCredentials) and first.local_ufrag == a.creds[0]
    assert a.agent.remote_credentials == b.creds and b.agent.remote_credentials == a.creds
    assert a.session.transport_negotiated and b.session.transport_negotiated
    assert a.agent.controlling and not b.agent.controlling
    # RFC 8842: b answered "active" to a's actpass, so b is the DTLS client.
    assert (a.session.dtls_role, b.session.dtls_role) == ("server", "client")


def test_reoffer_without_restart_only_adds_candidates(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    offer = a.offer()
    assert a.set_local("offer", offer) == []  # same credentials: no restart, no role change
    actions = b.set_remote("offer", offer)
    assert kinds(actions) == ["AddRemoteCandidates"]
    answer = b.answer()
    assert b.answer().media[0].ice_ufrag == b.creds[0]
    assert kinds(b.set_local("answer", answer)) == [
        "DropOldCandidates",
        "AnswerApplied",
        "StartTransports",
    ]
    assert kinds(a.set_remote("answer", answer)) == [
        "AddRemoteCandidates",
        "DropOldCandidates",
        "AnswerApplied",
        "StartTransports",
    ]
    assert a.agent.generation == 0 and b.agent.generation == 0


def test_all_rejected_description_has_no_transport(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    offer = description(None, "actpass")
    step_actions = a.set_local("offer", offer)
    assert step_actions == []  # the credentials in force stay; nothing for ICE to do
    actions = b.set_remote("offer", offer)
    assert actions == []
    assert b.session.pending_remote is not None
    assert b.session.pending_remote.credentials == a.creds  # those in force, kept
    answer = description(None, "active")
    assert kinds(b.set_local("answer", answer)) == ["DropOldCandidates", "AnswerApplied"]


def test_lite_offerer_makes_the_answerer_controlling() -> None:
    a, b = Endpoint("a", 1, lite=True), Endpoint("b", 2)
    offer = a.offer()
    a.set_local("offer", offer)
    assert b.set_remote("offer", offer)[0] == SetIceRole(controlling=True)
    assert b.agent.controlling


# ---------------------------------------------------------------- restart rules


def test_create_offer_with_restart_has_no_side_effects(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    before = a.creds
    first = a.session.create_offer(True)
    assert first != before and first[0] != before[0] and first[1] != before[1]
    assert a.session.create_offer(True) == first  # the same until applied (RFC 8829 §5.2.1)
    assert a.session.create_offer(False) == before  # a plain offer keeps them
    assert a.creds == before and a.agent.generation == 0  # nothing applied yet


# (who restarts, how) -> the RestartIce actions of a and b, as (controlling, answering).
RESTARTS = [
    ("offer by the controlling side", "a", (True, False), (False, True)),
    ("offer by the controlled side", "b", (False, True), (True, False)),
]


@pytest.mark.parametrize(("label", "who", "restart_a", "restart_b"), RESTARTS)
def test_restart_offered_by_either_side(
    label: str,
    who: str,
    restart_a: tuple[bool, bool],
    restart_b: tuple[bool, bool],
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, b = pair
    negotiate(a, b)
    old_a, old_b = a.creds, b.creds
    offerer, answerer = (a, b) if who == "a" else (b, a)
    offer = offerer.offer(restart=True)
    actions = offerer.set_local("offer", offer)
    [restart] = actions
    assert isinstance(restart, RestartIce) and restart.credentials == offerer.creds
    assert offerer.session.offer_restarted
    # The answerer: the restart waits for its answer, which must restart too (§5.3.2).
    assert answerer.set_remote("offer", offer) == []
    deferred = answerer.session.pending_remote
    assert deferred is not None and answerer.session.awaits_answer(deferred)
    answer = answerer.answer()
    assert answer.media[0].ice_ufrag != answerer.creds[0]
    actions = answerer.set_local("answer", answer)
    assert kinds(actions) == [
        "RestartIce",
        "SetRemoteCredentials",
        "DropOldCandidates",
        "AnswerApplied",
        "StartTransports",
    ]
    remote = actions[1]
    assert isinstance(remote, SetRemoteCredentials) and remote.local_ufrag == answerer.creds[0]
    assert not answerer.session.awaits_answer(deferred)
    assert kinds(offerer.set_remote("answer", answer))[0] == "SetRemoteCredentials"
    # Roles decided anew: the restart's offerer controls (docs/ice.md).
    assert offerer.agent.controlling and not answerer.agent.controlling
    assert (a.creds != old_a) and (b.creds != old_b)
    assert a.agent.generation == 1 and b.agent.generation == 1
    assert a.agent.remote_credentials == b.creds and b.agent.remote_credentials == a.creds
    expected = {"a": restart_a, "b": restart_b}
    assert (restart.controlling, restart.answering) == expected[offerer.name]


def test_restart_actions_carry_roles_for_both_sides(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    offer = b.offer(restart=True)
    assert b.set_local("offer", offer) == [RestartIce(b.creds, controlling=True, answering=False)]
    b_offer_actions = a.set_remote("offer", offer)
    assert b_offer_actions == []
    answer = a.answer()
    [restart, *_] = a.set_local("answer", answer)
    assert restart == RestartIce(a.creds, controlling=False, answering=True)


def test_restart_answer_to_a_lite_offerer_stays_controlling() -> None:
    a, b = Endpoint("a", 1, lite=True), Endpoint("b", 2)
    negotiate(a, b)
    offer = a.offer(restart=True)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    [restart, *_] = b.set_local("answer", b.answer())
    assert isinstance(restart, RestartIce) and restart.controlling and restart.answering


def test_answer_to_a_restart_offer_must_restart(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    offer = a.offer(restart=True)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    stale = description(b.creds, "active")  # the answer keeps the old credentials
    with pytest.raises(JsepAccessError, match="must carry new"):
        b.set_local("answer", stale)
    assert b.state is S.HAVE_REMOTE_OFFER and b.agent.generation == 0


# (our offer restarts, the answer's credentials) -> the error, or None when accepted.
ANSWER_RULES = [
    (False, "same", None),
    (False, "new", "although the offer did not restart"),
    (True, "same", "must carry new"),
    (True, "new", None),
    (True, "ufrag only", "changes only one"),
]


@pytest.mark.parametrize(("restarted", "answer_creds", "error"), ANSWER_RULES)
def test_remote_answer_credentials_follow_our_offer(
    restarted: bool, answer_creds: str, error: str | None, pair: tuple[Endpoint, Endpoint]
) -> None:
    a, b = pair
    negotiate(a, b)
    a.set_local("offer", a.offer(restart=restarted))
    old = b.creds
    creds = {
        "same": old,
        "new": ("newufrag", "anewpasswordof22chars00"),
        "ufrag only": ("newufrag", old[1]),
    }[answer_creds]
    answer = description(creds, "active")
    if error is None:
        a.set_remote("answer", answer)
        assert a.state is S.STABLE and a.agent.remote_credentials == creds
    else:
        with pytest.raises(JsepAccessError, match=error):
            a.set_remote("answer", answer)
        assert a.state is S.HAVE_LOCAL_OFFER
        # Nothing reached ICE: the restart's generation still waits for remote credentials.
        assert a.agent.remote_credentials == (None if restarted else old)


# A restart offer whose credentials are (label) -> the error.
BAD_REMOTE_RESTARTS = [
    ("only a new ufrag", lambda old, older: ("zzzzufrag", old[1]), "changes only one"),
    ("only a new pwd", lambda old, older: (old[0], "z" * 22), "changes only one"),
    (
        "an older generation's ufrag",
        lambda old, older: (older[0], "y" * 22),
        "older ICE generation",
    ),
]


@pytest.mark.parametrize(("label", "make", "error"), BAD_REMOTE_RESTARTS)
def test_bad_remote_restart_offers_are_refused(
    label: str, make: object, error: str, pair: tuple[Endpoint, Endpoint]
) -> None:
    a, b = pair
    negotiate(a, b)
    older = a.creds
    negotiate(a, b, restart=True)
    creds = make(a.creds, older)  # type: ignore[operator]
    with pytest.raises(JsepAccessError, match=error):
        b.set_remote("offer", description(creds, "actpass"))
    assert b.state is S.STABLE and b.agent.generation == 1


def test_local_restart_to_an_older_ufrag_is_refused(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    first = a.creds
    negotiate(a, b, restart=True)
    with pytest.raises(JsepAccessError, match="older ICE generation"):
        a.set_local("offer", description((first[0], "x" * 22), "actpass"))
    with pytest.raises(JsepAccessError, match="changes only one"):
        a.set_local("offer", description((a.creds[0], "x" * 22), "actpass"))
    assert a.state is S.STABLE


def test_restart_ice_until_an_answer_applies_new_credentials(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, b = pair
    negotiate(a, b)
    old = a.creds
    a.session.restart_ice()
    assert a.session.restart_pending
    offer = a.offer()  # no iceRestart option: restartIce() makes it a restart offer
    assert offer.media[0].ice_ufrag != old[0]
    a.set_local("offer", offer)
    a.rollback("local")  # webrtc-pc: a rollback leaves [[LocalIceCredentialsToReplace]]
    assert a.session.restart_pending and a.creds == old
    negotiate(a, b)  # the next offer restarts again, and its answer ends the request
    assert not a.session.restart_pending and a.creds != old


def test_restart_ice_does_not_change_an_answer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    b.session.restart_ice()
    offer = a.offer()
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    assert b.answer().media[0].ice_ufrag == b.creds[0]  # only createOffer reads the set
    b.set_local("answer", b.answer())
    assert b.session.restart_pending  # still to do, in b's next offer


# ---------------------------------------------------------------- rollback and restarts


def test_rollback_of_a_restart_offer_restores_credentials(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, b = pair
    negotiate(a, b)
    old = a.creds
    a.set_local("offer", a.offer(restart=True))
    assert a.agent.generation == 1
    assert a.rollback("local") == [DropOldCandidates()]
    assert a.creds == old and a.agent.local_credentials == old  # generation abandoned
    assert a.state is S.STABLE and not a.session.offer_restarted
    assert a.session.create_offer(False) == old  # and nothing is pending any more
    negotiate(a, b)  # the session goes on with the old credentials
    assert a.creds == old and a.agent.remote_credentials == b.creds


def test_rollback_keeps_a_generation_that_selected_a_pair(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    a, b = pair
    negotiate(a, b)
    a.set_local("offer", a.offer(restart=True))
    new = a.creds
    asked: list[str] = []

    def cannot(ufrag: str) -> bool:  # the runtime: that generation already selected a pair
        asked.append(ufrag)
        return False

    a.session.rollback("local", cannot)
    assert asked == [new[0]]
    assert a.creds == new and a.session.credentials.negotiated == new


def test_rollback_of_a_remote_restart_offer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    offer = a.offer(restart=True)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    new_ufrag = a.creds[0]
    assert b.session.remote_restart and b.session.is_older_remote_ufrag(new_ufrag) is True
    b.rollback("remote")
    assert b.state is S.STABLE and not b.session.remote_restart
    assert b.session.deferred_remote is None
    assert not b.session.is_older_remote_ufrag(new_ufrag)  # never in force: unknown again
    assert b.agent.generation == 0  # ICE never saw it


def test_pranswer_to_a_restart_offer_then_answer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    offer = a.offer(restart=True)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    pranswer = b.answer()
    assert kinds(b.set_local("pranswer", pranswer)) == ["RestartIce", "SetRemoteCredentials"]
    assert kinds(a.set_remote("pranswer", pranswer)) == ["SetRemoteCredentials"]
    answer = description(b.creds, "active")  # the final answer keeps the pranswer's
    assert kinds(b.set_local("answer", answer)) == [
        "DropOldCandidates",
        "AnswerApplied",
        "StartTransports",
    ]
    assert kinds(a.set_remote("answer", answer)) == [
        "AddRemoteCandidates",
        "DropOldCandidates",
        "AnswerApplied",
        "StartTransports",
    ]
    assert a.agent.generation == 1 and b.agent.generation == 1


def test_create_answer_after_a_pranswer_keeps_its_credentials(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    # The offerer holds the pranswer's credentials already: new ones in the final answer
    # would be refused as changed from the provisional answer.
    a, b = pair
    negotiate(a, b)
    offer = a.offer(restart=True)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    pranswer = b.answer()
    b.set_local("pranswer", pranswer)
    a.set_remote("pranswer", pranswer)
    answer = b.answer()
    assert credentials_of(answer) == credentials_of(pranswer)
    b.set_local("answer", answer)
    a.set_remote("answer", answer)
    assert a.state is b.state is SignalingState.STABLE
    assert a.agent.generation == 1 and b.agent.generation == 1


def test_rollback_of_a_pranswer_to_a_restart_offer(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    old = b.creds
    offer = a.offer(restart=True)
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    b.set_local("pranswer", b.answer())
    assert b.agent.generation == 1
    b.rollback("local")
    assert b.creds == old and b.agent.local_credentials == old and b.state is S.STABLE


def test_both_sides_restart_in_glare(pair: tuple[Endpoint, Endpoint]) -> None:
    """Both offer a restart; the polite side (b) rolls back its own and answers a's."""
    a, b = pair
    negotiate(a, b)
    old_a, old_b = a.creds, b.creds
    offer_a = a.offer(restart=True)
    offer_b = b.offer(restart=True)
    a.set_local("offer", offer_a)
    b.set_local("offer", offer_b)
    with pytest.raises(JsepStateError):
        a.set_remote("offer", offer_b)  # the impolite side ignores the colliding offer
    b.rollback("local")
    assert b.creds == old_b and b.agent.generation == 0
    b.set_remote("offer", offer_a)
    answer = b.answer()
    assert answer.media[0].ice_ufrag not in (old_b[0], offer_b.media[0].ice_ufrag)
    b.set_local("answer", answer)
    a.set_remote("answer", answer)
    assert (a.state, b.state) == (S.STABLE, S.STABLE)
    assert a.creds != old_a and b.creds != old_b
    assert a.agent.remote_credentials == b.creds and b.agent.remote_credentials == a.creds


def test_older_remote_ufrags_are_known_after_a_restart(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    negotiate(a, b)
    first = a.creds[0]
    negotiate(a, b, restart=True)
    assert b.session.is_older_remote_ufrag(first)  # its late candidates: ignored
    assert not b.session.is_older_remote_ufrag("never-seen")  # unknown: an error upstream


def test_rolled_back_first_offer_cannot_be_replaced(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    offer = a.offer()
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    b.rollback("remote")
    other = description(("otherufrag", "o" * 22), "actpass")
    with pytest.raises(JsepAccessError, match="rolled back; not supported"):
        b.set_remote("offer", other)
    b.set_remote("offer", offer)  # the same one again is fine
    assert b.state is S.HAVE_REMOTE_OFFER


def test_remote_offer_without_fingerprint_is_refused(pair: tuple[Endpoint, Endpoint]) -> None:
    a, b = pair
    offer = a.offer()
    offer.media[0].fingerprints = []
    with pytest.raises(JsepAccessError, match="fingerprint"):
        b.set_remote("offer", offer)
    assert b.state is S.STABLE and b.agent.remote_credentials is None


# ---------------------------------------------------------------- random sequences

CALLS = st.lists(
    st.tuples(
        st.sampled_from("ab"),
        st.sampled_from(["lo", "lor", "ro", "la", "lp", "ra", "rp", "rbl", "rbr", "restart"]),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CALLS)
def test_random_sequences_keep_the_invariants(calls: list[tuple[str, str]]) -> None:
    """Any sequence: refused calls raise JSEP errors and change nothing; states stay coherent."""
    a, b = Endpoint("a", 1), Endpoint("b", 2)
    peers = {"a": (a, b), "b": (b, a)}
    sent: dict[str, tuple[str, sdplib.SessionDescription]] = {}
    for who, call in calls:
        me, other = peers[who]
        before = (me.state, me.creds, me.session.pending_local, me.session.pending_remote)
        try:
            if call in ("lo", "lor"):
                offer = me.offer(restart=call == "lor")
                me.set_local("offer", offer)
                sent[who] = ("offer", offer)
            elif call in ("la", "lp"):
                answer = me.answer()
                me.set_local("answer" if call == "la" else "pranswer", answer)
                sent[who] = ("answer" if call == "la" else "pranswer", answer)
            elif call in ("ro", "ra", "rp") and other.name in sent:
                sdp_type, desc = sent[other.name]
                me.set_remote(sdp_type, desc)
            elif call == "rbl":
                me.rollback("local")
            elif call == "rbr":
                me.rollback("remote")
            elif call == "restart":
                me.session.restart_ice()
        except (JsepStateError, JsepAccessError):
            after = (me.state, me.creds, me.session.pending_local, me.session.pending_remote)
            assert after == before  # refused before anything was applied
        for end in (a, b):
            session = end.session
            state = session.signaling
            assert (state is S.STABLE) == (
                session.pending_local is None and session.pending_remote is None
            )
            if state in (S.HAVE_LOCAL_OFFER, S.HAVE_REMOTE_PRANSWER):
                assert session.pending_local is not None
                assert session.pending_local.type == "offer"
            if state in (S.HAVE_REMOTE_OFFER, S.HAVE_LOCAL_PRANSWER):
                assert session.pending_remote is not None
                assert session.pending_remote.type == "offer"
            assert session.deferred_remote in (None, session.pending_remote)
            assert end.agent.local_credentials == session.credentials.current
            local = session.local
            if local is not None and local.credentials is not None:
                assert local.credentials == session.credentials.current


@pytest.mark.parametrize("how", ["iceRestart", "restartIce"])
def test_a_restart_before_anything_was_gathered_changes_nothing(how: str) -> None:
    """The first offer carries the credentials ICE was made with, whatever was asked.

    webrtc-pc: restartIce() replaces the local descriptions' credentials (none yet); an
    iceRestart first offer has no generation to restart. New credentials here would
    announce a ufrag the ICE agent does not have.
    """
    a, b = Endpoint("a", 1), Endpoint("b", 2)
    if how == "restartIce":
        a.session.restart_ice()
    offer = a.offer(restart=how == "iceRestart")
    assert offer.media[0].ice_ufrag == a.agent.local_credentials[0]
    a.set_local("offer", offer)
    b.set_remote("offer", offer)
    b.set_local("answer", b.answer())
    assert not a.session.restart_pending and a.agent.generation == 0


# ---------------------------------------------------------------- purity


def test_jsep_imports_no_aiortc_and_no_asyncio() -> None:
    """The sans-IO JSEP layer loads neither aiortc (nor its codec stack) nor asyncio."""
    code = (
        "import sys\n"
        "import unbroken.jsep, unbroken.jsep.session, unbroken.jsep.media\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('aiortc', 'av', 'asyncio'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
