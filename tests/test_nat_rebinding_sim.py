"""NAT rebinding in simulated time (issue 12): the real IceAgent heals by itself.

The same fault as tests/interop/test_nat.py, on the deterministic netsim: one peer sits
behind a home router (endpoint-independent mapping that keeps ports, like Linux
`masquerade`, and address-and-port-dependent filtering, like its conntrack firewall),
the other is public, and a STUN server gives the srflx candidate. Both send a datagram
every 20 ms. Then the router rebinds (`Nat.rebind`: port randomisation switched on and
every mapping forgotten), so the NATed peer's packets leave from a new port and packets
to the old one are dropped. No restart is signalled: the agents must find the new path
themselves. Heal times are logged; the only time bound is a generous correctness one.
"""

from __future__ import annotations

import logging

import pytest

from unbroken.addresses import Address, Transmit
from unbroken.ice import ALLOWED, IceConfig, IceTransportState, MappedAddressChanged
from unbroken.netsim import Nat, Network
from unbroken.netsim.ice_node import IceNode, Signaling
from unbroken.netsim.stun_server import StunServerNode

log = logging.getLogger(__name__)

INTERVAL = 0.020
HEAL_BOUND = 10.0  # virtual seconds: a correctness bound, not a target
STUN_IP = "198.51.100.200"
NAT_IP = "203.0.113.1"
PRIVATE_IP = "10.0.0.2"
PUBLIC_IP = "198.51.100.1"
S = IceTransportState


class RebindWorld:
    """a (controlling) and b, one of them behind `nat`; traffic both ways every 20 ms."""

    def __init__(self, seed: int, natted: str) -> None:
        self.net = Network(seed=seed)
        StunServerNode(self.net.add_host("stun", [STUN_IP]), port=3478)
        self.nat = self.net.add_nat(
            Nat(
                "home",
                NAT_IP,
                mapping="endpoint-independent",
                filtering="address-and-port-dependent",
                port_preservation=True,
            )
        )
        config = IceConfig(stun_servers=((STUN_IP, 3478),))
        host_a = self.net.add_host(
            "a",
            [PRIVATE_IP if natted == "a" else PUBLIC_IP],
            behind=self.nat if natted == "a" else None,
        )
        host_b = self.net.add_host(
            "b",
            [PRIVATE_IP if natted == "b" else PUBLIC_IP],
            behind=self.nat if natted == "b" else None,
        )
        self.a = IceNode(self.net, host_a, controlling=True, seed=seed, config=config)
        self.b = IceNode(self.net, host_b, controlling=False, seed=seed + 1000, config=config)
        self.natted = self.a if natted == "a" else self.b
        self.public = self.b if natted == "a" else self.a
        self.sig = Signaling(self.net, self.a, self.b)
        self.start = 0.0

    def connect(self) -> None:
        self.sig.connect()
        assert self.net.run_while(
            lambda: (
                not (
                    self.a.state in (S.CONNECTED, S.COMPLETED)
                    and self.b.state in (S.CONNECTED, S.COMPLETED)
                )
            ),
            5.0,
        )
        self.start = self.net.now
        self.net.call_every(INTERVAL, self.a.send_app)
        self.net.call_every(INTERVAL, self.b.send_app)

    def sent_at(self, seq: int) -> float:
        """When datagram `seq` was sent (call_every sends at start + k * interval)."""
        return self.start + seq * INTERVAL

    def first_after(self, receiver: IceNode, fault: float) -> float | None:
        """Arrival time of the first datagram sent after `fault`, or None."""
        return next((t for t, seq in receiver.app.received if self.sent_at(seq) > fault), None)

    def mapping_towards(self, remote: Address) -> Address:
        """The NAT's live public address for the natted peer's flow to `remote`."""
        base = self.natted.agent.selected_pair
        assert base is not None
        found = [
            m.external
            for m in self.nat.mappings
            if m.internal == base.base and m.remote in (None, remote, remote[0])
        ]
        assert len(found) == 1, self.nat.mappings
        return found[0]

    def lost_between(
        self, receiver: IceNode, sender: IceNode, start: float, end: float
    ) -> list[int]:
        """Datagrams `sender` sent in [start, end] that `receiver` never got."""
        seqs = range(sender.app.sent)
        window = [s for s in seqs if start <= self.sent_at(s) <= end]
        got = {seq for _, seq in receiver.app.received}
        return [s for s in window if s not in got]


def assert_transitions_allowed(node: IceNode) -> None:
    previous = S.NEW
    for _, state in node.states:
        assert state in ALLOWED[previous], f"{node.name}: {previous.value} -> {state.value}"
        previous = state


