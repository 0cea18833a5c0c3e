"""The interface between the simulated network and the sans-IO code it drives.

A node is an adapter around a sans-IO machine (an ICE agent, a test echo server...).
The network calls `handle_datagram` and `handle_timer` with the virtual time, then
drains `pop_transmits` and asks `next_deadline` again. A node never reads a clock and
never sends anything itself: the same machine runs on real sockets under another driver.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from unbroken.addresses import Address, Transmit


@runtime_checkable
class Node(Protocol):
    """What the network drives. A node is attached to one Host and owns ports on it."""

    def handle_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """A datagram from `remote` arrived on the bound address `local` at time `now`."""

    def handle_timer(self, now: float) -> None:
        """The deadline last returned by `next_deadline` has been reached (`now` >= it)."""

    def next_deadline(self) -> float | None:
        """The absolute virtual time at which to call `handle_timer`, or None for none."""

    def pop_transmits(self) -> list[Transmit]:
        """The datagrams to send now; returning them empties the node's queue."""
