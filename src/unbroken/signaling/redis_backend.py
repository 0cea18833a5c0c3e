"""Rooms and mailboxes in Redis, so peers of one room may sit on different server nodes.

Theory of operation. The state backend.py describes lives in Redis keys, each updated
by one Lua script so concurrent nodes never interleave (a script runs atomically):

    ub:{ROOM}:members          SET of peer ids
    ub:{ROOM}:peer:PEER        HASH seq, dropped, last_in, epoch, resume
    ub:{ROOM}:mail:PEER        LIST of the peer's unacknowledged messages (JSON, seq first)
    ub:{ROOM}:present:PEER     node id, expires `away_for` after the node last refreshed it
    ub:session:TOKEN           "ROOM PEER" for resume tokens

`{ROOM}` is a Redis Cluster hash tag: one room's keys share a slot. Posting to a peer
appends to its mailbox and PUBLISHes the text on `ub:{ROOM}:ch:PEER`; the node that
holds the peer's WebSocket is subscribed to that channel and writes it out. A resume
on another node increments the epoch and publishes `K<old epoch>` on the same channel:
the old node closes its stale socket. A node that dies stops refreshing its peers'
presence; a node with a peer in the same room notices the expired key in `sweep` and
removes the peer (`peer-left`, reason "timeout"), unless it resumed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis import asyncio as aioredis

from .backend import Backend, Mail
from .messages import PEER_IN_USE, ROOM_FULL, UNKNOWN_ROOM, ProtocolError, dumps

logger = logging.getLogger(__name__)

_JOIN = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return -1 end
local n = redis.call('SCARD', KEYS[1])
if n == 0 and ARGV[3] == '0' then return -2 end
if n >= tonumber(ARGV[2]) then return -3 end
local before = redis.call('SMEMBERS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'resume', ARGV[4], 'seq', 0, 'dropped', 0, 'last_in', 0, 'epoch', 0)
return before
"""

_ATTACH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local old = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
local epoch = redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('PUBLISH', ARGV[3], 'K' .. old)
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {epoch, tonumber(redis.call('HGET', KEYS[1], 'last_in'))}
"""

_DETACH = """
if tonumber(redis.call('HGET', KEYS[1], 'epoch') or '-1') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[2], 'away', 'PX', ARGV[2])
return 1
"""

_POST = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
local n = redis.call('HINCRBY', KEYS[3], 'seq', 1)
local text = '{"seq":' .. n .. ',' .. string.sub(ARGV[2], 2)
redis.call('RPUSH', KEYS[2], text)
local over = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[3])
if over > 0 then
  redis.call('LTRIM', KEYS[2], over, -1)
  redis.call('HINCRBY', KEYS[3], 'dropped', over)
end
redis.call('PUBLISH', ARGV[4], 'M' .. text)
return n
"""

_ACK = """
local acked = tonumber(ARGV[1])
local removed = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then break end
  local s = tonumber(string.match(head, '^{"seq":(%d+),'))
  if s == nil or s > acked then break end
  redis.call('LPOP', KEYS[1])
  removed = removed + 1
end
return removed
"""

_LEAVE = """
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return -1 end
local resume = redis.call('HGET', KEYS[2], 'resume') or ''
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
return {resume, redis.call('SMEMBERS', KEYS[1])}
"""


def _seq_of(text: str) -> int:
    """The seq written first in a mailbox text: '{"seq":12,...'."""
    return int(text[7 : text.index(",")])


