"""A receive path of its own for the selected pair, out of reach of a stranger's flood.

Theory of operation
-------------------
Every datagram for a base lands in that base's one receive buffer. When a stranger floods
the port faster than the loop can read, the buffer stays full and the kernel drops
arrivals at random: the peer's DTLS, SCTP and consent packets with the junk, until
consent expires. No amount of cheap parsing fixes that; the packets are lost before
Python sees them.

Linux delivers each UDP datagram to the socket whose binding matches it most closely, and
a connected socket matches its own 4-tuple better than the wildcard one (net/ipv4/udp.c,
compute_score; within an SO_REUSEPORT group connected sockets win for their 4-tuple since
Linux 5.6, commit acdcecc61285). So `PinnedSocket` binds a second socket to the base's
address and port (SO_REUSEPORT: the kernel allows it only for sockets of the same user)
and connects it to the selected pair's remote address. From then on the pair's packets
queue in a buffer no stranger can fill, and the loop reads them (in batches) on every
turn, however much junk waits in the base socket. Sending still goes through the base
socket: same source address and port, so the peer sees nothing change.

It is an optimisation of delivery only: every datagram still goes through the same
IceConnection._datagram (demux, agent, queue). Where the platform does not allow it
(`PINNING_SUPPORTED` is False, or binding fails) the base socket carries everything, as
before.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..addresses import Address

logger = logging.getLogger(__name__)

PINNING_SUPPORTED = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")
"""Linux only: other systems give SO_REUSEPORT other meanings (BSD: load balancing
among the latest sockets; Windows has none)."""

BATCH = 64
"""Datagrams the pinned socket reads per loop turn: a burst of the pair's packets costs one
turn (one epoll round) instead of one each, and a turn never holds the loop for long.

The base socket is not read in batches, on purpose: measured under a flood at the rate
one process can send (the setup of tests/test_flood.py), batching it cut the CPU per junk
datagram by a quarter but multiplied the selected pair's message latency by ten (0.5 to
4-7 ms median), as each loop turn then spent longer on junk. With the pair pinned, the
rate at which junk is read does not matter; asyncio's one datagram per socket per turn
keeps the turns short and fair."""

_MAX_DATAGRAM = 65535

PORT_QUARANTINE = 5.0
"""Seconds during which a closed base's port is not given to a new base.

A TURN server may hold a released allocation a little longer: coturn answers a Refresh
with LIFETIME 0 at once but deletes the allocation on its next one-second timer tick, and
meanwhile an Allocate from the same 5-tuple gets 437 Allocation Mismatch (RFC 8656
§7.2). A restart whose fresh base drew the port of a base just released got 437 on its UDP
relay (seen with two peers in one process, restarting every 70 ms through one coturn:
about 1 run in 50); such a relay now moves to a socket of its own (ice/relay.py), which
costs a round trip, and the quarantine keeps that rare. Relay sockets are quarantined
like bases when closed."""

_MAX_REBINDS = 16
_closed_lock = threading.Lock()
_closed_at: dict[tuple[str, int], float] = {}


def _key(address: Any) -> tuple[str, int]:
    """(host, port) of a socket address, an IPv6 scope left out (as the agent has it)."""
    return str(address[0]).split("%")[0], int(address[1])


def base_closed(address: Address) -> None:
    """Remember that a base's port was let go: not reused for `PORT_QUARANTINE` seconds."""
    with _closed_lock:
        _closed_at[_key(address)] = time.monotonic()


def _quarantined(sock: socket.socket) -> bool:
    now = time.monotonic()
    with _closed_lock:
        for key in [k for k, at in _closed_at.items() if now - at >= PORT_QUARANTINE]:
            del _closed_at[key]
        return _key(sock.getsockname()) in _closed_at


def _bind_any(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((ip, 0))
    except OSError:
        sock.close()
        raise
    return sock


def bind_base(ip: str) -> socket.socket:
    """A non-blocking UDP socket on (ip, a port of its own), open to a pinned socket.

    SO_REUSEPORT is set after bind(), never before: Linux picks a port for a bind to port
    0 with SO_REUSEPORT set among ports that other SO_REUSEPORT sockets of the same user
    already hold (measured: 19 shared ports among 1,000 such binds), and two connections
    sharing a port would split each other's datagrams. Bound first, the port is unique;
    the flag set afterwards still lets the pinned socket join it. A port a base of ours
    let go less than `PORT_QUARANTINE` ago is passed over (held while binding again, so
    the kernel picks another).
    """
    passed_over: list[socket.socket] = []
    try:
        sock = _bind_any(ip)
        while _quarantined(sock) and len(passed_over) < _MAX_REBINDS:
            try:
                again = _bind_any(ip)
            except OSError:  # no other port free: better a quarantined port than none
                break
            logger.debug("port %s was let go just before: not a new base's", sock.getsockname())
            passed_over.append(sock)
            sock = again
        if PINNING_SUPPORTED:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            except OSError:
                sock.close()
                raise
    finally:
        for held in passed_over:
            held.close()
    return sock


class PinnedSocket:
    """A socket bound to `local` and connected to `remote`, delivering to `deliver`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        local: Address,
        remote: Address,
        deliver: Callable[[bytes, Address, Address], None],
    ) -> None:
        family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setblocking(False)
            sock.bind(local)
            sock.connect(remote)
        except OSError:
            sock.close()
            raise
        self.local = local
        self.remote = remote
        self._sock = sock
        self._loop = loop
        self._deliver = deliver
        self._closed = False
        self._paused = False
        self.received = 0
        loop.add_reader(sock.fileno(), self._read)

    def pause_reading(self) -> None:
        """Stop reading, like DatagramTransport.pause_reading (tests cut a path this way)."""
        if not self._paused and not self._closed:
            self._paused = True
            self._loop.remove_reader(self._sock.fileno())

    def resume_reading(self) -> None:
        """Read again after pause_reading()."""
        if self._paused and not self._closed:
            self._paused = False
            self._loop.add_reader(self._sock.fileno(), self._read)

    def _read(self) -> None:
        """Deliver up to BATCH queued datagrams (the rest wait for the next loop turn).

        A STUN datagram ends the batch: an idle pair's keepalives arrive one at a time,
        and asking again would only raise BlockingIOError (a quarter of an idle read's
        cost, issue 9). Whatever still waits makes the loop, level-triggered, call again.
        """
        recv = self._sock.recv
        for _ in range(BATCH):
            if self._closed:
                return
            try:
                data = recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # A connected UDP socket reports ICMP errors (port unreachable) here;
                # consent judges the path, so note it and read on.
                logger.debug("pinned socket %s -> %s: %s", self.local, self.remote, exc)
                continue
            self.received += 1
            self._deliver(data, self.local, self.remote)
            if data and data[0] < 4:  # RFC 7983 §7: 0..3 is STUN
                return

    def close(self) -> None:
        """Stop reading and close; what is still queued is delivered first (nothing lost).

        A paused socket delivers nothing: it reads nothing until it is gone.
        """
        if self._closed:
            return
        if not self._paused:
            self._loop.remove_reader(self._sock.fileno())
        self._closed = True
        # Bounded: the buffer holds a few hundred datagrams at most.
        for _ in range(0 if self._paused else 100_000):
            try:
                data = self._sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            self._deliver(data, self.local, self.remote)
        self._sock.close()
