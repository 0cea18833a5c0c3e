"""Roles on ICE restart: the restart's offerer controls, and no restart goes through a conflict.

libwebrtc (redetermine_role_on_ice_restart, on by default) and Firefox decide roles
anew on every restart: the side that offers it controls. We do the same (docs/ice.md).
While the restart's signaling is in flight the two sides briefly disagree about roles
on the *old* pair, which keeps carrying data and consent; conflicts are judged on the
newest generation only, so those checks are answered and nothing flips back.
"""

from __future__ import annotations

import asyncio

from pc_helpers import make_pc, negotiate, trickle
from test_ice_agent import A_ADDR, Duo, S
from unbroken import RTCPeerConnection, stun
from unbroken.ice import RoleChanged, StateChanged


def no_conflicts(duo: Duo) -> None:
    """No 487 (Role Conflict) on the wire since duo.wire was last cleared."""
    for _, tx in duo.wire:
        msg = stun.decode(tx.data) if tx.data[0] < 4 else None
        if msg is not None and msg.error_code is not None:
            assert msg.error_code[0] != 487, f"role conflict on the wire: {tx}"


def test_restart_offered_by_the_controlled_side_swaps_roles_without_conflict() -> None:
    duo = Duo()
    duo.connect()
    assert duo.a.controlling and not duo.b.controlling
    # b offers a restart: it controls from its setLocalDescription(offer) on...
    duo.trickle = False  # the offer is still on its way: a knows nothing of it yet
    b_creds = duo.b.restart(duo.now, controlling=True)
    assert duo.b.controlling
    # ...while a, not yet told, may still claim control: the old pair's consent checks
    # cross with a stale role for a while. b (the restarter) answers them and keeps its
    # role; a may give way early, towards the role its answer will give it anyway.
    duo.run(3.0)
    assert duo.b.controlling
    assert duo.a.state in (S.CONNECTED, S.COMPLETED) and duo.b.state is S.CONNECTED
    duo.wire.clear()
    # a applies the offer and answers (its setLocalDescription(answer)): it is controlled.
    a_creds = duo.a.restart(duo.now, controlling=False)
    duo.a.set_remote_credentials(*b_creds, duo.now)
    duo.b.set_remote_credentials(*a_creds, duo.now, local_ufrag=b_creds[0])
    for src, dst in ((duo.a, duo.b), (duo.b, duo.a)):
        for cand in src.local_candidates():
            dst.add_remote_candidate(cand, duo.now)
    duo.pump()
    assert duo.run_while(
        lambda: (
            duo.a.selected_pair is None
            or duo.a.selected_pair.generation != 1
            or duo.b.selected_pair is None
            or duo.b.selected_pair.generation != 1
        ),
        2.0,
    )
    assert duo.b.controlling and not duo.a.controlling
    no_conflicts(duo)  # the new generation's checks met no conflict
    # The restarter's role changed once, by the restart itself.
    assert [e.controlling for _, e in duo.of("b", RoleChanged)] == [True]
    assert [e.controlling for _, e in duo.of("a", RoleChanged)] == [False]


def test_old_generation_checks_with_a_stale_role_are_answered_with_success() -> None:
    duo = Duo()
    duo.connect()
    duo.trickle = False
    duo.b.restart(duo.now, controlling=True)
    duo.wire.clear()
    duo.run(2.5)  # consent both ways on the generation-0 pair
    to_a = [
        m
        for _, tx in duo.wire
        if tx.remote == A_ADDR and tx.data[0] < 4
        for m in [stun.decode(tx.data)]
        if m.message_class is not stun.MessageClass.REQUEST
    ]
    assert to_a, "b must keep answering the old pair's consent checks"
    assert all(m.message_class is stun.MessageClass.SUCCESS for m in to_a)
    assert duo.b.controlling and duo.b.counters["stun_rejected_487"] == 0


def test_rollback_of_a_restart_restores_the_role() -> None:
    duo = Duo()
    duo.connect()
    duo.trickle = False
    creds = duo.b.restart(duo.now, controlling=True)
    assert duo.b.controlling
    assert duo.b.abandon(creds[0], duo.now)
    assert not duo.b.controlling
    duo.run(3.0)
    no_conflicts(duo)


