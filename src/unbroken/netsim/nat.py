"""NATs with the mapping and filtering behaviours of RFC 4787.

Mapping (RFC 4787 §4.1) decides when an outbound datagram from internal X:x to remote
Y:y reuses a public port: endpoint-independent (one public port per X:x), address-
dependent (one per X:x and Y) or address-and-port-dependent (one per X:x and Y:y,
"symmetric"). Filtering (§5) decides which inbound datagrams to a public port get in:
endpoint-independent (anyone), address-dependent (only IPs that X:x sent to through
this mapping) or address-and-port-dependent (only those IP:port pairs).

A mapping, and each permission it holds, lives `mapping_timeout` seconds after the last
outbound datagram that used it; only outbound traffic refreshes it (§4.3, REQ-6). State
is consulted when a datagram is sent, so one already in flight when a mapping is
flushed still arrives. Public ports are chosen at random (from the network's seeded
generator) in 1024..65535, or equal to the internal port when `port_preservation` is set
and that port is free. Hairpinning (§6) is off unless asked for; when on, the hairpinned
datagram carries the sender's public address, as REQ-9 requires.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeAlias

from unbroken.addresses import Address, is_ipv6, normalize_ip
from unbroken.netsim.link import LinkConditions
from unbroken.netsim.realm import Realm
from unbroken.netsim.stats import DropReason

if TYPE_CHECKING:
    from unbroken.netsim.network import Network

Behaviour = Literal["endpoint-independent", "address-dependent", "address-and-port-dependent"]
"""An RFC 4787 mapping or filtering behaviour."""

EIM: Behaviour = "endpoint-independent"
ADM: Behaviour = "address-dependent"
APDM: Behaviour = "address-and-port-dependent"
_BEHAVIOURS: tuple[Behaviour, ...] = (EIM, ADM, APDM)

_Key: TypeAlias = Address | tuple[Address, str] | tuple[Address, Address]
_PORT_MIN = 1024
_PORT_MAX = 65535


@dataclass(frozen=True)
class NatMapping:
    """A live NAT mapping, as reported by `Nat.mappings`.

    `remote` is what the mapping is specific to: None (endpoint-independent), the remote
    IP (address-dependent) or the remote IP and port (address-and-port-dependent).
    """

    internal: Address
    external: Address
    remote: str | Address | None
    last_outbound: float


class _Mapping:
    """The NAT's own record of one mapping and the permissions its filtering uses."""

    __slots__ = ("internal", "external", "key", "remote", "last_out", "permits")

    def __init__(
        self, internal: Address, external: Address, key: _Key, remote: str | Address | None
    ) -> None:
        self.internal = internal
        self.external = external
        self.key = key
        self.remote = remote
        self.last_out = 0.0
        # remote IP (address-dependent) or IP:port (address-and-port-dependent) -> the
        # last time this mapping sent to it.
        self.permits: dict[str | Address, float] = {}


