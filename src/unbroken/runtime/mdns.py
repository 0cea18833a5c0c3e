"""Multicast DNS for ICE: the ``<uuid>.local`` names browsers put in host candidates.

Theory of operation
-------------------
Browsers hide their local addresses behind mDNS names by default
(draft-ietf-rtcweb-mdns-ice-candidates): Chromium trickles
``candidate:... 9a69e250-8699-44ca-8cdd-201979257580.local 48801 typ host``, registers the
name with its own mDNS responder and answers queries for it on the local network. The
sans-IO agent takes IP addresses only, so names are resolved here, in the runtime, and the
agent receives the candidate with the address in place of the name.

`MdnsResolver` asks the network with the zeroconf library (a well-kept mDNS
implementation; no DNS codec of our own). One resolver serves every connection of an
event loop in one network namespace on one set of interfaces (`MdnsResolver.shared`,
reference counted): it binds port 5353 once, and zeroconf's cache answers repeated
questions (Chromium keeps a name for the page's life, so restarts resolve from the cache).
It is created at the first mDNS candidate, in the calling thread's namespace, on the
IPv4 addresses ICE uses (AAAA answers arrive over IPv4 too), and closed with the last
connection that used it; a connection starts listening when it applies a remote
description, so that announcements heard from then on are cached. Queries ask for A and
AAAA; the first carries the unicast-response bit (draft §3.2.1 step 2). A name that does
not resolve within `RESOLVE_TIMEOUT` (10 s), or resolves to more than one address (draft
§3.2.2) or to an address no peer on the link can have, is dropped and counted.

`RemoteCandidates` is the intake of remote candidates of one `IceConnection`:

- an IP candidate goes to the agent at once (an IceError reaches the caller, as before);
- an mDNS host candidate starts a resolution and returns: addIceCandidate resolves once
  the candidate is processed, not resolved, like Chromium's, so a name that never
  resolves cannot hold up signalling. When the name resolves, the candidate goes to the
  agent with its ufrag (its generation) kept: a generation restarted meanwhile drops it;
- end-of-candidates of a generation waits until that generation's resolutions are done,
  since the agent ignores candidates after it (RFC 8838 §13) and could fail the
  generation before its last candidate was tried;
- a check from the peer before its name resolves makes a peer-reflexive candidate as
  usual (RFC 8445 §7.3.1.3, draft §5.3); the resolved candidate then has the same
  address, and the agent keeps the existing candidate and pair (counted as a duplicate).

Measured with Chromium 156 on a veth pair (a packet capture of port 5353): its responder
sends one packet a second, each new name announced twice (RFC 6762 §8.3), in order, one
name per address gathered (IPv4 and link-local IPv6 alike) and new names at every ICE
restart; our questions are answered by those announcements when their turn comes. A
name took 0.8 s to resolve on a quiet link and up to 4.9 s behind other names. Checks
are not held up by it (the peer's checks arrive and make a peer-reflexive candidate
meanwhile); only "completed", which waits for end-of-candidates, waits for the names.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import replace

# AddressResolver is public (zeroconf >= 0.131 documents it) but missing from __all__.
from zeroconf import AddressResolver, IPVersion  # type: ignore[attr-defined]
from zeroconf.asyncio import AsyncZeroconf

from ..ice import Candidate, IceError, IceTransportState
from ..ice.candidate import is_mdns_name
from .connection import IceConnection
from .interfaces import select_addresses

__all__ = ["RESOLVE_TIMEOUT", "MdnsResolver", "RemoteCandidates"]

logger = logging.getLogger(__name__)

#: Seconds a name may take to resolve before its candidate is dropped. Chromium's answers
#: queue behind its announcements at one packet a second (see the module doc): 5 s was
#: seen on a link with two peers; 10 s leaves room for a busier one.
RESOLVE_TIMEOUT = 10.0

_Key = tuple[int, tuple[str, ...]]
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, MdnsResolver]] = (
    weakref.WeakKeyDictionary()
)


def _netns_id() -> int:
    """The calling thread's network namespace (its inode), 0 where there is none to read."""
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino
    except OSError:
        return 0


def _usable(address: str) -> bool:
    """An address a peer on the link can have: unicast, not loopback, not link-local v6.

    Draft §3.2.2 lets an agent restrict what it resolves; a responder claiming loopback
    or a multicast address for a candidate name would point our checks at ourselves.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_multicast or ip.is_unspecified or ip.is_loopback:
        return False
    if ip.version == 6 and ip.is_link_local:
        return False  # needs a zone id, which the agent does not take
    return not (ip.version == 4 and int(ip) == 0xFFFFFFFF)


def mdns_interfaces(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses to ask on: the non-loopback IPv4 ones, else the global IPv6 ones."""
    ips = [ipaddress.ip_address(a) for a in addresses]
    v4 = [str(ip) for ip in ips if ip.version == 4 and not ip.is_loopback]
    if v4:
        return tuple(dict.fromkeys(v4))
    v6 = [str(ip) for ip in ips if ip.version == 6 and not (ip.is_loopback or ip.is_link_local)]
    return tuple(dict.fromkeys(v6))