def test_restart_with_vanished_base_reports_checking_not_failed() -> None:
    """Issue 7.6: losing the selected pair's address in the restart step is no `failed`."""
    duo = Duo()
    duo.connect()
    duo.trickle = False
    duo.a.add_base(("192.0.2.2", 40001), duo.now)
    seen = len(duo.of("a", StateChanged))
    duo.a.restart(duo.now, remove_bases=(A_ADDR,))
    duo.pump()
    after = [e.state for _, e in duo.of("a", StateChanged)[seen:]]
    assert after == [S.CHECKING]
    assert A_ADDR not in duo.a.bases


async def _connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    a, b = make_pc(), make_pc()
    trickle(a, b)
    opened = asyncio.Event()
    channel = a.createDataChannel("roles")
    channel.on("open", opened.set)
    await negotiate(a, b)
    await asyncio.wait_for(opened.wait(), 5)
    return a, b


async def _on_new_generation(pc: RTCPeerConnection) -> None:
    """Wait until pc's selected pair belongs to its newest generation (woken per selection)."""
    ice = pc.iceTransport
    assert ice is not None
    changed = asyncio.Event()
    ice.on("selectedpairchange", lambda _event: changed.set())

    def done() -> bool:
        pair = ice.agent.selected_pair
        return pair is not None and pair.generation == ice.agent.generation

    async def wait() -> None:
        while not done():
            changed.clear()
            await changed.wait()

    await asyncio.wait_for(wait(), 5)


async def _restart_from(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    offerer.restartIce()
    await negotiate(offerer, answerer)
    await asyncio.gather(_on_new_generation(offerer), _on_new_generation(answerer))


async def test_peer_connections_take_turns_restarting_without_role_conflict() -> None:
    a, b = await _connected_pair()
    try:
        assert a.iceTransport is not None and b.iceTransport is not None
        assert a.iceTransport.agent.controlling and not b.iceTransport.agent.controlling
        for offerer, answerer in ((b, a), (a, b), (b, a), (b, a), (a, b)):
            await _restart_from(offerer, answerer)
            assert offerer.iceTransport is not None and answerer.iceTransport is not None
            assert offerer.iceTransport.agent.controlling
            assert not answerer.iceTransport.agent.controlling
        for pc in (a, b):
            assert pc.iceTransport is not None
            assert pc.iceTransport.agent.counters["stun_rejected_487"] == 0
            assert pc.iceConnectionState in ("connected", "completed")
    finally:
        await a.close()
        await b.close()


def test_a_487_on_the_old_generation_does_not_flip_the_restarter() -> None:
    """The peer, not yet told of our restart, may 487 our old pair's consent: ignored."""
    duo = Duo(seed=7)
    duo.connect()
    duo.trickle = False
    restarter = duo.b
    restarter.restart(duo.now, controlling=True)
    duo.run(3.0)
    assert restarter.controlling
    flipped = [e for _, e in duo.of("b", RoleChanged)]
    assert [e.controlling for e in flipped] == [True]


def test_the_peers_first_check_of_a_restart_decides_the_roles() -> None:
    """Firefox keeps its first roles across restarts: whoever checks first decides."""
    duo = Duo()
    duo.connect()
    duo.trickle = False
    # a was controlling and offers a restart (controlling again); b answers but, like
    # Firefox as the first offerer, keeps claiming control in its checks.
    a_creds = duo.a.restart(duo.now, controlling=True)
    b_creds = duo.b.restart(duo.now, controlling=True, answering=True)
    duo.b.set_remote_credentials(*a_creds, duo.now)
    duo.a.set_remote_credentials(*b_creds, duo.now, local_ufrag=a_creds[0])
    for cand in duo.a.local_candidates():
        duo.b.add_remote_candidate(cand, duo.now)
    for cand in duo.b.local_candidates():
        duo.a.add_remote_candidate(cand, duo.now)
    duo.wire.clear()
    duo.pump()
    assert duo.run_while(
        lambda: any(
            p is None or p.generation != 1 for p in (duo.a.selected_pair, duo.b.selected_pair)
        ),
        2.0,
    )
    no_conflicts(duo)
    assert duo.a.controlling != duo.b.controlling
    assert duo.a.counters["role_adopted"] + duo.b.counters["role_adopted"] == 1
