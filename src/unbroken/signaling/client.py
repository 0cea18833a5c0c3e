"""A Python client of the signaling server: join a room, send and receive, survive drops.

Theory of operation. `send()` never blocks and never fails while the client lives: each
message gets the next `seq` and waits in an outbox until the server acknowledges it.
One task owns the WebSocket: it connects, joins (or resumes, with the resume token and
the last seq received), writes the outbox, and reads. When the socket drops it
reconnects with exponential backoff and jitter, resumes, and re-sends what the server
says it has not received, so nothing queued is lost and nothing arrives twice (the
server drops a seq it already has; this client drops a mailbox seq it already has).
Received messages are emitted as events named after their type (`description`,
`candidate`, `end-of-candidates`, `message`, `peer-joined`, `peer-left`) and also
queued for `receive()`. docs/signaling.md describes the protocol.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import random
from collections.abc import Sequence
from typing import Any

import aiohttp
from pyee.asyncio import AsyncIOEventEmitter

from ..peerconnection.handlers import GuardedEmitter
from .messages import UNKNOWN_SESSION, dumps

logger = logging.getLogger(__name__)

#: Server error codes after which retrying the same join cannot succeed.
FATAL_JOIN_ERRORS = frozenset(
    {
        "room-full",
        "unknown-room",
        "server-full",
        "token-required",
        "bad-token",
        "token-expired",
        "peer-in-use",
        "bad-message",
    }
)


class SignalingError(Exception):
    """The server refused to let this client join (`code` as in docs/signaling.md)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SignalingClient(GuardedEmitter, AsyncIOEventEmitter):  # type: ignore[misc]
    """Joins one room on a signaling server; reconnects and resumes by itself.

    Events: `connected(resumed: bool)`, `disconnected()`, `reset()` (the session was
    gone and a fresh join was made), `closed(reason)`, `peer-joined(msg)`,
    `peer-left(msg)`, `description(msg)`, `candidate(msg)`, `end-of-candidates(msg)`,
    `message(msg)`, `servererror(msg)` (a `{"type": "error"}` reply; not named "error"
    so that pyee does not raise it).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        room: str,
        *,
        peer: str | None = None,
        token: str | None = None,
        origin: str | None = None,
        create: bool = True,
        reconnect: bool = True,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        heartbeat: float | None = 15.0,
        ack_every: int = 16,
        outbox_limit: int = 1024,
        queue_limit: int = 1024,
    ) -> None:
        super().__init__()
        #: Server URLs, tried in turn on each (re)connect: several nodes sharing a Redis.
        self.urls = [url] if isinstance(url, str) else list(url)
        self.room = room
        self.peerId: str | None = peer  # noqa: N815 - camelCase public API
        self.token = token
        self.origin = origin
        self.create = create
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.heartbeat = heartbeat
        self.ack_every = ack_every
        self.outbox_limit = outbox_limit
        self.peers: list[str] = []
        self.resumeToken: str | None = None  # noqa: N815
        self.state = "new"  # connecting, open, reconnecting, closed
        self.lost = 0  # mailbox messages the server dropped before we read them
        self.droppedOutgoing = 0  # noqa: N815 - outbox overflow
        self.droppedIncoming = 0  # noqa: N815 - receive() queue overflow
        self.connects = 0
        self._outbox: collections.deque[tuple[int, dict[str, Any]]] = collections.deque()
        self._next_seq = 1
        self._written = 0  # highest outbox seq written on the current socket
        self._last_in = 0  # highest mailbox seq received
        self._acked = 0  # highest mailbox seq we acknowledged
        self._queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=queue_limit)
        self._queue_changed = asyncio.Event()
        self._ws: Any = None  # aiohttp.ClientWebSocketResponse
        self._joined = False
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None
        self._closing = False
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """The server URL the next (re)connect tries."""
        return self.urls[0]

    @url.setter
    def url(self, value: str) -> None:
        self.urls[0] = value

    async def connect(self, timeout: float = 10.0) -> None:
        """Connect and join; raise SignalingError if the server refuses the join.

        Connection failures before the first join are retried (with backoff) until
        `timeout`, then asyncio.TimeoutError.
        """
        if self._task is not None:
            raise RuntimeError("connect() was called already")
        self._session = aiohttp.ClientSession()
        self._first = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(asyncio.shield(self._first), timeout)
        except BaseException:
            await self.close()
            raise

    def send(self, kind: str, *, to: str | None = None, **fields: Any) -> int:
        """Queue one message (`kind` is its type); return its seq. Never blocks."""
        if self.state == "closed":
            raise RuntimeError("the signaling client is closed")
        msg: dict[str, Any] = {"type": kind, **fields}
        if to is not None:
            msg["to"] = to
        seq = self._next_seq
        self._next_seq += 1
        self._outbox.append((seq, msg))
        if len(self._outbox) > self.outbox_limit:
            self._outbox.popleft()
            self.droppedOutgoing += 1
        self._wake.set()
        return seq

    def sendDescription(self, description: Any, to: str | None = None) -> int:  # noqa: N802
        """Send an RTCSessionDescription (or its init dict)."""
        init = description.toJSON() if hasattr(description, "toJSON") else dict(description)
        return self.send(
            "description", to=to, description={"type": init["type"], "sdp": init["sdp"]}
        )

    def sendCandidate(self, candidate: Any, to: str | None = None) -> int:  # noqa: N802
        """Send an RTCIceCandidate (or its init dict)."""
        init = candidate.toJSON() if hasattr(candidate, "toJSON") else dict(candidate)
        return self.send("candidate", to=to, candidate=init)

    def sendEndOfCandidates(self, usernameFragment: str | None, to: str | None = None) -> int:  # noqa: N802, N803
        """Send end-of-candidates for the generation named by `usernameFragment`."""
        return self.send("end-of-candidates", to=to, usernameFragment=usernameFragment)

    def sendMessage(self, data: Any, to: str | None = None) -> int:  # noqa: N802
        """Send any JSON value to the other peers (application messages)."""
        return self.send("message", to=to, data=data)

    async def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message from the room (relayed or membership), in order."""

        async def wait() -> dict[str, Any]:
            while not self._queue:
                if self.state == "closed":
                    raise ConnectionError("the signaling client is closed")
                self._queue_changed.clear()
                await self._queue_changed.wait()
            return self._queue.popleft()

        return await asyncio.wait_for(wait(), timeout)

    async def wait_for_peer(self, timeout: float = 10.0) -> str:
        """Wait until another peer is in the room; return its id."""
        await self.wait_until(lambda: bool(self.peers), timeout)
        return self.peers[0]

    async def wait_until(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checked whenever the client's state changes."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(loop(), timeout)

    @property
    def connected(self) -> bool:
        """True while joined on a live WebSocket."""
        return self.state == "open"

    @property
    def unacknowledged(self) -> int:
        """Messages sent but not yet acknowledged by the server."""
        return len(self._outbox)

    async def close(self, leave: bool = True) -> None:
        """Leave the room (unless `leave` is False) and close; pending sends are dropped."""
        self._closing = True
        ws = self._ws
        if leave and ws is not None and not ws.closed and self._joined:
            with contextlib.suppress(Exception):
                await ws.send_str(dumps({"type": "leave"}))
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._session is not None:
            await self._session.close()
        self._set_state("closed")

    async def drop(self) -> None:
        """Close the WebSocket without leaving, as a network failure would (tests, demos).

        The client reconnects and resumes as after any other drop.
        """
        if self._ws is not None:
            await self._ws.close()

    # ------------------------------------------------------------------ internals

    def _set_state(self, state: str) -> None:
        self.state = state
        self._changed.set()
        self._queue_changed.set()

    async def _run(self) -> None:
        delay = self.backoff_initial
        while not self._closing:
            try:
                assert self._session is not None
                headers = {"Origin": self.origin} if self.origin else None
                self._set_state("connecting" if self.connects == 0 else "reconnecting")
                async with self._session.ws_connect(
                    self.url, headers=headers, heartbeat=self.heartbeat, max_msg_size=0
                ) as ws:
                    self._ws = ws
                    if await self._session_on(ws):
                        delay = self.backoff_initial
            except SignalingError as exc:
                self._fail(exc)
                return
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                logger.debug("signaling connection to %s failed: %s", self.url, exc)
                self.urls.append(self.urls.pop(0))  # the next node, if there are several
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("signaling client failed; reconnecting")
            finally:
                self._ws = None
                if self._joined:
                    self._joined = False
                    self.emit("disconnected")
            if self._closing or not self.reconnect:
                break
            self._set_state("reconnecting")
            # Exponential backoff with full jitter (no synchronized reconnect storms).
            await asyncio.sleep(random.uniform(0.5, 1.0) * delay)
            delay = min(self.backoff_max, delay * 2)
        if not self._closing:
            self._fail(ConnectionError("the signaling connection closed"))

    def _fail(self, exc: Exception) -> None:
        if self._first is not None and not self._first.done():
            self._first.set_exception(exc)
        self._set_state("closed")
        self.emit("closed", str(exc))

    def _join_message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "join", "room": self.room}
        if self.resumeToken is not None:
            msg["resume"] = self.resumeToken
            msg["lastSeq"] = self._last_in
        else:
            if self.peerId is not None:
                msg["peer"] = self.peerId
            if self.token is not None:
                msg["token"] = self.token
            if not self.create:
                msg["create"] = False
        return msg

    async def _session_on(self, ws: Any) -> bool:
        """Join on a fresh socket, then read and write until it closes; True once joined."""
        await ws.send_str(dumps(self._join_message()))
        writer: asyncio.Task[None] | None = None
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                msg = json.loads(frame.data)
                if not self._joined:
                    if msg.get("type") == "error":
                        if msg.get("code") == UNKNOWN_SESSION and self.resumeToken is not None:
                            self._reset()
                            await ws.send_str(dumps(self._join_message()))
                            continue
                        if msg.get("code") in FATAL_JOIN_ERRORS:
                            raise SignalingError(msg["code"], msg.get("message", ""))
                        self.emit("servererror", msg)
                        continue
                    if msg.get("type") != "joined":
                        continue
                    self._on_joined(msg)
                    writer = asyncio.create_task(self._write(ws))
                    continue
                self._on_message(msg)
                if self._last_in - self._acked >= self.ack_every:
                    self._acked = self._last_in
                    await ws.send_str(dumps({"type": "ack", "seq": self._last_in}))
        finally:
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer
        return writer is not None

    def _reset(self) -> None:
        """The server forgot our session (away too long): join anew, old outbox dropped."""
        logger.info("signaling session in %s expired; joining anew", self.room)
        self.droppedOutgoing += len(self._outbox)
        self._outbox.clear()
        self.resumeToken = None
        self._last_in = self._acked = 0
        self._next_seq = 1
        self._written = 0
        self.emit("reset")

    def _on_joined(self, msg: dict[str, Any]) -> None:
        resumed = bool(msg.get("resumed"))
        self.peerId = msg["peer"]
        self.resumeToken = msg["resume"]
        self.peers = list(msg.get("peers", []))
        if msg.get("lost"):
            # Dropped from the mailbox while we were away: delivery goes on after them.
            self.lost += int(msg["lost"])
            self._last_in += int(msg["lost"])
            self.emit("lost", int(msg["lost"]))
        received = int(msg.get("received", 0))
        self._trim(received)
        self._written = received
        self._joined = True
        self.connects += 1
        self._set_state("open")
        if self._first is not None and not self._first.done():
            self._first.set_result(None)
        self.emit("connected", resumed)
        self._wake.set()

    def _trim(self, acked: int) -> None:
        while self._outbox and self._outbox[0][0] <= acked:
            self._outbox.popleft()
        self._changed.set()

    async def _write(self, ws: Any) -> None:
        """Write outbox messages not yet written on this socket, in seq order."""
        while not ws.closed:
            for seq, msg in list(self._outbox):
                if seq <= self._written:
                    continue
                out = dict(msg, seq=seq)
                if self._last_in:
                    out["ack"] = self._last_in
                    self._acked = self._last_in
                await ws.send_str(dumps(out))
                self._written = seq
            self._wake.clear()
            if not any(seq > self._written for seq, _ in self._outbox):
                await self._wake.wait()

    def _on_message(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        if kind == "ack":
            self._trim(int(msg.get("seq", 0)))
            return
        if kind == "error":
            logger.info("signaling server refused a message: %s", msg.get("message"))
            self.emit("servererror", msg)
            return
        if kind == "left":
            return
        seq = msg.get("seq")
        if isinstance(seq, int):
            if seq <= self._last_in:
                return  # delivered before the drop: already handled
            if seq > self._last_in + 1:
                gap = seq - self._last_in - 1
                self.lost += gap
                self.emit("lost", gap)
            self._last_in = seq
        if kind == "peer-joined":
            if msg["peer"] not in self.peers:
                self.peers.append(msg["peer"])
        elif kind == "peer-left":
            if msg["peer"] in self.peers:
                self.peers.remove(msg["peer"])
        if len(self._queue) == self._queue.maxlen:
            self.droppedIncoming += 1
        self._queue.append(msg)
        self._queue_changed.set()
        self._changed.set()
        if isinstance(kind, str):
            self.emit(kind, msg)