@pytest.mark.parametrize("natted", ["a", "b"], ids=["controlling-side-nat", "controlled-side-nat"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rebinding_heals_without_restart(seed: int, natted: str) -> None:
    w = RebindWorld(seed, natted)
    w.connect()
    assert any(c.type == "srflx" for c in w.natted.agent.local_candidates())
    w.net.run_for(1.0)
    remote = w.public.agent.selected_pair
    assert remote is not None
    old = w.mapping_towards(remote.base)
    fault = w.net.now
    w.nat.rebind()
    healed = w.net.run_while(
        lambda: w.first_after(w.a, fault) is None or w.first_after(w.b, fault) is None,
        HEAL_BOUND,
    )
    first_a, first_b = w.first_after(w.a, fault), w.first_after(w.b, fault)
    assert healed, (
        f"no datagram sent after the rebinding arrived within {HEAL_BOUND}s: {first_a=} {first_b=}"
    )
    assert first_a is not None and first_b is not None
    heal = max(first_a, first_b) - fault
    log.info("seed %d, %s: healed %.3f s after the rebinding", seed, natted, heal)
    w.net.run_for(2.0)
    end = w.net.now - 0.1  # datagrams still in flight at the end do not count

    new = w.mapping_towards(remote.base)
    assert new[0] == NAT_IP and new != old
    # The peer now sends to the new mapping...
    pair = w.public.agent.selected_pair
    assert pair is not None and pair.remote.address == new
    # ...and the natted agent knows what it looks like now, and said so.
    pair = w.natted.agent.selected_pair
    assert pair is not None and pair.local.address == new
    changes = [e for _, e in w.natted.events if isinstance(e, MappedAddressChanged)]
    assert changes and changes[-1].new == new, changes
    # From the moment it healed, nothing is lost either way.
    healed_at = fault + heal
    assert w.lost_between(w.b, w.a, healed_at, end) == []
    assert w.lost_between(w.a, w.b, healed_at, end) == []
    for node in (w.a, w.b):
        assert S.FAILED not in [s for _, s in node.states]
        assert node.state in (S.CONNECTED, S.COMPLETED)
        assert_transitions_allowed(node)


def test_nat_reboot_keeping_ports_heals_on_the_same_pair() -> None:
    """Mappings forgotten and 200 ms without forwarding, ports kept: the same path returns."""
    w = RebindWorld(5, "a")
    w.connect()
    w.net.run_for(1.0)
    peer = w.b.agent.selected_pair
    assert peer is not None
    before = w.mapping_towards(peer.base)
    selected = (w.a.agent.selected_pair, w.b.agent.selected_pair)
    w.nat.set_link(up=False)
    w.nat.flush()
    w.net.run_for(0.2)
    w.nat.set_link(up=True)
    ended = w.net.now
    assert w.net.run_while(
        lambda: w.first_after(w.a, ended) is None or w.first_after(w.b, ended) is None, HEAL_BOUND
    )
    w.net.run_for(1.0)
    assert w.mapping_towards(peer.base) == before
    assert (w.a.agent.selected_pair, w.b.agent.selected_pair) == selected
    assert not [e for _, e in w.a.events if isinstance(e, MappedAddressChanged)]
    assert w.lost_between(w.b, w.a, ended + 0.05, w.net.now - 0.1) == []
    assert w.lost_between(w.a, w.b, ended + 0.05, w.net.now - 0.1) == []


class Probe:
    """A netsim node that sends what it is given and records where datagrams came from."""

    def __init__(self) -> None:
        self.queue: list[Transmit] = []
        self.seen: list[Address] = []

    def handle_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        self.seen.append(remote)

    def handle_timer(self, now: float) -> None:
        return None

    def next_deadline(self) -> float | None:
        return None

    def pop_transmits(self) -> list[Transmit]:
        out, self.queue = self.queue, []
        return out


def test_rebind_moves_every_flow_to_a_new_port() -> None:
    """Nat.rebind: the flow gets a new port every time, never one it had before."""
    net = Network(seed=9)
    nat = net.add_nat(Nat.port_restricted("home", NAT_IP, port_preservation=True))
    inside, outside = Probe(), Probe()
    host = net.add_host("h", [PRIVATE_IP], behind=nat)
    server = net.add_host("s", [PUBLIC_IP])
    host.attach(inside)
    server.attach(outside)
    local = host.bind(PRIVATE_IP, 50000)
    target = server.bind(PUBLIC_IP, 9)
    for _ in range(4):
        net.call_later(0.0, lambda: inside.queue.append(Transmit(b"x", local, target)))
        net.run_for(0.1)
        nat.rebind()
    ports = [remote[1] for remote in outside.seen]
    assert ports[0] == 50000  # kept before the first rebind, as Linux masquerade does
    assert len(ports) == 4 and len(set(ports)) == 4
    assert nat.mapping == "address-and-port-dependent" and not nat.port_preservation
    with pytest.raises(ValueError):
        nat.set_behaviour(filtering="symmetric")  # type: ignore[arg-type]
