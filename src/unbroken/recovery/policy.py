"""Automatic recovery: restart ICE when the network changes or the path dies.

Theory of operation
-------------------
`attach(pc)` gives a peer connection a `Recovery`. It acts only through the public
`restartIce()`, so it works with any signaling that answers `negotiationneeded` with a
new offer (the perfect-negotiation helper in `unbroken.signaling` does). It restarts:

- at once when the local network changes (`NetworkWatcher`: an address added or
  removed, a link down or up, the default route changed): the old path may be gone,
  and waiting for `disconnected` would cost 2.5 s;
- when the selected pair has been silent for the agent's `switch_silence` (1.5 s by
  default; our own RTCPeerConnection reports it as `pathsilent`), before `disconnected`
  (2.5 s): the remote side's network may have changed, and the sooner the restart, the
  sooner it heals;
- on `disconnected`, after `disconnected_grace`;
- on `failed`.

A restart that does not heal (no new ICE generation connected) within `retry_after`
is asked for again, with exponential backoff and jitter up to `retry_max`, and never
more often than `min_interval`: a dead network does not cause a restart storm. While
the watcher sees no local address at all (between the two steps of an address
replaced), nothing restarts, as a generation with no candidate can only fail: recovery
waits, and the change that brings an address restarts. It never closes the connection.
Each step is reported as a `recovery` event (`RecoveryEvent`: the trigger, the attempt,
and on success the time to heal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from typing import Any

from pyee.asyncio import AsyncIOEventEmitter

from .watcher import NetworkWatcher

logger = logging.getLogger(__name__)

HEALTHY = ("connected", "completed")


@dataclass(frozen=True)
class RecoveryPolicy:
    """When and how often to restart. Times are seconds."""

    # Restart at once on a local network change (netlink, or polling where it is missing).
    on_network_change: bool = True
    # On `disconnected`, restart after this grace. Nothing is lost by restarting early: the
    # old pair keeps carrying data until the new one is selected (make before break), and
    # `disconnected` already means 2.5 s of silence.
    on_disconnected: bool = True
    disconnected_grace: float = 0.0
    # Restart when the pair in use is silent for the agent's switch_silence (1.5 s), a
    # second before `disconnected`: a change on the remote side heals within 2.5 s.
    on_silence: bool = True
    on_failed: bool = True
    # A restart not healed after retry_after is asked for again, doubling up to retry_max
    # (x 0.8-1.2 jitter); restarts are never closer together than min_interval.
    retry_after: float = 2.0
    retry_max: float = 30.0
    min_interval: float = 0.5
    # Address-polling period where netlink is not available.
    poll_interval: float = 1.0


@dataclass(frozen=True)
class RecoveryEvent:
    """What recovery did: `action` is "restart" (asked for a restart), "healed", or
    "waiting" (a restart was due but there is no local address to gather on)."""

    action: str
    trigger: str
    attempt: int
    healed_after: float | None = None


class Recovery(AsyncIOEventEmitter):  # type: ignore[misc]
    """Restart policy attached to one RTCPeerConnection; emits ``recovery`` events."""

    def __init__(self, pc: Any, policy: RecoveryPolicy | None = None) -> None:
        super().__init__()
        self.pc = pc
        self.policy = policy or RecoveryPolicy()
        self.attempts = 0  # restarts asked for since the last healthy state
        self.restarts = 0  # restarts asked for in all
        self.healed = 0
        self._event_loop = asyncio.get_running_loop()
        self._rng = random.Random()
        self._trigger: str | None = None
        self._started_at: float | None = None
        self._ufrag_before: str | None = None
        self._last_restart = -1e9
        self._retry: asyncio.TimerHandle | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._closed = False
        self.watcher: NetworkWatcher | None = None
        self._ice_hooked: Any = None
        pc.on("iceconnectionstatechange", self._on_ice_state)
        pc.on("connectionstatechange", self._on_connection_state)

    async def start(self) -> None:
        """Start watching the local network (when the policy asks for it)."""
        self._hook_ice()
        if not self.policy.on_network_change or self.watcher is not None:
            return
        ice = getattr(self.pc, "iceTransport", None)
        address_filter = getattr(ice, "address_filter", None)
        if address_filter is None:
            address_filter = getattr(self.pc, "_address_filter", lambda: None)()
        self.watcher = NetworkWatcher(
            self._on_network_change,
            address_filter=address_filter,
            poll_interval=self.policy.poll_interval,
        )
        await self.watcher.start()

    async def stop(self) -> None:
        """Detach: no more restarts from this policy."""
        self._closed = True
        for handle in (self._retry, self._grace):
            if handle is not None:
                handle.cancel()
        self._retry = self._grace = None
        with contextlib.suppress(Exception):
            self.pc.remove_listener("iceconnectionstatechange", self._on_ice_state)
            self.pc.remove_listener("connectionstatechange", self._on_connection_state)
        if self.watcher is not None:
            await self.watcher.stop()

    # ------------------------------------------------------------------ triggers

    def _on_network_change(self, reason: str) -> None:
        self.request(f"network: {reason}")

    def _hook_ice(self) -> None:
        """Listen to our ICE transport's `pathsilent` once it exists (ours only)."""
        ice = getattr(self.pc, "iceTransport", None)
        if not self.policy.on_silence or ice is None or ice is self._ice_hooked:
            return
        if hasattr(ice, "on"):
            ice.on("pathsilent", lambda _event: self.request("silent"))
            self._ice_hooked = ice

    def _on_ice_state(self) -> None:
        self._hook_ice()
        state = self.pc.iceConnectionState
        if state in HEALTHY:
            self._check_healed()
            if self._grace is not None:
                self._grace.cancel()
                self._grace = None
        elif state == "disconnected" and self.policy.on_disconnected:
            if self._grace is None:
                self._grace = self._event_loop.call_later(
                    self.policy.disconnected_grace, self._grace_over
                )
        elif state == "failed" and self.policy.on_failed:
            self.request("failed")
        elif state == "closed":
            self._event_loop.create_task(self.stop())

    def _on_connection_state(self) -> None:
        if self.pc.connectionState == "closed":
            self._event_loop.create_task(self.stop())

    def _grace_over(self) -> None:
        self._grace = None
        if self.pc.iceConnectionState == "disconnected":
            self.request("disconnected")

    # ------------------------------------------------------------------ restarting

    def request(self, trigger: str) -> None:
        """Ask for a restart now (rate-limited), unless one is already under way."""
        if self._closed or self.pc.connectionState == "closed":
            return
        if self._trigger is not None and self._retry is not None and trigger != "retry":
            logger.debug("recovery: %s while a restart is under way", trigger)
            return
        wait = self._last_restart + self.policy.min_interval - self._event_loop.time()
        if wait > 0:
            self._schedule_retry(wait, trigger)
            return
        self._restart(trigger)

    def _restart(self, trigger: str) -> None:
        if self._no_local_address():
            # A generation with no local candidate can only fail (and say `failed`):
            # wait for the watcher to report an address, which asks again.
            logger.info("recovery: %s, but no local address: waiting for one", trigger)
            self._emit("waiting", None, trigger)
            return
        if trigger != "retry":
            self._trigger = trigger
        if self._started_at is None:
            self._started_at = self._event_loop.time()
            self._ufrag_before = self._local_ufrag()
        self.attempts += 1
        self.restarts += 1
        self._last_restart = self._event_loop.time()
        logger.info("recovery: restarting ICE (%s, attempt %d)", self._trigger, self.attempts)
        try:
            self.pc.restartIce()
        except Exception:
            logger.exception("recovery: restartIce failed")
        self._emit("restart", None)
        delay = min(self.policy.retry_after * 2 ** (self.attempts - 1), self.policy.retry_max) * (
            0.8 + 0.4 * self._rng.random()
        )
        self._schedule_retry(delay, "retry")

    def _schedule_retry(self, delay: float, trigger: str) -> None:
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self._event_loop.call_later(delay, self._retry_due, trigger)

    def _no_local_address(self) -> bool:
        """True when the running watcher sees no local address to gather on."""
        watcher = self.watcher
        return watcher is not None and watcher.mode != "stopped" and not watcher.addresses

    def _retry_due(self, trigger: str) -> None:
        self._retry = None
        if self._closed:
            return
        if trigger == "retry" and self._healthy_on_new_generation():
            self._check_healed()
            return
        self._restart(trigger)

    def _check_healed(self) -> None:
        if self._started_at is None or not self._healthy_on_new_generation():
            return
        took = self._event_loop.time() - self._started_at
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self.healed += 1
        logger.info("recovery: healed after %.3f s (%s)", took, self._trigger)
        self._emit("healed", took)
        self._started_at = self._ufrag_before = self._trigger = None
        self.attempts = 0

    def _healthy_on_new_generation(self) -> bool:
        ufrag = self._local_ufrag()
        return (
            self.pc.iceConnectionState in HEALTHY
            and ufrag is not None
            and ufrag != self._ufrag_before
            and self.pc.signalingState == "stable"
            and self._selected_on_newest()
        )

    def _selected_on_newest(self) -> bool:
        """True unless our own ICE transport still sends on an older generation's pair
        (make before break keeps the state `connected` on the old pair meanwhile)."""
        agent = getattr(getattr(self.pc, "iceTransport", None), "agent", None)
        if agent is None:
            return True  # not ours: the state and the ufrag are all we can see
        pair = agent.selected_pair
        return pair is not None and pair.generation == agent.generation

    def _local_ufrag(self) -> str | None:
        desc = getattr(self.pc, "currentLocalDescription", None)
        if desc is None:
            return None
        for line in desc.sdp.splitlines():
            if line.startswith("a=ice-ufrag:"):
                return str(line.split(":", 1)[1].strip())
        return None

    def _emit(self, action: str, healed_after: float | None, trigger: str | None = None) -> None:
        trigger = trigger or self._trigger or "retry"
        self.emit("recovery", RecoveryEvent(action, trigger, self.attempts, healed_after))


async def attach(pc: Any, policy: RecoveryPolicy | None = None) -> Recovery:
    """Attach automatic recovery to `pc` and start watching the network; see the module."""
    recovery = Recovery(pc, policy)
    await recovery.start()
    return recovery
