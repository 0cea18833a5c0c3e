"""One TURN allocation as a sans-IO state machine (RFC 8656, with RFC 8489 authentication).

Theory of operation: a `TurnClient` is one allocation on one server over one transport,
from one local port. The runtime gives it what the server sent (`receive()`: a datagram
over UDP, raw stream bytes over TCP/TLS) and the time; the client gives back bytes for
the server (`data_to_send()`), events (`next_event()`), the next deadline (`get_timer()`)
and, from `receive()`, the `(peer, payload)` pairs relayed from peers. Data for a peer goes
in through `send()`; the client creates the permission for the peer's IP, binds a channel
and wraps the payload as a Send indication until the channel is bound, ChannelData after.

Authentication (RFC 8489 §9.2): the first Allocate goes without credentials; the 401
carries REALM and NONCE (and, from RFC 8489 servers, PASSWORD-ALGORITHMS behind the
"obMatJos2" nonce cookie: then SHA-256 is chosen and MESSAGE-INTEGRITY-SHA256 used,
otherwise the MD5 key and MESSAGE-INTEGRITY). Every later request is signed; 438 Stale
Nonce takes the new nonce and resends (at most MAX_STALE_RETRIES times in a row).

Trust: a response is matched by transaction id and method. A success response to a
signed request must carry integrity that verifies with our key, or it is dropped as if
never received (counted in `dropped`). An error response that carries integrity must
verify too; 401 and 438 are by nature unsigned, and an unsigned error to a signed request
can only make a request fail, never grant or change an address, lifetime or channel.
Data indications are accepted only from the server's address and for peers holding an
installed permission; ChannelData only on channels we asked for.

Lifetimes: the allocation is refreshed `refresh_lead(lifetime)` before it expires (80%
of the lifetime or one minute before, whichever is sooner, never before half of it),
retried every few seconds on failure until it expires, then reported lost. Permissions
(5 min, RFC 8656 §9) and channels (10 min, §12) follow the same rule. The server does not
say how long a permission or channel lasts, so those lifetimes are parameters.
"""

from __future__ import annotations

import base64
import collections
import enum
import logging
import os
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from unbroken import stun
from unbroken.addresses import Address, is_ipv6
from unbroken.stun import AttributeType, Message, MessageClass, Method, StunError
from unbroken.stun.attributes import RFC8489_SECURITY_TYPES

from .events import (
    ERROR_UNREACHABLE,
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    ChannelBindFailed,
    ChannelBound,
    Deallocated,
    NewLocalPortNeeded,
    PermissionFailed,
    PermissionInstalled,
    Redirected,
    Refreshed,
    TurnEvent,
)
from .framing import (
    MAX_CHANNEL,
    MIN_CHANNEL,
    FramingError,
    StreamFramer,
    decode_channel_data,
    encode_channel_data,
)

logger = logging.getLogger(__name__)

_U32 = struct.Struct(">I")
UDP_PROTOCOL = 17  # REQUESTED-TRANSPORT value for UDP relays (RFC 8656 §18.7)
DEFAULT_LIFETIME = 600  # RFC 8656 §7.2: the default allocation lifetime
PERMISSION_LIFETIME = 300.0  # RFC 8656 §9
CHANNEL_LIFETIME = 600.0  # RFC 8656 §12
MAX_LIFETIME = 86400
"""Granted lifetimes beyond a day are treated as a day: refreshing early is harmless."""
MAX_STALE_RETRIES = 3
MAX_QUEUED = 64
"""Payloads held per peer while its permission is being created; more are dropped."""
RETRY_DELAY = 5.0
"""Pause before retrying a failed refresh (allocation, permission or channel)."""
NONCE_COOKIE = b"obMatJos2"  # RFC 8489 §9.2: the nonce prefix announcing security features
ALGORITHM_MD5 = 0x0001  # RFC 8489 §18.5
ALGORITHM_SHA256 = 0x0002
STREAM_TRANSPORTS = ("tcp", "tls")
_UNDERSTOOD_REQUIRED = RFC8489_SECURITY_TYPES


class TurnState(enum.Enum):
    """Where the allocation is in its life."""

    IDLE = "idle"
    ALLOCATING = "allocating"
    WAITING_FOR_PORT = "waiting-for-port"  # after 437: the runtime must move ports
    ALLOCATED = "allocated"
    RELEASING = "releasing"
    CLOSED = "closed"
    FAILED = "failed"


def refresh_lead(lifetime: float) -> float:
    """How long before expiry to refresh: 20% of the lifetime, at least a minute when the
    lifetime allows, never more than half of it (so 600 s refreshes at 480 s, 300 s at 240 s)."""
    return max(0.2 * lifetime, min(60.0, 0.5 * lifetime))


