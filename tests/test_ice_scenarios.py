"""Scenario tests: the real IceAgent on the deterministic simulated network.

Each asserts the state sequence, the selected pairs, and delivery of application
datagrams sent every 10 ms, through restarts, loss, outages, address changes and NATs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypedDict

import pytest

from unbroken.ice import ALLOWED, IceConfig, IceTransportState
from unbroken.netsim import Behaviour, Nat, Network
from unbroken.netsim.ice_node import IceNode, Signaling
from unbroken.netsim.stun_server import StunServerNode

INTERVAL = 0.010
S = IceTransportState


class NatBehaviours(TypedDict):
    """Network.add_nat's mapping and filtering, to pass as keywords."""

    mapping: Behaviour
    filtering: Behaviour


def assert_transitions_allowed(node: IceNode) -> None:
    """Every state change the node reported is one webrtc-pc permits."""
    previous = S.NEW
    for _, state in node.states:
        assert state in ALLOWED[previous], f"{node.name}: {previous.value} -> {state.value}"
        previous = state


def connected(node: IceNode) -> bool:
    return node.state in (S.CONNECTED, S.COMPLETED)


class World:
    """Two hosts, an ICE node on each, signaling between them, and traffic a -> b."""

    def __init__(
        self,
        seed: int = 1,
        *,
        a_behind: Nat | None = None,
        b_behind: Nat | None = None,
        net: Network | None = None,
        config: IceConfig | None = None,
    ) -> None:
        self.net = net or Network(seed=seed)
        self.host_a = self.net.add_host(
            "a", ["10.0.0.2" if a_behind else "192.0.2.1"], behind=a_behind
        )
        self.host_b = self.net.add_host(
            "b", ["10.1.0.2" if b_behind else "198.51.100.1"], behind=b_behind
        )
        self.a = IceNode(self.net, self.host_a, controlling=True, seed=seed, config=config)
        self.b = IceNode(self.net, self.host_b, controlling=False, seed=seed + 1000, config=config)
        self.sig = Signaling(self.net, self.a, self.b)
        self.sending: list[object] = []

    def connect(self, timeout: float = 5.0) -> None:
        self.sig.connect()
        assert self.net.run_while(lambda: not (connected(self.a) and connected(self.b)), timeout)

    def start_traffic(self) -> None:
        """a and b each send a datagram every 10 ms from now on."""
        self.sending.append(self.net.call_every(INTERVAL, self.a.send_app))
        self.sending.append(self.net.call_every(INTERVAL, self.b.send_app))

    def run(self, duration: float) -> None:
        self.net.run_until(self.net.now + duration)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    assert_transitions_allowed(w.a)
    assert_transitions_allowed(w.b)


def test_connect_states_and_delivery(world: World) -> None:
    world.connect()
    world.start_traffic()
    world.run(1.0)
    assert world.a.state_sequence() == ["new", "checking", "connected", "completed"]
    assert world.b.state_sequence() == ["new", "checking", "connected", "completed"]
    sel = world.a.selections[-1][1]
    assert sel.local is not None and sel.remote is not None
    assert (sel.local.host, sel.remote.host) == ("192.0.2.1", "198.51.100.1")
    assert world.b.app.lost(range(1, world.a.app.sent - 2)) == []
    assert world.a.app.lost(range(1, world.b.app.sent - 2)) == []


def test_restart_on_healthy_path_loses_nothing_and_adds_no_gap(world: World) -> None:
    world.connect()
    world.start_traffic()
    world.run(0.5)
    start = world.net.now
    world.sig.restart(world.a)
    world.run(1.0)
    # Both sides switched to generation 1, and reported it once each.
    assert [e.generation for _, e in world.a.selections] == [0, 1]
    assert [e.generation for _, e in world.b.selections] == [0, 1]
    assert world.a.agent.generation == 1 and [g.index for g in world.a.agent.generations()] == [
        0,
        1,
    ]
    for node, other in ((world.b, world.a), (world.a, world.b)):
        assert node.app.lost(range(1, other.app.sent - 2)) == []
        assert node.app.longest_gap(start - 0.1, world.net.now - 0.05) <= INTERVAL + 1e-9
    assert world.a.state_sequence()[-2:] == ["connected", "completed"]
    world.run(5.0)  # the old generation is released after release_delay
    assert [g.index for g in world.a.agent.generations()] == [1]


@pytest.mark.parametrize("restarts", [10])
def test_repeated_restarts(world: World, restarts: int) -> None:
    world.connect()
    world.start_traffic()
    for n in range(restarts):
        world.run(0.3)
        world.sig.restart(world.a if n % 2 == 0 else world.b)
    world.run(1.0)
    assert world.a.agent.generation == restarts
    assert [e.generation for _, e in world.a.selections] == list(range(restarts + 1))
    assert world.b.app.lost(range(1, world.a.app.sent - 2)) == []
    assert world.a.app.lost(range(1, world.b.app.sent - 2)) == []
    assert world.b.app.longest_gap(0.2, world.net.now - 0.05) <= INTERVAL + 1e-9


