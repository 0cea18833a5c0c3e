"""The asyncio driver of one sans-IO TurnClient over UDP, TCP or TLS to the server.

Theory of operation
-------------------
`TurnAllocation` owns the socket (UDP) or connection (TCP, TLS over TCP) to the TURN
server, one `loop.call_at` timer armed at the client's deadline, and the pump: after
every input it writes what the client queued and handles its events. Relayed payloads go
to `on_data(peer, payload)` (by default an asyncio queue read by `recv()`). Two events
need I/O: `NewLocalPortNeeded` (437) closes the socket and opens one on a new local port,
and `Redirected` (300) reconnects a stream transport to the alternate server. Over UDP
only datagrams whose source is the server are given to the client.

TLS (`turns:`): the server's certificate is verified against the system's CAs and the
URL's host name by default; pass `cafile` (a PEM bundle) or a whole `ssl_context` to trust
another CA. There is no option to turn verification off.

Phase 2 (ICE integration) moves UDP allocations onto the agent's own base sockets; this
driver stays for TCP/TLS and for the tests.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from ..addresses import Address
from ..errors import UnbrokenError
from ..turn import (
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    Deallocated,
    NewLocalPortNeeded,
    Redirected,
    TurnClient,
    TurnEvent,
    TurnServer,
)

logger = logging.getLogger(__name__)

MAX_RECEIVE_QUEUE = 1024


class TurnError(UnbrokenError):
    """The allocation failed: `error_code` and `error_text` as icecandidateerror has them."""

    def __init__(self, error_code: int, error_text: str) -> None:
        super().__init__(f"TURN allocation failed: {error_code} {error_text}")
        self.error_code = error_code
        self.error_text = error_text


def make_ssl_context(cafile: str | None = None) -> ssl.SSLContext:
    """A client TLS context verifying the server (system CAs, or `cafile` when given)."""
    return ssl.create_default_context(cafile=cafile)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: TurnAllocation) -> None:
        self._owner = owner
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner._datagram(data, (str(addr[0]).split("%")[0], int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        logger.debug("TURN UDP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Stream(asyncio.Protocol):
    def __init__(self, owner: TurnAllocation) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        self._owner._stream_data(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._stream_lost(self)


class TurnAllocation:
    """One TURN allocation, driven over asyncio: `await allocate()`, `send()`, `recv()`,
    `await close()`. Events the client reported are kept in `events` (in order)."""

    def __init__(
        self,
        client: TurnClient,
        *,
        server_name: str | None = None,
        local_host: str = "127.0.0.1",
        local_port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        cafile: str | None = None,
        on_data: Callable[[Address, bytes], None] | None = None,
        on_event: Callable[[TurnEvent], None] | None = None,
    ) -> None:
        self.client = client
        self._loop = asyncio.get_running_loop()
        self._server_name = server_name or client.server[0]
        self._local_host = local_host
        self._local_port = local_port  # 0: any; used only for the first socket
        self._ssl: ssl.SSLContext | None = None
        if client.transport == "tls":
            self._ssl = ssl_context or make_ssl_context(cafile)
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _Datagrams | None = None
        self._stream: asyncio.Transport | None = None
        self._stream_protocol: _Stream | None = None
        self._connecting = False
        self._timer: asyncio.TimerHandle | None = None
        self._queue: asyncio.Queue[tuple[Address, bytes]] = asyncio.Queue(MAX_RECEIVE_QUEUE)
        self._on_data = on_data or self._enqueue
        self._on_event = on_event
        self._result: asyncio.Future[AllocationSucceeded] = self._loop.create_future()
        self._done: asyncio.Future[bool] = self._loop.create_future()
        self.events: list[TurnEvent] = []
        self.local_address: Address | None = None
        self.dropped_receive = 0

    @classmethod
    async def create(
        cls, server: TurnServer, *, host: str | None = None, **kwargs: Any
    ) -> TurnAllocation:
        """A driver for `server` (a parsed `turn:`/`turns:` entry), resolved to `host`
        when given, else through the resolver; client options go in `client_options`."""
        options = kwargs.pop("client_options", {})
        loop = asyncio.get_running_loop()
        ip = host
        if ip is None:
            infos = await loop.getaddrinfo(server.url.host, server.url.port)
            ip = str(infos[0][4][0])
        client = TurnClient(
            (ip, server.url.port),
            server.username,
            server.credential,
            transport=server.url.transport,
            **options,
        )
        return cls(client, server_name=server.url.host, **kwargs)

    # ----------------------------------------------------------------- public

    @property
    def relayed_address(self) -> Address | None:
        """The relay candidate's address, once allocated."""
        return self.client.relayed_address

    async def allocate(self) -> AllocationSucceeded:
        """Open the transport and allocate; TurnError with the server's code on failure."""
        try:
            await self._open()
        except OSError as exc:
            raise TurnError(701, f"cannot reach the TURN server: {exc}") from None
        self.client.allocate(self._loop.time())
        self._pump()
        return await asyncio.shield(self._result)

    def send(self, peer: Address, payload: bytes) -> bool:
        """Relay `payload` to `peer` (permission and channel made as needed)."""
        ok = self.client.send(peer, payload, self._loop.time())
        self._pump()
        return ok

    def create_permission(self, peer_ip: str) -> None:
        """Install a permission for `peer_ip` ahead of data (e.g. a remote candidate)."""
        self.client.create_permission(peer_ip, self._loop.time())
        self._pump()

    async def recv(self) -> tuple[Address, bytes]:
        """The next (peer, payload) relayed to us."""
        return await self._queue.get()

    async def close(self, timeout: float = 5.0) -> bool:
        """Release the allocation (Refresh lifetime 0) and close; True when confirmed."""
        self.client.close(self._loop.time())
        self._pump()
        try:
            confirmed = await asyncio.wait_for(asyncio.shield(self._done), timeout)
        except TimeoutError:
            confirmed = False
        udp = self._udp_protocol
        self._shutdown()
        if udp is not None:
            await udp.closed  # the local port is free again when close() returns
        return confirmed

    def abort(self) -> None:
        """Close the socket or connection without releasing (the server keeps the allocation)."""
        self._shutdown()

    # ----------------------------------------------------------------- transport

    async def _open(self) -> None:
        self._connecting = True
        try:
            if self.client.transport == "udp":
                transport, udp = await self._loop.create_datagram_endpoint(
                    lambda: _Datagrams(self), local_addr=(self._local_host, self._local_port)
                )
                self._udp = transport
                self._udp_protocol = udp
                sockname = transport.get_extra_info("sockname")
            else:
                protocol = _Stream(self)
                host, port = self.client.server
                stream, _ = await self._loop.create_connection(
                    lambda: protocol,
                    host,
                    port,
                    local_addr=(self._local_host, self._local_port),
                    ssl=self._ssl,
                    server_hostname=self._server_name if self._ssl is not None else None,
                )
                self._stream = stream
                self._stream_protocol = protocol
                sockname = stream.get_extra_info("sockname")
            self.local_address = (str(sockname[0]), int(sockname[1]))
            self._local_port = 0  # a reopen (437) must get a new port
        finally:
            self._connecting = False

    def _close_transport(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._stream is not None:
            self._stream_protocol = None  # its connection_lost is no longer ours
            self._stream.close()
            self._stream = None

    async def _reopen(self, then: Callable[[float], None] | None) -> None:
        """New socket or connection (437: new local port; 300: new server), then go on."""
        self._close_transport()
        try:
            await self._open()
        except OSError as exc:
            logger.info("TURN: cannot reopen the transport: %s", exc)
            self.client.transport_closed(self._loop.time())
            self._pump()
            return
        if then is not None:
            then(self._loop.time())
        self._pump()

    def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._close_transport()

    # ----------------------------------------------------------------- input

    def _datagram(self, data: bytes, source: Address) -> None:
        if source != self.client.server:
            self.dropped_receive += 1
            return
        self._deliver(self.client.receive(data, self._loop.time()))

    def _stream_data(self, protocol: _Stream, data: bytes) -> None:
        if protocol is not self._stream_protocol:
            return
        self._deliver(self.client.receive(data, self._loop.time()))

    def _stream_lost(self, protocol: _Stream) -> None:
        if protocol is not self._stream_protocol:
            return
        self._stream = None
        self._stream_protocol = None
        self.client.transport_closed(self._loop.time())
        self._pump()

    def _deliver(self, relayed: list[tuple[Address, bytes]]) -> None:
        for peer, payload in relayed:
            self._on_data(peer, payload)
        self._pump()

    def _enqueue(self, peer: Address, payload: bytes) -> None:
        try:
            self._queue.put_nowait((peer, payload))
        except asyncio.QueueFull:
            self.dropped_receive += 1

    # ----------------------------------------------------------------- pump

    def _pump(self) -> None:
        """Write what the client queued, handle its events, re-arm the timer."""
        # Events first: a 300 or 437 reopens the transport, and what the client queued
        # after it belongs on the new one.
        while (event := self.client.next_event()) is not None:
            self.events.append(event)
            self._handle(event)
            if self._on_event is not None:
                self._on_event(event)
        if not self._connecting:
            self._flush()
        self._arm()

    def _flush(self) -> None:
        data = self.client.data_to_send()
        if self._udp is not None:
            for datagram in data:
                self._udp.sendto(datagram, self.client.server)
        elif self._stream is not None:
            for chunk in data:
                self._stream.write(chunk)

    def _handle(self, event: TurnEvent) -> None:
        if isinstance(event, AllocationSucceeded):
            _settle(self._result, event)
        elif isinstance(event, AllocationFailed):
            _settle(self._result, TurnError(event.error_code, event.error_text))
            _settle(self._done, False)
        elif isinstance(event, (AllocationLost,)):
            _settle(self._done, False)
        elif isinstance(event, Deallocated):
            _settle(self._result, TurnError(701, "closed before allocation"))
            _settle(self._done, event.confirmed)
        elif isinstance(event, NewLocalPortNeeded):
            self._connecting = True
            self._loop.create_task(self._reopen(self.client.retry_from_new_port))
        elif isinstance(event, Redirected) and self.client.transport != "udp":
            self._connecting = True
            self._server_name = event.server[0]
            self._loop.create_task(self._reopen(None))

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.client.get_timer()
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.client.handle_timer(self._loop.time())
        self._pump()


def _settle(future: asyncio.Future[Any], value: Any) -> None:
    """Resolve `future` once: with an exception when `value` is one, else with `value`."""
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
        future.exception()  # mark retrieved: a failure nobody awaits is not an error
    else:
        future.set_result(value)


__all__ = ["TurnAllocation", "TurnError", "make_ssl_context"]
