"""Tests of the simulated network: timing, loss, links, addresses, NATs and the event loop."""

from __future__ import annotations

import contextlib
import errno
import io
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unbroken.addresses import Address, Transmit
from unbroken.netsim import (
    DropReason,
    Host,
    LinkConditions,
    Nat,
    Network,
    Node,
    TimerSpinError,
)

# Test nodes


class Peer:
    """Records every arrival, sends what the test asks, and echoes back when told to."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.received: list[tuple[float, bytes, Address, Address]] = []
        self._out: list[Transmit] = []

    def send(self, data: bytes, local: Address, remote: Address) -> None:
        self._out.append(Transmit(data, local, remote))

    def handle_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        self.received.append((now, data, local, remote))
        if self.echo:
            self._out.append(Transmit(data, local, remote))

    def handle_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def pop_transmits(self) -> list[Transmit]:
        out, self._out = self._out, []
        return out

    @property
    def rounded(self) -> list[tuple[float, bytes, Address, Address]]:
        """`received` with times rounded to the nanosecond (decimal latencies add up inexactly)."""
        return [(round(t, 9), data, local, remote) for t, data, local, remote in self.received]

    @property
    def payloads(self) -> list[bytes]:
        return [r[1] for r in self.received]

    @property
    def remotes(self) -> list[Address]:
        return [r[3] for r in self.received]


class Ticker(Peer):
    """Sends a numbered datagram every `interval` seconds, driven by its own deadline."""

    def __init__(self, local: Address, remote: Address, interval: float, start: float = 0.0):
        super().__init__()
        self.local, self.remote, self.interval = local, remote, interval
        self.start = start
        self.count = 0
        self.fired: list[float] = []

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        while self.next_deadline() <= now:
            self.send(str(self.count).encode(), self.local, self.remote)
            self.count += 1

    def next_deadline(self) -> float:
        return self.start + self.count * self.interval


def pair(
    seed: int = 1, a_ip: str = "192.0.2.1", b_ip: str = "192.0.2.2", **kw: bool
) -> tuple[Network, Host, Host, Peer, Peer, Address, Address]:
    """Two public hosts, `a` (sender) and `b` (echo server), each with one bound port."""
    net = Network(seed=seed, **kw)
    a = net.add_host("a", [a_ip])
    b = net.add_host("b", [b_ip])
    pa, pb = Peer(), Peer(echo=True)
    a.attach(pa)
    b.attach(pb)
    return net, a, b, pa, pb, a.bind(a_ip, 1000), b.bind(b_ip, 2000)


# Timing


def test_peer_satisfies_the_node_protocol() -> None:
    assert isinstance(Peer(), Node)


def test_delivery_time_is_the_sum_of_both_links_latencies() -> None:
    net, a, b, pa, pb, la, lb = pair()
    a.set_link(latency=0.25)
    b.link.latency = 0.125
    net.call_at(1.0, lambda: pa.send(b"ping", la, lb))
    net.run_until(10.0)
    assert pb.received == [(1.375, b"ping", lb, la)]
    assert pa.received == [(1.75, b"ping", la, lb)]
    assert net.now == 10.0


def test_default_latency_is_five_ms_per_link() -> None:
    net, a, b, pa, pb, la, lb = pair()
    assert LinkConditions().latency == 0.005
    pa.send(b"x", la, lb)
    net.run_until(1.0)
    assert pb.received[0][0] == pytest.approx(0.010, abs=1e-12)


def test_equal_delivery_times_are_fifo() -> None:
    net, a, b, pa, pb, la, lb = pair()
    for i in range(50):
        pa.send(bytes([i]), la, lb)
    net.run_until(1.0)
    assert pb.payloads == [bytes([i]) for i in range(50)]
    assert len({r[0] for r in pb.received}) == 1


def test_jitter_stays_in_bounds_reorders_and_replays() -> None:
    def run(seed: int) -> list[tuple[float, bytes, Address, Address]]:
        net, a, b, pa, pb, la, lb = pair(seed)
        a.set_link(latency=0.005, jitter=0.01)
        b.set_link(latency=0.005, jitter=0.01)
        sent: dict[bytes, float] = {}

        def send() -> None:
            data = str(len(sent)).encode()
            sent[data] = net.now
            pa.send(data, la, lb)

        net.call_every(0.001, send, until=0.199)
        net.run_until(1.0)
        for t, data, _, _ in pb.received:
            assert 0.010 <= t - sent[data] <= 0.030 + 1e-12
        assert len(pb.received) == 200
        return pb.received

    first = run(7)
    order = [int(r[1]) for r in first]
    assert order != sorted(order)  # 20 ms of jitter on 1 ms spacing reorders
    assert run(7) == first
    assert run(8) != first


# Loss


def test_loss_ratio_matches_and_a_seed_replays_exactly() -> None:
    def run(seed: int) -> tuple[list[bytes], int]:
        net, a, b, pa, pb, la, lb = pair(seed)
        a.set_link(loss=0.2)
        b.detach()
        b.attach(sink := Peer())
        for i in range(10_000):
            pa.send(i.to_bytes(2, "big"), la, lb)
        net.run_until(1.0)
        assert net.stats.sent == 10_000
        assert net.stats.delivered + net.stats.dropped[DropReason.LOSS] == 10_000
        return sink.payloads, net.stats.dropped[DropReason.LOSS]

    got, lost = run(42)
    assert 0.78 < len(got) / 10_000 < 0.82
    assert lost == 10_000 - len(got)
    assert run(42) == (got, lost)
    assert run(43)[0] != got


def test_loss_is_drawn_independently_on_each_link() -> None:
    net, a, b, pa, pb, la, lb = pair(3)
    a.set_link(loss=0.1)
    b.set_link(loss=0.1)
    b.detach()
    b.attach(sink := Peer())
    for _ in range(10_000):
        pa.send(b"x", la, lb)
    net.run_until(1.0)
    assert 0.79 < len(sink.received) / 10_000 < 0.83  # 0.9 * 0.9


def test_full_loss_drops_everything() -> None:
    net, a, b, pa, pb, la, lb = pair()
    b.set_link(loss=1.0)
    for _ in range(100):
        pa.send(b"x", la, lb)
    net.run_until(1.0)
    assert pb.received == []
    assert net.stats.dropped[DropReason.LOSS] == 100


# Links up and down


def test_link_down_drops_at_send_time_and_in_flight() -> None:
    net, a, b, pa, pb, la, lb = pair()
    a.set_link(latency=0.1)
    net.call_at(0.0, lambda: pa.send(b"in flight when b goes down", la, lb))
    net.call_at(0.05, lambda: b.set_link(up=False))
    net.call_at(1.0, lambda: pa.send(b"sent while b is down", la, lb))
    net.call_at(2.0, lambda: b.set_link(up=True))
    net.call_at(2.0, lambda: pa.send(b"after b is back", la, lb))
    net.call_at(3.0, lambda: pa.send(b"a flaps while in flight", la, lb))
    net.call_at(3.05, lambda: a.set_link(up=False))
    net.call_at(3.06, lambda: a.set_link(up=True))
    net.call_at(4.0, lambda: a.set_link(up=False))
    net.call_at(4.0, lambda: pa.send(b"sent while a is down", la, lb))
    net.run_until(5.0)
    assert pb.payloads == [b"after b is back"]
    assert [r[0] for r in pa.received] == [pytest.approx(2.21)]  # the echo came back
    assert net.stats.dropped[DropReason.LINK_DOWN] == 4
    assert net.stats.in_flight == 0


# Addresses and ports


def test_address_change_is_a_handover() -> None:
    net, a, b, pa, pb, la, lb = pair()
    a.set_link(latency=0.1)
    net.call_at(1.0, lambda: pb.send(b"in flight to the old address", lb, la))
    net.call_at(1.05, lambda: a.remove_address("192.0.2.1"))
    net.call_at(2.0, lambda: pa.send(b"from the old address", la, lb))
    net.call_at(2.0, lambda: pb.send(b"to the old address", lb, la))
    net.call_at(3.0, lambda: a.add_address("192.0.2.99"))
    net.run_until(3.0)
    assert a.addresses == ["192.0.2.99"]
    with pytest.raises(OSError) as e:
        a.bind("192.0.2.1")
    assert e.value.errno == errno.EADDRNOTAVAIL
    new = a.bind("192.0.2.99", 1000)
    pa.send(b"from the new address", new, lb)
    net.run_until(4.0)
    assert pa.payloads == [b"from the new address"]
    assert pb.remotes == [new]
    assert net.stats.dropped[DropReason.NO_SUCH_ADDRESS] == 2
    assert net.stats.dropped[DropReason.SOURCE_ADDRESS_GONE] == 1
    # The old socket stayed bound: it works again once the address comes back.
    a.add_address("192.0.2.1")
    pa.send(b"old address is back", la, lb)
    net.run_until(5.0)
    assert pa.payloads[-1] == b"old address is back"


def test_bind_and_unbound_ports() -> None:
    net, a, b, pa, pb, la, lb = pair()
    picked = a.bind("192.0.2.1")
    assert 49152 <= picked[1] <= 65535 and picked != la
    with pytest.raises(OSError) as e:
        a.bind("192.0.2.1", 1000)
    assert e.value.errno == errno.EADDRINUSE
    assert a.bound == sorted([la, picked])
    pa.send(b"to an unbound port", la, ("192.0.2.2", 2001))
    pa.send(b"from an unbound port", ("192.0.2.1", 1001), lb)
    pa.send(b"to nowhere", la, ("192.0.2.77", 2000))
    net.run_until(1.0)
    b.unbind(lb)
    pa.send(b"to a closed port", la, lb)
    net.run_until(2.0)
    assert pb.received == []
    assert net.stats.dropped == {
        DropReason.UNBOUND_PORT: 2,
        DropReason.SOURCE_NOT_BOUND: 1,
        DropReason.NO_SUCH_ADDRESS: 1,
    }
    with pytest.raises(ValueError):
        b.unbind(lb)


def test_port_choice_replays_with_the_seed() -> None:
    def ports(seed: int) -> list[int]:
        net = Network(seed=seed)
        h = net.add_host("h", ["192.0.2.1"])
        return [h.bind("192.0.2.1")[1] for _ in range(20)]

    assert ports(5) == ports(5)
    assert ports(5) != ports(6)
    assert len(set(ports(5))) == 20


def test_datagram_to_a_host_without_node_is_dropped() -> None:
    net, a, b, pa, pb, la, lb = pair()
    assert b.detach() is pb
    pa.send(b"x", la, lb)
    net.run_until(1.0)
    assert net.stats.dropped == {DropReason.NO_NODE: 1}


def test_ipv6_and_non_canonical_address_text() -> None:
    net, a, b, pa, pb, la, lb = pair(a_ip="2001:db8::1", b_ip="2001:db8::2")
    pa.send(b"x", ("2001:0db8::1", 1000), ("2001:db8:0:0::2", 2000))
    pa.send(b"v4 to v6", la, ("192.0.2.2", 2000))
    net.run_until(1.0)
    assert pb.rounded == [(0.01, b"x", lb, la)]
    assert net.stats.dropped == {DropReason.FAMILY_MISMATCH: 1}


def test_topology_errors() -> None:
    net = Network()
    nat = net.add_nat("nat", "203.0.113.1")
    net.add_host("a", ["192.0.2.1"])
    with pytest.raises(ValueError):
        net.add_host("a", ["192.0.2.2"])  # name taken
    with pytest.raises(ValueError):
        net.add_host("b", ["192.0.2.1"])  # address taken on the public side
    with pytest.raises(ValueError):
        net.add_host("c", ["203.0.113.1"])  # the NAT's public IP
    with pytest.raises(ValueError):
        net.add_host("d", ["not an ip"])
    with pytest.raises(ValueError):
        net.add_host("e", ["10.0.0.1"], behind=Nat.full_cone("other", "203.0.113.2"))
    # The same private address on two different LANs is fine.
    other = net.add_nat(Nat.full_cone("nat2", "203.0.113.2"))
    net.add_host("f", ["10.0.0.1"], behind=nat)
    net.add_host("g", ["10.0.0.1"], behind=other)
    h = net.add_host("h", ["192.0.2.8"])
    node = Peer()
    h.attach(node)
    with pytest.raises(ValueError):
        h.attach(Peer())
    with pytest.raises(ValueError):
        net.hosts["f"].attach(node)


# NATs

SERVERS = [("198.51.100.1", 1000), ("198.51.100.1", 2000), ("198.51.100.2", 1000)]


def nat_setup(
    nat: Nat, seed: int = 1
) -> tuple[Network, Host, Peer, Address, list[Peer], list[Address]]:
    """A client at 192.168.1.10:5000 behind `nat`, echo servers at SERVERS, each its own node."""
    net = Network(seed=seed)
    net.add_nat(nat)
    client = net.add_host("client", ["192.168.1.10"], behind=nat)
    pc = Peer()
    client.attach(pc)
    local = client.bind("192.168.1.10", 5000)
    s1 = net.add_host("s1", ["198.51.100.1"])
    s2 = net.add_host("s2", ["198.51.100.2"])
    for ip, port in SERVERS:
        (s1 if ip == "198.51.100.1" else s2).bind(ip, port)
    # One node per host: s1's node serves both of its ports.
    p1, p2 = Peer(echo=True), Peer(echo=True)
    s1.attach(p1)
    s2.attach(p2)
    return net, client, pc, local, [p1, p1, p2], list(SERVERS)


@pytest.mark.parametrize(
    "mapping, distinct_ports",
    [
        ("endpoint-independent", 1),
        ("address-dependent", 2),
        ("address-and-port-dependent", 3),
    ],
)
def test_mapping_behaviour(mapping: str, distinct_ports: int) -> None:
    nat = Nat("nat", "203.0.113.1", mapping=mapping)  # type: ignore[arg-type]
    net, client, pc, local, servers, addrs = nat_setup(nat)
    for addr in addrs:
        pc.send(b"hello", local, addr)
    net.run_until(1.0)
    seen = [server.received[i][3] for server, i in zip(servers, [0, 1, 0], strict=True)]
    assert all(ip == "203.0.113.1" for ip, _ in seen)
    assert len({port for _, port in seen}) == distinct_ports
    if mapping == "address-dependent":
        assert seen[0] == seen[1] != seen[2]  # same server IP, same public port
    # Every echo came back through its mapping to the client's private address.
    assert [r[2] for r in pc.received] == [local] * 3
    assert sorted(pc.remotes) == sorted(addrs)
    assert len(nat.mappings) == distinct_ports


@pytest.mark.parametrize(
    "filtering, admitted",
    [
        ("endpoint-independent", [b"same", b"other port", b"other ip"]),
        ("address-dependent", [b"same", b"other port"]),
        ("address-and-port-dependent", [b"same"]),
    ],
)
def test_filtering_behaviour(filtering: str, admitted: list[bytes]) -> None:
    nat = Nat("nat", "203.0.113.1", filtering=filtering)  # type: ignore[arg-type]
    net, client, pc, local, servers, addrs = nat_setup(nat)
    pc.send(b"open", local, addrs[0])  # the client talks to s1:1000 only
    net.run_until(1.0)
    public = servers[0].received[0][3]
    pc.received.clear()
    servers[0].send(b"same", addrs[0], public)
    servers[1].send(b"other port", addrs[1], public)
    servers[2].send(b"other ip", addrs[2], public)
    net.run_until(2.0)
    assert sorted(pc.payloads) == sorted(admitted)
    assert net.stats.dropped[DropReason.NAT_FILTERED] == 3 - len(admitted)


def test_presets() -> None:
    cases = {
        Nat.full_cone: ("endpoint-independent", "endpoint-independent"),
        Nat.restricted_cone: ("endpoint-independent", "address-dependent"),
        Nat.port_restricted: ("endpoint-independent", "address-and-port-dependent"),
        Nat.symmetric: ("address-and-port-dependent", "address-and-port-dependent"),
    }
    for preset, behaviour in cases.items():
        nat = preset("n", "203.0.113.1")
        assert (nat.mapping, nat.filtering) == behaviour
        assert nat.mapping_timeout == 30.0 and not nat.hairpinning


def test_unsolicited_inbound_has_no_mapping() -> None:
    net, client, pc, local, servers, addrs = nat_setup(Nat.full_cone("nat", "203.0.113.1"))
    servers[0].send(b"hi", addrs[0], ("203.0.113.1", 5000))
    net.run_until(1.0)
    assert pc.received == []
    assert net.stats.dropped == {DropReason.NAT_NO_MAPPING: 1}


def test_port_preservation() -> None:
    nat = Nat.full_cone("nat", "203.0.113.1", port_preservation=True)
    net, client, pc, local, servers, addrs = nat_setup(nat)
    pc.send(b"x", local, addrs[0])
    net.run_until(1.0)
    assert servers[0].remotes == [("203.0.113.1", 5000)]


def test_flush_forgets_mappings() -> None:
    nat = Nat.port_restricted("nat", "203.0.113.1")
    net, client, pc, local, servers, addrs = nat_setup(nat)
    pc.send(b"1", local, addrs[0])
    net.run_until(1.0)
    old = servers[0].remotes[0]
    nat.flush()
    assert nat.mappings == []
    servers[0].send(b"to the forgotten mapping", addrs[0], old)
    net.run_until(2.0)
    assert net.stats.dropped == {DropReason.NAT_NO_MAPPING: 1}
    pc.send(b"2", local, addrs[0])
    net.run_until(3.0)
    new = servers[0].remotes[-1]
    assert new[0] == old[0] and new[1] != old[1]
    assert pc.payloads == [b"1", b"2"]


def test_mapping_expires_without_outbound_traffic() -> None:
    net, client, pc, local, servers, addrs = nat_setup(Nat.full_cone("nat", "203.0.113.1"))
    pc.send(b"open", local, addrs[0])
    net.run_until(1.0)
    public = servers[0].remotes[0]
    servers[0].echo = False
    # Inbound traffic does not refresh the mapping (RFC 4787 REQ-6 asks only outbound).
    net.call_at(29.0, lambda: servers[0].send(b"at 29 s", addrs[0], public))
    net.call_at(31.0, lambda: servers[0].send(b"at 31 s", addrs[0], public))
    net.run_until(40.0)
    assert pc.payloads == [b"open", b"at 29 s"]
    assert net.stats.dropped == {DropReason.NAT_NO_MAPPING: 1}
    assert client.behind is not None and client.behind.mappings == []


def test_outbound_traffic_keeps_the_mapping_alive() -> None:
    nat = Nat.symmetric("nat", "203.0.113.1", mapping_timeout=15.0)
    net, client, pc, local, servers, addrs = nat_setup(nat)
    net.call_every(10.0, lambda: pc.send(b"keepalive", local, addrs[0]), until=100.0)
    net.run_until(101.0)
    assert len(servers[0].received) == 11
    assert len(set(servers[0].remotes)) == 1
    assert len(pc.received) == 11
    assert [m.internal for m in nat.mappings] == [local]


def test_hosts_on_one_lan_talk_directly() -> None:
    net = Network()
    nat = net.add_nat(Nat.symmetric("nat", "203.0.113.1"))
    a = net.add_host("a", ["192.168.1.10"], behind=nat)
    b = net.add_host("b", ["192.168.1.11"], behind=nat)
    pa, pb = Peer(), Peer(echo=True)
    a.attach(pa)
    b.attach(pb)
    la, lb = a.bind("192.168.1.10", 1), b.bind("192.168.1.11", 2)
    pa.send(b"x", la, lb)
    net.run_until(1.0)
    assert pb.remotes == [la] and pa.remotes == [lb]
    assert nat.mappings == []


@pytest.mark.parametrize("hairpinning", [True, False])
def test_hairpinning(hairpinning: bool) -> None:
    net = Network()
    nat = net.add_nat(Nat.full_cone("nat", "203.0.113.1", hairpinning=hairpinning))
    a = net.add_host("a", ["192.168.1.10"], behind=nat)
    b = net.add_host("b", ["192.168.1.11"], behind=nat)
    s = net.add_host("s", ["198.51.100.1"])
    pa, pb, ps = Peer(), Peer(), Peer()
    for host, node in ((a, pa), (b, pb), (s, ps)):
        host.attach(node)
    la, lb, ls = a.bind("192.168.1.10", 1), b.bind("192.168.1.11", 2), s.bind("198.51.100.1", 3)
    pa.send(b"a", la, ls)
    pb.send(b"b", lb, ls)
    net.run_until(1.0)
    a_public, b_public = ps.remotes
    pa.send(b"hairpin", la, b_public)
    net.run_until(2.0)
    if hairpinning:
        # RFC 4787 REQ-9: the source is a's public address, not its private one.
        assert pb.rounded == [(1.01, b"hairpin", lb, a_public)]
    else:
        assert pb.received == []
        assert net.stats.dropped == {DropReason.NAT_NO_HAIRPIN: 1}


def test_nat_behind_a_carrier_grade_nat() -> None:
    net = Network()
    cgn = net.add_nat("cgn", "203.0.113.1", filtering="address-and-port-dependent")
    home = net.add_nat(Nat.full_cone("home", "100.64.0.2"), behind=cgn)
    assert home.behind is cgn and cgn.behind is None
    h = net.add_host("h", ["192.168.1.10"], behind=home)
    s = net.add_host("s", ["198.51.100.1"])
    ph, ps = Peer(), Peer(echo=True)
    h.attach(ph)
    s.attach(ps)
    lh, ls = h.bind("192.168.1.10", 1), s.bind("198.51.100.1", 2)
    ph.send(b"x", lh, ls)
    net.run_until(1.0)
    assert ps.remotes[0][0] == "203.0.113.1"
    assert ph.rounded == [(0.02, b"x", lh, ls)]
    assert [m.internal for m in cgn.mappings] == [home.mappings[0].external]


def test_nat_uplink_can_go_down_and_adds_its_latency() -> None:
    net, client, pc, local, servers, addrs = nat_setup(Nat.full_cone("nat", "203.0.113.1"))
    nat = client.behind
    assert nat is not None
    nat.set_link(latency=0.5)
    pc.send(b"x", local, addrs[0])
    net.run_until(0.1)
    nat.set_link(up=False)
    net.run_until(2.0)
    assert servers[0].received == [] and net.stats.dropped == {DropReason.LINK_DOWN: 1}
    nat.set_link(up=True)
    pc.send(b"y", local, addrs[0])
    net.run_until(4.0)
    assert pc.rounded == [(3.02, b"y", local, addrs[0])]


# Scheduling and the event loop


def test_call_at_runs_in_time_order_and_fifo_at_equal_times() -> None:
    net = Network()
    log: list[tuple[float, str]] = []

    def note(what: str) -> Callable[[], None]:
        return lambda: log.append((net.now, what))

    net.call_at(2.0, note("c"))
    net.call_at(1.0, note("a"))
    net.call_at(1.0, note("b"))
    net.call_later(0.5, note("first"))
    cancelled = net.call_at(1.5, note("cancelled"))
    cancelled.cancel()
    net.run_until(1.0)  # events at exactly 1.0 run
    assert log == [(0.5, "first"), (1.0, "a"), (1.0, "b")]
    net.run_until(3.0)
    assert log[-1] == (2.0, "c") and len(log) == 4
    with pytest.raises(ValueError):
        net.call_at(2.9, note("past"))


def test_call_every_start_until_and_cancel() -> None:
    net = Network()
    times: list[float] = []
    net.call_every(0.1, lambda: times.append(net.now), start=1.0, until=2.0)
    net.run_until(5.0)
    assert times == [1.0 + k * 0.1 for k in range(11)]
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == 3:
            handle.cancel()

    handle = net.call_every(1.0, tick)  # starts now
    net.run_until(10.0)
    assert count == 3 and handle.cancelled


def test_events_scheduled_from_callbacks_run_in_order() -> None:
    net = Network()
    log: list[float] = []

    def chain() -> None:
        log.append(net.now)
        if len(log) < 5:
            net.call_later(0.25, chain)

    net.call_at(1.0, chain)
    net.run_until(1.5)
    assert log == [1.0, 1.25, 1.5]
    net.run_until(10.0)
    assert log == [1.0, 1.25, 1.5, 1.75, 2.0]


def test_run_while_stops_at_the_event_or_the_timeout() -> None:
    net, a, b, pa, pb, la, lb = pair()
    net.call_at(1.0, lambda: pa.send(b"x", la, lb))
    assert net.run_while(lambda: not pa.received, timeout=5.0)
    assert net.now == pytest.approx(1.02)
    assert not net.run_while(lambda: len(pa.received) < 2, timeout=5.0)
    assert net.now == pytest.approx(6.02)
    with pytest.raises(ValueError):
        net.run_until(1.0)


def test_node_timers_drive_sends() -> None:
    # Binary fractions keep every time exact: one way takes 1/64 s, a round trip 1/32 s.
    net, a, b, pa, pb, la, lb = pair()
    a.set_link(latency=1 / 128)
    b.set_link(latency=1 / 128)
    a.detach()
    ticker = Ticker(la, lb, 1 / 64, start=0.5)
    a.attach(ticker)
    net.run_until(1.0)
    assert ticker.count == 33  # 0.5, 0.5 + 1/64, ..., 1.0
    assert ticker.fired == [0.5 + k / 64 for k in range(33)]
    assert [r[0] for r in ticker.received] == [0.5 + k / 64 + 1 / 32 for k in range(31)]
    assert net.stats.in_flight == 2  # the echo of the one sent at 1 - 1/64, and the last


def test_a_past_deadline_fires_now() -> None:
    class Late(Peer):
        def __init__(self) -> None:
            super().__init__()
            self.armed = False
            self.fired: list[float] = []

        def handle_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
            self.armed = True

        def handle_timer(self, now: float) -> None:
            self.fired.append(now)
            self.armed = False

        def next_deadline(self) -> float | None:
            return 0.001 if self.armed else None

    net, a, b, pa, pb, la, lb = pair()
    b.detach()
    b.attach(late := Late())
    net.call_at(2.0, lambda: pa.send(b"x", la, lb))
    net.run_until(3.0)
    assert late.fired == [pytest.approx(2.01)]  # when the datagram arrived


def test_a_node_that_never_moves_its_deadline_raises() -> None:
    class Stuck(Peer):
        def next_deadline(self) -> float | None:
            return 1.0

    net = Network(max_timer_spins=50)
    net.add_host("stuck", ["192.0.2.1"]).attach(Stuck())
    with pytest.raises(TimerSpinError, match="stuck"):
        net.run_until(2.0)


def test_detach_forgets_the_timer() -> None:
    net, a, b, pa, pb, la, lb = pair()
    a.detach()
    ticker = Ticker(la, lb, 0.1)
    a.attach(ticker)
    net.run_until(0.25)
    a.detach()
    net.run_until(1.0)
    assert ticker.fired == [0.0, 0.1, 0.2]


def test_refresh_sends_what_a_node_queued_outside_the_loop() -> None:
    net, a, b, pa, pb, la, lb = pair()
    pa.send(b"x", la, lb)
    net.refresh(pa)
    assert net.stats.sent == 1 and net.stats.in_flight == 1
    with pytest.raises(ValueError):
        net.refresh(Peer())


def test_running_from_a_callback_is_an_error() -> None:
    net = Network()
    net.call_at(1.0, lambda: net.run_until(2.0))
    with pytest.raises(RuntimeError, match="already running"):
        net.run_until(3.0)


# Determinism of a whole scenario


def scenario(seed: int) -> tuple[list[tuple[float, str]], dict[DropReason, int], int]:
    """Two NATed peers with loss and jitter, a NAT flush, a link flap and a handover."""
    net = Network(seed=seed, trace=True)
    nat_a = net.add_nat(Nat.symmetric("nat-a", "203.0.113.1", mapping_timeout=5.0))
    nat_b = net.add_nat(Nat.full_cone("nat-b", "203.0.113.2"))
    a = net.add_host("a", ["10.0.0.1"], behind=nat_a, link=LinkConditions(0.02, 0.01, 0.05))
    b = net.add_host("b", ["10.0.0.2"], behind=nat_b)
    s = net.add_host("s", ["198.51.100.1"])
    pb, ps = Peer(echo=True), Peer(echo=True)
    lb, ls = b.bind("10.0.0.2", 4000), s.bind("198.51.100.1", 3478)
    la = a.bind("10.0.0.1")
    ticker = Ticker(la, ls, 0.01)
    a.attach(ticker)
    b.attach(pb)
    s.attach(ps)
    net.call_every(0.05, lambda: pb.send(b"b", lb, ls), until=5.0)
    net.call_at(1.0, nat_a.flush)
    net.call_at(2.0, lambda: b.set_link(up=False))
    net.call_at(2.5, lambda: b.set_link(up=True))
    net.call_at(3.0, lambda: a.remove_address("10.0.0.1"))
    net.call_at(3.5, lambda: a.add_address("10.0.0.9"))
    net.run_until(6.0)
    assert net.stats.sent == net.stats.delivered + net.stats.dropped_total + net.stats.in_flight
    return net.trace, dict(net.stats.dropped), net.stats.delivered


def test_a_seed_replays_a_whole_scenario_exactly() -> None:
    first = scenario(11)
    assert len(first[0]) > 1000
    assert first == scenario(11)
    assert first[0] != scenario(12)[0]
    assert first[1][DropReason.SOURCE_ADDRESS_GONE] > 0
    assert first[1][DropReason.LINK_DOWN] > 0
    assert first[1][DropReason.LOSS] > 0


# Bad input


@given(
    latency=st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.just(float("inf"))),
    loss=st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.000001)),
)
def test_link_conditions_reject_bad_values(latency: float, loss: float) -> None:
    with pytest.raises(ValueError):
        LinkConditions(latency=latency)
    with pytest.raises(ValueError):
        LinkConditions(jitter=latency)
    link = LinkConditions()
    with pytest.raises(ValueError):
        link.loss = loss
    assert link == LinkConditions()


def test_nat_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        Nat("n", "203.0.113.1", mapping="symmetric")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Nat("n", "203.0.113.1", filtering="none")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Nat("n", "203.0.113.1", mapping_timeout=0)
    with pytest.raises(ValueError):
        Nat("n", "not an ip")


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    loss=st.floats(0.0, 1.0),
    jitter=st.floats(0.0, 0.05),
    remotes=st.lists(
        st.tuples(
            st.sampled_from(["192.0.2.2", "192.0.2.3", "::1", "junk", ""]), st.integers(0, 3000)
        ),
        max_size=30,
    ),
)
def test_any_traffic_is_accounted_for(
    seed: int, loss: float, jitter: float, remotes: list[Address]
) -> None:
    net, a, b, pa, pb, la, lb = pair(seed)
    a.set_link(loss=loss, jitter=jitter)
    for remote in remotes:
        pa.send(b"x", la, remote)
    net.run_until(10.0)
    stats = net.stats
    assert stats.in_flight == 0
    assert stats.sent == stats.delivered + stats.dropped_total
    assert stats.sent >= len(remotes)


def test_the_documented_example_runs_as_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "netsim.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "netsim_doc_example"}
    with contextlib.redirect_stdout(io.StringIO()) as out:
        exec(compile(code.group(1), "docs/netsim.md", "exec"), namespace)
    lines = out.getvalue().splitlines()
    assert lines[0] == "74 of 101 pings answered"
    assert lines[1] == "0.05"
    net = namespace["net"]
    assert isinstance(net, Network)
    assert net.stats.dropped == {DropReason.LOSS: 16, DropReason.LINK_DOWN: 10}
