"""Local addresses to gather host candidates on, with the filter users need.

Tests and careful deployments name the interfaces or addresses to use; by default every
up, non-loopback, non-link-local address is used (loopback only when nothing else is).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, replace

import ifaddr


@dataclass(frozen=True)
class AddressFilter:
    """Which local addresses may carry ICE.

    `addresses` and `interfaces` are allow-lists (None: no restriction); IPv6 and
    loopback can be turned on or off.
    """

    addresses: tuple[str, ...] | None = None
    interfaces: tuple[str, ...] | None = None
    ipv6: bool = True
    loopback: bool = False

    def allows(self, interface: str, ip: str) -> bool:
        """True when this (interface, address) may carry ICE."""
        addr = ipaddress.ip_address(ip)
        if self.addresses is not None:
            return str(addr) in {str(ipaddress.ip_address(a)) for a in self.addresses}
        if self.interfaces is not None and interface not in self.interfaces:
            return False
        if addr.version == 6 and not self.ipv6:
            return False
        if addr.is_link_local or addr.is_multicast or addr.is_unspecified:
            return False
        return self.loopback or not addr.is_loopback


def list_addresses() -> list[tuple[str, str]]:
    """(interface name, IP text) for every address on this host, in interface order."""
    out: list[tuple[str, str]] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):
                host = ip.ip[0].split("%")[0]
            else:
                host = str(ip.ip)
            out.append((str(adapter.name), host))
    return out


def select_addresses(
    flt: AddressFilter, available: Sequence[tuple[str, str]] | None = None
) -> list[str]:
    """The addresses `flt` allows; explicit addresses keep the order they were given in."""
    found = list(available) if available is not None else list_addresses()
    if flt.addresses is not None:
        present = {str(ipaddress.ip_address(ip)) for _, ip in found}
        return [
            str(ipaddress.ip_address(a))
            for a in flt.addresses
            if str(ipaddress.ip_address(a)) in present
        ]
    chosen = [ip for name, ip in found if flt.allows(name, ip)]
    if not chosen and not flt.loopback and flt.interfaces is None:
        # A host with nothing but loopback (a test namespace, a container): use it.
        chosen = [ip for name, ip in found if replace(flt, loopback=True).allows(name, ip)]
    return list(dict.fromkeys(chosen))
