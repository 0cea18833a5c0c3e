"""Watching the local network: addresses, links and the default route, through netlink.

Theory of operation
-------------------
A connection can only heal fast from a local network change if it hears of the change
when it happens, not 2.5 s later when its pair goes silent. `NetworkWatcher` subscribes
to the kernel's routing messages (rtnetlink, through pyroute2: addresses added or
removed, links up or down, routes changed) in the network namespace of the thread that
starts it, and calls its callback with a short reason once per burst (the kernel sends
several messages for one change; they are coalesced over `settle` seconds). Where
netlink cannot be opened (not Linux, a sandbox without it) it falls back to polling the
interface addresses every `poll_interval` seconds, which sees address changes only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..runtime.interfaces import AddressFilter, select_addresses

logger = logging.getLogger(__name__)

# The rtnetlink events that can move a connection's path.
_EVENTS = {
    "RTM_NEWADDR": "address added",
    "RTM_DELADDR": "address removed",
    "RTM_NEWLINK": "link changed",
    "RTM_DELLINK": "link removed",
    "RTM_NEWROUTE": "route added",
    "RTM_DELROUTE": "route removed",
}


class NetworkWatcher:
    """Calls `on_change(reason)` when the local network changes (see the module docstring).

    Only changes that matter are reported: address changes that alter what
    `address_filter` selects, link state changes, and default-route changes.
    """

    def __init__(
        self,
        on_change: Callable[[str], None],
        *,
        address_filter: AddressFilter | None = None,
        settle: float = 0.02,
        poll_interval: float = 1.0,
    ) -> None:
        self._on_change = on_change
        self.address_filter = address_filter or AddressFilter()
        self.settle = settle
        self.poll_interval = poll_interval
        self.mode = "stopped"  # "netlink", "polling" or "stopped"
        self._task: asyncio.Task[None] | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._reasons: list[str] = []
        self._addresses = select_addresses(self.address_filter)
        self._links: dict[int, str] = {}

    @property
    def addresses(self) -> tuple[str, ...]:
        """The local addresses `address_filter` selected at the last change seen."""
        return tuple(self._addresses)

    async def start(self) -> None:
        """Subscribe (netlink, else polling); returns once changes are being watched."""
        if self._task is not None:
            return
        ipr = await self._open_netlink()
        if ipr is not None:
            self.mode = "netlink"
            self._task = asyncio.create_task(self._netlink_loop(ipr))
        else:
            self.mode = "polling"
            self._task = asyncio.create_task(self._poll_loop())

    async def stop(self) -> None:
        """Stop watching; idempotent."""
        task, self._task = self._task, None
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.mode = "stopped"

    # ------------------------------------------------------------------ netlink

    async def _open_netlink(self) -> Any:
        try:
            from pyroute2 import AsyncIPRoute

            async with AsyncIPRoute() as dump:  # the links' states now: only changes count
                links = dump.get_links()
                if asyncio.iscoroutine(links):  # pyroute2 0.9 returns one before set-up
                    links = await links
                async for link in links:
                    self._links[link.get("index")] = link.get_attr("IFLA_OPERSTATE")
            ipr = AsyncIPRoute()
            await ipr.bind()
            return ipr
        except Exception as exc:  # no netlink here: poll instead
            logger.info("netlink unavailable (%s): polling addresses instead", exc)
            return None

    async def _netlink_loop(self, ipr: Any) -> None:
        try:
            while True:  # pyroute2's get() ends after one datagram's messages (msg_seq 0)
                async for msg in ipr.get():
                    reason = self._relevant(msg)
                    if reason is not None:
                        self._note(reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("netlink watch failed: polling addresses instead")
            self.mode = "polling"
            await self._poll_loop()
        finally:
            ipr.close()

    def _relevant(self, msg: Any) -> str | None:
        event = msg.get("event")
        what = _EVENTS.get(event)
        if what is None:
            return None
        if event in ("RTM_NEWADDR", "RTM_DELADDR"):
            now = select_addresses(self.address_filter)
            if now == self._addresses:
                return None
            self._addresses = now
            return f"{what}: {msg.get_attr('IFA_ADDRESS')}"
        if event in ("RTM_NEWROUTE", "RTM_DELROUTE"):
            if msg.get("dst_len") != 0 or msg.get("table") not in (None, 254):
                return None  # only the main table's default route moves our traffic
            return f"default {what}"
        index = msg.get("index")
        state = msg.get_attr("IFLA_OPERSTATE") if event == "RTM_NEWLINK" else "gone"
        if self._links.get(index) == state:
            return None  # a link message that changed nothing we care about
        self._links[index] = state
        return f"{what}: {msg.get_attr('IFLA_IFNAME')} {state}"

    # ------------------------------------------------------------------ polling

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            now = select_addresses(self.address_filter)
            if now != self._addresses:
                self._addresses = now
                self._note("addresses changed")

    # ------------------------------------------------------------------ coalescing

    def _note(self, reason: str) -> None:
        self._reasons.append(reason)
        if self._pending is None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self.settle, self._fire)

    def _fire(self) -> None:
        self._pending = None
        reasons, self._reasons = self._reasons, []
        reason = "; ".join(dict.fromkeys(reasons))
        logger.info("local network changed: %s", reason)
        try:
            self._on_change(reason)
        except Exception:  # a callback's bug must not stop the watch
            logger.exception("network change callback failed")
