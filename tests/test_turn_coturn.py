"""The TURN client and its asyncio driver against a real coturn on loopback (UDP, TCP, TLS)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coturn import PASSWORD, USER, Coturn, coturn_problem, free_port, start_coturn
from prereq import require
from unbroken.runtime.turn import TurnAllocation, TurnError
from unbroken.turn import (
    AllocationLost,
    ChannelBound,
    Deallocated,
    NewLocalPortNeeded,
    Refreshed,
    TurnClient,
    TurnServer,
    parse_ice_servers,
    rest_credentials,
)

pytestmark = pytest.mark.turn
LOCAL = "127.0.0.1"


@pytest.fixture
def coturn_dir(tmp_path: Path) -> Path:
    require(coturn_problem())
    return tmp_path


@pytest.fixture
def server(coturn_dir: Path) -> Iterator[Coturn]:
    srv = start_coturn(coturn_dir, tls=True)
    yield srv
    srv.stop()


def allocation(srv: Coturn, transport: str = "udp", /, **options: object) -> TurnAllocation:
    port = srv.tls_port if transport == "tls" else srv.port
    assert port is not None
    client = TurnClient((LOCAL, port), USER, PASSWORD, transport=transport, **options)  # type: ignore[arg-type]
    return TurnAllocation(client, server_name="localhost", cafile=str(srv.cert))


async def exchange(a: TurnAllocation, b: TurnAllocation, count: int = 5) -> None:
    """Messages both ways through the relay, each one checked on arrival."""
    assert a.relayed_address is not None and b.relayed_address is not None
    b.create_permission(a.relayed_address[0])
    a.create_permission(b.relayed_address[0])
    for i in range(count):
        a.send(b.relayed_address, b"a->b %d" % i)
        peer, payload = await asyncio.wait_for(b.recv(), 5)
        assert (peer, payload) == (a.relayed_address, b"a->b %d" % i)
        b.send(a.relayed_address, b"b->a %d" % i)
        peer, payload = await asyncio.wait_for(a.recv(), 5)
        assert (peer, payload) == (b.relayed_address, b"b->a %d" % i)


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
async def test_allocate_exchange_and_release(server: Coturn, transport: str) -> None:
    a = allocation(server, transport)  # channels
    b = allocation(server, transport, use_channels=False)  # Send/Data indications only
    got = await asyncio.wait_for(a.allocate(), 10)
    await asyncio.wait_for(b.allocate(), 10)
    assert got.relayed[0] == LOCAL and got.lifetime == 600
    assert a.relayed_address != b.relayed_address
    await exchange(a, b, 5)
    assert any(isinstance(e, ChannelBound) for e in a.events)
    assert not any(isinstance(e, ChannelBound) for e in b.events)
    assert a.client.channel_for(b.relayed_address or ("", 0)) is not None
    assert await a.close() and await b.close()


async def test_tls_certificate_is_verified_by_default(server: Coturn) -> None:
    assert server.tls_port is not None
    client = TurnClient((LOCAL, server.tls_port), USER, PASSWORD, transport="tls")
    default = TurnAllocation(client, server_name="localhost")  # system CAs only
    with pytest.raises(TurnError) as info:
        await asyncio.wait_for(default.allocate(), 10)
    assert info.value.error_code == 701 and "CERTIFICATE_VERIFY_FAILED" in info.value.error_text
    default.abort()
    # With the CA passed as an SSLContext, the same server is accepted.
    context = ssl.create_default_context(cafile=str(server.cert))
    client = TurnClient((LOCAL, server.tls_port), USER, PASSWORD, transport="tls")
    trusted = TurnAllocation(client, server_name="localhost", ssl_context=context)
    await asyncio.wait_for(trusted.allocate(), 10)
    assert await trusted.close()


async def test_wrong_password_is_a_401(server: Coturn) -> None:
    client = TurnClient((LOCAL, server.port), USER, "not-the-password")
    driver = TurnAllocation(client)
    with pytest.raises(TurnError) as info:
        await asyncio.wait_for(driver.allocate(), 10)
    assert info.value.error_code == 401
    driver.abort()


async def test_user_quota_is_a_486(coturn_dir: Path) -> None:
    srv = start_coturn(coturn_dir, extra={"user-quota": "1"})
    try:
        first = allocation(srv)
        await asyncio.wait_for(first.allocate(), 10)
        second = allocation(srv)
        with pytest.raises(TurnError) as info:
            await asyncio.wait_for(second.allocate(), 10)
        assert info.value.error_code == 486
        second.abort()
        assert await first.close()
    finally:
        srv.stop()


async def test_rest_credentials_with_use_auth_secret(coturn_dir: Path) -> None:
    srv = start_coturn(coturn_dir, rest_secret="north-wind")
    try:
        username, password = rest_credentials("north-wind", "fred", now=time.time(), ttl=600)
        (entry,) = parse_ice_servers(
            [{"urls": f"turn:127.0.0.1:{srv.port}", "username": username, "credential": password}]
        )
        assert isinstance(entry, TurnServer)
        driver = await TurnAllocation.create(entry)
        await asyncio.wait_for(driver.allocate(), 10)
        assert await driver.close()
        # An expired REST username is refused.
        old_user, old_pass = rest_credentials("north-wind", "fred", now=time.time() - 700, ttl=600)
        expired = TurnAllocation(TurnClient((LOCAL, srv.port), old_user, old_pass))
        with pytest.raises(TurnError) as info:
            await asyncio.wait_for(expired.allocate(), 10)
        assert info.value.error_code == 401
        expired.abort()
    finally:
        srv.stop()


async def test_unreachable_server_times_out_with_701() -> None:
    port = free_port()  # nothing listens there
    client = TurnClient((LOCAL, port), USER, PASSWORD, rto=0.05, max_sends=3)
    driver = TurnAllocation(client)
    with pytest.raises(TurnError) as info:
        await asyncio.wait_for(driver.allocate(), 10)
    assert info.value.error_code == 701
    driver.abort()


async def test_two_servers_the_first_unreachable(server: Coturn) -> None:
    dead = free_port()
    entries = parse_ice_servers(
        [
            {"urls": f"turn:127.0.0.1:{dead}", "username": USER, "credential": PASSWORD},
            {"urls": f"turn:127.0.0.1:{server.port}", "username": USER, "credential": PASSWORD},
        ]
    )
    drivers = [
        await TurnAllocation.create(e, client_options={"rto": 0.05, "max_sends": 3})
        for e in entries
        if isinstance(e, TurnServer)
    ]
    results = await asyncio.gather(*(d.allocate() for d in drivers), return_exceptions=True)
    assert isinstance(results[0], TurnError) and results[0].error_code == 701
    assert not isinstance(results[1], BaseException) and results[1].relayed[0] == LOCAL
    drivers[0].abort()
    assert await drivers[1].close()


async def test_refreshes_over_more_than_three_short_lifetimes(coturn_dir: Path) -> None:
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
        # Ask for more than the server allows: coturn 4.6 clamps a Refresh to
        # max-allocate-lifetime only when the request is above its 600 s default.
        opts = {"lifetime": 3600, "permission_lifetime": life, "channel_lifetime": life}
        a = allocation(srv, **opts)
        b = allocation(srv, use_channels=False, **opts)
        assert (await a.allocate()).lifetime == life
        await b.allocate()
        loop = asyncio.get_running_loop()
        end = loop.time() + 3.5 * life
        i = 0
        while loop.time() < end:  # traffic paced by its own round trips, not by sleeps
            await exchange(a, b, 1)
            i += 1
            await asyncio.sleep(0.25)  # pacing only: each message is awaited in exchange()
        refreshes = [e for e in a.events if isinstance(e, Refreshed)]
        assert len(refreshes) >= 3 and all(r.lifetime == life for r in refreshes)
        assert not any(isinstance(e, AllocationLost) for e in a.events + b.events)
        assert a.client.channel_for(b.relayed_address or ("", 0)) is not None
        # The last lifetime's messages still passed: permissions and channels were refreshed.
        await exchange(a, b, 2)
        assert await a.close() and await b.close()
    finally:
        srv.stop()


async def allocate_within(srv: Coturn, seconds: float) -> TurnAllocation | None:
    """Try new allocations (each from a new port) until one succeeds or time runs out."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        driver = allocation(srv)
        try:
            await asyncio.wait_for(driver.allocate(), 5)
            return driver
        except TurnError as exc:
            assert exc.error_code == 486
            driver.abort()
        await asyncio.sleep(0.2)  # pacing between attempts; each attempt is awaited
    return None


