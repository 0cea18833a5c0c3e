"""Where rooms, mailboxes and sessions live: one process (memory) or several (Redis).

Theory of operation. Every message for a peer goes into that peer's *mailbox*, a queue
kept by the backend whether the peer is connected or not. The backend numbers the
messages of each mailbox 1, 2, 3, ... (`seq`, written first in the JSON text) and keeps
at most `queue_limit` of them: a message beyond that pushes the oldest out, and the
push-out is counted (`dropped`) and reported as `lost` when the peer resumes. A client
acknowledges what it received (`ack`), which frees its mailbox. When a peer's
WebSocket goes away, its mailbox stays for `away_for` seconds: a reconnect with the
resume token in that window finds everything sent meanwhile. After it, `sweep()`
removes the peer and tells the others (`peer-left`, reason "timeout").

The server node that holds a peer's WebSocket `attach`es it: the backend then calls
`on_mail(room, peer, seq, text)` on that node for each message posted to the peer,
and `on_kick(room, peer, epoch)` when another connection took the peer over (a resume
elsewhere), so the old one is closed. `MemoryBackend` is all of this in dicts;
`RedisBackend` (redis_backend.py) keeps it in Redis and uses pub/sub between nodes.
"""

from __future__ import annotations

import collections
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .messages import (
    PEER_IN_USE,
    ROOM_FULL,
    SERVER_FULL,
    UNKNOWN_ROOM,
    ProtocolError,
    dumps,
)

#: Messages kept per peer until acknowledged (docs/signaling.md, "Reconnect and resume").
#: A negotiation is one description and a few dozen candidates; 256 holds several
#: restarts' worth while a peer is away.
DEFAULT_QUEUE_LIMIT = 256

MailCallback = Callable[[str, str, int, str], None]
KickCallback = Callable[[str, str, int], None]


def with_seq(seq: int, payload_text: str) -> str:
    """Put `"seq": n` first in a JSON object's text (as the Redis script does)."""
    return f'{{"seq":{seq},{payload_text[1:]}'


@dataclass(frozen=True)
class Mail:
    """What `fetch` returns: texts after the given seq, how many were lost, the last seq."""

    texts: list[tuple[int, str]]
    lost: int
    last_seq: int


