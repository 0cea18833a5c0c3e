"""Restart soaks between ours and real browsers (Chromium and Firefox), each in its own process.

For each browser, with each side making the first offer: 20 ICE restarts in the order
ours, theirs, ours, ours, theirs, theirs, both at once, then alternating, while a
numbered message goes every 10 ms each way on a reliable ordered data channel. Our
peer connection runs in a child process (ours_process.py); the signaling is perfect
negotiation (soak.Negotiator) with ours polite: in the "both at once" glare ours rolls
its restart offer back and answers the browser's.

Asserted, per restart: it completes (both sides' getStats() show the selected pair on
candidates whose usernameFragment is the current local/remote ufrag, and both ufrags
changed) within 1 s of the restartIce() call, a correctness bound, not a performance
target; the roles end up complementary. At the end, after a drain: every message
arrived exactly once and in order. And with audio both ways (the browser's fake
microphone, aiortc's AudioStreamTrack on ours), through restarts started by the browser:
packetsReceived keeps growing on both sides after each restart.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from .browser import BrowserPage, poll_until
from .netns import NetNs
from .ours_process import OursProcess
from .soak import SOAK_ORDER, ChildEndpoint, PageEndpoint, Soak

pytestmark = [
    pytest.mark.browser,
    pytest.mark.netns,
    pytest.mark.asyncio(loop_scope="module"),
]

log = logging.getLogger(__name__)

#: A restart that takes longer than this is broken, not slow (the issue saw 5 s and more).
RESTART_BOUND = 1.0
#: Browser-started restarts in the audio test.
AUDIO_RESTARTS = 4
#: Audio packets each side must receive after a restart (20 ms each: 0.2 s of audio).
AUDIO_PACKETS = 10

ChildFactory = Callable[[NetNs, str, str], Awaitable[OursProcess]]


def at_least(count: int) -> Callable[[int], bool]:
    return lambda n: n >= count


async def make_soak(
    soak_env: tuple[str, NetNs, str], page: BrowserPage, ours_child: ChildFactory
) -> Soak:
    """Ours (a child process, polite) and a browser peer connection, not yet connected."""
    kind, ns, address = soak_env
    child = await ours_child(ns, "ours", address)
    # max-bundle: with audio, "balanced" gathers a transport per m-section until the
    # answer bundles them (that case is tested on its own elsewhere).
    pc = await page.create_pc({"iceServers": [], "bundlePolicy": "max-bundle"})
    return Soak(ChildEndpoint("ours", child), PageEndpoint(kind, pc), polite="ours")


@pytest.mark.parametrize("offerer", ["ours", "browser"])
async def test_restart_soak(
    soak_env: tuple[str, NetNs, str],
    soak_page: BrowserPage,
    ours_child: ChildFactory,
    soak_capture: Path | None,
    offerer: str,
) -> None:
    """20 restarts by either side and both at once: each completes, nothing lost."""
    soak = await make_soak(soak_env, soak_page, ours_child)
    try:
        await soak.connect(soak.a if offerer == "ours" else soak.b)
        await soak.start_pumps()
        await soak.run(SOAK_ORDER)
        await soak.stop_and_check()
        report = soak.report()
        log.info("%s soak, %s offered first:\n%s", soak_env[0], offerer, report)
        slow = [r for r in soak.results if r.latency > RESTART_BOUND]
        assert not slow, f"{len(slow)} restarts took over {RESTART_BOUND} s\n{report}"
        for result in soak.results:
            roles = sorted(str(role) for role in result.roles.values())
            assert roles == ["controlled", "controlling"], f"{result.describe()}\n{report}"
    finally:
        await soak.close()


async def test_audio_through_browser_restarts(
    soak_env: tuple[str, NetNs, str],
    soak_page: BrowserPage,
    ours_child: ChildFactory,
    soak_capture: Path | None,
) -> None:
    """Audio both ways keeps arriving on both sides after each restart the browser starts."""
    soak = await make_soak(soak_env, soak_page, ours_child)
    try:
        await soak.connect(soak.b, audio=True)
        await soak.start_pumps()
        for index in range(AUDIO_RESTARTS):
            await soak.restart("theirs", index)
            for side in (soak.a, soak.b):
                before = await side.inbound_audio_packets()
                await poll_until(
                    side.inbound_audio_packets,
                    at_least(before + AUDIO_PACKETS),
                    what=f"{side.name} receiving {AUDIO_PACKETS} more audio packets after "
                    f"restart #{index} (had {before})",
                )
            await soak.flowing()
        await soak.stop_and_check()
        log.info("%s audio:\n%s", soak_env[0], soak.report())
    finally:
        await soak.close()
