"""Hosts: a set of IP addresses, bound ports, an access link and one attached node.

A host lives in one realm: the public side, or the LAN behind a NAT. Binding works like
a UDP socket bound to one address: `bind(ip, 0)` picks a free ephemeral port (at random,
from the network's seeded generator). Removing an IP is a handover: ports bound on it
stay bound but receive nothing and cannot send until the IP comes back.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from unbroken.addresses import Address, normalize_ip
from unbroken.netsim.link import LinkConditions
from unbroken.netsim.node import Node
from unbroken.netsim.realm import Realm

if TYPE_CHECKING:
    from unbroken.netsim.nat import Nat
    from unbroken.netsim.network import Network

_EPHEMERAL_MIN = 49152  # the IANA dynamic port range (RFC 6335 §6)
_EPHEMERAL_MAX = 65535


class Host:
    """A machine on the simulated network. Create one with `Network.add_host`."""

    def __init__(
        self,
        network: Network,
        name: str,
        realm: Realm,
        addresses: list[str],
        link: LinkConditions,
    ) -> None:
        self.name = name
        self.link = link
        """The host's access link (mutable; see `LinkConditions`)."""
        self._network = network
        self._realm = realm
        self._addresses: list[str] = []
        self._address_set: set[str] = set()
        self._bound: set[Address] = set()
        self._node: Node | None = None
        # Timer bookkeeping for the network's event loop: the deadline the heap holds for
        # this host's node, a generation that invalidates older heap entries, and a count
        # of timer firings at one virtual instant (to catch a node that never moves on).
        self._deadline: float | None = None
        self._timer_gen = 0
        self._spin_time = -1.0
        self._spins = 0
        for ip in addresses:
            self.add_address(ip)

    @property
    def addresses(self) -> list[str]:
        """The host's current IPs, in the order they were added."""
        return list(self._addresses)

    @property
    def bound(self) -> list[Address]:
        """Every bound address, sorted."""
        return sorted(self._bound)

    @property
    def behind(self) -> Nat | None:
        """The NAT this host sits behind, or None when it is on the public side."""
        return self._realm.nat

    @property
    def node(self) -> Node | None:
        """The attached node, if any."""
        return self._node

    def add_address(self, ip: str) -> None:
        """Give the host an IP (unique within its realm)."""
        ip = normalize_ip(ip)
        if ip in self._address_set:
            raise ValueError(f"host {self.name!r} already has {ip}")
        self._realm.claim(ip, self)
        self._addresses.append(ip)
        self._address_set.add(ip)
        self._network._note(f"host {self.name}: address {ip} added")

    def remove_address(self, ip: str) -> None:
        """Take an IP away; sockets bound on it stay bound but go deaf and mute."""
        ip = normalize_ip(ip)
        if ip not in self._address_set:
            raise ValueError(f"host {self.name!r} has no address {ip}")
        self._realm.release(ip)
        self._addresses.remove(ip)
        self._address_set.discard(ip)
        self._network._note(f"host {self.name}: address {ip} removed")

    def bind(self, ip: str, port: int = 0) -> Address:
        """Bind a port on one of the host's IPs; port 0 picks a free ephemeral port.

        Raises OSError (EADDRNOTAVAIL, EADDRINUSE) like a real socket would.
        """
        ip = normalize_ip(ip)
        if ip not in self._address_set:
            raise OSError(errno.EADDRNOTAVAIL, f"host {self.name!r} has no address {ip}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port out of range: {port}")
        if port == 0:
            port = self._free_port(ip)
        elif (ip, port) in self._bound:
            raise OSError(errno.EADDRINUSE, f"{ip}:{port} is already bound on {self.name!r}")
        addr = (ip, port)
        self._bound.add(addr)
        return addr

    def unbind(self, addr: Address) -> None:
        """Release a bound address; datagrams to it are then dropped as unbound."""
        key = (normalize_ip(addr[0]), addr[1])
        if key not in self._bound:
            raise ValueError(f"{addr} is not bound on host {self.name!r}")
        self._bound.discard(key)

    def attach(self, node: Node) -> None:
        """Make `node` the one the network drives for this host."""
        if self._node is not None:
            raise ValueError(f"host {self.name!r} already has a node attached")
        self._network._attach(self, node)
        self._node = node
        self._network.refresh(node)

    def detach(self) -> Node | None:
        """Remove the attached node (its pending timer is forgotten) and return it."""
        node = self._node
        if node is not None:
            self._network._detach(node)
            self._node = None
            self._deadline = None
            self._timer_gen += 1
        return node

    def set_link(
        self,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        up: bool | None = None,
    ) -> None:
        """Change the access link's conditions (see `LinkConditions`)."""
        self.link.update(latency=latency, jitter=jitter, loss=loss, up=up)

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self._addresses!r})"

    def _free_port(self, ip: str) -> int:
        rng = self._network.rng
        for _ in range(32):
            port = rng.randint(_EPHEMERAL_MIN, _EPHEMERAL_MAX)
            if (ip, port) not in self._bound:
                return port
        for port in range(_EPHEMERAL_MIN, _EPHEMERAL_MAX + 1):
            if (ip, port) not in self._bound:
                return port
        raise OSError(errno.EADDRINUSE, f"no free port on {ip} on {self.name!r}")