class Nat:
    """A NAT with one public IP; hosts added `behind` it live in its private realm.

    Create one with `Network.add_nat`, either from keyword arguments or from a preset
    such as `Nat.symmetric("nat1", "203.0.113.1")`.
    """

    def __init__(
        self,
        name: str,
        public_ip: str,
        *,
        mapping: Behaviour = EIM,
        filtering: Behaviour = EIM,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
        link: LinkConditions | None = None,
    ) -> None:
        if mapping not in _BEHAVIOURS:
            raise ValueError(f"mapping must be one of {_BEHAVIOURS}, got {mapping!r}")
        if filtering not in _BEHAVIOURS:
            raise ValueError(f"filtering must be one of {_BEHAVIOURS}, got {filtering!r}")
        if not math.isfinite(mapping_timeout) or mapping_timeout <= 0:
            raise ValueError(f"mapping_timeout must be > 0 seconds, got {mapping_timeout!r}")
        self.name = name
        self.public_ip = normalize_ip(public_ip)
        self.mapping: Behaviour = mapping
        self.filtering: Behaviour = filtering
        self.mapping_timeout = float(mapping_timeout)
        self.hairpinning = hairpinning
        self.port_preservation = port_preservation
        self.link = link if link is not None else LinkConditions(latency=0.0)
        """The NAT's uplink, crossed by every datagram that passes through it (not by
        hairpinned ones). Zero latency by default, so the hosts' links set the delay."""
        self._ipv6 = is_ipv6(self.public_ip)
        self._inside = Realm(f"the inside of NAT {name!r}", self)
        self._outside: Realm | None = None
        self._network: Network | None = None
        self._by_key: dict[_Key, _Mapping] = {}
        self._by_port: dict[int, _Mapping] = {}
        self._retired: set[int] = set()  # ports `rebind` took away, not reused

    # Presets (the classic STUN names, RFC 3489 §5, in RFC 4787 terms).

    @classmethod
    def full_cone(
        cls,
        name: str,
        public_ip: str,
        *,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
    ) -> Nat:
        """Endpoint-independent mapping and filtering: anyone may send to a mapping."""
        return cls(
            name,
            public_ip,
            mapping=EIM,
            filtering=EIM,
            mapping_timeout=mapping_timeout,
            hairpinning=hairpinning,
            port_preservation=port_preservation,
        )

    @classmethod
    def restricted_cone(
        cls,
        name: str,
        public_ip: str,
        *,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
    ) -> Nat:
        """Endpoint-independent mapping, address-dependent filtering."""
        return cls(
            name,
            public_ip,
            mapping=EIM,
            filtering=ADM,
            mapping_timeout=mapping_timeout,
            hairpinning=hairpinning,
            port_preservation=port_preservation,
        )

    @classmethod
    def port_restricted(
        cls,
        name: str,
        public_ip: str,
        *,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
    ) -> Nat:
        """Endpoint-independent mapping, address-and-port-dependent filtering."""
        return cls(
            name,
            public_ip,
            mapping=EIM,
            filtering=APDM,
            mapping_timeout=mapping_timeout,
            hairpinning=hairpinning,
            port_preservation=port_preservation,
        )

    @classmethod
    def symmetric(
        cls,
        name: str,
        public_ip: str,
        *,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
    ) -> Nat:
        """Address-and-port-dependent mapping and filtering: a new port per destination."""
        return cls(
            name,
            public_ip,
            mapping=APDM,
            filtering=APDM,
            mapping_timeout=mapping_timeout,
            hairpinning=hairpinning,
            port_preservation=port_preservation,
        )

    # Public state and actions.

    @property
    def behind(self) -> Nat | None:
        """The NAT this one sits behind (carrier-grade NAT), or None on the public side."""
        return self._outside.nat if self._outside is not None else None

    @property
    def mappings(self) -> list[NatMapping]:
        """The live mappings, oldest first."""
        now = self._network.now if self._network is not None else 0.0
        return [
            NatMapping(m.internal, m.external, m.remote, m.last_out)
            for m in self._by_key.values()
            if not self._expired(m, now)
        ]

    def flush(self) -> None:
        """Forget every mapping at once, as a rebooted or overloaded NAT does."""
        self._by_key.clear()
        self._by_port.clear()
        self._note("flushed")

    def set_behaviour(
        self,
        *,
        mapping: Behaviour | None = None,
        filtering: Behaviour | None = None,
        port_preservation: bool | None = None,
    ) -> None:
        """Change how the NAT maps and filters from now on (None keeps a setting).

        Live mappings keep their public ports; only new mappings follow the new rules.
        A home router switched to port randomisation (Linux `masquerade random`) is
        `set_behaviour(mapping="address-and-port-dependent", port_preservation=False)`;
        follow it with `flush()` and every flow moves to a new port (see `rebind`).
        """
        if mapping is not None and mapping not in _BEHAVIOURS:
            raise ValueError(f"mapping must be one of {_BEHAVIOURS}, got {mapping!r}")
        if filtering is not None and filtering not in _BEHAVIOURS:
            raise ValueError(f"filtering must be one of {_BEHAVIOURS}, got {filtering!r}")
        if mapping is not None:
            self.mapping = mapping
        if filtering is not None:
            self.filtering = filtering
        if port_preservation is not None:
            self.port_preservation = port_preservation
        self._note(
            f"behaviour mapping={self.mapping} filtering={self.filtering} "
            f"port_preservation={self.port_preservation}"
        )

    def rebind(self) -> None:
        """Forget every mapping and give every later flow a new random public port.

        What a NAT that reboots, times a mapping out or sits at a carrier does to a call
        in progress: the next outbound datagram of each flow leaves from a port the
        peer has never seen, and datagrams to the old port are dropped. Mapping becomes
        address-and-port-dependent and port preservation is switched off; the ports of
        the forgotten mappings are not handed out again until the next rebind, so every
        flow really moves (a rebind after a rebind moves the ports again).
        """
        self._retired = {m.external[1] for m in self._by_key.values()}
        self.set_behaviour(mapping=APDM, port_preservation=False)
        self.flush()

    def set_link(
        self,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        up: bool | None = None,
    ) -> None:
        """Change the NAT's uplink conditions (see `LinkConditions`)."""
        self.link.update(latency=latency, jitter=jitter, loss=loss, up=up)

    def __repr__(self) -> str:
        return (
            f"Nat({self.name!r}, {self.public_ip!r}, mapping={self.mapping!r}, "
            f"filtering={self.filtering!r})"
        )

    # Used by the network.

    def _attach(self, network: Network, outside: Realm) -> None:
        if self._network is not None:
            raise ValueError(f"NAT {self.name!r} is already part of a network")
        outside.claim(self.public_ip, self)
        self._network = network
        self._outside = outside

    def _expired(self, m: _Mapping, now: float) -> bool:
        return now - m.last_out > self.mapping_timeout

    def _remove(self, m: _Mapping) -> None:
        del self._by_key[m.key]
        del self._by_port[m.external[1]]

    def _port_free(self, port: int, now: float) -> bool:
        if port in self._retired:
            return False
        m = self._by_port.get(port)
        if m is None:
            return True
        if self._expired(m, now):
            self._remove(m)
            return True
        return False

    def _allocate_port(self, wanted: int, now: float, rng: random.Random) -> int | None:
        if self.port_preservation and _PORT_MIN <= wanted and self._port_free(wanted, now):
            return wanted
        for _ in range(32):
            port = rng.randint(_PORT_MIN, _PORT_MAX)
            if self._port_free(port, now):
                return port
        for port in range(_PORT_MIN, _PORT_MAX + 1):
            if self._port_free(port, now):
                return port
        return None

    def _outbound(
        self, src: Address, dst: Address, now: float, rng: random.Random
    ) -> Address | None:
        """Translate the source of an outbound datagram, creating or refreshing a mapping.

        Returns the public source address, or None when no public port is left.
        """
        remote: str | Address | None
        key: _Key
        if self.mapping == EIM:
            key, remote = src, None
        elif self.mapping == ADM:
            key, remote = (src, dst[0]), dst[0]
        else:
            key, remote = (src, dst), dst
        m = self._by_key.get(key)
        if m is not None and self._expired(m, now):
            self._remove(m)
            self._note(f"expired {_fmt(m.internal)} -> {_fmt(m.external)}")
            m = None
        if m is None:
            port = self._allocate_port(src[1], now, rng)
            if port is None:
                return None
            m = _Mapping(src, (self.public_ip, port), key, remote)
            self._by_key[key] = m
            self._by_port[port] = m
            self._note(f"map {_fmt(src)} -> {_fmt(m.external)} for {_fmt(dst)}")
        m.last_out = now
        if self.filtering == ADM:
            m.permits[dst[0]] = now
        elif self.filtering == APDM:
            m.permits[dst] = now
        return m.external

    def _inbound(self, src: Address, dst: Address, now: float) -> Address | DropReason:
        """Translate the destination of an inbound datagram, or say why it is dropped."""
        m = self._by_port.get(dst[1])
        if m is None:
            return DropReason.NAT_NO_MAPPING
        if self._expired(m, now):
            self._remove(m)
            self._note(f"expired {_fmt(m.internal)} -> {_fmt(m.external)}")
            return DropReason.NAT_NO_MAPPING
        if self.filtering != EIM:
            last = m.permits.get(src[0] if self.filtering == ADM else src)
            if last is None or now - last > self.mapping_timeout:
                return DropReason.NAT_FILTERED
        return m.internal

    def _note(self, what: str) -> None:
        network = self._network
        if network is not None and network.trace_enabled:
            network.trace.append((network.now, f"nat {self.name}: {what}"))


def _fmt(addr: Address) -> str:
    """ip:port, with brackets around IPv6."""
    return f"[{addr[0]}]:{addr[1]}" if ":" in addr[0] else f"{addr[0]}:{addr[1]}"
