"""Relay candidates end to end: real peer connections through a real coturn on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCDataChannel

from coturn import PASSWORD, USER, Coturn, coturn_problem, free_port, start_coturn
from pc_helpers import Recorder, make_pc, negotiate, trickle
from prereq import require
from unbroken import InvalidAccessError, RTCConfiguration, RTCPeerConnection
from unbroken.addresses import Address
from unbroken.errors import NotSupportedError, SyntaxError_
from unbroken.ice import IceConfig, foundation_for
from unbroken.ice.relay import RelayOptions
from unbroken.turn import AllocationSucceeded, TurnClient, rest_credentials

pytestmark = pytest.mark.turn
LOCAL = "127.0.0.1"

# An unreachable UDP server is given up after 0.05 + 0.1 + 16 x 0.05 s.
FAST = IceConfig(relay_options=RelayOptions(rto=0.05, attempts=3))


@pytest.fixture
def coturn_dir(tmp_path: Path) -> Path:
    require(coturn_problem())
    return tmp_path


@pytest.fixture
def server(coturn_dir: Path) -> Iterator[Coturn]:
    srv = start_coturn(coturn_dir, tls=True)
    yield srv
    srv.stop()


def turn_url(srv: Coturn, transport: str = "udp") -> str:
    if transport == "tls":
        return f"turns:localhost:{srv.tls_port}"
    if transport == "tcp":
        return f"turn:127.0.0.1:{srv.port}?transport=tcp"
    return f"turn:127.0.0.1:{srv.port}"


def entry(url: str, username: str = USER, credential: str = PASSWORD) -> dict[str, str]:
    return {"urls": url, "username": username, "credential": credential}


def relay_pc(srv: Coturn | None, *servers: dict[str, Any], **options: Any) -> RTCPeerConnection:
    """A relay-only peer connection (the relay allocations made from 127.0.0.1)."""
    options.setdefault("iceTransportPolicy", "relay")
    return make_pc(
        iceServers=list(servers),
        turnCaFile=str(srv.cert) if srv is not None and srv.cert else None,
        **options,
    )


class Call:
    """Two peer connections with a data channel, messages numbered and checked in order."""

    def __init__(self, a: RTCPeerConnection, b: RTCPeerConnection) -> None:
        self.a, self.b = a, b
        self.ra, self.rb = Recorder(a), Recorder(b)
        self.errors_a: list[Any] = []
        a.on("icecandidateerror", self.errors_a.append)
        self.channel_a: RTCDataChannel | None = None
        self.channel_b: RTCDataChannel | None = None
        self.got_a: list[str] = []
        self.got_b: list[str] = []
        self.sent_a = self.sent_b = 0
        self._message = asyncio.Event()

    def _record(self, into: list[str]) -> Callable[[str], None]:
        def record(message: str) -> None:
            into.append(message)
            self._message.set()

        return record

    async def connect(self, timeout: float = 10.0) -> None:
        trickle(self.a, self.b)
        opened = asyncio.Event()
        arrived = asyncio.Event()
        self.channel_a = self.a.createDataChannel("chat")
        self.channel_a.on("open", opened.set)
        self.channel_a.on("message", self._record(self.got_a))

        def on_channel(channel: RTCDataChannel) -> None:
            self.channel_b = channel
            channel.on("message", self._record(self.got_b))
            arrived.set()

        self.b.on("datachannel", on_channel)
        await negotiate(self.a, self.b)
        await asyncio.wait_for(asyncio.gather(opened.wait(), arrived.wait()), timeout)

    def send_both(self) -> None:
        assert self.channel_a is not None and self.channel_b is not None
        self.channel_a.send(f"a{self.sent_a}")
        self.channel_b.send(f"b{self.sent_b}")
        self.sent_a += 1
        self.sent_b += 1

    async def all_arrived(self, timeout: float = 10.0) -> None:
        """Wait until every message sent so far arrived, then check: exactly once, in order."""

        async def wait() -> None:
            while len(self.got_b) < self.sent_a or len(self.got_a) < self.sent_b:
                self._message.clear()
                await self._message.wait()

        await asyncio.wait_for(wait(), timeout)
        assert self.got_b == [f"a{i}" for i in range(self.sent_a)]
        assert self.got_a == [f"b{i}" for i in range(self.sent_b)]

    async def more_arrived(self, n: int, timeout: float = 10.0) -> None:
        """Wait until `n` more messages arrived each way than now (woken by each message)."""
        want_a, want_b = len(self.got_a) + n, len(self.got_b) + n

        async def wait() -> None:
            while len(self.got_a) < want_a or len(self.got_b) < want_b:
                self._message.clear()
                await self._message.wait()

        await asyncio.wait_for(wait(), timeout)

    async def exchange(self, n: int = 5) -> None:
        for _ in range(n):
            self.send_both()
        await self.all_arrived()

    async def close(self) -> None:
        await self.a.close()
        await self.b.close()


def selected_types(pc: RTCPeerConnection) -> tuple[str, str]:
    assert pc.iceTransport is not None
    pair = pc.iceTransport.agent.selected_pair
    assert pair is not None
    return pair.local.type, pair.remote.type


def local_candidate_lines(recorder: Recorder) -> list[str]:
    return [c.candidate for c in recorder.candidates if c is not None]


def gatherer(pc: RTCPeerConnection) -> Any:
    assert pc.iceTransport is not None
    return pc.iceTransport.agent._relays.gatherer


def diagnosis(call: Call) -> str:
    """What each side's agent and relays look like, for a failure message."""
    parts = [f"sent {call.sent_a}/{call.sent_b}, got {len(call.got_b)}/{len(call.got_a)}"]
    for name, pc in (("a", call.a), ("b", call.b)):
        agent = pc.iceTransport.agent  # type: ignore[union-attr]
        pair = agent.selected_pair
        parts.append(
            f"{name}: gen {agent.generation}, state {agent.state.value}, selected "
            f"{pair and (pair.generation, pair.local.address, pair.remote.address)}, "
            f"relays {dict(gatherer(pc).counters)}, counters {dict(agent.counters)}"
        )
    return "; ".join(parts)


