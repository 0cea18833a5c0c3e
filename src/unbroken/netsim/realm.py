"""Address realms: the public side of the network, and the inside (LAN) of each NAT.

An IP is unique within its realm only, so two LANs may both use 192.168.1.10. A realm
maps each IP to its owner: a Host, or a NAT whose public IP lives in this realm. A
datagram whose destination is not in the sender's realm leaves through the NAT that owns
the realm (`realm.nat`), or is dropped on the public side.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from unbroken.netsim.host import Host
    from unbroken.netsim.nat import Nat

    Owner: TypeAlias = Host | Nat


class Realm:
    """One address space; `nat` is the NAT it sits behind, None for the public side."""

    __slots__ = ("name", "nat", "owners")

    def __init__(self, name: str, nat: Nat | None) -> None:
        self.name = name
        self.nat = nat
        self.owners: dict[str, Owner] = {}

    def claim(self, ip: str, owner: Owner) -> None:
        """Give `ip` to `owner`; an IP has one owner per realm."""
        if ip in self.owners:
            raise ValueError(f"{ip} is already used in {self.name} by {self.owners[ip].name!r}")
        self.owners[ip] = owner

    def release(self, ip: str) -> None:
        """Forget the owner of `ip`."""
        del self.owners[ip]