async def test_deallocate_then_the_server_forgets(coturn_dir: Path) -> None:
    """With a quota of one allocation, one left behind blocks the next (486) while a
    released one makes room (coturn frees it about a second after LIFETIME 0). The same
    5-tuple cannot be the probe: coturn keeps the session a while after LIFETIME 0 and
    answers 437 there, the very reason restarts allocate from a new port."""
    srv = start_coturn(coturn_dir, extra={"user-quota": "1"})
    try:
        held = allocation(srv)
        await asyncio.wait_for(held.allocate(), 10)
        held.abort()  # socket gone, allocation kept by the server
        assert await allocate_within(srv, 3.0) is None
        # Release it properly from its own 5-tuple (the runtime's close() path).
        local = held.local_address
        assert local is not None
        releaser = TurnAllocation(held.client, local_port=local[1])
        await releaser._open()  # the same local port, the same client state
        assert await releaser.close()
        assert releaser.events[-1] == Deallocated(True)
        after = await allocate_within(srv, 10.0)
        assert after is not None
        assert await after.close()
    finally:
        srv.stop()


async def test_437_moves_to_a_new_local_port(server: Coturn) -> None:
    first = allocation(server)
    await first.allocate()
    local = first.local_address
    assert local is not None
    first.abort()  # socket closed, allocation left at the server on that 5-tuple
    client = TurnClient((LOCAL, server.port), USER, PASSWORD)
    again = TurnAllocation(client, local_port=local[1])
    got = await asyncio.wait_for(again.allocate(), 10)
    assert any(isinstance(e, NewLocalPortNeeded) for e in again.events)
    assert again.local_address is not None and again.local_address != local
    assert got.relayed != first.relayed_address
    assert await again.close()
