"""Counters of what happened to every datagram handed to the simulated network.

Every datagram a node emits is counted once in `sent`, and ends either `delivered` or
in `dropped` under exactly one reason, or is still in flight:
`sent == delivered + dropped_total + in_flight` at all times.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field


class DropReason(enum.Enum):
    """Why the simulated network dropped a datagram."""

    LOSS = "loss"
    """Random loss on one of the links crossed."""
    LINK_DOWN = "link down"
    """A link on the path was down at send time, or went down while it was in flight."""
    NO_SUCH_ADDRESS = "no such address"
    """No host or NAT has the destination IP (or the receiver's IP was removed)."""
    UNBOUND_PORT = "unbound port"
    """The destination host has the IP but nothing is bound to that port."""
    NO_NODE = "no node attached"
    """The destination port is bound but the host has no node to deliver to."""
    NAT_NO_MAPPING = "no NAT mapping"
    """Arrived at a NAT's public address on a port with no live mapping."""
    NAT_FILTERED = "NAT filtered"
    """A mapping exists but its filtering behaviour does not admit this sender."""
    NAT_NO_HAIRPIN = "NAT does not hairpin"
    """Sent from inside a NAT to that NAT's own public address, and hairpinning is off."""
    NAT_PORTS_EXHAUSTED = "NAT ports exhausted"
    """The NAT had no free public port for a new mapping."""
    SOURCE_NOT_BOUND = "source not bound"
    """The transmit's local address is not bound on the sending host."""
    SOURCE_ADDRESS_GONE = "source address removed"
    """The transmit's local IP was removed from the sending host (a handover)."""
    FAMILY_MISMATCH = "address family mismatch"
    """IPv4 source and IPv6 destination or the other way round, or a NAT of the other family."""


@dataclass
class Stats:
    """Datagram counters of one `Network`."""

    sent: int = 0
    delivered: int = 0
    dropped: Counter[DropReason] = field(default_factory=Counter)

    @property
    def dropped_total(self) -> int:
        """Datagrams dropped for any reason."""
        return sum(self.dropped.values())

    @property
    def in_flight(self) -> int:
        """Datagrams sent but neither delivered nor dropped yet."""
        return self.sent - self.delivered - self.dropped_total
