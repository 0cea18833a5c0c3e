"""The TURN entries of an RTCConfiguration: W3C validation, resolution, TLS trust.

Every `iceServers` entry and every URL in it is used, not only the first. The W3C checks
(webrtc-pc §4.4.1.x "validate an ICE server URL", run by the constructor and
`setConfiguration`) are turn/url.py's: SyntaxError_ for a malformed URL,
InvalidAccessError for a TURN URL without a usable username or credential,
NotSupportedError for `stuns:`. A TURN server named by host name is resolved when
gathering starts (as stun: ones are); one that does not resolve is reported as an
icecandidateerror (701), never raised.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

from ..ice.relay import RelayServer
from ..turn import TurnServer, parse_ice_servers

logger = logging.getLogger(__name__)


def parsed_ice_servers(servers: list[Any]) -> list[Any]:
    """Every URL of every entry, validated (W3C errors); `servers` are RTCIceServer objects."""
    return parse_ice_servers(
        [{"urls": s.urls, "username": s.username, "credential": s.credential} for s in servers]
    )


def turn_entries(servers: list[Any]) -> list[TurnServer]:
    """The `turn:`/`turns:` URLs with their credentials, in configuration order."""
    return [e for e in parsed_ice_servers(servers) if isinstance(e, TurnServer)]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def relay_server(entry: TurnServer, ip: str) -> RelayServer:
    """The agent's view of one TURN URL, at address `ip`."""
    url = entry.url
    return RelayServer(
        url=url.url,
        address=(ip, url.port),
        transport=url.transport,
        username=entry.username,
        credential=entry.credential,
        server_name=url.host,
    )


def relays_without_resolving(entries: list[TurnServer]) -> tuple[RelayServer, ...] | None:
    """The relay servers when every host is an IP address, else None (names to resolve)."""
    if not all(_is_address(e.url.host) for e in entries):
        return None
    return tuple(relay_server(e, e.url.host) for e in entries)


async def resolve_relays(
    entries: list[TurnServer], timeout: float, report: Callable[[str, str], None]
) -> tuple[RelayServer, ...]:
    """Resolve every TURN host (both families); `report(url, why)` the ones that fail."""
    loop = asyncio.get_running_loop()
    out: list[RelayServer] = []
    for entry in entries:
        host = entry.url.host
        if _is_address(host):
            out.append(relay_server(entry, host))
            continue
        kind = socket.SOCK_DGRAM if entry.url.transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, entry.url.port, type=kind), timeout
            )
        except (TimeoutError, OSError, UnicodeError) as exc:
            report(entry.url.url, f"the name did not resolve: {exc or 'timed out'}")
            continue
        ips = [
            str(sockaddr[0]).split("%")[0]
            for family, _, _, _, sockaddr in infos
            if family in (socket.AF_INET, socket.AF_INET6)
        ]
        if not ips:
            report(entry.url.url, "the name has no IPv4 or IPv6 address")
        out.extend(relay_server(entry, ip) for ip in dict.fromkeys(ips))
    return tuple(out)


def turn_ssl_context(cafile: str | None) -> ssl.SSLContext | None:
    """The TLS trust for `turns:` servers: the system CAs (None) or those in `cafile`."""
    if cafile is None:
        return None
    return ssl.create_default_context(cafile=cafile)


__all__ = [
    "parsed_ice_servers",
    "relay_server",
    "relays_without_resolving",
    "resolve_relays",
    "turn_entries",
    "turn_ssl_context",
]