def test_restart_during_restart(world: World) -> None:
    world.connect()
    world.start_traffic()
    world.run(0.2)
    world.sig.restart(world.a)
    world.run(0.005)  # the offer is still in flight
    world.sig.restart(world.a)
    world.run(1.0)
    assert world.a.agent.generation == 2
    assert world.a.selections[-1][1].generation == 2
    assert world.b.app.lost(range(1, world.a.app.sent - 2)) == []


def test_both_sides_restart_at_once(world: World) -> None:
    world.connect()
    world.start_traffic()
    world.run(0.3)
    world.sig.restart_both()
    world.run(1.0)
    assert world.a.selections[-1][1].generation == 1
    assert world.b.selections[-1][1].generation == 1
    assert world.b.app.lost(range(1, world.a.app.sent - 2)) == []
    assert world.a.app.lost(range(1, world.b.app.sent - 2)) == []


def test_restart_in_new_state() -> None:
    w = World()
    w.a.bind_all()
    w.b.bind_all()
    w.sig.restart(w.a)  # before any credentials were exchanged: generation 1 simply wins
    w.run(0.05)
    assert w.a.agent.generation == 1 and w.b.agent.generation == 1
    w.a.agent.gather(w.net.now)
    assert w.net.run_while(lambda: not (connected(w.a) and connected(w.b)), 5.0)
    assert w.a.selections[-1][1].generation == 1


def test_restart_in_checking_state(world: World) -> None:
    world.sig.connect()
    world.run(0.015)  # candidates exchanged, checks in flight
    assert world.a.state is S.CHECKING
    world.sig.restart(world.a)
    assert world.net.run_while(
        lambda: world.a.agent.selected_pair is None or world.a.agent.selected_pair.generation < 1,
        5.0,
    )
    assert connected(world.a) and connected(world.b)


def test_link_down_goes_disconnected_then_recovers(world: World) -> None:
    world.connect()
    world.start_traffic()
    world.run(0.5)
    down_at = world.net.now
    world.host_b.set_link(up=False)
    world.run(3.0)
    world.host_b.set_link(up=True)
    world.run(2.0)
    t_disc = next(t for t, s in world.a.states if s is S.DISCONNECTED)
    assert (
        2.5 - 0.02 <= t_disc - down_at <= 2.5 + 0.02
    )  # detection is exactly the configured timeout
    for node in (world.a, world.b):
        seq = node.state_sequence()
        assert seq.count("disconnected") == 1
        assert seq[seq.index("disconnected") + 1] == "connected" and seq[-1] in (
            "connected",
            "completed",
        )
    # Traffic resumes on the same pair: no restart was needed.
    assert [e.generation for _, e in world.a.selections] == [0]
    late = [s for t, s in world.b.app.received if t > down_at + 3.1]
    assert late and late == sorted(late)


def test_restart_in_disconnected_state_goes_checking_then_connected(world: World) -> None:
    world.connect()
    world.start_traffic()
    world.run(0.3)
    world.host_b.set_link(up=False)
    world.run(3.0)
    assert world.a.state is S.DISCONNECTED
    world.host_b.set_link(up=True)
    world.sig.restart(world.a)
    world.run(1.0)
    seq = world.a.state_sequence()
    assert seq[seq.index("disconnected") :][:2] == ["disconnected", "checking"]
    assert connected(world.a) and world.a.selections[-1][1].generation == 1


def test_consent_lost_fails_and_restart_from_failed_recovers() -> None:
    w = World(config=IceConfig(consent_timeout=6.0))
    w.connect()
    w.start_traffic()
    w.host_b.set_link(up=False)
    w.run(7.0)
    assert w.a.state is S.FAILED
    assert w.a.agent.selected_pair is None
    assert w.a.agent.send(b"\x80" + bytes(8), w.net.now) is None  # nothing more to that 5-tuple
    w.host_b.set_link(up=True)
    w.sig.restart(w.a)
    w.run(1.0)
    assert w.a.state_sequence() == [
        "new",
        "checking",
        "connected",
        "completed",
        "disconnected",
        "failed",
        "checking",
        "connected",
        "completed",
    ]
    assert connected(w.a) and connected(w.b)
    assert_transitions_allowed(w.a)
    assert_transitions_allowed(w.b)


