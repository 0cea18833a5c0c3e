"""Relay candidates in the sans-IO ICE agent, against a small TURN server scripted here.

The server (`ScriptedTurn`) speaks just enough RFC 8656 over the STUN codec to relay
between a client and a peer: a 401 then Allocate, CreatePermission, ChannelBind,
Refresh, Send/Data indications and ChannelData. Everything runs at exact times.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unbroken import stun
from unbroken.addresses import Address, Transmit
from unbroken.ice import (
    CandidateErrorEvent,
    GatheringComplete,
    IceAgent,
    IceConfig,
    IceTransportState,
    LocalCandidateGathered,
)
from unbroken.ice.relay import (
    RelayFailed,
    RelayGatherer,
    RelayOptions,
    RelayReady,
    RelayServer,
    RelaySocketClose,
    RelaySocketOpen,
    RelayStreamData,
    RelayStreamOpen,
    relay_local_preference,
)
from unbroken.stun import AttributeType, Message, MessageClass, Method
from unbroken.turn.framing import decode_channel_data, encode_channel_data

SERVER = ("192.0.2.10", 3478)
USER, PASSWORD, REALM = "alice", "wonderland", "example.org"
KEY = stun.long_term_key(USER, REALM, PASSWORD)
BASE_A = ("10.0.0.1", 5000)
BASE_B = ("10.0.0.2", 6000)
U32 = struct.Struct(">I")
T = TypeVar("T")


def relay_server(transport: str = "udp", password: str = PASSWORD) -> RelayServer:
    url = f"turn:{SERVER[0]}:{SERVER[1]}?transport={transport}"
    return RelayServer(url, SERVER, transport, USER, password, SERVER[0])


class ScriptedTurn:
    """One allocation per client address; relays between clients and peers."""

    def __init__(self, password: str = PASSWORD) -> None:
        self.key = stun.long_term_key(USER, REALM, password)
        self.relayed: dict[Address, Address] = {}  # client -> relayed address
        self.channels: dict[tuple[Address, int], Address] = {}
        self.permissions: set[tuple[Address, str]] = set()
        self.requests: list[int] = []  # methods seen, in order
        self._port = 40000

    def from_client(self, data: bytes, client: Address) -> list[Transmit]:
        """A datagram from a client: answers to it, or what it relays to a peer."""
        channel = decode_channel_data(data)
        if channel is not None:
            peer = self.channels.get((client, channel[0]))
            relayed = self.relayed.get(client)
            return [] if peer is None or relayed is None else [Transmit(channel[1], relayed, peer)]
        msg = stun.decode(data)
        if msg.message_class is MessageClass.INDICATION and msg.method == Method.SEND:
            peer = stun.decode_xor_address(
                msg.find(AttributeType.XOR_PEER_ADDRESS) or b"", msg.transaction_id
            )
            return [Transmit(msg.find(AttributeType.DATA) or b"", self.relayed[client], peer)]
        self.requests.append(msg.method)
        if not msg.has_integrity:
            other: list[tuple[int, bytes]] = [
                (AttributeType.REALM, REALM.encode()),
                (AttributeType.NONCE, b"n1"),
            ]
            reply = Message(msg.method, MessageClass.ERROR, msg.transaction_id,
                            error_code=(401, "Unauthorized"), other=other)  # fmt: skip
            return [Transmit(stun.encode(reply), SERVER, client)]
        if not stun.check_integrity(msg, self.key):
            reply = Message(msg.method, MessageClass.ERROR, msg.transaction_id,
                            error_code=(401, "Unauthorized"),
                            other=[(AttributeType.REALM, REALM.encode()),
                                   (AttributeType.NONCE, b"n1")])  # fmt: skip
            return [Transmit(stun.encode(reply), SERVER, client)]
        return [Transmit(self._answer(msg, client), SERVER, client)]

    def _answer(self, msg: Message, client: Address) -> bytes:
        tid = msg.transaction_id
        other: list[tuple[int, bytes]] = []
        mapped = None
        if msg.method == Method.ALLOCATE:
            self._port += 1
            relayed = (SERVER[0], self._port)
            self.relayed[client] = relayed
            other = [
                (AttributeType.XOR_RELAYED_ADDRESS, stun.encode_xor_address(relayed, tid)),
                (AttributeType.LIFETIME, U32.pack(600)),
            ]
            mapped = client
        elif msg.method == Method.REFRESH:
            other = [(AttributeType.LIFETIME, msg.find(AttributeType.LIFETIME) or U32.pack(600))]
        elif msg.method == Method.CREATE_PERMISSION:
            peer = stun.decode_xor_address(msg.find(AttributeType.XOR_PEER_ADDRESS) or b"", tid)
            self.permissions.add((client, peer[0]))
        elif msg.method == Method.CHANNEL_BIND:
            number = U32.unpack(msg.find(AttributeType.CHANNEL_NUMBER) or b"\0\0\0\0")[0] >> 16
            peer = stun.decode_xor_address(msg.find(AttributeType.XOR_PEER_ADDRESS) or b"", tid)
            self.channels[(client, number)] = peer
            self.permissions.add((client, peer[0]))
        reply = Message(msg.method, MessageClass.SUCCESS, tid, xor_mapped_address=mapped,
                        other=other)  # fmt: skip
        return stun.encode(reply, integrity_key=self.key)

    def from_peer(self, data: bytes, peer: Address, relayed: Address) -> Transmit | None:
        """A datagram a peer sent to a relayed address: to its client, if permitted."""
        client = next((c for c, r in self.relayed.items() if r == relayed), None)
        if client is None or (client, peer[0]) not in self.permissions:
            return None
        for (owner, number), bound in self.channels.items():
            if owner == client and bound == peer:
                return Transmit(encode_channel_data(number, data, stream=False), SERVER, client)
        tid = random.Random(len(data)).randbytes(12)
        other: list[tuple[int, bytes]] = [
            (AttributeType.XOR_PEER_ADDRESS, stun.encode_xor_address(peer, tid)),
            (AttributeType.DATA, data),
        ]
        indication = Message(Method.DATA, MessageClass.INDICATION, tid, other=other)
        return Transmit(stun.encode(indication), SERVER, client)


class World:
    """Agent A (with the TURN server) and agent B (host only), linked in memory."""

    def __init__(self, config_a: IceConfig, server: ScriptedTurn | None = None) -> None:
        self.now = 0.0
        self.turn = server or ScriptedTurn()
        self.a = IceAgent(controlling=True, rng=random.Random(1), config=config_a)
        self.b = IceAgent(controlling=False, rng=random.Random(2))
        self.a.add_base(BASE_A, self.now)
        self.b.add_base(BASE_B, self.now)
        self.events: dict[str, list[object]] = {"a": [], "b": []}
        self.queue: deque[tuple[str, Transmit]] = deque()
        self.delivered_to_b: list[bytes] = []

    def signal(self) -> None:
        """Exchange credentials, gather, and trickle every candidate (as signaling would)."""
        self.a.set_remote_credentials(*self.b.local_credentials, self.now)
        self.b.set_remote_credentials(*self.a.local_credentials, self.now)
        self.a.gather(self.now)
        self.b.gather(self.now)
        self.run()

    def _route(self, name: str, tx: Transmit) -> None:
        if tx.remote == SERVER and name == "a":
            for out in self.turn.from_client(tx.data, tx.local):
                self.queue.append(("turn", out))
        elif tx.remote == BASE_B:
            got = self.b.receive(tx.data, BASE_B, tx.local, self.now)
            if got is not None:
                self.delivered_to_b.append(got)
        elif tx.remote == BASE_A:
            self.a.receive(tx.data, BASE_A, tx.local, self.now)
        elif name == "b":  # to a relayed address
            relayed = self.turn.from_peer(tx.data, tx.local, tx.remote)
            if relayed is not None:
                self.queue.append(("turn", relayed))

    def _drain(self, name: str, agent: IceAgent) -> None:
        out = agent.drain()
        self.events[name].extend(out.events)
        for event in out.events:
            if isinstance(event, LocalCandidateGathered):
                other = self.b if agent is self.a else self.a
                other.add_remote_candidate(event.candidate, self.now)
        for tx in out.transmits:
            self.queue.append((name, tx))

    def run(self, until: float | None = None) -> None:
        """Deliver everything (no loss, no delay), running timers up to `until`."""
        end = self.now if until is None else until
        while True:
            self._drain("a", self.a)
            self._drain("b", self.b)
            if self.queue:
                name, tx = self.queue.popleft()
                if name == "turn" and tx.remote == BASE_B:  # relayed to the peer
                    got = self.b.receive(tx.data, BASE_B, tx.local, self.now)
                    if got is not None:
                        self.delivered_to_b.append(got)
                elif name == "turn":  # to the client, on its base
                    self.a.receive(tx.data, tx.remote, tx.local, self.now)
                else:
                    self._route(name, tx)
                continue
            deadlines = [d.at for d in (self.a.get_timer(), self.b.get_timer()) if d is not None]
            if not deadlines or min(deadlines) > end:
                self.now = max(self.now, end)
                return
            self.now = max(self.now, min(deadlines))
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)


def of_type(events: Sequence[object], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


def test_relay_only_agent_signals_one_relay_candidate_and_connects_through_it() -> None:
    world = World(IceConfig(turn_servers=(relay_server(),), relay_only=True))
    world.signal()
    world.run(until=2.0)
    gathered = [e.candidate for e in of_type(world.events["a"], LocalCandidateGathered)]
    assert [(c.type, c.host, c.related_address, c.related_port) for c in gathered] == [
        ("relay", SERVER[0], BASE_A[0], BASE_A[1])
    ]
    assert gathered[0].base == gathered[0].address  # a relay candidate is its own base
    assert of_type(world.events["a"], GatheringComplete)
    pair = world.a.selected_pair
    assert pair is not None and pair.local.type == "relay"
    assert world.a.state is IceTransportState.CONNECTED
    assert world.b.selected_pair is not None
    assert world.b.selected_pair.remote.address == gathered[0].address
    # Application data goes through the server (a channel by now) and arrives as sent.
    assert world.a.send(b"\x80data", world.now) is None  # queued for the server
    world.run()
    assert world.delivered_to_b == [b"\x80data"]
    assert any(m == Method.CHANNEL_BIND for m in world.turn.requests)


def test_wrong_password_is_a_candidate_error_and_gathering_completes() -> None:
    world = World(IceConfig(turn_servers=(relay_server(password="nope"),)))
    world.signal()
    world.run(until=1.0)
    errors = of_type(world.events["a"], CandidateErrorEvent)
    assert [(e.address, e.port, e.error_code) for e in errors] == [(BASE_A[0], BASE_A[1], 401)]
    assert errors[0].url.startswith("turn:")
    assert of_type(world.events["a"], GatheringComplete)
    pair = world.a.selected_pair
    assert pair is not None and pair.local.type == "host"


def test_unreachable_server_fails_on_the_configured_schedule() -> None:
    options = RelayOptions(rto=0.1, attempts=3)
    gatherer = RelayGatherer(random.Random(3))
    assert gatherer.start(0, BASE_A, 0, [relay_server()], options, 0.0) == 1
    sent: list[tuple[float, Address]] = []
    now = 0.0
    while True:
        transmits, _, outcomes = gatherer.poll()
        sent.extend((now, t.remote) for t in transmits)
        if outcomes:
            break
        at = gatherer.get_timer()
        assert at is not None
        now = at
        gatherer.handle_timer(now)
    # RFC 8489 §6.2.1: sends at 0, RTO, 3 RTO; then 16 RTO more: 0.1 + 0.2 + 1.6.
    assert [t for t, _ in sent] == pytest.approx([0.0, 0.1, 0.3])
    assert now == pytest.approx(1.9)
    (failed,) = outcomes
    assert isinstance(failed, RelayFailed) and failed.error_code == 701
    assert len(gatherer) == 0


def test_dtls_and_family_mismatch() -> None:
    gatherer = RelayGatherer(random.Random(3))
    dtls = RelayServer("turns:192.0.2.10?transport=udp", SERVER, "dtls", USER, PASSWORD)
    v6 = RelayServer("turn:[2001:db8::1]", ("2001:db8::1", 3478), "udp", USER, PASSWORD)
    assert gatherer.start(0, BASE_A, 0, [dtls, v6], RelayOptions(), 0.0) == 1
    _, _, outcomes = gatherer.poll()
    assert [(type(o), getattr(o, "error_code", None)) for o in outcomes] == [(RelayFailed, 701)]


def test_stream_servers_ask_the_driver_for_a_connection_first() -> None:
    gatherer = RelayGatherer(random.Random(3))
    gatherer.start(0, BASE_A, 0, [relay_server("tcp")], RelayOptions(), 0.0)
    transmits, commands, _ = gatherer.poll()
    assert transmits == []
    (open_cmd,) = commands
    assert isinstance(open_cmd, RelayStreamOpen) and open_cmd.server == SERVER
    assert open_cmd.local_ip == BASE_A[0] and open_cmd.transport == "tcp"
    gatherer.stream_opened(open_cmd.key, (BASE_A[0], 50123), 0.0)
    _, commands, _ = gatherer.poll()
    (write,) = commands
    assert isinstance(write, RelayStreamData) and stun.decode(write.data).method == Method.ALLOCATE
    gatherer.stream_closed(open_cmd.key, 0.1, "reset")
    _, _, outcomes = gatherer.poll()
    (failed,) = outcomes
    assert isinstance(failed, RelayFailed) and failed.error_code == 701
    assert (failed.address, failed.port) == (BASE_A[0], 50123)  # the connection's own port


def test_local_preference_orders_udp_tcp_tls_then_bases() -> None:
    host = "10.0.0.1"
    udp, tcp, tls = (relay_local_preference(host, 0, t) for t in ("udp", "tcp", "tls"))
    assert udp > tcp > tls
    assert relay_local_preference(host, 1, "tls") < tls < relay_local_preference(host, 9, "tcp")
    assert all(0 <= p <= 0xFFFF for p in (udp, relay_local_preference("::1", 0, "udp")))


def test_restart_allocates_anew_and_releases_the_old_generation() -> None:
    world = World(IceConfig(turn_servers=(relay_server(),), relay_only=True, release_delay=1.0))
    world.signal()
    world.run(until=1.0)
    first = world.a.selected_pair
    assert first is not None and first.local.type == "relay"
    # A restart on fresh bases, as the runtime does (a same-5-tuple Allocate gets 437).
    new_a, new_b = ("10.0.0.1", 5001), ("10.0.0.2", 6000)
    ufrag_a = world.a.restart(world.now, new_bases=(new_a,))
    ufrag_b = world.b.restart(world.now, controlling=False)
    world.a.set_remote_credentials(*ufrag_b, world.now)
    world.b.set_remote_credentials(*ufrag_a, world.now)
    assert new_b == BASE_B
    world.run(until=world.now + 0.5)
    second = world.a.selected_pair
    assert second is not None and second.generation == 1 and second.local.type == "relay"
    assert second.local.address != first.local.address  # a new allocation
    assert len(world.turn.relayed) == 2
    refreshes_before = world.turn.requests.count(Method.REFRESH)
    world.run(until=world.now + 2.0)  # past release_delay: generation 0 goes
    assert world.turn.requests.count(Method.REFRESH) == refreshes_before + 1  # LIFETIME 0
    assert len(world.a._relays.gatherer) == 1
    world.a.send(b"\x80after", world.now)
    world.run()
    assert world.delivered_to_b[-1:] == [b"\x80after"]


def test_outcomes_name_the_generation_and_base() -> None:
    gatherer = RelayGatherer(random.Random(3))
    turn = ScriptedTurn()
    gatherer.start(4, BASE_A, 2, [relay_server()], RelayOptions(), 0.0)
    for _ in range(3):
        transmits, _, outcomes = gatherer.poll()
        for tx in transmits:
            for reply in turn.from_client(tx.data, tx.local):
                gatherer.receive(BASE_A, SERVER, reply.data, 0.0)
    (ready,) = [o for o in outcomes if isinstance(o, RelayReady)]
    assert (ready.generation, ready.base, ready.mapped) == (4, BASE_A, BASE_A)
    assert ready.local_preference == relay_local_preference(BASE_A[0], 2, "udp")
    assert gatherer.is_relayed(ready.relayed) and gatherer.relayed_addresses(4) == [ready.relayed]


@settings(max_examples=200, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=120), max_size=6),
    transport=st.sampled_from(["udp", "tcp"]),
)
def test_arbitrary_bytes_from_a_server_never_raise(chunks: list[bytes], transport: str) -> None:
    """Junk from the server (datagrams, or stream bytes) is dropped or fails the allocation."""
    agent = IceAgent(
        controlling=True,
        rng=random.Random(5),
        config=IceConfig(turn_servers=(relay_server(transport),), relay_only=True),
    )
    agent.add_base(BASE_A, 0.0)
    agent.gather(0.0)
    out = agent.drain()
    opened = [e for e in out.events if isinstance(e, RelayStreamOpen)]
    if opened:
        agent.relay_stream_opened(opened[0].key, (BASE_A[0], 50000), 0.0)
    for i, chunk in enumerate(chunks):
        if opened:
            assert agent.relay_stream_data(opened[0].key, chunk, 0.01 * i) == []
        else:
            assert agent.receive(chunk, BASE_A, SERVER, 0.01 * i) is None
        agent.drain()
    agent.handle_timer(100.0)
    agent.drain()
    assert agent.local_candidates() == []  # nothing signed: no relay candidate


def test_channel_data_from_a_peer_is_not_application_data() -> None:
    """RFC 7983's 64-79 range is a TURN server's to send: from anyone else it is dropped."""
    world = World(IceConfig())
    world.signal()
    world.run(until=1.0)
    assert world.b.selected_pair is not None
    junk = encode_channel_data(0x4000, b"\x17\xfe\xfd not dtls", stream=False)
    assert world.b.receive(junk, BASE_B, BASE_A, world.now) is None
    assert world.b.counters["channel_data_not_from_relay"] == 1
    assert world.b.receive(b"\x80rtp", BASE_B, BASE_A, world.now) == b"\x80rtp"


def test_a_redirect_over_tcp_reconnects_and_allocates_there() -> None:
    """300 ALTERNATE-SERVER over a stream: a new connection, then the Allocate on it."""
    gatherer = RelayGatherer(random.Random(3))
    gatherer.start(0, BASE_A, 0, [relay_server("tcp")], RelayOptions(), 0.0)
    _, (opened,), _ = gatherer.poll()
    assert isinstance(opened, RelayStreamOpen)
    gatherer.stream_opened(opened.key, (BASE_A[0], 50001), 0.0)
    _, (write,), _ = gatherer.poll()
    assert isinstance(write, RelayStreamData)
    request = stun.decode(write.data)
    other = ("192.0.2.20", 3478)
    redirect = Message(
        Method.ALLOCATE, MessageClass.ERROR, request.transaction_id,
        error_code=(300, "Try Alternate"),
        other=[(AttributeType.ALTERNATE_SERVER, stun.encode_address(other))],
    )  # fmt: skip
    gatherer.stream_data(opened.key, stun.encode(redirect), 0.1)
    _, commands, outcomes = gatherer.poll()
    assert outcomes == []
    assert [type(c).__name__ for c in commands] == ["RelayStreamClose", "RelayStreamOpen"]
    reopen = commands[1]
    assert isinstance(reopen, RelayStreamOpen) and reopen.server == other
    gatherer.stream_opened(opened.key, (BASE_A[0], 50002), 0.2)
    _, commands, _ = gatherer.poll()
    (again,) = commands
    assert isinstance(again, RelayStreamData)
    assert stun.decode(again.data).method == Method.ALLOCATE  # sent on the new connection


class MismatchTurn(ScriptedTurn):
    """Answers Allocate from the addresses in `taken` with 437 (another allocation there)."""

    def __init__(self, taken: set[Address]) -> None:
        super().__init__()
        self.taken = taken

    def _answer(self, msg: Message, client: Address) -> bytes:
        if msg.method != Method.ALLOCATE or client not in self.taken:
            return super()._answer(msg, client)
        reply = Message(msg.method, MessageClass.ERROR, msg.transaction_id,
                        error_code=(437, "Allocation Mismatch"))  # fmt: skip
        return stun.encode(reply, integrity_key=self.key)


NEW_PORT = (BASE_A[0], 5999)


def test_udp_437_asks_for_a_socket_of_its_own_and_allocates_from_it() -> None:
    """RFC 8656 §7.2: 437 on the base's 5-tuple; the retry comes from a new local port."""
    world = World(IceConfig(turn_servers=(relay_server(),), relay_only=True),
                  MismatchTurn({BASE_A}))  # fmt: skip
    world.signal()
    world.run(until=0.5)
    (ask,) = of_type(world.events["a"], RelaySocketOpen)
    assert ask.local_ip == BASE_A[0]
    assert not of_type(world.events["a"], LocalCandidateGathered)
    assert not of_type(world.events["a"], CandidateErrorEvent)
    allocates = world.turn.requests.count(Method.ALLOCATE)
    world.a.relay_socket_opened(ask.key, NEW_PORT, world.now)  # the driver bound it
    world.run(until=2.0)
    assert world.turn.requests.count(Method.ALLOCATE) > allocates
    assert list(world.turn.relayed) == [NEW_PORT]  # the allocation is the new port's
    gathered = [e.candidate for e in of_type(world.events["a"], LocalCandidateGathered)]
    assert [(c.type, c.related_address, c.related_port) for c in gathered] == [
        ("relay", NEW_PORT[0], NEW_PORT[1])
    ]
    assert gathered[0].base == gathered[0].address  # still its own base
    assert of_type(world.events["a"], GatheringComplete)
    assert not of_type(world.events["a"], CandidateErrorEvent)
    assert world.a.state is IceTransportState.CONNECTED
    assert world.a.send(b"\x80data", world.now) is None
    world.run()
    assert world.delivered_to_b == [b"\x80data"]
    # Closing releases the allocation from the new port, then the socket is let go.
    world.a.close(world.now)
    out = world.a.drain()
    assert [(tx.local, tx.remote) for tx in out.transmits] == [(NEW_PORT, SERVER)]
    assert stun.decode(out.transmits[0].data).method == Method.REFRESH
    assert [e.key for e in of_type(out.events, RelaySocketClose)] == [ask.key]


