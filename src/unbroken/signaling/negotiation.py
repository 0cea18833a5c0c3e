"""Perfect negotiation (webrtc-pc §10.7): renegotiation, restarts and glare, by itself.

Theory of operation. The pattern of the webrtc-pc example, wired between an
RTCPeerConnection and a SignalingClient. `negotiationneeded` (a data channel,
`restartIce()`, a track) makes an offer with implicit setLocalDescription and sends it;
every trickled candidate and end-of-candidates is sent as it comes. Incoming
descriptions and candidates are applied one at a time, in arrival order. When both
sides offer at once (glare), the impolite peer ignores the other's offer, and the
polite one rolls its own back and answers; the polite peer's restart is still pending
after the rollback (webrtc-pc: rollback keeps [[LocalIceCredentialsToReplace]]), so
its own offer follows. Two differences from the browser example: every operation the
negotiator starts runs under one lock (our RTCPeerConnection has no operations chain,
so this lock plays its part), and the rollback before an incoming offer is explicit.

Who is polite: `polite=` when given; otherwise the peer whose id sorts higher, which
both sides work out the same way from the ids the server reports. Offers wait until the
other peer is in the room (a `peer-joined` releases a deferred one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from ..recovery import Recovery, RecoveryPolicy
from .client import SignalingClient

logger = logging.getLogger(__name__)

_UFRAG = re.compile(r"^a=ice-ufrag:(\S+)", re.MULTILINE)


class PerfectNegotiator:
    """Wires `negotiationneeded`, `icecandidate` and incoming messages of `pc` to `client`.

    `pc` is an `unbroken.RTCPeerConnection` (anything with its W3C API works). `peer`
    names the remote peer when the room has more than two; otherwise the other peer is
    found from the room. Counters (`offers`, `answers`, `collisions`, `ignoredOffers`,
    `rollbacks`, `errors`) say what it did. `close()` unhooks it.

    Recovery is on by default: `recovery=True` attaches `unbroken.recovery` with its
    default policy (restarts on network changes, a silent path, `disconnected`,
    `failed`), a `RecoveryPolicy` attaches it with that policy, False leaves restarts to
    the application. The policy object is `self.recovery` (None when off).
    """

    def __init__(
        self,
        pc: Any,
        client: SignalingClient,
        *,
        polite: bool | None = None,
        peer: str | None = None,
        recovery: bool | RecoveryPolicy = True,
    ) -> None:
        self.pc = pc
        self.client = client
        self.remote = peer
        self._polite = polite
        self.makingOffer = False  # noqa: N815 - names of the webrtc-pc example
        self.ignoreOffer = False  # noqa: N815
        self.isSettingRemoteAnswerPending = False  # noqa: N815
        self.offers = 0
        self.answers = 0
        self.collisions = 0
        self.ignoredOffers = 0  # noqa: N815
        self.rollbacks = 0
        self.errors = 0
        self._lock = asyncio.Lock()
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._deferred = False
        self._closed = False
        self._tasks: set[asyncio.Future[Any]] = set()
        self._hooks: list[tuple[Any, str, Callable[..., Any]]] = []
        self._hook(pc, "negotiationneeded", self._on_negotiationneeded)
        self._hook(pc, "icecandidate", self._on_icecandidate)
        for kind in ("description", "candidate", "end-of-candidates"):
            self._hook(client, kind, self._incoming.put_nowait)
        self._hook(client, "peer-joined", self._on_peer_joined)
        self._hook(client, "reset", self._on_reset)
        self._task = asyncio.create_task(self._process())
        self.recovery: Recovery | None = None
        if recovery is not False:
            policy = recovery if isinstance(recovery, RecoveryPolicy) else None
            self.recovery = Recovery(pc, policy)
            self._spawn(self.recovery.start())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _hook(self, emitter: Any, event: str, handler: Callable[..., Any]) -> None:
        emitter.on(event, handler)
        self._hooks.append((emitter, event, handler))

    @property
    def polite(self) -> bool:
        """The polite peer rolls back its own offer in a collision; the impolite one ignores."""
        if self._polite is not None:
            return self._polite
        remote = self._remote_peer()
        return bool(remote and self.client.peerId and self.client.peerId > remote)

    def _remote_peer(self) -> str | None:
        if self.remote is None and self.client.peers:
            self.remote = self.client.peers[0]
        return self.remote

    async def close(self) -> None:
        """Stop handling events; the peer connection and client are left as they are."""
        self._closed = True
        if self.recovery is not None:
            await self.recovery.stop()
        for emitter, event, handler in self._hooks:
            with contextlib.suppress(Exception):
                emitter.remove_listener(event, handler)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # ------------------------------------------------------------------ outgoing

    async def _on_negotiationneeded(self) -> None:
        if self._closed:
            return
        if self._remote_peer() is None:
            self._deferred = True  # nobody to offer to yet: peer-joined picks it up
            return
        self._deferred = False
        self.makingOffer = True
        try:
            async with self._lock:
                if self._closed or self.pc.signalingState != "stable":
                    return  # negotiationneeded fires again back in stable, if still needed
                await self.pc.setLocalDescription()
                self.offers += 1
                self.client.sendDescription(self.pc.localDescription, to=self.remote)
        except Exception as exc:
            self.errors += 1
            logger.warning("perfect negotiation: making an offer failed: %s", exc)
        finally:
            self.makingOffer = False

    def _on_icecandidate(self, candidate: Any) -> None:
        if self._closed or self._remote_peer() is None:
            return
        if candidate is not None:
            self.client.sendCandidate(candidate, to=self.remote)
            return
        local = self.pc.localDescription
        found = _UFRAG.search(local.sdp) if local is not None else None
        self.client.sendEndOfCandidates(found.group(1) if found else None, to=self.remote)

    def _on_peer_joined(self, msg: dict[str, Any]) -> None:
        if self.remote is None:
            self.remote = msg["peer"]
        if self._deferred and msg["peer"] == self.remote:
            self._spawn(self._on_negotiationneeded())

    def _on_reset(self) -> None:
        """Our session was gone and joined anew: whatever we had sent may be lost."""
        self._spawn(self._recover_after_reset())

    async def _recover_after_reset(self) -> None:
        async with self._lock:
            if self.pc.signalingState == "have-local-offer":
                # Our offer may never have arrived: withdraw it; negotiationneeded fires
                # again if there is still something to negotiate.
                await self.pc.setLocalDescription({"type": "rollback", "sdp": ""})
                self.rollbacks += 1

    # ------------------------------------------------------------------ incoming

    async def _process(self) -> None:
        while True:
            msg = await self._incoming.get()
            if self.remote is not None and msg.get("from") not in (None, self.remote):
                continue  # another peer of the room: not this connection's business
            if self.remote is None:
                self.remote = msg.get("from")
            try:
                async with self._lock:
                    await self._handle(msg)
            except Exception as exc:
                self.errors += 1
                logger.warning("perfect negotiation: %s message failed: %s", msg.get("type"), exc)

    async def _handle(self, msg: dict[str, Any]) -> None:
        pc = self.pc
        kind = msg["type"]
        if kind == "description":
            description = msg["description"]
            ready_for_offer = not self.makingOffer and (
                pc.signalingState == "stable" or self.isSettingRemoteAnswerPending
            )
            offer_collision = description["type"] == "offer" and not ready_for_offer
            if offer_collision:
                self.collisions += 1
            self.ignoreOffer = not self.polite and offer_collision
            if self.ignoreOffer:
                self.ignoredOffers += 1
                return
            if offer_collision and pc.signalingState == "have-local-offer":
                # The browser's setRemoteDescription rolls back implicitly; ours is explicit.
                await pc.setLocalDescription({"type": "rollback", "sdp": ""})
                self.rollbacks += 1
            self.isSettingRemoteAnswerPending = description["type"] == "answer"
            try:
                await pc.setRemoteDescription(description)
            finally:
                self.isSettingRemoteAnswerPending = False
            if description["type"] == "offer":
                await pc.setLocalDescription()
                self.answers += 1
                self.client.sendDescription(pc.localDescription, to=self.remote)
            return
        if kind == "candidate":
            init = msg["candidate"]
        else:  # end-of-candidates
            init = {"candidate": "", "usernameFragment": msg.get("usernameFragment")}
        try:
            await pc.addIceCandidate(init)
        except Exception as exc:
            if not self.ignoreOffer:  # candidates of an offer we ignored fail, as expected
                self.errors += 1
                logger.info("perfect negotiation: addIceCandidate failed: %s", exc)