class MdnsResolver:
    """Resolves mDNS names (``<label>.local``) to one IP address, with zeroconf.

    Counters: ``resolved``, ``unresolved`` (no answer in time), ``ambiguous`` (several
    addresses), ``unusable`` (an address no peer can have), ``invalid`` (not an mDNS
    name), ``unavailable`` (no interface to ask on, or zeroconf could not start),
    ``error``.
    """

    def __init__(self, interfaces: Sequence[str]) -> None:
        self.interfaces = tuple(interfaces)
        self.counters: collections.Counter[str] = collections.Counter()
        self._zc: AsyncZeroconf | None = None
        self._broken = False
        self._closed = False
        self._inflight: dict[str, asyncio.Task[str | None]] = {}
        self._refs = 0
        self._key: tuple[asyncio.AbstractEventLoop, _Key] | None = None

    @classmethod
    def shared(cls, interfaces: Sequence[str]) -> MdnsResolver:
        """The resolver of this loop and namespace for these interfaces; `release()` it."""
        loop = asyncio.get_running_loop()
        key: _Key = (_netns_id(), tuple(interfaces))
        by_key = _shared.setdefault(loop, {})
        resolver = by_key.get(key)
        if resolver is None or resolver._closed:
            resolver = cls(interfaces)
            resolver._key = (loop, key)
            by_key[key] = resolver
        resolver._refs += 1
        return resolver

    def release(self) -> None:
        """Drop one reference from `shared()`; the last one closes the resolver."""
        self._refs -= 1
        if self._refs > 0:
            return
        if self._key is not None:
            loop, key = self._key
            by_key = _shared.get(loop)
            if by_key is not None and by_key.get(key) is self:
                del by_key[key]
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to close on
            asyncio.get_running_loop().create_task(self.close())

    async def resolve(self, name: str, timeout: float = RESOLVE_TIMEOUT) -> str | None:
        """The one usable address of `name`, or None (unresolved, ambiguous or unusable).

        Concurrent questions for a name share one query; answers stay in zeroconf's
        cache for their TTL.
        """
        if not is_mdns_name(name):
            self.counters["invalid"] += 1
            return None
        key = name.lower()
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._query(key, timeout))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    def start(self) -> None:
        """Open the mDNS sockets now (else at the first question): answers get cached."""
        self._zeroconf()

    def _zeroconf(self) -> AsyncZeroconf | None:
        if self._zc is None and not self._broken and not self._closed:
            if not self.interfaces:
                self._broken = True
                logger.info("mDNS: no IPv4 or global IPv6 address to ask on")
                return None
            version = IPVersion.V6Only if ":" in self.interfaces[0] else IPVersion.V4Only
            try:
                self._zc = AsyncZeroconf(interfaces=list(self.interfaces), ip_version=version)
            except Exception as exc:  # sockets, permissions, interfaces without multicast
                self._broken = True
                logger.warning("mDNS: cannot start on %s: %s", self.interfaces, exc)
        return self._zc

    async def _query(self, name: str, timeout: float) -> str | None:
        zc = self._zeroconf()
        if zc is None:
            self.counters["unavailable"] += 1
            return None
        question = AddressResolver(name + ".")
        try:
            found = await question.async_request(zc.zeroconf, timeout * 1000)
        except Exception as exc:  # zeroconf closed under us, a send error
            self.counters["error"] += 1
            logger.info("mDNS: resolving %s failed: %s", name, exc)
            return None
        if not found:
            self.counters["unresolved"] += 1
            logger.info("mDNS: %s did not resolve within %.1f s", name, timeout)
            return None
        addresses = set(question.parsed_addresses())
        if len(addresses) != 1:
            # Draft §3.2.2: ignore a name that resolves to more than one address.
            self.counters["ambiguous"] += 1
            logger.info("mDNS: %s resolved to %d addresses; ignored", name, len(addresses))
            return None
        (address,) = addresses
        if not _usable(address):
            self.counters["unusable"] += 1
            logger.info("mDNS: %s resolved to unusable %s; ignored", name, address)
            return None
        self.counters["resolved"] += 1
        return str(ipaddress.ip_address(address))

    async def close(self) -> None:
        """Stop pending queries and close zeroconf's sockets."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._inflight.values()):
            task.cancel()
        zc, self._zc = self._zc, None
        if zc is not None:
            await zc.async_close()


class RemoteCandidates:
    """The remote-candidate intake of one IceConnection: IP candidates straight to the
    agent, mDNS ones after resolution, end-of-candidates after the resolutions it must
    follow. Get it with `RemoteCandidates.of(ice)`; it closes when the connection does.

    Counters (besides the resolver's): ``mdns_resolved``, ``mdns_unresolved``,
    ``mdns_dropped`` (the agent refused the resolved candidate: an old generation, a
    duplicate of a peer-reflexive one, ...), and whatever callers `ignore()`.
    """

    _by_connection: weakref.WeakKeyDictionary[IceConnection, RemoteCandidates] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, ice: IceConnection, timeout: float = RESOLVE_TIMEOUT) -> None:
        self._ice = weakref.ref(ice)  # the map's value must not keep its key alive
        self.timeout = timeout
        self.counters: collections.Counter[str] = collections.Counter()
        self._pending: collections.Counter[str | None] = collections.Counter()
        self._end_waiting: set[str | None] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._resolver: MdnsResolver | None = None
        self._closed = False
        ice.on("statechange", self._on_state)

    @classmethod
    def of(cls, ice: IceConnection) -> RemoteCandidates:
        """The intake of `ice` (made on first use)."""
        intake = cls._by_connection.get(ice)
        if intake is None:
            intake = cls(ice)
            cls._by_connection[ice] = intake
        return intake

    @property
    def resolver(self) -> MdnsResolver | None:
        """The shared resolver, once an mDNS candidate has needed one."""
        return self._resolver

    @property
    def pending(self) -> int:
        """mDNS names being resolved now."""
        return sum(self._pending.values())

    def ignore(self, reason: str, count: int = 1) -> None:
        """Count candidates a caller dropped before they reached the intake."""
        self.counters[reason] += count

    def add(self, candidate: Candidate) -> bool:
        """Hand `candidate` to the agent, resolving its mDNS name first if it has one.

        Returns what the agent returned for an IP candidate (False: dropped), True for an
        mDNS candidate whose resolution started. IceError propagates for IP candidates.
        """
        ice = self._ice()
        if ice is None or self._closed:
            return False
        if not candidate.is_mdns:
            return ice.add_remote_candidate(candidate)
        # Draft §3.3.2 forbids pairing our relay candidates with a remote mDNS candidate;
        # we gather no relay candidates, so every pair here is host to host.
        ufrag = candidate.ufrag
        self._pending[ufrag] += 1
        self._idle.clear()
        task = asyncio.get_running_loop().create_task(self._resolve_and_add(candidate))
        self._tasks.add(task)
        # A callback, not a `finally`: a task cancelled before it ran never runs one.
        task.add_done_callback(lambda done: self._done(done, ufrag))
        return True

    def end_of_candidates(self, ufrag: str | None) -> None:
        """End-of-candidates for the generation `ufrag`, once its names are resolved."""
        ice = self._ice()
        if ice is None or self._closed:
            return
        if self._pending[ufrag]:
            self._end_waiting.add(ufrag)
            return
        ice.add_remote_candidate(None, ufrag)  # an unknown generation raises, as before

    async def settled(self) -> None:
        """Wait until no resolution is pending (each ends within the timeout)."""
        await self._idle.wait()

    async def _resolve_and_add(self, candidate: Candidate) -> None:
        address = await self._resolve(candidate.host)
        ice = self._ice()
        if ice is None or self._closed:
            return
        if address is None:
            self.counters["mdns_unresolved"] += 1
            return
        self.counters["mdns_resolved"] += 1
        try:
            added = ice.add_remote_candidate(replace(candidate, host=address))
        except IceError as exc:
            logger.info("resolved candidate %s dropped: %s", candidate.host, exc)
            added = False
        if not added:
            self.counters["mdns_dropped"] += 1

    def listen(self) -> None:
        """Start listening for mDNS answers now, before any name is asked.

        A browser announces a name when it gathers (twice, a second apart: RFC 6762
        §8.3), then answers questions for it no sooner than a second after its last
        announcement; whatever zeroconf hears meanwhile lands in its cache, so a name
        announced after this call resolves at once.
        """
        if self._resolver is None and not self._closed:
            ice = self._ice()
            if ice is None:
                return
            # The addresses ICE uses: the sockets' if gathering has begun, else the filter's.
            bases = [base[0] for base in ice.agent.bases]
            addresses = bases or select_addresses(ice.address_filter)
            self._resolver = MdnsResolver.shared(mdns_interfaces(addresses))
            self._resolver.start()

    async def _resolve(self, name: str) -> str | None:
        self.listen()
        if self._resolver is None:
            return None
        return await self._resolver.resolve(name, self.timeout)

    def _done(self, task: asyncio.Task[None], ufrag: str | None) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("resolving a candidate failed", exc_info=task.exception())
        self._pending[ufrag] -= 1
        if self._pending[ufrag] <= 0:
            del self._pending[ufrag]
            if ufrag in self._end_waiting:
                self._end_waiting.discard(ufrag)
                ice = self._ice()
                if ice is not None and not self._closed:
                    try:
                        ice.add_remote_candidate(None, ufrag)
                    except IceError as exc:  # that generation ended meanwhile (a restart)
                        logger.debug("end-of-candidates for %s dropped: %s", ufrag, exc)
        if not self._pending:
            self._idle.set()

    def _on_state(self, state: IceTransportState) -> None:
        if state is IceTransportState.CLOSED:
            self.close()

    def close(self) -> None:
        """Stop resolving and let go of the shared resolver (the connection closed)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._resolver is not None:
            self._resolver.release()
            self._resolver = None
