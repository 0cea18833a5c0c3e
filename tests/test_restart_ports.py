"""Each restart gathers on fresh ports; old sockets close once their generation is gone.

libwebrtc keeps one connection per remote address and generation: with a port reused
across generations it paired a new generation with an old ufrag and answered every
check of the new one with 401 (found by the Chromium soak, issue 6). Browsers take new
ports on restart; so do we.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from interop.netns import NetNs, netns_available
from pc_helpers import make_pc, negotiate, trickle
from prereq import require
from test_ice_agent import A_ADDR, B_ADDR, PEER_TB, Duo, check_for
from unbroken.addresses import Address
from unbroken.ice import BaseReleased, IceConfig
from unbroken.runtime import pinned
from unbroken.runtime.loopback import connected_pair

A_NEW: Address = ("192.0.2.1", 40002)
B_NEW: Address = ("198.51.100.1", 50002)


def test_new_generation_uses_only_its_new_bases_and_old_ones_are_released() -> None:
    duo = Duo(config=IceConfig(release_delay=0.5))
    duo.connect()
    duo.at[A_NEW], duo.at[B_NEW] = duo.a, duo.b
    a_creds = duo.a.restart(duo.now, new_bases=(A_NEW,))
    b_creds = duo.b.restart(duo.now, new_bases=(B_NEW,))
    duo.b.set_remote_credentials(*a_creds, duo.now)
    duo.a.set_remote_credentials(*b_creds, duo.now, local_ufrag=a_creds[0])
    duo.pump()
    assert [c.address for c in duo.a.local_candidates()] == [A_NEW]
    assert duo.run_while(
        lambda: duo.a.selected_pair is None or duo.a.selected_pair.generation != 1, 2.0
    )
    pair = duo.a.selected_pair
    assert pair is not None and pair.base == A_NEW and pair.remote.address == B_NEW
    assert duo.run_while(lambda: A_ADDR in duo.a.bases, 2.0)
    assert [e.address for _, e in duo.of("a", BaseReleased)] == [A_ADDR]
    assert [e.address for _, e in duo.of("b", BaseReleased)] == [B_ADDR]
    assert duo.a.bases == (A_NEW,)


def test_a_check_of_the_new_generation_on_an_old_socket_is_not_answered() -> None:
    duo = Duo()
    duo.connect()
    duo.trickle = False
    creds = duo.a.restart(duo.now, new_bases=(A_NEW,))
    duo.a.set_remote_credentials("peerUfrag", "peerPasswordPeerPassword+/", duo.now)
    duo.a.datagrams_to_send()
    request = check_for(duo.a, controlled=PEER_TB)
    assert request  # a valid check of generation 1 ...
    assert duo.a.local_credentials == creds
    duo.a.receive(request, A_ADDR, ("203.0.113.9", 60000), duo.now)  # ... on gen 0's socket
    assert duo.a.datagrams_to_send() == []
    assert duo.a.counters["stun_base_of_other_generation"] == 1


async def test_peer_connection_restarts_on_fresh_ports_and_closes_the_old() -> None:
    config = IceConfig(release_delay=0.2)
    a, b = make_pc(iceConfig=config), make_pc(iceConfig=config)
    try:
        trickle(a, b)
        opened = asyncio.Event()
        channel = a.createDataChannel("ports")
        channel.on("open", opened.set)
        got: asyncio.Queue[str] = asyncio.Queue()
        b.on("datachannel", lambda ch: ch.on("message", got.put_nowait))
        await negotiate(a, b)
        await asyncio.wait_for(opened.wait(), 5)
        ice = a.iceTransport
        assert ice is not None
        old = set(ice.agent.bases)
        released: asyncio.Queue[Address] = asyncio.Queue()
        ice.on("basereleased", released.put_nowait)
        a.restartIce()
        await negotiate(a, b)
        gone = {await asyncio.wait_for(released.get(), 5) for _ in old}
        assert gone == old and not old & set(ice.agent.bases)
        pair = ice.agent.selected_pair
        assert pair is not None and pair.generation == 1 and pair.base not in old
        channel.send("after the restart")
        assert await asyncio.wait_for(got.get(), 5) == "after the restart"
    finally:
        await a.close()
        await b.close()


def test_a_check_pairing_our_generation_with_another_remote_ufrag_gets_401() -> None:
    """libwebrtc checks our old candidate with its new ufrag; answering let it select it."""
    from test_ice_agent import PEER, lone, make_request
    from unbroken import stun

    agent = lone()
    ours = agent.local_credentials[0]
    key = stun.short_term_key(agent.local_credentials[1])
    request = make_request(f"{ours}:otherGen", key, controlling=PEER_TB)
    agent.receive(request, A_ADDR, PEER, 0.0)
    ((tx,),) = [agent.datagrams_to_send()]
    answer = stun.decode(tx.data)
    assert answer.message_class is stun.MessageClass.ERROR and answer.error_code is not None
    assert answer.error_code[0] == 401
    assert agent.pairs() == [] and agent.counters["stun_cross_generation"] == 1


def test_answering_a_restart_holds_our_checks_until_the_peer_checks() -> None:
    config = IceConfig(answer_check_hold=0.5)
    duo = Duo(config=config)
    duo.connect()
    duo.trickle = False
    duo.at[A_NEW], duo.at[B_NEW] = duo.a, duo.b
    a_creds = duo.a.restart(duo.now, new_bases=(A_NEW,))  # a offers
    b_creds = duo.b.restart(duo.now, new_bases=(B_NEW,), answering=True)
    duo.b.set_remote_credentials(*a_creds, duo.now)
    for cand in duo.a.local_candidates():
        duo.b.add_remote_candidate(cand, duo.now)
    start = duo.now
    duo.wire.clear()
    duo.run(0.3)  # the answer is still on its way to a: b must not check yet
    new_checks = [tx for _, tx in duo.wire if tx.local == B_NEW]
    assert new_checks == []
    # The answer arrives; a checks, its first check triggers b's at once.
    duo.a.set_remote_credentials(*b_creds, duo.now, local_ufrag=a_creds[0])
    for cand in duo.b.local_candidates():
        duo.a.add_remote_candidate(cand, duo.now)
    duo.pump()
    assert duo.run_while(
        lambda: duo.b.selected_pair is None or duo.b.selected_pair.generation != 1, 1.0
    )
    assert duo.now - start < 0.5  # well before the hold would have run out
    first_b = min(t for t, tx in duo.wire if tx.local == B_NEW)
    first_a = min(t for t, tx in duo.wire if tx.local == A_NEW)
    assert first_b >= first_a


def test_the_hold_runs_out_when_the_peer_never_checks() -> None:
    config = IceConfig(answer_check_hold=0.5)
    duo = Duo(config=config)
    duo.connect()
    duo.trickle = False
    duo.at[B_NEW] = duo.b
    a_creds = duo.a.restart(duo.now)
    duo.b.restart(duo.now, new_bases=(B_NEW,), answering=True)
    duo.b.set_remote_credentials(*a_creds, duo.now)
    for cand in duo.a.local_candidates():
        duo.b.add_remote_candidate(cand, duo.now)
    start = duo.now
    duo.wire.clear()
    duo.run(1.0)
    sent = sorted(t for t, tx in duo.wire if tx.local == B_NEW)
    assert sent and sent[0] >= start + 0.5


# ------------------------------------------------------------------ ports let go


@pytest.fixture
def few_ports() -> Iterator[NetNs]:
    """A namespace whose ephemeral UDP ports are 40000-40002: the kernel's pick is a die."""
    require(netns_available())
    ns = NetNs.create(prefix="ubp")
    try:
        done = ns.run("sysctl", "-qw", "net.ipv4.ip_local_port_range=40000 40002")
        assert done.returncode == 0, done.stderr
        yield ns
    finally:
        ns.delete()


