"""NAT rebinding in the agent, with raw STUN and exact times (issue 12).

- the mapped address of every check and consent response is read (RFC 8445 §7.2.5.3.1);
  a change on the pair in use is reported, and the local candidate becomes what the
  peer really sees;
- a controlling agent nominates on its consent checks (as libwebrtc does), so the peer
  moves to our new address as soon as one arrives from it;
- a controlled agent follows the latest nomination, and moves on its own off a silent
  pair onto a live one (a controlling peer that never re-nominates, like Firefox);
- a controlling agent re-nominates a live pair when the one in use went silent.
"""

from __future__ import annotations

from test_ice_agent import (
    A_ADDR,
    PEER,
    PEER2,
    PEER_KEY,
    PEER_TB,
    check_for,
    drain,
    established,
    requests_in,
    run_lone,
)
from unbroken import stun
from unbroken.addresses import Address, Transmit
from unbroken.ice import IceAgent, IceConfig, MappedAddressChanged, SelectedPairChanged

NEW_MAPPING: Address = ("198.18.0.1", 61000)


def answer(agent: IceAgent, tx: Transmit, now: float, mapped: Address) -> None:
    """The peer's success response to `tx`, telling the agent it was seen at `mapped`."""
    req = stun.decode(tx.data)
    msg = stun.success_response(req, xor_mapped_address=mapped)
    agent.receive(stun.encode(msg, integrity_key=PEER_KEY), tx.local, tx.remote, now)


def test_consent_checks_of_the_controlling_agent_nominate() -> None:
    agent = established(controlling=True)
    sent = run_lone(agent, 3.0)
    consent = [stun.decode(tx.data) for _, tx in sent if tx.remote == PEER]
    assert consent and all(m.use_candidate for m in consent)
    assert all(m.ice_controlling is not None for m in consent)


def test_consent_checks_of_the_controlled_agent_do_not_nominate() -> None:
    agent = established(controlling=False)
    sent = run_lone(agent, 3.0)
    consent = [stun.decode(tx.data) for _, tx in sent if tx.remote == PEER]
    assert consent and not any(m.use_candidate for m in consent)


def test_first_mapped_address_names_the_local_candidate_without_an_event() -> None:
    agent = established(controlling=True)
    pair = agent.selected_pair
    assert pair is not None and pair.local.type == "host"
    run_lone(agent, 1.5, lambda tx, _m, now: answer(agent, tx, now, A_ADDR))
    assert pair.local.address == A_ADDR and pair.local.type == "host"
    assert not [e for e in drain(agent) if isinstance(e, MappedAddressChanged)]


def test_a_changed_mapped_address_is_reported_and_becomes_the_local_candidate() -> None:
    agent = established(controlling=True)
    pair = agent.selected_pair
    assert pair is not None
    run_lone(agent, 1.5, lambda tx, _m, now: answer(agent, tx, now, A_ADDR))
    drain(agent)
    run_lone(agent, 3.0, lambda tx, _m, now: answer(agent, tx, now, NEW_MAPPING))
    events = [e for e in drain(agent) if isinstance(e, MappedAddressChanged)]
    assert events == [MappedAddressChanged(A_ADDR, NEW_MAPPING, 0, True)]
    assert pair.local.type == "prflx" and pair.local.address == NEW_MAPPING
    assert pair.local.base == A_ADDR and pair.base == A_ADDR  # the same socket
    assert agent.selected_pair is pair and agent.counters["mapped_address_changed"] == 1
    # Never given to the peer: no trickled candidate for it (RFC 8445 §7.2.5.3.1).
    assert not any(e for e in drain(agent) if type(e).__name__ == "LocalCandidateGathered")


def test_controlled_agent_follows_the_latest_nomination_even_to_a_lower_priority_pair() -> None:
    agent = established(controlling=False)
    old = agent.selected_pair
    assert old is not None
    # The peer's consent now comes from a new address (its NAT rebound), nominating, with
    # a priority lower than the pair in use.
    low = old.remote.priority // 2
    agent.receive(
        check_for(agent, use_candidate=True, priority=low, controlling=PEER_TB), A_ADDR, PEER2, 1.0
    )
    ((tx, _msg),) = [(t, m) for t, m in requests_in(agent.datagrams_to_send()) if t.remote == PEER2]
    answer(agent, tx, 1.0, A_ADDR)
    pair = agent.selected_pair
    assert pair is not None and pair.remote.address == PEER2 and pair.remote.type == "prflx"
    switched = [e for e in drain(agent) if isinstance(e, SelectedPairChanged)]
    assert switched and switched[-1].remote is not None and switched[-1].remote.address == PEER2


def test_nomination_of_the_pair_in_use_changes_nothing() -> None:
    agent = established(controlling=False)
    pair = agent.selected_pair
    agent.receive(check_for(agent, use_candidate=True), A_ADDR, PEER, 1.0)
    assert agent.selected_pair is pair
    assert not [e for e in drain(agent) if isinstance(e, SelectedPairChanged)]


def _live_second_pair(agent: IceAgent, now: float) -> list[Transmit]:
    """The peer checks from PEER2 (no nomination) and the agent's triggered check is answered."""
    role = {"controlled": PEER_TB} if agent.controlling else {"controlling": PEER_TB}
    agent.receive(check_for(agent, **role), A_ADDR, PEER2, now)
    out = agent.datagrams_to_send()
    for tx, _msg in requests_in(out):
        if tx.remote == PEER2:
            answer(agent, tx, now, A_ADDR)
    return agent.datagrams_to_send()


