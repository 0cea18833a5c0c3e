"""The asyncio runtime on real sockets: demux, address filter, srflx from a real STUN server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from prereq import require
from unbroken.ice import CandidateErrorEvent, IceConfig, IceTransportState
from unbroken.runtime import AddressFilter, IceConnection, Kind, classify, select_addresses

LOOPBACK = AddressFilter(addresses=("127.0.0.1",))


def test_rfc7983_demux() -> None:
    assert classify(b"\x00\x01") is Kind.STUN
    assert classify(b"\x16\xfe\xfd") is Kind.DTLS
    assert classify(b"\x80\x00") is Kind.RTP
    assert classify(b"\x40\x00") is Kind.TURN_CHANNEL
    assert classify(b"\x10") is Kind.ZRTP
    assert classify(b"") is Kind.UNKNOWN and classify(b"\xff") is Kind.UNKNOWN


def test_address_filter() -> None:
    found = [
        ("lo", "127.0.0.1"),
        ("lo", "::1"),
        ("eth0", "192.0.2.7"),
        ("eth0", "fe80::1"),
        ("wlan0", "2001:db8::5"),
    ]
    assert select_addresses(AddressFilter(), found) == ["192.0.2.7", "2001:db8::5"]
    assert select_addresses(AddressFilter(ipv6=False), found) == ["192.0.2.7"]
    assert select_addresses(AddressFilter(interfaces=("wlan0",)), found) == ["2001:db8::5"]
    assert select_addresses(AddressFilter(addresses=("127.0.0.1", "10.9.9.9")), found) == [
        "127.0.0.1"
    ]
    # A host with only loopback (a test namespace) falls back to it.
    assert select_addresses(AddressFilter(), found[:2]) == ["127.0.0.1", "::1"]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def stun_server() -> Iterator[tuple[str, int]]:
    """coturn as a plain STUN server on 127.0.0.1 (installed by scripts/install-test-deps.sh)."""
    binary = shutil.which("turnserver")
    require(
        None if binary else "coturn (turnserver) is not installed: run scripts/install-test-deps.sh"
    )
    assert binary is not None
    port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            binary, "--stun-only", "--listening-ip", "127.0.0.1", "--listening-port", str(port),
            "--no-tls", "--no-dtls", "--no-cli", "--log-file", f"{tmp}/turn.log", "--simple-log",
            "--pidfile", f"{tmp}/turn.pid", "--no-software-attribute",
        ]  # fmt: skip
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield ("127.0.0.1", port)
        finally:
            proc.terminate()
            proc.wait(5)


async def wait_gathered(conn: IceConnection) -> list[object]:
    errors: list[object] = []
    done = asyncio.Event()
    conn.on("candidateerror", errors.append)
    conn.on("gatheringcomplete", lambda ufrag: done.set())
    await conn.gather()
    await asyncio.wait_for(done.wait(), 10)
    return errors


async def test_srflx_gathering_against_coturn(stun_server: tuple[str, int]) -> None:
    conn = IceConnection(
        controlling=True, address_filter=LOOPBACK, config=IceConfig(stun_servers=(stun_server,))
    )
    # coturn may take a moment to bind; its first answer may need a retransmission.
    errors = await wait_gathered(conn)
    assert errors == []
    # On loopback the mapped address is the base itself: no srflx candidate (RFC 8445 §5.1.3).
    assert [c.type for c in conn.agent.local_candidates()] == ["host"]
    assert conn.agent.counters["stun_unknown_transaction"] == 0
    await conn.close()


async def test_silent_stun_server_gives_candidate_error_and_gathering_completes() -> None:
    port = free_udp_port()  # nobody listens there
    config = IceConfig(stun_servers=(("127.0.0.1", port),), stun_rto=0.05, stun_attempts=2)
    conn = IceConnection(controlling=True, address_filter=LOOPBACK, config=config)
    errors = await wait_gathered(conn)
    assert len(errors) == 1
    error = errors[0]
    assert isinstance(error, CandidateErrorEvent) and error.error_code == 701
    assert error.url == f"stun:127.0.0.1:{port}"
    await conn.close()


async def test_recv_raises_only_after_close() -> None:
    conn = IceConnection(controlling=True, address_filter=LOOPBACK)
    await conn.gather()
    reader = asyncio.ensure_future(conn._recv())
    await asyncio.sleep(0)
    assert not reader.done()  # nothing to read: it waits, it does not raise
    assert conn.send(b"\x80" + bytes(10)) is False  # no pair: dropped, no exception
    await conn.close()
    with pytest.raises(ConnectionError):
        await reader
    with pytest.raises(ConnectionError):
        await conn._recv()
    assert conn.state is IceTransportState.CLOSED


async def test_stranger_datagrams_are_dropped_and_counted() -> None:
    conn = IceConnection(controlling=True, address_filter=LOOPBACK)
    await conn.gather()
    base = conn.agent.bases[0]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    for data in (b"\x80hello", b"\x16\xfe\xfdjunk", b"\x00\x01\x00\x00garbage", b"\xffweird", b""):
        transport.sendto(data, base)
    got_all = asyncio.Event()

    def counted() -> int:
        c = conn.agent.counters
        return c["data_from_stranger"] + c["stun_malformed"] + conn.dropped_undemuxable

    async def wait() -> None:
        while counted() < 4:
            await asyncio.sleep(0.005)
        got_all.set()

    await asyncio.wait_for(wait(), 5)
    assert conn.agent.counters["data_from_stranger"] == 2
    assert conn.agent.counters["stun_malformed"] == 1
    assert conn.dropped_undemuxable >= 1
    assert conn._inbox.empty()
    transport.close()
    await conn.close()


def test_runtime_randomness_is_unpredictable_where_it_must_be() -> None:
    """Keepalive jitter may come from a seeded generator; transaction ids, credentials
    and tie-breakers never do: two generators seeded alike still differ in those."""
    from unbroken.ice.agent import generate_credentials
    from unbroken.runtime.connection import _Randomness

    a, b = _Randomness(), _Randomness()
    a.seed(7)
    b.seed(7)
    assert [a.random() for _ in range(4)] == [b.random() for _ in range(4)]
    assert a.getrandbits(96) != b.getrandbits(96)
    assert a.randbytes(12) != b.randbytes(12)
    assert generate_credentials(a) != generate_credentials(b)


async def test_inbox_keeps_order_serves_every_reader_and_ends_with_the_close() -> None:
    """What `_recv()` reads from: datagrams in order, a cancelled reader loses nothing,
    two readers waiting at once are both served, and after close() what was queued
    comes first, then ConnectionError for everyone."""
    from unbroken.runtime.connection import _Inbox

    inbox = _Inbox()
    for i in range(3):
        inbox.put(bytes([i]))
    assert [await inbox.get() for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    cancelled = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    cancelled.cancel()
    first, second = asyncio.ensure_future(inbox.get()), asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    inbox.put(b"a")
    inbox.put(b"b")
    assert sorted(await asyncio.gather(first, second)) == [b"a", b"b"]
    inbox.put(b"last")
    waiting = asyncio.ensure_future(inbox.get())
    inbox.close()
    assert await waiting == b"last"
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await inbox.get()