class Backend(ABC):
    """Rooms, mailboxes and resume sessions, shared by the server nodes that use it."""

    def __init__(self, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        self.queue_limit = queue_limit
        self.away_for = 30.0  # set by the server from its configuration
        self.node_id = secrets.token_hex(6)
        self.on_mail: MailCallback = lambda room, peer, seq, text: None
        self.on_kick: KickCallback = lambda room, peer, epoch: None

    async def start(self) -> None:
        """Connect (Redis) or nothing (memory)."""
        return None

    async def close(self) -> None:
        """Disconnect; rooms in memory are simply dropped."""
        return None

    @abstractmethod
    async def join(
        self, room: str, peer: str, resume: str, *, create: bool, max_peers: int, max_rooms: int
    ) -> list[str]:
        """Add a new peer to a room; return the members that were there before.

        Raises ProtocolError: ROOM_FULL, UNKNOWN_ROOM (create False and no such room),
        SERVER_FULL, PEER_IN_USE (that peer id is a member: resume instead).
        """

    @abstractmethod
    async def session(self, resume: str) -> tuple[str, str] | None:
        """The (room, peer) a resume token belongs to, while that peer is a member."""

    @abstractmethod
    async def attach(self, room: str, peer: str) -> tuple[int, int]:
        """A connection on this node now carries the peer: (epoch, last client seq received).

        Any other connection of the peer (here or on another node) is kicked.
        """

    @abstractmethod
    async def detach(self, room: str, peer: str, epoch: int, away_for: float) -> None:
        """The connection of `epoch` is gone; keep the peer `away_for` seconds for a resume."""

    @abstractmethod
    async def leave(self, room: str, peer: str, reason: str) -> None:
        """Remove the peer; tell the others (`peer-left`)."""

    @abstractmethod
    async def members(self, room: str) -> list[str]:
        """The peers of a room (connected or away)."""

    @abstractmethod
    async def post(
        self, room: str, peers: list[str], payload: dict[str, Any], sender: tuple[str, int] | None
    ) -> None:
        """Append `payload` to each peer's mailbox (non-members are skipped).

        `sender` (peer, seq) records the sender's last accepted client seq in the same step.
        """

    @abstractmethod
    async def fetch(self, room: str, peer: str, after: int) -> Mail:
        """The peer's mailbox texts with seq > after."""

    @abstractmethod
    async def ack(self, room: str, peer: str, seq: int) -> None:
        """The peer received everything up to `seq`: free it."""

    @abstractmethod
    async def sweep(self, now: float) -> list[tuple[str, str]]:
        """Remove peers away longer than their window; return them."""

    async def refresh(self, peers: list[tuple[str, str]]) -> None:
        """Keep the presence of peers connected to this node alive (Redis)."""
        return None

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: rooms, peers, dropped (what this backend can see cheaply)."""


@dataclass
class _Peer:
    resume: str
    mail: collections.deque[tuple[int, str]] = field(default_factory=collections.deque)
    seq: int = 0
    dropped: int = 0
    last_in: int = 0
    epoch: int = 0
    attached: bool = False
    away_until: float | None = None


class MemoryBackend(Backend):
    """Everything in this process's memory: one server node, nothing to install."""

    def __init__(self, queue_limit: int = DEFAULT_QUEUE_LIMIT) -> None:
        super().__init__(queue_limit)
        self._rooms: dict[str, dict[str, _Peer]] = {}
        self._sessions: dict[str, tuple[str, str]] = {}
        self._away: dict[tuple[str, str], float] = {}
        self.dropped = 0

    async def join(
        self, room: str, peer: str, resume: str, *, create: bool, max_peers: int, max_rooms: int
    ) -> list[str]:
        peers = self._rooms.get(room)
        if peers is None:
            if not create:
                raise ProtocolError(UNKNOWN_ROOM, f"room {room!r} does not exist")
            if max_rooms and len(self._rooms) >= max_rooms:
                raise ProtocolError(
                    SERVER_FULL, f"this server holds its maximum of {max_rooms} rooms"
                )
            peers = self._rooms[room] = {}
        if peer in peers:
            raise ProtocolError(
                PEER_IN_USE, f"peer {peer!r} is already in room {room!r} (resume with its token)"
            )
        if len(peers) >= max_peers:
            raise ProtocolError(ROOM_FULL, f"room {room!r} is full ({max_peers} peers)")
        before = list(peers)
        peers[peer] = _Peer(resume)
        self._sessions[resume] = (room, peer)
        return before

    async def session(self, resume: str) -> tuple[str, str] | None:
        return self._sessions.get(resume)

    def _peer(self, room: str, peer: str) -> _Peer | None:
        peers = self._rooms.get(room)
        return None if peers is None else peers.get(peer)

    async def attach(self, room: str, peer: str) -> tuple[int, int]:
        record = self._peer(room, peer)
        if record is None:
            raise ProtocolError(PEER_IN_USE, f"peer {peer!r} is no longer in room {room!r}")
        if record.attached:
            self.on_kick(room, peer, record.epoch)
        record.epoch += 1
        record.attached = True
        record.away_until = None
        self._away.pop((room, peer), None)
        return record.epoch, record.last_in

    async def detach(self, room: str, peer: str, epoch: int, away_for: float) -> None:
        record = self._peer(room, peer)
        if record is None or record.epoch != epoch:
            return
        record.attached = False
        record.away_until = time.monotonic() + away_for
        self._away[(room, peer)] = record.away_until

    async def leave(self, room: str, peer: str, reason: str) -> None:
        peers = self._rooms.get(room)
        if peers is None or peer not in peers:
            return
        record = peers.pop(peer)
        self._sessions.pop(record.resume, None)
        self._away.pop((room, peer), None)
        if not peers:
            del self._rooms[room]
            return
        await self.post(
            room, list(peers), {"type": "peer-left", "peer": peer, "reason": reason}, None
        )

    async def members(self, room: str) -> list[str]:
        return list(self._rooms.get(room, ()))

    async def post(
        self, room: str, peers: list[str], payload: dict[str, Any], sender: tuple[str, int] | None
    ) -> None:
        if sender is not None:
            record = self._peer(room, sender[0])
            if record is not None:
                record.last_in = sender[1]
        text = dumps(payload)
        for peer in peers:
            record = self._peer(room, peer)
            if record is None:
                continue
            record.seq += 1
            seq = record.seq
            stamped = with_seq(seq, text)
            record.mail.append((seq, stamped))
            if len(record.mail) > self.queue_limit:
                record.mail.popleft()
                record.dropped += 1
                self.dropped += 1
            if record.attached:
                self.on_mail(room, peer, seq, stamped)

    async def fetch(self, room: str, peer: str, after: int) -> Mail:
        record = self._peer(room, peer)
        if record is None:
            return Mail([], 0, 0)
        texts = [(seq, text) for seq, text in record.mail if seq > after]
        first = texts[0][0] if texts else record.seq + 1
        return Mail(texts, max(0, first - after - 1), record.seq)

    async def ack(self, room: str, peer: str, seq: int) -> None:
        record = self._peer(room, peer)
        if record is None:
            return
        while record.mail and record.mail[0][0] <= seq:
            record.mail.popleft()

    async def sweep(self, now: float) -> list[tuple[str, str]]:
        gone = [key for key, until in self._away.items() if until <= now]
        for room, peer in gone:
            await self.leave(room, peer, "timeout")
        return gone

    def stats(self) -> dict[str, int]:
        return {
            "rooms": len(self._rooms),
            "peers": sum(len(p) for p in self._rooms.values()),
            "dropped": self.dropped,
        }
