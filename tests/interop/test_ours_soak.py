"""The restart soak between two of ours, each in its own process.

The same soak as test_browser_soak.py (20 restarts: A, B, A, A, B, B, both at once, then
alternating; a numbered message every 10 ms each way on a reliable ordered channel;
perfect negotiation with B polite), with our RTCPeerConnection on both sides, each in a
child process (ours_process.py) in a namespace with only `lo` (A on 127.0.0.1, B on
127.0.0.2). Asserted: every restart completes within 1 s (a correctness bound) with
both sides' getStats() on the new generation and complementary roles; every message
arrives exactly once, in order.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator

import pytest

from .conftest import require
from .netns import NetNs, netns_available
from .ours_process import OursProcess
from .soak import SOAK_ORDER, ChildEndpoint, Soak

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

log = logging.getLogger(__name__)

RESTART_BOUND = 1.0


@pytest.fixture(scope="module")
def lo_netns() -> Iterator[NetNs]:
    """A namespace with only `lo` (127.0.0.1 and 127.0.0.2)."""
    require(netns_available())
    ns = NetNs.create(prefix="ubt", extra_addresses=("127.0.0.2/8",))
    try:
        yield ns
    finally:
        ns.delete()


@pytest.mark.parametrize("offerer", ["A", "B"])
async def test_restart_soak_ours_with_ours(
    lo_netns: NetNs,
    ours_child: Callable[[NetNs, str, str], Awaitable[OursProcess]],
    offerer: str,
) -> None:
    """20 restarts between two of ours in separate processes: each completes, nothing lost."""
    a = ChildEndpoint("A", await ours_child(lo_netns, "A", "127.0.0.1"))
    b = ChildEndpoint("B", await ours_child(lo_netns, "B", "127.0.0.2"))
    soak = Soak(a, b, polite="B")
    try:
        await soak.connect(a if offerer == "A" else b)
        await soak.start_pumps()
        await soak.run(SOAK_ORDER)
        await soak.stop_and_check()
        report = soak.report()
        log.info("ours with ours, %s offered first:\n%s", offerer, report)
        slow = [r for r in soak.results if r.latency > RESTART_BOUND]
        assert not slow, f"{len(slow)} restarts took over {RESTART_BOUND} s\n{report}"
        for result in soak.results:
            roles = sorted(str(role) for role in result.roles.values())
            assert roles == ["controlled", "controlling"], f"{result.describe()}\n{report}"
    finally:
        await soak.close()