class RedisBackend(Backend):
    """Backend state in Redis (redis.asyncio); node-to-node delivery by pub/sub."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", queue_limit: int = 256) -> None:
        super().__init__(queue_limit)
        self.url = url
        self._redis: Any = None
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._channels: dict[str, tuple[str, str]] = {}
        self._rooms: dict[str, int] = {}  # rooms with peers attached here: how many
        self._scripts: dict[str, Any] = {}

    # ------------------------------------------------------------------ keys

    @staticmethod
    def _members(room: str) -> str:
        return f"ub:{{{room}}}:members"

    @staticmethod
    def _hash(room: str, peer: str) -> str:
        return f"ub:{{{room}}}:peer:{peer}"

    @staticmethod
    def _mail(room: str, peer: str) -> str:
        return f"ub:{{{room}}}:mail:{peer}"

    @staticmethod
    def _present(room: str, peer: str) -> str:
        return f"ub:{{{room}}}:present:{peer}"

    @staticmethod
    def _channel(room: str, peer: str) -> str:
        return f"ub:{{{room}}}:ch:{peer}"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.away_for * 1000))

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._redis = aioredis.from_url(self.url, decode_responses=True)
        await self._redis.ping()
        for name, body in (
            ("join", _JOIN),
            ("attach", _ATTACH),
            ("detach", _DETACH),
            ("post", _POST),
            ("ack", _ACK),
            ("leave", _LEAVE),
        ):
            self._scripts[name] = self._redis.register_script(body)
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(f"ub:node:{self.node_id}")  # never unsubscribed
        self._reader = asyncio.create_task(self._read_pubsub())

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def _read_pubsub(self) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("signaling: reading Redis pub/sub failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if msg is None or msg.get("type") != "message":
                continue
            target = self._channels.get(msg["channel"])
            data: str = msg["data"]
            if target is None or not data:
                continue
            if data[0] == "M":
                text = data[1:]
                self.on_mail(target[0], target[1], _seq_of(text), text)
            elif data[0] == "K":
                self.on_kick(target[0], target[1], int(data[1:]))

    # ------------------------------------------------------------------ rooms

    async def join(
        self, room: str, peer: str, resume: str, *, create: bool, max_peers: int, max_rooms: int
    ) -> list[str]:
        result = await self._scripts["join"](
            keys=[self._members(room), self._hash(room, peer), self._mail(room, peer)],
            args=[peer, max_peers, "1" if create else "0", resume],
        )
        if result == -1:
            raise ProtocolError(
                PEER_IN_USE, f"peer {peer!r} is already in room {room!r} (resume with its token)"
            )
        if result == -2:
            raise ProtocolError(UNKNOWN_ROOM, f"room {room!r} does not exist")
        if result == -3:
            raise ProtocolError(ROOM_FULL, f"room {room!r} is full ({max_peers} peers)")
        await self._redis.set(f"ub:session:{resume}", f"{room} {peer}")
        return [str(m) for m in result]

    async def session(self, resume: str) -> tuple[str, str] | None:
        value = await self._redis.get(f"ub:session:{resume}")
        if not value:
            return None
        room, peer = value.split(" ", 1)
        return room, peer

    async def attach(self, room: str, peer: str) -> tuple[int, int]:
        channel = self._channel(room, peer)
        if channel not in self._channels:
            self._channels[channel] = (room, peer)
            self._rooms[room] = self._rooms.get(room, 0) + 1
            await self._pubsub.subscribe(channel)
        result = await self._scripts["attach"](
            keys=[self._hash(room, peer), self._present(room, peer)],
            args=[self.node_id, self._ttl_ms, channel],
        )
        if result == -1:
            await self._unsubscribe(room, peer)
            raise ProtocolError(PEER_IN_USE, f"peer {peer!r} is no longer in room {room!r}")
        return int(result[0]), int(result[1])

    async def _unsubscribe(self, room: str, peer: str) -> None:
        channel = self._channel(room, peer)
        if self._channels.pop(channel, None) is None:
            return
        left = self._rooms.get(room, 1) - 1
        if left <= 0:
            self._rooms.pop(room, None)
        else:
            self._rooms[room] = left
        await self._pubsub.unsubscribe(channel)

    async def detach(self, room: str, peer: str, epoch: int, away_for: float) -> None:
        await self._unsubscribe(room, peer)
        await self._scripts["detach"](
            keys=[self._hash(room, peer), self._present(room, peer)],
            args=[epoch, max(1, int(away_for * 1000))],
        )

    async def leave(self, room: str, peer: str, reason: str) -> None:
        await self._unsubscribe(room, peer)
        result = await self._scripts["leave"](
            keys=[
                self._members(room),
                self._hash(room, peer),
                self._mail(room, peer),
                self._present(room, peer),
            ],
            args=[peer],
        )
        if result == -1:
            return  # removed already (another node swept it)
        resume, others = result
        if resume:
            await self._redis.delete(f"ub:session:{resume}")
        if others:
            payload = {"type": "peer-left", "peer": peer, "reason": reason}
            await self.post(room, [str(o) for o in others], payload, None)

    async def members(self, room: str) -> list[str]:
        return sorted(await self._redis.smembers(self._members(room)))

    # ------------------------------------------------------------------ mail

    async def post(
        self, room: str, peers: list[str], payload: dict[str, Any], sender: tuple[str, int] | None
    ) -> None:
        text = dumps(payload)
        async with self._redis.pipeline(transaction=False) as pipe:
            if sender is not None:
                pipe.hset(self._hash(room, sender[0]), "last_in", sender[1])
            for peer in peers:
                await self._scripts["post"](
                    keys=[self._members(room), self._mail(room, peer), self._hash(room, peer)],
                    args=[peer, text, self.queue_limit, self._channel(room, peer)],
                    client=pipe,
                )
            await pipe.execute()

    async def fetch(self, room: str, peer: str, after: int) -> Mail:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self._mail(room, peer), 0, -1)
            pipe.hget(self._hash(room, peer), "seq")
            items, last = await pipe.execute()
        last_seq = int(last or 0)
        texts = [(s, t) for s, t in ((_seq_of(t), t) for t in items) if s > after]
        first = texts[0][0] if texts else last_seq + 1
        return Mail(texts, max(0, first - after - 1), last_seq)

    async def ack(self, room: str, peer: str, seq: int) -> None:
        await self._scripts["ack"](keys=[self._mail(room, peer)], args=[seq])

    # ------------------------------------------------------------------ presence

    async def refresh(self, peers: list[tuple[str, str]]) -> None:
        if not peers:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for room, peer in peers:
                pipe.set(self._present(room, peer), self.node_id, px=self._ttl_ms)
            await pipe.execute()

    async def sweep(self, now: float) -> list[tuple[str, str]]:
        gone: list[tuple[str, str]] = []
        for room in list(self._rooms):
            members = await self.members(room)
            async with self._redis.pipeline(transaction=False) as pipe:
                for peer in members:
                    pipe.exists(self._present(room, peer))
                alive = await pipe.execute()
            for peer, present in zip(members, alive):
                if not present:
                    await self.leave(room, peer, "timeout")
                    gone.append((room, peer))
        return gone

    def stats(self) -> dict[str, int]:
        return {"rooms": len(self._rooms), "peers": len(self._channels)}
