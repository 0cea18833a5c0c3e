"""The WebSocket signaling server (aiohttp): rooms, relaying, access control, limits.

Theory of operation. Each WebSocket is a `_Connection`. Its reader checks every frame
(rate, size, schema: messages.py) and answers a bad one with `{"type": "error"}`
without closing: a client's mistake never costs it, or anyone else, the session.
After `join`, what the connection sends is posted into the other peers' mailboxes
(backend.py), and one writer task per connection delivers its own mailbox in seq order,
then control replies (`joined`, `ack`, `error`). A slow reader therefore never blocks a
sender: its mailbox fills up to the bound and the oldest messages are dropped and
counted. When the WebSocket goes away without `leave`, the peer stays in its room for
`away_for` seconds; a `join` with its resume token (on this node or, with Redis, any
node) takes it back with everything sent meanwhile. docs/signaling.md has the protocol.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from .backend import Backend, MemoryBackend
from .messages import (
    ALREADY_JOINED,
    BAD_MESSAGE,
    DEFAULT_MAX_MESSAGE_BYTES,
    INTERNAL,
    NO_PEER,
    NOT_JOINED,
    OUT_OF_ORDER,
    RATE_LIMITED,
    RELAYED_TYPES,
    REPLAYED,
    TOKEN_REQUIRED,
    UNKNOWN_PEER,
    UNKNOWN_SESSION,
    ProtocolError,
    dumps,
    parse,
    relayed,
)
from .ratelimit import TokenBucket
from .tokens import verify_token

logger = logging.getLogger(__name__)

#: Close code for a connection replaced by a resume elsewhere (4000-4999: private use,
#: RFC 6455 §7.4.2).
CLOSE_REPLACED = 4000
#: Control replies (joined, ack, error) queued per connection beyond which more are dropped.
CONTROL_QUEUE_LIMIT = 64


@dataclass
class ServerConfig:
    """Limits and access rules of a signaling server; every default is documented.

    secret: joining needs a token signed with it (tokens.py); None serves open rooms
        (a warning is logged at start-up).
    allowed_origins: WebSocket upgrades whose Origin header is not listed get HTTP 403;
        None allows any. A request without Origin (not a browser) is allowed.
    max_message_bytes: larger frames get a `too-big` error; frames over 16 times this
        close the connection (1009), as aiohttp cannot read them.
    rate, burst: token bucket per connection, in messages per second (rate 0: no limit).
    max_peers_per_room: two, for one peer connection per room.
    max_rooms: rooms this process (memory backend) holds at most.
    queue_limit: messages kept per peer until acknowledged (backend.py).
    away_for: seconds a peer whose WebSocket dropped stays in its room for a resume.
    heartbeat: WebSocket ping interval in seconds; a dead TCP connection is noticed
        within 1.5 times this.
    join_timeout: seconds a connection may stay open without joining.
    """

    secret: str | bytes | None = None
    allowed_origins: frozenset[str] | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    rate: float = 50.0
    burst: float = 200.0
    max_peers_per_room: int = 2
    max_rooms: int = 100_000
    queue_limit: int = 256
    away_for: float = 30.0
    heartbeat: float = 15.0
    join_timeout: float = 10.0
    ack_every: int = 16  # acknowledge a client's messages after this many (and on resume)
    clock: Callable[[], float] = time.monotonic  # for the rate limit (tests move it by hand)


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    bucket: TokenBucket
    transport: Any = None
    room: str | None = None
    peer: str | None = None
    epoch: int = 0
    ready: bool = False
    last_in: int = 0  # the client's last accepted seq
    acked_in: int = 0  # the last one we acknowledged
    acked_mail: int = 0  # the client's last ack of its mailbox
    sent: int = 0  # the last mailbox seq written to the socket
    members: set[str] = field(default_factory=set)
    control: collections.deque[str] = field(default_factory=collections.deque)
    pending: dict[int, str] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    left: bool = False
    rate_dropped: int = 0
    rate_error_at: float = -1e9


class SignalingServer:
    """A signaling server: `await server.start(host, port)`, `await server.close()`.

    `server.app` is the aiohttp Application (routes `/ws`, `/client.js`, `/stats`): add
    your own routes (a page) before `start`. `server.stats()` counts what happened,
    including every refused message by error code.
    """

    def __init__(self, config: ServerConfig | None = None, backend: Backend | None = None) -> None:
        self.config = config or ServerConfig()
        self.backend = backend or MemoryBackend(self.config.queue_limit)
        self.backend.on_mail = self._on_mail
        self.backend.on_kick = self._on_kick
        self.backend.away_for = self.config.away_for
        self.app = web.Application()
        self.app.router.add_get("/ws", self._handle_ws)
        self.app.router.add_get("/client.js", self._client_js)
        self.app.router.add_get("/stats", self._stats)
        self.port = 0
        self.host = ""
        self.counters: collections.Counter[str] = collections.Counter()
        self._local: dict[tuple[str, str], _Connection] = {}
        self._connections: set[_Connection] = set()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, host: str = "127.0.0.1", port: int = 8765, sock: socket.socket | None = None
    ) -> None:
        """Listen on host:port (port 0: any free port, see `self.port`) or on `sock`."""
        if self.config.secret is None:
            logger.warning(
                "signaling server without a secret: rooms are open to anyone who can reach it "
                "(configure a secret to require signed join tokens)"
            )
        await self.backend.start()
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        if sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        site = web.SockSite(self._runner, sock, backlog=4096)
        await site.start()
        self.host, self.port = sock.getsockname()[:2]
        self._sweeper = asyncio.create_task(self._sweep_loop())
        logger.info("signaling server listening on %s:%d", self.host, self.port)

    @property
    def url(self) -> str:
        """The WebSocket URL clients connect to."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/ws"

    async def close(self) -> None:
        """Close every connection and stop listening."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for conn in list(self._connections):
            conn.closed = True
            with contextlib.suppress(Exception):
                await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
        await self.backend.close()

    def disconnect(self, room: str, peer: str) -> bool:
        """Drop a peer's WebSocket as a network failure would: no close frame.

        For tests and demos. The peer stays in its room for `away_for` seconds.
        """
        conn = self._local.get((room, peer))
        if conn is None:
            return False
        if conn.transport is not None:
            conn.transport.abort()
        return True

    def stats(self) -> dict[str, Any]:
        """Counters: connections, relayed messages, refusals by error code, backend's."""
        return {
            "connections": len(self._connections),
            "attached": len(self._local),
            **self.backend.stats(),
            **dict(self.counters),
        }

    # ------------------------------------------------------------------ HTTP

    async def _client_js(self, _request: web.Request) -> web.StreamResponse:
        text = resources.files(__package__).joinpath("static/client.js").read_text()
        return web.Response(
            text=text,
            content_type="application/javascript",
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-cache"},
        )

    async def _stats(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _handle_ws(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        allowed = self.config.allowed_origins
        if allowed is not None and origin is not None and origin not in allowed:
            self.counters["refused-origin"] += 1
            logger.info("refused a WebSocket from origin %.100s", origin)
            return web.Response(status=403, text=f"origin {origin[:100]} is not allowed here\n")
        ws = web.WebSocketResponse(
            heartbeat=self.config.heartbeat or None,
            max_msg_size=self.config.max_message_bytes * 16,
        )
        await ws.prepare(request)
        bucket = TokenBucket(self.config.rate, self.config.burst, self.config.clock())
        conn = _Connection(ws, bucket, request.transport)
        self._connections.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        try:
            await self._read(conn)
        except Exception:  # never let one connection's surprise reach the others
            logger.exception("signaling connection failed")
        finally:
            conn.closed = True
            conn.wake.set()
            self._connections.discard(conn)
            await self._detach(conn)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            with contextlib.suppress(Exception):
                await ws.close()
        return ws

    async def _read(self, conn: _Connection) -> None:
        joined_by = time.monotonic() + self.config.join_timeout
        while not conn.closed:
            timeout = None if conn.room is not None else max(0.0, joined_by - time.monotonic())
            try:
                msg = await conn.ws.receive(timeout=timeout)
            except TimeoutError:
                error = ProtocolError(NOT_JOINED, "no join within the time allowed")
                await conn.ws.send_str(dumps(error.to_json()))
                await conn.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"no join")
                return
            if msg.type == WSMsgType.TEXT:
                await self._on_frame(conn, msg.data)
            elif msg.type == WSMsgType.BINARY:
                await self._on_frame(conn, msg.data)
            else:  # CLOSE, CLOSING, CLOSED, ERROR (including frames over the hard cap)
                if msg.type == WSMsgType.ERROR:
                    self.counters["closed-error"] += 1
                return

    # ------------------------------------------------------------------ messages

    async def _on_frame(self, conn: _Connection, data: str | bytes) -> None:
        now = self.config.clock()
        if not conn.bucket.take(now):
            conn.rate_dropped += 1
            self.counters[RATE_LIMITED] += 1
            if now - conn.rate_error_at >= 1.0:  # one error a second, not one per message
                conn.rate_error_at = now
                self._reply_error(
                    conn,
                    ProtocolError(
                        RATE_LIMITED,
                        f"more than {self.config.rate:g} messages per second: "
                        f"{conn.rate_dropped} dropped so far",
                    ),
                )
            return
        try:
            msg = parse(data, self.config.max_message_bytes)
        except ProtocolError as exc:
            self.counters[exc.code] += 1
            self._reply_error(conn, exc)
            return
        try:
            await self._dispatch(conn, msg)
        except ProtocolError as exc:
            self.counters[exc.code] += 1
            self._reply_error(conn, exc, ref=msg.get("seq", msg.get("type")))
        except Exception:
            logger.exception("signaling: handling a %r message failed", msg.get("type"))
            self.counters[INTERNAL] += 1
            self._reply_error(conn, ProtocolError(INTERNAL, "the server failed on this message"))

    async def _dispatch(self, conn: _Connection, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "join":
            await self._join(conn, msg)
            return
        if conn.room is None or conn.peer is None:
            raise ProtocolError(NOT_JOINED, f"join a room before sending {kind!r}")
        if kind == "leave":
            room, peer = conn.room, conn.peer
            await self._detach(conn, leaving=True)
            await self.backend.leave(room, peer, "left")
            self._send_control(conn, {"type": "left", "room": room})
            return
        if kind == "ack":
            await self._apply_ack(conn, msg["seq"])
            return
        assert kind in RELAYED_TYPES
        if "ack" in msg:
            await self._apply_ack(conn, msg["ack"])
        seq = msg.get("seq")
        if seq is not None:
            if seq <= conn.last_in:
                raise ProtocolError(
                    REPLAYED, f"seq {seq} was already received (last {conn.last_in}): dropped"
                )
            if seq != conn.last_in + 1:
                raise ProtocolError(
                    OUT_OF_ORDER, f"seq {seq} skips ahead (expected {conn.last_in + 1}): dropped"
                )
        to = msg.get("to")
        if to is not None:
            if to not in conn.members or to == conn.peer:
                raise ProtocolError(UNKNOWN_PEER, f"no peer {to!r} in room {conn.room!r}")
            targets = [to]
        else:
            targets = sorted(conn.members - {conn.peer})
        if not targets:
            raise ProtocolError(NO_PEER, f"nobody else is in room {conn.room!r} yet: dropped")
        await self.backend.post(
            conn.room,
            targets,
            relayed(msg, conn.peer),
            (conn.peer, seq) if seq is not None else None,
        )
        self.counters["relayed"] += len(targets)
        if seq is not None:
            conn.last_in = seq
            if conn.last_in - conn.acked_in >= self.config.ack_every:
                conn.acked_in = conn.last_in
                self._send_control(conn, {"type": "ack", "seq": conn.last_in})

    async def _apply_ack(self, conn: _Connection, seq: int) -> None:
        if conn.room is None or conn.peer is None or seq <= conn.acked_mail:
            return
        conn.acked_mail = seq
        await self.backend.ack(conn.room, conn.peer, seq)

    async def _join(self, conn: _Connection, msg: dict[str, Any]) -> None:
        if conn.room is not None:
            raise ProtocolError(ALREADY_JOINED, f"already in room {conn.room!r}")
        room: str = msg["room"]
        resume = msg.get("resume")
        if resume is not None:
            found = await self.backend.session(resume)
            if found is None or found[0] != room:
                raise ProtocolError(
                    UNKNOWN_SESSION, "that resume token is unknown or expired: join anew"
                )
            peer = found[1]
            if msg.get("peer") not in (None, peer):
                raise ProtocolError(BAD_MESSAGE, "the resume token belongs to another peer")
            before: list[str] | None = None
        else:
            peer = self._admit(msg, room)
            resume = secrets.token_urlsafe(24)
            before = await self.backend.join(
                room,
                peer,
                resume,
                create=msg.get("create", True),
                max_peers=self.config.max_peers_per_room,
                max_rooms=self.config.max_rooms,
            )
            if before:
                await self.backend.post(room, before, {"type": "peer-joined", "peer": peer}, None)
        epoch, last_in = await self.backend.attach(room, peer)
        conn.room, conn.peer, conn.epoch = room, peer, epoch
        conn.last_in = conn.acked_in = last_in
        self._local[(room, peer)] = conn
        members = await self.backend.members(room)
        conn.members = set(members)
        after = 0 if before is not None else min(msg.get("lastSeq", 0), 2**53 - 1)
        mail = await self.backend.fetch(room, peer, after)
        after = min(after, mail.last_seq)  # a client cannot have more than was ever sent
        conn.acked_mail = after
        conn.sent = after + mail.lost
        for seq, text in mail.texts:
            conn.pending.setdefault(seq, text)
        if mail.lost:
            self.counters["lost-on-resume"] += mail.lost
        self.counters["resumed" if before is None else "joined"] += 1
        reply = {
            "type": "joined",
            "room": room,
            "peer": peer,
            "resume": resume,
            "peers": [m for m in members if m != peer],
            "resumed": before is None,
            "received": last_in,
            "lost": mail.lost,
        }
        self._send_control(conn, reply)
        conn.ready = True
        conn.wake.set()

    def _admit(self, msg: dict[str, Any], room: str) -> str:
        """The peer id a new join gets, after checking its token when a secret is set."""
        token, peer = msg.get("token"), msg.get("peer")
        if self.config.secret is not None:
            if token is None:
                raise ProtocolError(TOKEN_REQUIRED, "this server needs a signed token to join")
            named = verify_token(self.config.secret, token, room)
            if peer is not None and peer != named:
                raise ProtocolError(BAD_MESSAGE, f"the token is for peer {named!r}, not {peer!r}")
            return named
        return peer if peer is not None else secrets.token_hex(6)

    async def _detach(self, conn: _Connection, leaving: bool = False) -> None:
        """The connection no longer carries its peer (closed, left, or replaced)."""
        if conn.room is None or conn.peer is None:
            return
        key = (conn.room, conn.peer)
        if self._local.get(key) is conn:
            del self._local[key]
            if not leaving:
                await self.backend.detach(conn.room, conn.peer, conn.epoch, self.config.away_for)
        conn.room = conn.peer = None
        conn.ready = False
        conn.pending.clear()
        conn.members.clear()
        conn.left = leaving

    # ------------------------------------------------------------------ delivery

    def _on_mail(self, room: str, peer: str, seq: int, text: str) -> None:
        conn = self._local.get((room, peer))
        if conn is None:
            return
        if len(conn.pending) >= self.config.queue_limit:
            conn.pending.clear()  # the writer is stuck: it re-reads the (bounded) mailbox
        conn.pending[seq] = text
        conn.wake.set()

    def _on_kick(self, room: str, peer: str, epoch: int) -> None:
        conn = self._local.get((room, peer))
        if conn is None or conn.epoch > epoch:
            return
        del self._local[(room, peer)]
        conn.ready = False
        conn.closed = True
        self.counters["replaced"] += 1
        task = asyncio.ensure_future(
            conn.ws.close(code=CLOSE_REPLACED, message=b"resumed on another connection")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_control(self, conn: _Connection, msg: dict[str, Any]) -> None:
        if len(conn.control) >= CONTROL_QUEUE_LIMIT:
            self.counters["control-dropped"] += 1
            return
        conn.control.append(dumps(msg))
        conn.wake.set()

    def _reply_error(self, conn: _Connection, exc: ProtocolError, ref: Any = None) -> None:
        logger.debug("signaling error to %s: %s", conn.peer, exc)
        self._send_control(conn, exc.to_json(ref))

    async def _writer(self, conn: _Connection) -> None:
        ws = conn.ws
        try:
            while True:
                await conn.wake.wait()
                conn.wake.clear()
                while conn.control:
                    await ws.send_str(conn.control.popleft())
                if conn.ready:
                    await self._deliver(conn)
                if conn.closed:
                    return
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return

    async def _deliver(self, conn: _Connection) -> None:
        """Write the mailbox in seq order from conn.sent; re-read it after a gap."""
        while conn.ready and conn.room is not None and conn.peer is not None:
            nxt = conn.sent + 1
            text = conn.pending.pop(nxt, None)
            if text is None:
                if not conn.pending:
                    return
                if min(conn.pending) <= conn.sent:
                    for seq in [s for s in conn.pending if s <= conn.sent]:
                        del conn.pending[seq]
                    continue
                mail = await self.backend.fetch(conn.room, conn.peer, conn.sent)
                conn.pending.update((s, t) for s, t in mail.texts if s > conn.sent)
                if not mail.texts:
                    conn.pending.clear()
                    return
                conn.sent = max(conn.sent, mail.texts[0][0] - 1)  # what was dropped is gone
                continue
            self._track_members(conn, text)
            await conn.ws.send_str(text)
            conn.sent = nxt

    @staticmethod
    def _track_members(conn: _Connection, text: str) -> None:
        """Keep the connection's view of its room from the membership news it delivers."""
        if '"type":"peer-joined"' in text or '"type":"peer-left"' in text:
            msg = json.loads(text)
            if msg.get("type") == "peer-joined":
                conn.members.add(msg["peer"])
            elif msg.get("type") == "peer-left":
                conn.members.discard(msg["peer"])

    async def _sweep_loop(self) -> None:
        interval = max(0.05, min(1.0, self.config.away_for / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.backend.refresh(list(self._local))
                await self.backend.sweep(time.monotonic())
            except Exception:
                logger.exception("signaling: sweeping away peers failed")