def test_thirty_percent_loss() -> None:
    net = Network(seed=7)
    w = World(net=net)
    w.host_a.set_link(loss=0.3)
    w.connect(timeout=10.0)
    w.start_traffic()
    w.run(2.0)
    w.sig.restart(w.b)
    w.run(3.0)
    assert w.a.selections[-1][1].generation == 1
    got = len(w.b.app.received)
    # 30% loss on a's link: about 70% of a's datagrams arrive, and nothing else goes wrong.
    assert 0.6 * w.a.app.sent <= got <= 0.8 * w.a.app.sent
    assert connected(w.a) or w.a.state is S.DISCONNECTED


def test_address_change_then_restart() -> None:
    w = World()
    w.connect()
    w.start_traffic()
    w.run(0.5)
    w.host_a.remove_address("192.0.2.1")
    w.host_a.add_address("192.0.2.77")
    w.a.refresh_addresses()
    assert w.a.agent.selected_pair is None
    w.sig.restart(w.a)
    w.run(1.0)
    sel = w.a.selections[-1][1]
    assert sel.generation == 1 and sel.local is not None and sel.local.host == "192.0.2.77"
    assert connected(w.a) and connected(w.b)
    late = [t for t, _ in w.b.app.received if t > w.net.now - 0.5]
    assert len(late) >= 45


def test_endpoint_independent_nat_with_address_dependent_filtering() -> None:
    net = Network(seed=3)
    nat = net.add_nat(
        "nat-a", "203.0.113.1", mapping="endpoint-independent", filtering="address-dependent"
    )
    w = World(net=net, a_behind=nat)
    w.connect()
    w.start_traffic()
    w.run(0.5)
    w.sig.restart(w.a)
    w.run(1.0)
    assert w.a.selections[-1][1].generation == 1
    # b learned a's NAT mapping as a peer-reflexive candidate.
    assert w.b.selections[-1][1].remote is not None and w.b.selections[-1][1].remote.type == "prflx"
    assert w.b.app.lost(range(1, w.a.app.sent - 2)) == []


def test_symmetric_nat_against_public_peer() -> None:
    net = Network(seed=4)
    nat = net.add_nat(
        "nat-a",
        "203.0.113.1",
        mapping="address-and-port-dependent",
        filtering="address-and-port-dependent",
    )
    w = World(net=net, a_behind=nat)
    w.connect()
    w.start_traffic()
    w.run(0.5)
    w.sig.restart(w.b)
    w.run(1.0)
    assert w.b.selections[-1][1].generation == 1
    assert w.b.app.lost(range(1, w.a.app.sent - 2)) == []


def test_both_behind_cone_nats_connect_through_srflx() -> None:
    net = Network(seed=5)
    stun_host = net.add_host("stun", ["198.51.100.200"])
    StunServerNode(stun_host, port=3478)
    config = IceConfig(stun_servers=(("198.51.100.200", 3478),))
    nat_a = net.add_nat(
        "nat-a", "203.0.113.1", mapping="endpoint-independent", filtering="address-dependent"
    )
    nat_b = net.add_nat(
        "nat-b",
        "203.0.113.2",
        mapping="endpoint-independent",
        filtering="address-and-port-dependent",
    )
    w = World(net=net, a_behind=nat_a, b_behind=nat_b, config=config)
    w.connect()
    assert any(c.type == "srflx" for c in w.a.agent.local_candidates())
    w.sig.restart(w.a)
    w.run(1.0)
    assert w.a.selections[-1][1].generation == 1


def test_both_behind_symmetric_nats_fail_cleanly() -> None:
    net = Network(seed=6)
    stun_host = net.add_host("stun", ["198.51.100.200"])
    StunServerNode(stun_host, port=3478)
    config = IceConfig(stun_servers=(("198.51.100.200", 3478),), failed_timeout=2.0)
    sym: NatBehaviours = {
        "mapping": "address-and-port-dependent",
        "filtering": "address-and-port-dependent",
    }
    nat_a = net.add_nat("nat-a", "203.0.113.1", **sym)
    nat_b = net.add_nat("nat-b", "203.0.113.2", **sym)
    w = World(net=net, a_behind=nat_a, b_behind=nat_b, config=config)
    w.sig.connect()
    w.run(15.0)
    assert w.a.state is S.FAILED and w.b.state is S.FAILED
    assert w.a.state_sequence() == ["new", "checking", "failed"]


def test_same_seed_replays_exactly() -> None:
    def run(seed: int) -> list[tuple[float, str]]:
        net = Network(seed=seed)
        w = World(net=net)
        w.host_a.set_link(loss=0.2)
        w.connect(timeout=10.0)
        w.start_traffic()
        w.run(0.5)
        w.sig.restart(w.a)
        w.run(1.0)
        return [(t, s.value) for t, s in w.a.states] + [
            (t, str(seq)) for t, seq in w.b.app.received
        ]

    assert run(11) == run(11)
