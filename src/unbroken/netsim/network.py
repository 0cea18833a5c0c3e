"""The simulated network: a discrete-event loop over a virtual clock.

Theory of operation. Everything that will happen is an entry in one heap ordered by
(virtual time, sequence number): a datagram delivery, a scheduled call (`call_at`,
`call_every`), or a node's timer. `run_until(t)` pops entries in that order, sets `now`
to the entry's time, and runs it; entries with equal times run in the order they were
scheduled (FIFO). Nothing reads the real clock and every random choice (loss, jitter,
port numbers) comes from one `random.Random(seed)`, so a run replays exactly.

After any callback into a node (`handle_datagram`, `handle_timer`) the network drains
that node's `pop_transmits()` and asks its `next_deadline()` again, keeping one timer
entry per node in the heap (older ones are invalidated by a generation counter, so no
event scans every node). A scheduled call may touch any node, so after one the network
drains and re-queries all of them, in the order their hosts were added; so does the
start of every `run_*`. A node touched from outside those paths (say, one node calling
another directly) needs `refresh(node)`.

A deadline in the past fires at the current time. A node that keeps asking to be woken
at the same virtual instant without anything else happening to it is a bug (it would
hang the loop); after `max_timer_spins` consecutive firings the loop raises
`TimerSpinError` naming the host.

A datagram is routed when it is sent. The source must be bound on the sending host and
its IP still present. The datagram crosses the sender's link, then, if the destination
is not on the sender's LAN, each NAT on the way out (RFC 4787 mapping) and in (mapping
and filtering), and finally the receiver's link. Each link crossed adds latency and
jitter and may lose it. Delivery happens at send time plus the sum of those delays, and
only if every link crossed is still up and has not gone down meanwhile, the receiver
still has the IP, the port is still bound and a node is attached.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from heapq import heappop, heappush
from typing import TypeAlias, overload

from unbroken.addresses import Address, Transmit, normalize_ip
from unbroken.netsim.host import Host
from unbroken.netsim.link import LinkConditions
from unbroken.netsim.nat import EIM, Behaviour, Nat, _fmt
from unbroken.netsim.node import Node
from unbroken.netsim.realm import Realm
from unbroken.netsim.stats import DropReason, Stats

_UNTIL_SLACK = 1e-9  # call_every: a repetition this close past `until` still runs


class TimerSpinError(RuntimeError):
    """A node kept returning a deadline at or before `now` without making progress."""


class Call:
    """Handle of a scheduled call (`call_at`, `call_later`, `call_every`)."""

    __slots__ = ("_fn", "_start", "_interval", "_until", "_count", "when", "cancelled")

    def __init__(
        self,
        fn: Callable[[], None],
        start: float,
        interval: float | None,
        until: float | None,
    ) -> None:
        self._fn = fn
        self._start = start
        self._interval = interval
        self._until = until
        self._count = 0
        self.when = start
        """Virtual time of the next run."""
        self.cancelled = False

    def cancel(self) -> None:
        """Stop this call, and every later repetition of it."""
        self.cancelled = True

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"next at {self.when}"
        return f"<Call {getattr(self._fn, '__name__', self._fn)!r} {state}>"


class _Flight:
    """A datagram on its way: where it lands, what it carries, and the links it crossed."""

    __slots__ = ("host", "data", "local", "remote", "path")

    def __init__(
        self,
        host: Host,
        data: bytes,
        local: Address,
        remote: Address,
        path: tuple[tuple[LinkConditions, int], ...],
    ) -> None:
        self.host = host
        self.data = data
        self.local = local
        self.remote = remote
        self.path = path


_Entry: TypeAlias = tuple[float, int, _Flight | Call | Host, int]


class Network:
    """A deterministic simulated UDP network with a virtual clock.

    `seed` fixes every random choice. With `trace=True`, `trace` collects (time, text)
    records of sends, deliveries, drops and NAT mappings for debugging.
    """

    def __init__(self, seed: int = 0, *, trace: bool = False, max_timer_spins: int = 1000) -> None:
        if max_timer_spins < 1:
            raise ValueError("max_timer_spins must be at least 1")
        self.seed = seed
        self.rng = random.Random(seed)
        """The generator behind every random choice of the network."""
        self.stats = Stats()
        self.trace: list[tuple[float, str]] = []
        self.trace_enabled = trace
        self.max_timer_spins = max_timer_spins
        self._now = 0.0
        self._heap: list[_Entry] = []
        self._seq = 0
        self._public = Realm("the public network", None)
        self._hosts: dict[str, Host] = {}
        self._nats: dict[str, Nat] = {}
        self._attached: dict[int, Host] = {}
        self._running = False
        self._ip_cache: dict[str, str] = {}

    # Topology.

    @property
    def now(self) -> float:
        """Virtual time in seconds; starts at 0.0."""
        return self._now

    @property
    def hosts(self) -> dict[str, Host]:
        """Hosts by name (a copy)."""
        return dict(self._hosts)

    @property
    def nats(self) -> dict[str, Nat]:
        """NATs by name (a copy)."""
        return dict(self._nats)

    def add_host(
        self,
        name: str,
        addresses: Iterable[str] = (),
        behind: Nat | None = None,
        *,
        link: LinkConditions | None = None,
    ) -> Host:
        """Add a host with the given IPs, on the public side or on the LAN behind a NAT."""
        self._check_name(name)
        realm = self._realm_behind(behind)
        ips = [normalize_ip(ip) for ip in addresses]
        if len(set(ips)) != len(ips):
            raise ValueError(f"duplicate address for host {name!r}: {ips}")
        for ip in ips:
            if ip in realm.owners:
                raise ValueError(f"{ip} is already used in {realm.name}")
        host = Host(self, name, realm, ips, link if link is not None else LinkConditions())
        self._hosts[name] = host
        return host

    @overload
    def add_nat(self, nat: Nat, *, behind: Nat | None = None) -> Nat: ...

    @overload
    def add_nat(
        self,
        nat: str,
        public_ip: str,
        *,
        mapping: Behaviour = EIM,
        filtering: Behaviour = EIM,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
        link: LinkConditions | None = None,
        behind: Nat | None = None,
    ) -> Nat: ...

    def add_nat(
        self,
        nat: Nat | str,
        public_ip: str | None = None,
        *,
        mapping: Behaviour = EIM,
        filtering: Behaviour = EIM,
        mapping_timeout: float = 30.0,
        hairpinning: bool = False,
        port_preservation: bool = False,
        link: LinkConditions | None = None,
        behind: Nat | None = None,
    ) -> Nat:
        """Add a NAT, given as a `Nat` (e.g. a preset) or as a name and keyword arguments.

        Its public IP lives on the public side, or on the LAN behind `behind` (a NAT
        behind a carrier-grade NAT).
        """
        if isinstance(nat, Nat):
            if public_ip is not None:
                raise ValueError("give either a Nat or a name and public_ip, not both")
        else:
            if public_ip is None:
                raise ValueError("add_nat needs a public_ip")
            nat = Nat(
                nat,
                public_ip,
                mapping=mapping,
                filtering=filtering,
                mapping_timeout=mapping_timeout,
                hairpinning=hairpinning,
                port_preservation=port_preservation,
                link=link,
            )
        self._check_name(nat.name)
        nat._attach(self, self._realm_behind(behind))
        self._nats[nat.name] = nat
        return nat

    # Scheduling.

    def call_at(self, t: float, fn: Callable[[], None]) -> Call:
        """Run `fn()` at virtual time `t` (not in the past)."""
        self._check_time(t)
        call = Call(fn, t, None, None)
        self._push(t, call, 0)
        return call

    def call_later(self, delay: float, fn: Callable[[], None]) -> Call:
        """Run `fn()` `delay` seconds from now."""
        return self.call_at(self._now + delay, fn)

    def call_every(
        self,
        interval: float,
        fn: Callable[[], None],
        start: float | None = None,
        until: float | None = None,
    ) -> Call:
        """Run `fn()` at start, start + interval, ... up to and including `until`.

        `start` defaults to now. Times are computed as start + k * interval, so they do
        not drift; a repetition within 1e-9 s past `until` still runs.
        """
        if not math.isfinite(interval) or interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if start is None:
            start = self._now
        self._check_time(start)
        call = Call(fn, start, interval, until)
        if until is None or start <= until + _UNTIL_SLACK:
            self._push(start, call, 0)
        else:
            call.cancelled = True
        return call

    # Running.

    def run_until(self, t: float) -> None:
        """Process every event up to and including virtual time `t`, then set now to `t`."""
        self._check_time(t)
        self._run(t, None)

    def run_for(self, duration: float) -> None:
        """Process events for `duration` virtual seconds."""
        self.run_until(self._now + duration)

    def run_while(self, pred: Callable[[], bool], timeout: float) -> bool:
        """Process events while `pred()` holds, for at most `timeout` virtual seconds.

        `pred` is checked before every event. Returns True as soon as it is False (now
        is then the time of the last event run), or False if it still holds at the
        timeout (now is then the timeout).
        """
        if not timeout >= 0:
            raise ValueError(f"timeout must be >= 0, got {timeout!r}")
        return self._run(self._now + timeout, pred)

    def refresh(self, node: Node | None = None) -> None:
        """Drain `node`'s transmits and re-read its deadline (all nodes when None).

        Needed only when a node changed outside a network callback or scheduled call.
        """
        if node is None:
            self._refresh_all()
            return
        host = self._attached.get(id(node))
        if host is None:
            raise ValueError(f"{node!r} is not attached to any host")
        self._poke(host)

    # Internals: the loop.

    def _run(self, end: float, pred: Callable[[], bool] | None) -> bool:
        if self._running:
            raise RuntimeError("the network is already running (run_* called from a callback)")
        self._running = True
        try:
            self._refresh_all()
            heap = self._heap
            while True:
                if pred is not None and not pred():
                    return True
                if not heap or heap[0][0] > end:
                    break
                t, _, obj, gen = heappop(heap)
                self._now = t
                if isinstance(obj, _Flight):
                    self._deliver(obj)
                elif isinstance(obj, Host):
                    self._fire(obj, gen)
                else:
                    self._call(obj)
            self._now = end
            return pred is not None and not pred()
        finally:
            self._running = False

    def _push(self, t: float, obj: _Flight | Call | Host, gen: int) -> None:
        self._seq += 1
        heappush(self._heap, (t, self._seq, obj, gen))

    def _refresh_all(self) -> None:
        for host in self._hosts.values():
            if host._node is not None:
                self._poke(host)

    def _poke(self, host: Host) -> None:
        """Drain the host's node and make the heap hold its current deadline."""
        node = host._node
        if node is None:
            return
        for tx in node.pop_transmits():
            self._send(host, tx)
        deadline = node.next_deadline()
        if deadline != host._deadline:
            if deadline is not None and math.isnan(deadline):
                raise ValueError(f"the node on host {host.name!r} returned a NaN deadline")
            host._timer_gen += 1
            host._deadline = deadline
            if deadline is not None:
                self._push(max(deadline, self._now), host, host._timer_gen)

    def _fire(self, host: Host, gen: int) -> None:
        if gen != host._timer_gen or host._node is None:
            return  # superseded by a newer deadline, or the node was detached
        now = self._now
        if host._spin_time == now:
            host._spins += 1
            if host._spins > self.max_timer_spins:
                raise TimerSpinError(
                    f"the node on host {host.name!r} asked for its timer at or before "
                    f"t={now} {host._spins} times in a row without anything else "
                    "happening: its next_deadline() does not move on after handle_timer()"
                )
        else:
            host._spin_time = now
            host._spins = 1
        host._deadline = None  # this entry is used up: re-push even an equal deadline
        host._node.handle_timer(now)
        self._poke(host)

    def _call(self, call: Call) -> None:
        if call.cancelled:
            return
        call._fn()
        if call._interval is not None and not call.cancelled:
            call._count += 1
            t = call._start + call._count * call._interval
            if call._until is None or t <= call._until + _UNTIL_SLACK:
                call.when = t
                self._push(t, call, 0)
            else:
                call.cancelled = True
        self._refresh_all()

    # Internals: datagrams.

    def _send(self, host: Host, tx: Transmit) -> None:
        """Route one datagram from `host` and schedule its delivery, or drop it."""
        self.stats.sent += 1
        src = tx.local
        if src not in host._bound:
            norm = _normalized(src)
            if norm is None or norm not in host._bound:
                self._drop(DropReason.SOURCE_NOT_BOUND, host.name, tx.local, tx.remote)
                return
            src = norm
        dst = tx.remote
        if self.trace_enabled:
            self._note(f"send {host.name} {_fmt(src)} -> {_fmt(dst)} ({len(tx.data)} bytes)")
        if src[0] not in host._address_set:
            self._drop(DropReason.SOURCE_ADDRESS_GONE, host.name, src, dst)
            return
        if (":" in src[0]) != (":" in dst[0]):
            self._drop(DropReason.FAMILY_MISMATCH, host.name, src, dst)
            return
        now = self._now
        path: list[tuple[LinkConditions, int]] = []
        crossed = self._cross(host.link, path)
        if isinstance(crossed, DropReason):
            self._drop(crossed, host.name, src, dst)
            return
        delay = crossed
        realm = host._realm
        s = src
        d = (self._canonical_ip(dst[0]), dst[1])
        inbound = False  # once translated inbound, never leave the LAN again
        while True:
            owner = realm.owners.get(d[0])
            if owner is None:
                nat = realm.nat
                if nat is None or inbound:
                    self._drop(DropReason.NO_SUCH_ADDRESS, host.name, src, dst)
                    return
                if nat._ipv6 != (":" in d[0]):
                    self._drop(DropReason.FAMILY_MISMATCH, host.name, src, dst)
                    return
                mapped = nat._outbound(s, d, now, self.rng)
                if mapped is None:
                    self._drop(DropReason.NAT_PORTS_EXHAUSTED, host.name, src, dst)
                    return
                s = mapped
                if d[0] == nat.public_ip:
                    # Hairpinning (RFC 4787 §6): turn around inside the NAT, with the
                    # sender's public address as source (REQ-9); the uplink is not crossed.
                    if not nat.hairpinning:
                        self._drop(DropReason.NAT_NO_HAIRPIN, host.name, src, dst)
                        return
                    inner = nat._inbound(s, d, now)
                    if isinstance(inner, DropReason):
                        self._drop(inner, host.name, src, dst)
                        return
                    d = inner
                    inbound = True
                    continue
                crossed = self._cross(nat.link, path)
                if isinstance(crossed, DropReason):
                    self._drop(crossed, host.name, src, dst)
                    return
                delay += crossed
                assert nat._outside is not None
                realm = nat._outside
                continue
            crossed = self._cross(owner.link, path)
            if isinstance(crossed, DropReason):
                self._drop(crossed, host.name, src, dst)
                return
            delay += crossed
            if isinstance(owner, Host):
                self._push(now + delay, _Flight(owner, tx.data, d, s, tuple(path)), 0)
                return
            inner = owner._inbound(s, d, now)
            if isinstance(inner, DropReason):
                self._drop(inner, host.name, src, dst)
                return
            d = inner
            realm = owner._inside
            inbound = True

    def _canonical_ip(self, ip: str) -> str:
        """The canonical text of `ip`, or `ip` itself if it is no IP (it then matches nothing).

        Cached: senders repeat the same few destinations, and parsing is slow.
        """
        canonical = self._ip_cache.get(ip)
        if canonical is None:
            try:
                canonical = normalize_ip(ip)
            except (ValueError, TypeError):
                canonical = ip
            self._ip_cache[ip] = canonical
        return canonical

    def _cross(
        self, link: LinkConditions, path: list[tuple[LinkConditions, int]]
    ) -> float | DropReason:
        """Send over one link: its delay, or why the datagram is lost on it."""
        if not link.up:
            return DropReason.LINK_DOWN
        if link.loss and self.rng.random() < link.loss:
            return DropReason.LOSS
        path.append((link, link._downs))
        if link.jitter:
            return link.latency + self.rng.uniform(0.0, link.jitter)
        return link.latency

    def _deliver(self, flight: _Flight) -> None:
        host = flight.host
        for link, downs in flight.path:
            if not link.up or link._downs != downs:
                self._drop(DropReason.LINK_DOWN, host.name, flight.remote, flight.local)
                return
        if flight.local[0] not in host._address_set:
            self._drop(DropReason.NO_SUCH_ADDRESS, host.name, flight.remote, flight.local)
            return
        if flight.local not in host._bound:
            self._drop(DropReason.UNBOUND_PORT, host.name, flight.remote, flight.local)
            return
        node = host._node
        if node is None:
            self._drop(DropReason.NO_NODE, host.name, flight.remote, flight.local)
            return
        self.stats.delivered += 1
        if self.trace_enabled:
            self._note(f"deliver {host.name} {_fmt(flight.local)} <- {_fmt(flight.remote)}")
        host._spins = 0
        node.handle_datagram(flight.data, flight.local, flight.remote, self._now)
        self._poke(host)

    def _drop(self, reason: DropReason, where: str, src: Address, dst: Address) -> None:
        self.stats.dropped[reason] += 1
        if self.trace_enabled:
            self._note(f"drop ({reason.value}) at {where}: {_fmt(src)} -> {_fmt(dst)}")

    # Internals: bookkeeping.

    def _note(self, what: str) -> None:
        if self.trace_enabled:
            self.trace.append((self._now, what))

    def _attach(self, host: Host, node: Node) -> None:
        if id(node) in self._attached:
            raise ValueError(
                f"{node!r} is already attached to host {self._attached[id(node)].name!r}"
            )
        self._attached[id(node)] = host

    def _detach(self, node: Node) -> None:
        self._attached.pop(id(node), None)

    def _check_name(self, name: str) -> None:
        if name in self._hosts or name in self._nats:
            raise ValueError(f"the name {name!r} is already used in this network")

    def _realm_behind(self, nat: Nat | None) -> Realm:
        if nat is None:
            return self._public
        if nat._network is not self:
            raise ValueError(f"{nat!r} has not been added to this network")
        return nat._inside

    def _check_time(self, t: float) -> None:
        if not math.isfinite(t):
            raise ValueError(f"time must be finite, got {t!r}")
        if t < self._now:
            raise ValueError(f"time {t} is in the past (now is {self._now})")


def _normalized(addr: Address) -> Address | None:
    """`addr` with its IP in canonical text, or None if it is not an IP."""
    try:
        return (normalize_ip(addr[0]), addr[1])
    except (ValueError, TypeError):
        return None