def _port(ip: str = "127.0.0.1") -> int:
    sock = pinned.bind_base(ip)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def test_a_base_never_draws_a_port_a_base_let_go_just_before(
    few_ports: NetNs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """coturn holds a released allocation until its next one-second tick and answers an
    Allocate from that 5-tuple with 437; over UDP the relay of a restart whose fresh base
    drew that port was lost (the 20-restart relay test stalled about 1 run in 50)."""
    with few_ports.entered():
        for _ in range(20):
            monkeypatch.setattr(pinned, "_closed_at", {})
            port = _port()
            pinned.base_closed(("127.0.0.1", port))
            assert all(_port() != port for _ in range(5))


def test_with_every_port_let_go_a_base_still_binds(
    few_ports: NetNs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pinned, "_closed_at", {})
    with few_ports.entered():
        for port in (40000, 40001, 40002):
            pinned.base_closed(("127.0.0.1", port))
        assert 40000 <= _port() <= 40002


async def test_a_closed_connection_s_ports_are_let_go(
    few_ports: NetNs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IceConnection tells bind_base which base ports it closed."""
    with few_ports.entered():
        for _ in range(10):
            monkeypatch.setattr(pinned, "_closed_at", {})
            a, b = await connected_pair()
            try:
                (base_b,) = [base for base in b.agent.bases if base[0] == "127.0.0.1"]
                await b.close()
                for _ in range(10):  # asyncio closes a transport's socket a turn later
                    await asyncio.sleep(0)
                assert _port() != base_b[1]
            finally:
                await a.close()
                await b.close()