def test_controlled_agent_keeps_a_healthy_pair_when_another_one_answers() -> None:
    agent = established(controlling=False)
    pair = agent.selected_pair
    assert pair is not None
    _live_second_pair(agent, 0.5)  # the pair in use heard something 0.5 s ago: healthy
    assert agent.selected_pair is pair


def test_controlled_agent_moves_off_a_silent_pair_onto_a_live_one() -> None:
    config = IceConfig(keepalive_interval=20.0)  # no consent traffic of our own here
    agent = established(controlling=False, config=config)
    old = agent.selected_pair
    assert old is not None and config.switch_silence == 1.5
    _live_second_pair(agent, 1.6)  # nothing on the pair in use since 0.0
    pair = agent.selected_pair
    assert pair is not None and pair is not old and pair.remote.address == PEER2
    assert agent.counters["path_followed"] == 1


def test_controlling_agent_renominates_a_live_pair_when_the_one_in_use_is_silent() -> None:
    config = IceConfig(keepalive_interval=20.0)
    agent = established(controlling=True, config=config)
    old = agent.selected_pair
    assert old is not None
    after = _live_second_pair(agent, 1.6)
    nominations = [
        (tx, m) for tx, m in requests_in(after) if tx.remote == PEER2 and m.use_candidate
    ]
    assert len(nominations) == 1
    assert agent.selected_pair is old  # not before the nomination succeeds
    answer(agent, nominations[0][0], 1.6, A_ADDR)
    pair = agent.selected_pair
    assert pair is not None and pair.remote.address == PEER2 and pair.nominated


def test_data_on_a_live_pair_moves_the_controlled_agent_off_a_silent_one() -> None:
    config = IceConfig(keepalive_interval=20.0)
    agent = established(controlling=False, config=config)
    _live_second_pair(agent, 0.2)  # valid, but the pair in use is healthy then
    old = agent.selected_pair
    assert old is not None and old.remote.address == PEER
    assert agent.receive(b"\x17\xfe\xfd" + bytes(20), A_ADDR, PEER2, 2.0) is not None
    pair = agent.selected_pair
    assert pair is not None and pair.remote.address == PEER2


def test_prflx_budget_answers_only_checks_whose_pair_exists() -> None:
    """Issue 7.3: past every budget a check goes unanswered rather than half-learnt."""
    from test_ice_agent import lone, remote_cand, responses_in

    agent = lone(config=IceConfig(max_remote_candidates=2, max_pairs=2, max_prflx_candidates=1))
    for i in range(1, 4):
        agent.add_remote_candidate(remote_cand((f"203.0.113.{i}", 9)), 0.0)
    agent.datagrams_to_send()
    agent.receive(check_for(agent), A_ADDR, ("203.0.113.200", 9), 0.0)  # within the budget
    answers = [m.message_class for _, m in responses_in(agent.datagrams_to_send())]
    assert answers == [stun.MessageClass.SUCCESS]
    agent.receive(check_for(agent), A_ADDR, ("203.0.113.201", 9), 0.0)  # past it: silence
    assert responses_in(agent.datagrams_to_send()) == []
    assert agent.counters["stun_check_not_learnable"] == 1
    assert (A_ADDR, ("203.0.113.201", 9)) not in agent.generations()[0].pairs_by_path


def test_data_from_an_early_checks_address_is_accepted_before_the_answer() -> None:
    """The peer checked us before its answer arrived, and already sends (RFC 8445 §12.1)."""
    from test_ice_agent import lone

    agent = lone(remote=False)
    agent.receive(check_for(agent, controlling=PEER_TB), A_ADDR, PEER, 0.0)
    assert agent.receive(b"\x17\xfe\xfd" + bytes(20), A_ADDR, PEER, 0.01) is not None
    assert agent.counters["data_before_answer"] == 1
    assert agent.receive(b"\x17\xfe\xfd" + bytes(20), A_ADDR, PEER2, 0.01) is None


def test_the_pair_in_use_heard_again_after_an_outage_is_reported() -> None:
    from unbroken.ice import PathResumed

    agent = established(controlling=True)
    drain(agent)
    data = b"\x17\xfe\xfd" + bytes(20)
    agent.receive(data, A_ADDR, PEER, 0.1)  # a normal gap: nothing to say
    assert not [e for e in drain(agent) if isinstance(e, PathResumed)]
    agent.receive(data, A_ADDR, PEER, 1.5)  # 1.4 s of nothing, then the path is back
    assert [e for e in drain(agent) if isinstance(e, PathResumed)] == [PathResumed(0, 1.4)]


def test_a_silent_pair_in_use_is_reported_once_before_disconnected() -> None:
    from unbroken.ice import PathSilent

    config = IceConfig(keepalive_interval=20.0)  # no consent traffic in the window
    agent = established(controlling=True, config=config)
    drain(agent)
    timers = run_lone(agent, 2.0)  # nothing answers: the pair goes silent
    assert timers == [] or all(stun.decode(tx.data) for _, tx in timers)
    silent = [e for e in drain(agent) if isinstance(e, PathSilent)]
    assert silent == [PathSilent(0, 1.5)]
    assert agent.state.value == "connected"  # reported before `disconnected` (2.5 s)
    agent.receive(b"\x17\xfe\xfd" + bytes(20), A_ADDR, PEER, 2.1)  # heard again
    run_lone(agent, 3.7)
    assert [e for e in drain(agent) if isinstance(e, PathSilent)] == [PathSilent(0, 1.5)]