async def on_newest_generation(pc: RTCPeerConnection, timeout: float = 10.0) -> None:
    """Wait until the pair in use belongs to the newest generation (woken by each switch)."""
    ice = pc.iceTransport
    assert ice is not None
    changed = asyncio.Event()

    def on_change(_event: object) -> None:
        changed.set()

    ice.on("selectedpairchange", on_change)

    async def wait() -> None:
        while True:
            pair = ice.agent.selected_pair
            if pair is not None and pair.generation == ice.agent.generation:
                return
            changed.clear()
            await changed.wait()

    try:
        await asyncio.wait_for(wait(), timeout)
    finally:
        ice.remove_listener("selectedpairchange", on_change)


@pytest.fixture
async def calls() -> AsyncIterator[list[Call]]:
    made: list[Call] = []
    yield made
    for call in made:
        await call.close()


# ------------------------------------------------------------------ configuration


@pytest.mark.parametrize(
    ("server", "error"),
    [
        ({"urls": "turn:"}, SyntaxError_),
        ({"urls": "turn:host/path", "username": "u", "credential": "p"}, SyntaxError_),
        ({"urls": "turn:host?transport=sctp", "username": "u", "credential": "p"}, SyntaxError_),
        ({"urls": "turn:[::1", "username": "u", "credential": "p"}, SyntaxError_),
        ({"urls": []}, SyntaxError_),
        ({"urls": "turn:127.0.0.1"}, InvalidAccessError),
        ({"urls": "turns:127.0.0.1", "username": "u"}, InvalidAccessError),
        ({"urls": "stuns:127.0.0.1"}, NotSupportedError),
    ],
)
async def test_malformed_ice_servers_raise_the_w3c_errors(
    server: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        RTCPeerConnection(RTCConfiguration(iceServers=[server]))
    pc = RTCPeerConnection()
    with pytest.raises(error):
        pc.setConfiguration(RTCConfiguration(iceServers=[server]))
    await pc.close()


async def test_every_entry_and_url_is_accepted() -> None:
    servers = [
        {"urls": ["stun:127.0.0.1:3478", "turn:127.0.0.1?transport=tcp"], "username": "u",
         "credential": "p"},
        {"urls": "turns:localhost:5349", "username": "v", "credential": "q"},
    ]  # fmt: skip
    pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
    assert pc.getConfiguration().iceServers == servers
    await pc.close()


# ------------------------------------------------------------------ relay-only calls


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_relay_only_call_over_each_transport(
    server: Coturn, transport: str, calls: list[Call]
) -> None:
    call = Call(relay_pc(server, entry(turn_url(server, transport))), make_pc())
    calls.append(call)
    await call.connect()
    await call.exchange(20)
    assert selected_types(call.a) == ("relay", "host")
    lines = local_candidate_lines(call.ra)
    assert lines and all(" typ relay raddr 127.0.0.1 rport " in line for line in lines)
    assert call.errors_a == []
    # The relay candidate's address is the one coturn allocated for this call.
    relayed = gatherer(call.a).relayed_addresses(0)
    assert len(relayed) == 1 and f" {relayed[0][1]} typ relay" in lines[0]


async def test_relay_priorities_udp_over_tcp_over_tls(server: Coturn, calls: list[Call]) -> None:
    a = relay_pc(server, *(entry(turn_url(server, t)) for t in ("tls", "tcp", "udp")))
    call = Call(a, make_pc())
    calls.append(call)
    await call.connect()
    await call.ra.wait_for(lambda: None in call.ra.candidates)
    lines = local_candidate_lines(call.ra)
    assert len(lines) == 3
    # The foundation tells the transport to the server (RFC 8445 §5.1.1.3).
    transport_of = {foundation_for("relay", LOCAL, t, LOCAL): t for t in ("udp", "tcp", "tls")}
    by_priority = sorted(lines, key=lambda line: -int(line.split()[3]))
    transports = [transport_of[line.split()[0].removeprefix("candidate:")] for line in by_priority]
    assert transports == ["udp", "tcp", "tls"], by_priority
    assert selected_types(a) == ("relay", "host")
    await call.exchange(5)


async def test_both_sides_relayed_through_twenty_restarts_lose_nothing(
    server: Coturn, calls: list[Call]
) -> None:
    url = entry(turn_url(server))
    call = Call(relay_pc(server, url), relay_pc(server, url))
    calls.append(call)
    await call.connect()
    assert selected_types(call.a) == ("relay", "relay")
    stop = asyncio.Event()

    async def pump() -> None:  # a message each way every 10-20 ms while restarts run
        i = 0
        while not stop.is_set():
            call.send_both()
            i += 1
            await asyncio.sleep(0.010 + 0.010 * (i % 2))

    sender = asyncio.create_task(pump())
    relayed_seen = [gatherer(call.a).relayed_addresses(0)]
    try:
        for n in range(20):
            first, second = (call.a, call.b) if n % 2 == 0 else (call.b, call.a)
            await first.setLocalDescription(await first.createOffer(iceRestart=True))
            await second.setRemoteDescription(first.localDescription)
            await second.setLocalDescription()
            await first.setRemoteDescription(second.localDescription)
            try:
                await on_newest_generation(call.a)
                assert selected_types(call.a) == ("relay", "relay")
                generation = call.a.iceTransport.agent.generation  # type: ignore[union-attr]
                relayed_seen.append(gatherer(call.a).relayed_addresses(generation))
                await call.more_arrived(3)  # messages flow on the new generation's relays
            except TimeoutError:
                raise AssertionError(f"restart {n} stalled: {diagnosis(call)}") from None
    finally:
        stop.set()
        await sender
    await call.all_arrived()
    assert call.sent_a >= 60
    # Every generation had its own allocation, made while the previous one was still in
    # use (so a different relayed address); coturn may reuse a port released long ago.
    assert all(len(r) == 1 for r in relayed_seen), relayed_seen
    assert all(x != y for x, y in zip(relayed_seen, relayed_seen[1:])), relayed_seen
    assert call.a.connectionState == "connected" and call.b.connectionState == "connected"
    for pc in (call.a, call.b):
        live = pc.iceTransport.agent.generations()  # type: ignore[union-attr]
        assert len(gatherer(pc)) <= len(live) <= 8  # released with their generations


async def test_rest_credentials(coturn_dir: Path, calls: list[Call]) -> None:
    srv = start_coturn(coturn_dir, rest_secret="s3cret")
    try:
        username, password = rest_credentials("s3cret", "alice", time.time(), ttl=600)
        call = Call(relay_pc(srv, entry(turn_url(srv), username, password)), make_pc())
        calls.append(call)
        await call.connect()
        await call.exchange(3)
        assert selected_types(call.a) == ("relay", "host")
    finally:
        srv.stop()


# ------------------------------------------------------------------ errors


async def test_wrong_password_is_an_icecandidateerror_and_host_candidates_connect(
    server: Coturn, calls: list[Call]
) -> None:
    url = turn_url(server)
    call = Call(make_pc(iceServers=[entry(url, credential="not-it")]), make_pc())
    calls.append(call)
    await call.connect()
    await call.ra.wait_for(lambda: call.errors_a != [] and call.a.iceGatheringState == "complete")
    (error,) = call.errors_a
    assert (error.url, error.errorCode) == (url, 401)
    assert error.errorText and error.address == "127.0.0.1" and isinstance(error.port, int)
    assert error.port in {c.port for c in call.a.iceTransport.agent.local_candidates()}  # type: ignore[union-attr]
    assert selected_types(call.a) == ("host", "host")
    await call.exchange(3)


async def test_quota_is_an_icecandidateerror(coturn_dir: Path, calls: list[Call]) -> None:
    srv = start_coturn(coturn_dir, extra={"user-quota": "1"})
    try:
        urls = [turn_url(srv), turn_url(srv, "tcp")]
        a = relay_pc(srv, {"urls": urls, "username": USER, "credential": PASSWORD})
        call = Call(a, make_pc())
        calls.append(call)
        await call.connect()
        await call.ra.wait_for(lambda: a.iceGatheringState == "complete")
        assert [e.errorCode for e in call.errors_a] == [486]
        assert call.errors_a[0].url in urls
        await call.exchange(3)
    finally:
        srv.stop()


async def test_two_servers_the_first_unreachable(server: Coturn, calls: list[Call]) -> None:
    dead = f"turn:127.0.0.1:{free_port()}"
    a = relay_pc(server, entry(dead), entry(turn_url(server)), iceConfig=FAST)
    call = Call(a, make_pc())
    calls.append(call)
    await call.connect()
    assert selected_types(a) == ("relay", "host")
    await call.ra.wait_for(lambda: a.iceGatheringState == "complete", 10)
    assert [(e.url, e.errorCode) for e in call.errors_a] == [(dead, 701)]
    await call.exchange(3)


async def test_server_stopped_mid_call_recovers_onto_host_with_a_restart(
    server: Coturn, calls: list[Call]
) -> None:
    config = dataclasses.replace(FAST, disconnected_timeout=0.5)
    a = relay_pc(server, entry(turn_url(server)), iceConfig=config)
    call = Call(a, make_pc(iceConfig=config))
    calls.append(call)
    await call.connect()
    await call.exchange(3)
    assert selected_types(a) == ("relay", "host")
    server.stop()
    await call.ra.wait_for(lambda: a.iceConnectionState == "disconnected", 10)
    for _ in range(5):
        call.send_both()  # sent into the dead relay: SCTP must deliver them after recovery
    a.setConfiguration(dataclasses.replace(a.getConfiguration(), iceTransportPolicy="all"))
    a.restartIce()
    await negotiate(a, call.b)
    await call.ra.wait_for(lambda: a.iceConnectionState in ("connected", "completed"), 10)
    assert selected_types(a) == ("host", "host")
    await call.exchange(5)


# ------------------------------------------------------------------ lifetimes


async def test_refreshes_over_more_than_three_short_lifetimes(
    coturn_dir: Path, calls: list[Call]
) -> None:
    life = 4
    srv = start_coturn(
        coturn_dir,
        extra={
            "max-allocate-lifetime": str(life),
            "channel-lifetime": str(life),
            "permission-lifetime": str(life),
        },
    )
    try:
        # Ask for more than allowed: coturn 4.6 clamps a Refresh only above 600 s (turn.md).
        options = RelayOptions(lifetime=3600, permission_lifetime=life, channel_lifetime=life)
        config = IceConfig(relay_options=options)
        url = entry(turn_url(srv))
        call = Call(relay_pc(srv, url, iceConfig=config), relay_pc(srv, url, iceConfig=config))
        calls.append(call)
        await call.connect()
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.5 * life
        while loop.time() < end:
            await call.exchange(1)  # each round trip awaited; the sleep below only paces
            await asyncio.sleep(0.2)
        for pc in (call.a, call.b):
            counters = gatherer(pc).counters
            assert counters["Refreshed"] >= 3, counters
            assert counters["AllocationLost"] == 0 and counters["PermissionFailed"] == 0
            assert counters["ChannelBindFailed"] == 0 and counters["ChannelBound"] >= 1
        assert selected_types(call.a) == ("relay", "relay")
        assert call.a.iceTransport.agent.generation == 0  # type: ignore[union-attr]
        await call.exchange(5)
    finally:
        srv.stop()


# ------------------------------------------------------------------ 437 over UDP


async def allocate_from(local: Address, server: Address) -> Address:
    """Allocate from `local` (a base's port, joined with SO_REUSEPORT) and drop the socket
    without releasing: the server keeps an allocation on that 5-tuple (RFC 8656 §7.2)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(local)
        sock.connect(server)  # connected: the server's answers come here, not to the base
        sock.setblocking(False)
        client = TurnClient(server, USER, PASSWORD)
        client.allocate(loop.time())
        while True:
            for data in client.data_to_send():
                sock.send(data)
            while (event := client.next_event()) is not None:
                assert isinstance(event, AllocationSucceeded), event
                return event.relayed
            at = client.get_timer()
            wait = 1.0 if at is None else max(0.0, at - loop.time())
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 2048), wait)
            except TimeoutError:
                client.handle_timer(loop.time())
                continue
            client.receive(data, loop.time())
    finally:
        sock.close()


async def test_udp_437_on_the_base_allocates_from_a_socket_of_its_own(
    server: Coturn, calls: list[Call]
) -> None:
    """An allocation already on the base's 5-tuple: coturn answers 437, the relay moves."""
    a = relay_pc(server, entry(turn_url(server)))
    call = Call(a, make_pc())
    calls.append(call)
    ice, _ = a._ensure_transports()
    await ice.open_sockets()  # the base, bound before gathering (gather() reuses it)
    (base,) = ice._sockets
    taken = await allocate_from(base, (LOCAL, server.port))
    await call.connect()
    await call.exchange(20)
    assert selected_types(a) == ("relay", "host")
    assert call.errors_a == []
    assert gatherer(a).counters["NewLocalPortNeeded"] == 1
    (own,) = [s.local for s in ice._relay_sockets.values()]
    assert own[0] == base[0] and own[1] != base[1]
    lines = local_candidate_lines(call.ra)
    # The server saw the new port (the mapped address), and allocated anew.
    assert len(lines) == 1 and f" typ relay raddr {LOCAL} rport {own[1]}" in lines[0]
    (relayed,) = gatherer(a).relayed_addresses(0)
    assert relayed != taken
    await a.close()
    assert ice._relay_sockets == {}