def test_udp_437_again_from_the_new_port_fails_and_lets_the_socket_go() -> None:
    world = World(IceConfig(turn_servers=(relay_server(),)), MismatchTurn({BASE_A, NEW_PORT}))
    world.signal()
    world.run(until=0.5)
    (ask,) = of_type(world.events["a"], RelaySocketOpen)
    world.a.relay_socket_opened(ask.key, NEW_PORT, world.now)
    world.run(until=2.0)
    errors = of_type(world.events["a"], CandidateErrorEvent)
    assert [e.error_code for e in errors] == [437]
    assert [e.key for e in of_type(world.events["a"], RelaySocketClose)] == [ask.key]
    assert of_type(world.events["a"], GatheringComplete)
    assert world.a.state is IceTransportState.CONNECTED  # over the host pair


def test_udp_437_with_no_socket_to_be_had_is_a_candidate_error() -> None:
    world = World(IceConfig(turn_servers=(relay_server(),)), MismatchTurn({BASE_A}))
    world.signal()
    world.run(until=0.5)
    (ask,) = of_type(world.events["a"], RelaySocketOpen)
    world.a.relay_socket_failed(ask.key, world.now, "no ports")
    world.run(until=2.0)
    errors = of_type(world.events["a"], CandidateErrorEvent)
    assert [(e.address, e.port, e.error_code) for e in errors] == [(BASE_A[0], BASE_A[1], 437)]
    assert of_type(world.events["a"], GatheringComplete)
