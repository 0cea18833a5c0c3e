"""Transport addresses and the datagram unit passed between the sans-IO core and its drivers."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

Address = tuple[str, int]
"""An (IP text, port) pair; IPv6 without brackets or scope."""


@dataclass(frozen=True)
class Transmit:
    """A datagram the core wants sent: from the local base `local` to `remote`."""

    data: bytes
    local: Address
    remote: Address


def is_ipv6(host: str) -> bool:
    """True when `host` is an IPv6 literal."""
    return ":" in host


def normalize_ip(host: str) -> str:
    """Return the canonical text of an IP literal; raise ValueError for anything else."""
    return str(ipaddress.ip_address(host))