@dataclass
class _Transaction:
    kind: str  # "allocate", "refresh", "dealloc", "permission", "channel"
    message: Message
    data: bytes
    signed: bool
    first_sent: float
    next_at: float
    rto: float
    sends: int = 1
    stale_retries: int = 0
    peer_ip: str | None = None
    peer: Address | None = None
    channel: int | None = None


@dataclass
class _Refreshable:
    """A permission or a channel binding: installed or not, and when to act next."""

    installed: bool = False
    expires_at: float = 0.0
    next_at: float | None = None  # when to send the next refresh; None while one is in flight
    queue: list[tuple[Address, bytes]] = field(default_factory=list)


@dataclass
class _Channel(_Refreshable):
    number: int = 0
    peer: Address = ("", 0)


class TurnClient:
    """One TURN allocation (RFC 8656 §7-§12), sans-IO: bytes, commands and `now` in; bytes,
    events, relayed payloads and a deadline out."""

    def __init__(
        self,
        server: Address,
        username: str,
        password: str,
        *,
        transport: str = "udp",
        lifetime: int = DEFAULT_LIFETIME,
        permission_lifetime: float = PERMISSION_LIFETIME,
        channel_lifetime: float = CHANNEL_LIFETIME,
        use_channels: bool = True,
        rto: float = 0.5,
        max_sends: int = 7,
        stream_timeout: float = 39.5,
        rng: random.Random | None = None,
    ) -> None:
        if transport not in ("udp", "tcp", "tls"):
            raise ValueError(f"unknown transport to the TURN server: {transport!r}")
        if len(username.encode("utf-8")) > 508:
            raise ValueError("TURN username longer than 508 bytes (RFC 8489 §14.3)")
        stun.saslprep(password)  # ValueError now rather than at the first 401
        self._server = server
        self._username = username
        self._password = password
        self.transport = transport
        self._lifetime = max(1, int(lifetime))
        self._permission_lifetime = permission_lifetime
        self._channel_lifetime = channel_lifetime
        self._use_channels = use_channels
        self._rto = rto
        self._max_sends = max(1, max_sends)
        self._stream_timeout = stream_timeout
        self._rng = rng
        self._framer = StreamFramer() if transport in STREAM_TRANSPORTS else None

        self._state = TurnState.IDLE
        self._realm: str | None = None
        self._nonce: bytes | None = None
        self._key: bytes | None = None
        self._sha256 = False
        self._algorithms: bytes | None = None  # PASSWORD-ALGORITHMS as received, echoed back
        self._redirected = False
        self._moved_port = False
        self._close_requested = False

        self._relayed: Address | None = None
        self._mapped: Address | None = None
        self._expires_at: float | None = None
        self._refresh_at: float | None = None
        self._transactions: dict[bytes, _Transaction] = {}
        self._permissions: dict[str, _Refreshable] = {}
        self._channels: dict[int, _Channel] = {}
        self._channel_of: dict[Address, int] = {}
        self._next_channel = MIN_CHANNEL
        self._no_channel: set[Address] = set()

        self._outgoing: list[bytes] = []
        self._events: collections.deque[TurnEvent] = collections.deque()
        self.dropped: collections.Counter[str] = collections.Counter()
        """Why received messages were ignored (reason -> count), for tests and stats."""

    # ----------------------------------------------------------------- properties

    @property
    def state(self) -> TurnState:
        """Where the allocation is in its life."""
        return self._state

    @property
    def server(self) -> Address:
        """Where to send: the configured server, or its ALTERNATE-SERVER after a 300."""
        return self._server

    @property
    def relayed_address(self) -> Address | None:
        """The relayed transport address (the relay candidate), once allocated."""
        return self._relayed

    @property
    def mapped_address(self) -> Address | None:
        """Our address as the server saw it (XOR-MAPPED-ADDRESS), once allocated."""
        return self._mapped

    @property
    def expires_at(self) -> float | None:
        """When the allocation expires unless refreshed."""
        return self._expires_at

    def has_permission(self, peer_ip: str) -> bool:
        """True when a permission for `peer_ip` is installed."""
        perm = self._permissions.get(peer_ip)
        return perm is not None and perm.installed

    def channel_for(self, peer: Address) -> int | None:
        """The bound channel number for `peer`, None while there is none."""
        number = self._channel_of.get(peer)
        if number is None or not self._channels[number].installed:
            return None
        return number

    # ----------------------------------------------------------------- commands

    def allocate(self, now: float) -> None:
        """Start: send the first Allocate (unauthenticated, RFC 8489 §9.2.3)."""
        if self._state is not TurnState.IDLE:
            raise ValueError(f"allocate() in state {self._state.value}")
        self._state = TurnState.ALLOCATING
        self._send_allocate(now)

    def retry_from_new_port(self, now: float) -> None:
        """After NewLocalPortNeeded: the runtime moved to a new local port; allocate again."""
        if self._state is not TurnState.WAITING_FOR_PORT:
            raise ValueError(f"retry_from_new_port() in state {self._state.value}")
        self._reset_session()
        self._state = TurnState.ALLOCATING
        self._send_allocate(now)

    def create_permission(self, peer_ip: str, now: float) -> None:
        """Install (and keep refreshing) a permission for `peer_ip` (RFC 8656 §9)."""
        if self._state is not TurnState.ALLOCATED or peer_ip in self._permissions:
            return
        if is_ipv6(peer_ip) != is_ipv6(self._relayed[0] if self._relayed else ""):
            return  # a peer of the other family can never be reached from this relay
        self._permissions[peer_ip] = _Refreshable()
        self._send_permission(peer_ip, now)

    def remove_permission(self, peer_ip: str) -> None:
        """Stop refreshing `peer_ip`'s permission (and channels to it); it lapses at the server."""
        self._permissions.pop(peer_ip, None)
        for peer, number in list(self._channel_of.items()):
            if peer[0] == peer_ip:
                del self._channel_of[peer]
                self._channels.pop(number, None)

    def send(self, peer: Address, payload: bytes, now: float) -> bool:
        """Relay `payload` to `peer`; False when it cannot be (no allocation, wrong family,
        permission failed or its queue full). Creates the permission and the channel as
        needed; until the permission is installed the payload waits (bounded queue)."""
        if self._state is not TurnState.ALLOCATED or self._relayed is None:
            return False
        if is_ipv6(peer[0]) != is_ipv6(self._relayed[0]):
            return False
        perm = self._permissions.get(peer[0])
        if perm is None:
            self.create_permission(peer[0], now)
            perm = self._permissions[peer[0]]
        if not perm.installed:
            if len(perm.queue) >= MAX_QUEUED:
                return False
            perm.queue.append((peer, payload))
            return True
        self._relay(peer, payload, now)
        return True

    def close(self, now: float) -> None:
        """Release the allocation: Refresh with LIFETIME 0 (RFC 8656 §7.3), then Deallocated."""
        state = self._state
        if state is TurnState.ALLOCATED:
            self._state = TurnState.RELEASING
            self._drop_transactions(keep=())
            self._send_request("dealloc", Method.REFRESH, [_lifetime_attr(0)], now)
        elif state in (TurnState.ALLOCATING, TurnState.WAITING_FOR_PORT, TurnState.IDLE):
            # An Allocate in flight may still succeed at the server: answer it with a
            # release when it comes (handled in _allocated); stop everything else now.
            self._close_requested = True
            if state is not TurnState.ALLOCATING:
                self._finish_close(confirmed=False)

    def transport_closed(self, now: float) -> None:
        """The TCP/TLS connection to the server ended: over streams the allocation lives
        and dies with its connection (RFC 8656 §3.1), so it is failed, lost or released."""
        if self._state is TurnState.ALLOCATING:
            self._fail(ERROR_UNREACHABLE, "connection to the TURN server closed")
        elif self._state is TurnState.ALLOCATED:
            self._lose("connection to the TURN server closed")
        elif self._state in (TurnState.RELEASING, TurnState.WAITING_FOR_PORT):
            if self._state is TurnState.RELEASING:
                self._finish_close(confirmed=False)

    # ----------------------------------------------------------------- I/O

    def receive(self, data: bytes, now: float) -> list[tuple[Address, bytes]]:
        """Handle what the server sent (a datagram, or stream bytes over TCP/TLS); return
        the payloads relayed from peers, as (peer, payload)."""
        if self._framer is None:
            frames = [bytes(data)]
        else:
            try:
                frames = self._framer.feed(data)
            except FramingError as exc:
                logger.warning("TURN stream from %s broken: %s", self._server, exc)
                if self._state is TurnState.ALLOCATED:
                    self._lose(f"TURN stream framing error: {exc}")
                else:
                    self._fail(ERROR_UNREACHABLE, f"TURN stream framing error: {exc}")
                return []
        out: list[tuple[Address, bytes]] = []
        for frame in frames:
            got = self._receive_frame(frame, now)
            if got is not None:
                out.append(got)
        return out

    def data_to_send(self) -> list[bytes]:
        """Bytes for the server, in order (datagrams over UDP, stream writes over TCP/TLS)."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> TurnEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The next time `handle_timer()` has work, None when nothing is scheduled."""
        if self._state in (TurnState.CLOSED, TurnState.FAILED):
            return None
        times = [tx.next_at for tx in self._transactions.values()]
        if self._state is TurnState.ALLOCATED:
            for at in (self._refresh_at, self._expires_at):
                if at is not None:
                    times.append(at)
            for item in (*self._permissions.values(), *self._channels.values()):
                if item.next_at is not None:
                    times.append(item.next_at)
                if item.installed:
                    times.append(item.expires_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Retransmit, time out, refresh and expire whatever is due at `now`."""
        for tid, tx in list(self._transactions.items()):
            if tx.next_at <= now and self._transactions.get(tid) is tx:
                self._transaction_due(tid, tx, now)
        if self._state is not TurnState.ALLOCATED:
            return
        if self._expires_at is not None and now >= self._expires_at:
            self._lose("allocation expired: no refresh succeeded")
            return
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None
            self._send_request("refresh", Method.REFRESH, [_lifetime_attr(self._lifetime)], now)
        for ip, perm in list(self._permissions.items()):
            if perm.installed and now >= perm.expires_at:
                self._permission_failed(ip, ERROR_UNREACHABLE, "permission expired")
            elif perm.next_at is not None and now >= perm.next_at:
                self._send_permission(ip, now)
        for number, chan in list(self._channels.items()):
            if chan.installed and now >= chan.expires_at:
                self._channel_failed(number, ERROR_UNREACHABLE, "channel binding expired")
            elif chan.next_at is not None and now >= chan.next_at:
                self._send_channel_bind(chan, now)

    # ----------------------------------------------------------------- sending

    def _tid(self) -> bytes:
        return self._rng.randbytes(12) if self._rng is not None else os.urandom(12)

    def _send_allocate(self, now: float) -> None:
        attrs = [
            (AttributeType.REQUESTED_TRANSPORT, bytes([UDP_PROTOCOL, 0, 0, 0])),
            _lifetime_attr(self._lifetime),
        ]
        self._send_request("allocate", Method.ALLOCATE, attrs, now)

    def _send_permission(self, peer_ip: str, now: float) -> None:
        perm = self._permissions[peer_ip]
        perm.next_at = None
        self._send_request("permission", Method.CREATE_PERMISSION, [], now, peer=(peer_ip, 0))

    def _send_channel_bind(self, chan: _Channel, now: float) -> None:
        chan.next_at = None
        attrs = [(AttributeType.CHANNEL_NUMBER, _U32.pack(chan.number << 16))]
        self._send_request(
            "channel", Method.CHANNEL_BIND, attrs, now, peer=chan.peer, channel=chan.number
        )

    def _send_request(
        self,
        kind: str,
        method: Method,
        attrs: Sequence[tuple[int, bytes]],
        now: float,
        *,
        peer: Address | None = None,
        channel: int | None = None,
        stale_retries: int = 0,
    ) -> None:
        """Build, sign (once we have a nonce), queue and track one request."""
        tid = self._tid()
        other: list[tuple[int, bytes]] = list(attrs)
        if peer is not None:
            other.insert(0, (AttributeType.XOR_PEER_ADDRESS, stun.encode_xor_address(peer, tid)))
        message = Message(method=method, message_class=MessageClass.REQUEST, transaction_id=tid)
        signed = self._key is not None and self._nonce is not None and self._realm is not None
        if signed:
            message.username = self._username
            assert self._realm is not None and self._nonce is not None
            other.append((AttributeType.REALM, self._realm.encode("utf-8")))
            other.append((AttributeType.NONCE, self._nonce))
            if self._algorithms is not None:
                algorithm = ALGORITHM_SHA256 if self._sha256 else ALGORITHM_MD5
                other.append((AttributeType.PASSWORD_ALGORITHMS, self._algorithms))
                other.append((AttributeType.PASSWORD_ALGORITHM, _U32.pack(algorithm << 16)))
        message.other = other
        if signed and self._sha256:
            data = stun.encode(message, integrity_sha256_key=self._key)
        else:
            data = stun.encode(message, integrity_key=self._key if signed else None)
        stream = self._framer is not None
        tx = _Transaction(
            kind=kind,
            message=message,
            data=data,
            signed=signed,
            first_sent=now,
            next_at=now + (self._stream_timeout if stream else self._rto),
            rto=self._rto,
            stale_retries=stale_retries,
            peer_ip=peer[0] if peer is not None else None,
            peer=peer,
            channel=channel,
        )
        if stream or self._max_sends == 1:
            tx.sends = self._max_sends
            if not stream:
                tx.next_at = now + 16 * self._rto
        self._transactions[tid] = tx
        self._outgoing.append(data)

    def _resend(self, tx: _Transaction, now: float, *, stale: bool = False) -> None:
        """Send the same request anew (new transaction id, fresh nonce), e.g. after 438."""
        attrs = [
            (t, v)
            for t, v in tx.message.other
            if t
            not in (
                AttributeType.XOR_PEER_ADDRESS,
                AttributeType.REALM,
                AttributeType.NONCE,
                AttributeType.PASSWORD_ALGORITHMS,
                AttributeType.PASSWORD_ALGORITHM,
            )
        ]
        self._send_request(
            tx.kind,
            Method(tx.message.method),
            attrs,
            now,
            peer=tx.peer,
            channel=tx.channel,
            stale_retries=tx.stale_retries + (1 if stale else 0),
        )

    def _relay(self, peer: Address, payload: bytes, now: float) -> None:
        """Wrap `payload` for `peer`: ChannelData when bound, else a Send indication."""
        number = self._channel_of.get(peer)
        if number is not None and self._channels[number].installed:
            self._outgoing.append(
                encode_channel_data(number, payload, stream=self._framer is not None)
            )
            return
        tid = self._tid()
        message = Message(
            method=Method.SEND,
            message_class=MessageClass.INDICATION,
            transaction_id=tid,
            other=[
                (AttributeType.XOR_PEER_ADDRESS, stun.encode_xor_address(peer, tid)),
                (AttributeType.DATA, payload),
            ],
        )
        self._outgoing.append(stun.encode(message, fingerprint=False))
        if self._use_channels and number is None and peer not in self._no_channel:
            self._bind_channel(peer, now)

    def _bind_channel(self, peer: Address, now: float) -> None:
        if self._next_channel > MAX_CHANNEL:
            return  # every number used once in this allocation: Send indications it is
        number = self._next_channel
        self._next_channel += 1
        chan = _Channel(number=number, peer=peer)
        self._channels[number] = chan
        self._channel_of[peer] = number
        self._send_channel_bind(chan, now)

    # ----------------------------------------------------------------- receiving

    def _receive_frame(self, frame: bytes, now: float) -> tuple[Address, bytes] | None:
        if frame and (frame[0] & 0xC0) == 0x40:
            return self._receive_channel_data(frame)
        try:
            message = stun.decode(frame)
        except StunError:
            self.dropped["undecodable"] += 1
            return None
        cls = message.message_class
        if cls is MessageClass.INDICATION:
            if message.method == Method.DATA:
                return self._receive_data_indication(message)
            self.dropped["unexpected indication"] += 1
            return None
        if cls is MessageClass.REQUEST:
            self.dropped["request from server"] += 1
            return None
        tx = self._transactions.get(message.transaction_id)
        if tx is None or tx.message.method != message.method:
            self.dropped["unknown transaction"] += 1
            return None
        if set(message.unknown_required) - _UNDERSTOOD_REQUIRED:
            self.dropped["unknown required attribute"] += 1
            return None
        verified = self._verify(tx, message)
        if verified is False:
            self.dropped["bad integrity"] += 1
            return None
        if cls is MessageClass.SUCCESS:
            if tx.signed and not verified:
                self.dropped["unsigned success"] += 1
                return None
            del self._transactions[message.transaction_id]
            self._success(tx, message, now)
        else:
            del self._transactions[message.transaction_id]
            self._error(tx, message, bool(verified), now)
        return None

    def _verify(self, tx: _Transaction, message: Message) -> bool | None:
        """True/False when the response carries integrity that does/doesn't verify with
        our key; None when it carries none (or the request was not signed)."""
        key = self._key
        if not tx.signed or key is None:
            return None
        if self._sha256 and stun.has_integrity_sha256(message):
            return stun.check_integrity_sha256(message, key)
        if message.has_integrity:
            return stun.check_integrity(message, key)
        if stun.has_integrity_sha256(message):
            return False  # SHA-256 integrity we did not agree on
        return None

    def _receive_channel_data(self, frame: bytes) -> tuple[Address, bytes] | None:
        parsed = decode_channel_data(frame)
        if parsed is None:
            self.dropped["bad ChannelData"] += 1
            return None
        chan = self._channels.get(parsed[0])
        if chan is None or self._state is not TurnState.ALLOCATED:
            self.dropped["unknown channel"] += 1
            return None
        return chan.peer, parsed[1]

    def _receive_data_indication(self, message: Message) -> tuple[Address, bytes] | None:
        if self._state is not TurnState.ALLOCATED:
            self.dropped["data before allocation"] += 1
            return None
        raw_peer = message.find(AttributeType.XOR_PEER_ADDRESS)
        payload = message.find(AttributeType.DATA)
        if raw_peer is None or payload is None:
            self.dropped["Data indication missing attributes"] += 1
            return None
        peer = stun.decode_xor_address(raw_peer, message.transaction_id)
        if not self.has_permission(peer[0]):
            self.dropped["Data indication without permission"] += 1
            return None
        return peer, payload

    # ----------------------------------------------------------------- responses

    def _success(self, tx: _Transaction, message: Message, now: float) -> None:
        kind = tx.kind
        if kind == "allocate":
            self._allocated(tx, message, now)
        elif kind == "refresh":
            self._refreshed(tx, message, now)
        elif kind == "dealloc":
            self._finish_close(confirmed=True)
        elif kind == "permission":
            self._permission_ok(tx, now)
        elif kind == "channel":
            self._channel_ok(tx, now)

    def _allocated(self, tx: _Transaction, message: Message, now: float) -> None:
        if self._state is not TurnState.ALLOCATING:
            return
        relayed_raw = message.find(AttributeType.XOR_RELAYED_ADDRESS)
        lifetime = _read_lifetime(message)
        problem = None
        relayed = None
        if relayed_raw is None:
            problem = "Allocate success without XOR-RELAYED-ADDRESS"
        else:
            relayed = stun.decode_xor_address(relayed_raw, message.transaction_id)
            if is_ipv6(relayed[0]):  # we asked for the default family, IPv4 (§7.1)
                problem = f"relayed address {relayed[0]} is not IPv4 as requested"
        if problem is None and not lifetime:
            problem = "Allocate success without a usable LIFETIME"
        if problem is not None or relayed is None or lifetime is None:
            self._release_quietly(now)
            self._fail(ERROR_UNREACHABLE, problem or "bad Allocate success")
            return
        if self._close_requested:
            self._relayed = relayed
            self._state = TurnState.RELEASING
            self._send_request("dealloc", Method.REFRESH, [_lifetime_attr(0)], now)
            return
        self._relayed = relayed
        self._mapped = message.xor_mapped_address
        self._state = TurnState.ALLOCATED
        effective = self._schedule_refresh(tx.first_sent, lifetime)
        logger.info("TURN allocation on %s: relayed %s for %d s", self._server, relayed, lifetime)
        self._events.append(AllocationSucceeded(relayed, self._mapped, int(effective)))

    def _schedule_refresh(self, sent: float, lifetime: int) -> float:
        effective = float(min(lifetime, max(self._lifetime, MAX_LIFETIME)))
        self._expires_at = sent + effective
        self._refresh_at = sent + effective - refresh_lead(effective)
        return effective

    def _refreshed(self, tx: _Transaction, message: Message, now: float) -> None:
        if self._state is not TurnState.ALLOCATED:
            return
        lifetime = _read_lifetime(message)
        if lifetime is None:
            self._refresh_failed(now, "Refresh success without LIFETIME")
            return
        if lifetime == 0:
            self._lose("server ended the allocation (Refresh granted lifetime 0)")
            return
        effective = self._schedule_refresh(tx.first_sent, lifetime)
        self._events.append(Refreshed(int(effective)))

    def _permission_ok(self, tx: _Transaction, now: float) -> None:
        perm = self._permissions.get(tx.peer_ip or "")
        if perm is None or self._state is not TurnState.ALLOCATED:
            return
        first = not perm.installed
        perm.installed = True
        perm.expires_at = tx.first_sent + self._permission_lifetime
        perm.next_at = perm.expires_at - refresh_lead(self._permission_lifetime)
        if first:
            self._events.append(PermissionInstalled(tx.peer_ip or ""))
        queued, perm.queue = perm.queue, []
        for peer, payload in queued:
            self._relay(peer, payload, now)

    def _channel_ok(self, tx: _Transaction, now: float) -> None:
        chan = self._channels.get(tx.channel or 0)
        if chan is None or self._state is not TurnState.ALLOCATED:
            return
        first = not chan.installed
        chan.installed = True
        chan.expires_at = tx.first_sent + self._channel_lifetime
        chan.next_at = chan.expires_at - refresh_lead(self._channel_lifetime)
        if first:
            self._events.append(ChannelBound(chan.peer, chan.number))

    def _error(self, tx: _Transaction, message: Message, verified: bool, now: float) -> None:
        code, reason = message.error_code or (0, "error response without ERROR-CODE")
        if code == 401 and not tx.signed:
            if self._learn_challenge(message):
                self._resend(tx, now)
            else:
                self._transaction_failed(tx, 401, "401 without a usable REALM and NONCE", now)
            return
        if code == 438 and tx.stale_retries < MAX_STALE_RETRIES:
            nonce = message.find(AttributeType.NONCE)
            if nonce:
                self._nonce = nonce  # RFC 8489 §9.2.5: retry with the new nonce
                self._resend(tx, now, stale=True)
                return
        if code == 300 and tx.kind == "allocate":
            self._alternate(tx, message, verified, now)
            return
        if code == 437:
            self._mismatch(tx, now)
            return
        self._transaction_failed(tx, code, reason, now)

    def _learn_challenge(self, message: Message) -> bool:
        """Take REALM, NONCE and the password algorithm from a 401 (RFC 8489 §9.2.3)."""
        realm = message.find(AttributeType.REALM)
        nonce = message.find(AttributeType.NONCE)
        if realm is None or not nonce:
            return False
        self._realm = realm.decode("utf-8")  # the codec checked it is UTF-8
        self._nonce = nonce
        self._sha256 = False
        self._algorithms = None
        offered = message.find(AttributeType.PASSWORD_ALGORITHMS)
        if offered is not None and _nonce_offers_algorithms(nonce):
            algorithms = _parse_algorithms(offered)
            if algorithms and (ALGORITHM_SHA256 in algorithms or ALGORITHM_MD5 in algorithms):
                self._algorithms = offered
                self._sha256 = ALGORITHM_SHA256 in algorithms
        try:
            self._key = stun.long_term_key(
                self._username, self._realm, self._password, "sha256" if self._sha256 else "md5"
            )
        except ValueError:
            return False
        return True

    def _alternate(self, tx: _Transaction, message: Message, verified: bool, now: float) -> None:
        """300 ALTERNATE-SERVER on Allocate: follow it once (RFC 8656 §7.4, RFC 8489 §10)."""
        raw = message.find(AttributeType.ALTERNATE_SERVER)
        if tx.signed and not verified:
            self._fail(300, "unsigned 300 to a signed Allocate")
            return
        if raw is None:
            self._fail(300, "300 without ALTERNATE-SERVER")
            return
        target = stun.decode_address(raw)
        if self._redirected:
            self._fail(300, f"redirected a second time (to {target[0]}:{target[1]})")
            return
        if is_ipv6(target[0]) != is_ipv6(self._server[0]):
            self._fail(300, "ALTERNATE-SERVER of another address family")
            return
        self._redirected = True
        self._server = target
        self._reset_session()
        self._events.append(Redirected(target))
        self._send_allocate(now)

    def _mismatch(self, tx: _Transaction, now: float) -> None:
        """437 Allocation Mismatch: on Allocate, move ports once; otherwise it is gone."""
        if tx.kind == "allocate":
            if self._moved_port:
                self._fail(437, "Allocation Mismatch again from a new local port")
                return
            self._moved_port = True
            self._drop_transactions(keep=())
            self._state = TurnState.WAITING_FOR_PORT
            self._events.append(NewLocalPortNeeded())
        elif tx.kind == "dealloc":
            self._finish_close(confirmed=True)
        elif self._state is TurnState.ALLOCATED:
            self._lose("437 Allocation Mismatch: the server has no allocation any more")

    def _transaction_failed(self, tx: _Transaction, code: int, text: str, now: float) -> None:
        """A request got an error (or no answer): what that means depends on its kind."""
        if tx.kind == "allocate":
            if self._state is TurnState.ALLOCATING:
                self._fail(code, text)
        elif tx.kind == "refresh":
            self._refresh_failed(now, f"{code} {text}")
        elif tx.kind == "dealloc":
            self._finish_close(confirmed=False)
        elif tx.kind == "permission" and tx.peer_ip is not None:
            perm = self._permissions.get(tx.peer_ip)
            if perm is not None and perm.installed and now < perm.expires_at:
                perm.next_at = min(now + RETRY_DELAY, perm.expires_at)
            elif perm is not None:
                self._permission_failed(tx.peer_ip, code, text)
        elif tx.kind == "channel" and tx.channel is not None:
            chan = self._channels.get(tx.channel)
            if chan is not None and chan.installed and now < chan.expires_at:
                chan.next_at = min(now + RETRY_DELAY, chan.expires_at)
            elif chan is not None:
                self._channel_failed(tx.channel, code, text)

    def _refresh_failed(self, now: float, why: str) -> None:
        if self._state is not TurnState.ALLOCATED or self._expires_at is None:
            return
        logger.info("TURN refresh on %s failed (%s); retrying", self._server, why)
        self._refresh_at = min(now + RETRY_DELAY, max(now, self._expires_at - 1.0))

    def _permission_failed(self, peer_ip: str, code: int, text: str) -> None:
        self.remove_permission(peer_ip)
        self._events.append(PermissionFailed(peer_ip, code, text))

    def _channel_failed(self, number: int, code: int, text: str) -> None:
        chan = self._channels.pop(number, None)
        if chan is None:
            return
        # The number is not reused for another peer in this allocation (RFC 8656 §12), and
        # this peer's data stays in Send indications: no rebinding on every send.
        self._channel_of.pop(chan.peer, None)
        self._no_channel.add(chan.peer)
        self._events.append(ChannelBindFailed(chan.peer, code, text))

    # ----------------------------------------------------------------- timers

    def _transaction_due(self, tid: bytes, tx: _Transaction, now: float) -> None:
        if tx.sends < self._max_sends:
            tx.sends += 1
            tx.rto *= 2
            # RFC 8489 §6.2.1: after the last send, wait Rm (16) times the initial RTO.
            tx.next_at = now + (16 * self._rto if tx.sends == self._max_sends else tx.rto)
            self._outgoing.append(tx.data)
            return
        del self._transactions[tid]
        self._transaction_failed(tx, ERROR_UNREACHABLE, "no response from the TURN server", now)

    # ----------------------------------------------------------------- endings

    def _reset_session(self) -> None:
        """Forget the server's realm and nonce (new server or new 5-tuple)."""
        self._realm = None
        self._nonce = None
        self._key = None
        self._sha256 = False
        self._algorithms = None
        if self._framer is not None:
            self._framer = StreamFramer()

    def _drop_transactions(self, keep: tuple[str, ...]) -> None:
        for tid, tx in list(self._transactions.items()):
            if tx.kind not in keep:
                del self._transactions[tid]

    def _release_quietly(self, now: float) -> None:
        """Best-effort release of an allocation we will not use (no retransmits)."""
        if self._key is None:
            return
        self._send_request("dealloc", Method.REFRESH, [_lifetime_attr(0)], now)
        self._transactions.clear()

    def _clear(self) -> None:
        self._transactions.clear()
        self._permissions.clear()
        self._channels.clear()
        self._channel_of.clear()
        self._refresh_at = None
        self._expires_at = None

    def _fail(self, code: int, text: str) -> None:
        if self._state in (TurnState.FAILED, TurnState.CLOSED):
            return
        logger.info("TURN allocation on %s failed: %d %s", self._server, code, text)
        closing = self._close_requested
        self._clear()
        self._state = TurnState.CLOSED if closing else TurnState.FAILED
        self._events.append(
            Deallocated(confirmed=False) if closing else AllocationFailed(code, text)
        )

    def _lose(self, reason: str) -> None:
        logger.info("TURN allocation on %s lost: %s", self._server, reason)
        self._clear()
        self._state = TurnState.FAILED
        self._events.append(AllocationLost(reason))

    def _finish_close(self, confirmed: bool) -> None:
        if self._state is TurnState.CLOSED:
            return
        self._clear()
        self._state = TurnState.CLOSED
        self._events.append(Deallocated(confirmed))


def _lifetime_attr(seconds: int) -> tuple[int, bytes]:
    return AttributeType.LIFETIME, _U32.pack(seconds)


def _read_lifetime(message: Message) -> int | None:
    raw = message.find(AttributeType.LIFETIME)
    return None if raw is None else int(_U32.unpack(raw)[0])


def _nonce_offers_algorithms(nonce: bytes) -> bool:
    """True when the nonce starts with RFC 8489's cookie and sets "Password algorithms"
    (bit 0 of the 24-bit security feature set, §9.2)."""
    if not nonce.startswith(NONCE_COOKIE) or len(nonce) < len(NONCE_COOKIE) + 4:
        return False
    try:
        features = base64.b64decode(nonce[len(NONCE_COOKIE) : len(NONCE_COOKIE) + 4], validate=True)
    except ValueError:
        return False
    return len(features) == 3 and bool(features[0] & 0x80)


def _parse_algorithms(value: bytes) -> list[int] | None:
    """The algorithm numbers in a PASSWORD-ALGORITHMS value (RFC 8489 §14.11), None if bad."""
    out: list[int] = []
    pos = 0
    while pos < len(value):
        if pos + 4 > len(value):
            return None
        algorithm, plen = struct.unpack_from(">HH", value, pos)
        pos += 4 + plen + ((-plen) & 3)
        if pos > len(value):
            return None
        out.append(algorithm)
    return out


__all__ = ["TurnClient", "TurnState", "refresh_lead"]
