"""TCP and TLS connections to TURN servers, opened and fed on the ICE agent's behalf.

Theory of operation
-------------------
The sans-IO agent asks for a connection with `RelayStreamOpen(key, server, transport,
server_name, local_ip)`, writes with `RelayStreamData` and ends it with
`RelayStreamClose` (ice/relay.py). `RelayStreams` carries these out on asyncio and
reports back through three callbacks: opened (with the local address), data (bytes as
they come), closed (or could not connect, with the reason). One key, one connection;
a key reopened (437, 300) gets a new connection, and anything from the old one is ignored.

TLS verifies the server's certificate and name against the system CAs by default; the
`ssl_context` given (RTCConfiguration.turnCaFile, docs/turn.md) trusts another CA.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

from ..addresses import Address
from ..ice.relay import RelayStreamClose, RelayStreamData, RelayStreamOpen

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
"""A TURN server that does not accept (or finish TLS) this fast counts as unreachable."""


class _Stream(asyncio.Protocol):
    def __init__(self, owner: RelayStreams, key: int) -> None:
        self._owner = owner
        self._key = key

    def data_received(self, data: bytes) -> None:
        self._owner._received(self, self._key, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost(self, self._key, str(exc) if exc else "closed by the server")


class RelayStreams:
    """The agent's TCP/TLS connections to TURN servers, by relay key."""

    def __init__(
        self,
        *,
        on_opened: Callable[[int, Address], None],
        on_data: Callable[[int, bytes], None],
        on_closed: Callable[[int, str], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._on_opened = on_opened
        self._on_data = on_data
        self._on_closed = on_closed
        self._ssl = ssl_context
        self._streams: dict[int, tuple[asyncio.Transport, _Stream]] = {}
        self._connecting: dict[int, asyncio.Task[None]] = {}

    def handle(self, command: RelayStreamOpen | RelayStreamData | RelayStreamClose) -> None:
        """Carry out one command of the agent."""
        if isinstance(command, RelayStreamData):
            stream = self._streams.get(command.key)
            if stream is not None:
                stream[0].write(command.data)
        elif isinstance(command, RelayStreamOpen):
            self.close(command.key)
            self._connecting[command.key] = self._loop.create_task(self._connect(command))
        else:
            self.close(command.key)

    def close(self, key: int) -> None:
        """End relay `key`'s connection (or its attempt), without reporting it."""
        task = self._connecting.pop(key, None)
        if task is not None:
            task.cancel()
        stream = self._streams.pop(key, None)
        if stream is not None:
            stream[0].close()

    def close_all(self) -> None:
        """End every connection (the ICE transport closes)."""
        for key in list(self._streams) + list(self._connecting):
            self.close(key)

    async def _connect(self, command: RelayStreamOpen) -> None:
        """Connect (and TLS-handshake) to the server; report opened or closed."""
        key = command.key
        context = None
        if command.transport == "tls":
            context = self._ssl or ssl.create_default_context()
        protocol = _Stream(self, key)
        try:
            transport, _ = await asyncio.wait_for(
                self._loop.create_connection(
                    lambda: protocol,
                    command.server[0],
                    command.server[1],
                    local_addr=(command.local_ip, 0),
                    ssl=context,
                    server_hostname=command.server_name or command.server[0] if context else None,
                ),
                CONNECT_TIMEOUT,
            )
        except (TimeoutError, OSError) as exc:  # ssl.SSLError is an OSError
            self._connecting.pop(key, None)
            logger.info("TURN server %s:%d unreachable: %s", *command.server, exc)
            self._on_closed(key, str(exc) or type(exc).__name__)
            return
        self._connecting.pop(key, None)
        self._streams[key] = (transport, protocol)
        sockname: Any = transport.get_extra_info("sockname")
        self._on_opened(key, (str(sockname[0]), int(sockname[1])))

    def _received(self, protocol: _Stream, key: int, data: bytes) -> None:
        stream = self._streams.get(key)
        if stream is not None and stream[1] is protocol:
            self._on_data(key, data)

    def _lost(self, protocol: _Stream, key: int, reason: str) -> None:
        stream = self._streams.get(key)
        if stream is not None and stream[1] is protocol:
            del self._streams[key]
            self._on_closed(key, reason)


__all__ = ["CONNECT_TIMEOUT", "RelayStreams"]
