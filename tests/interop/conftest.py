"""Fixtures for browser interop tests: a namespace, Chromium in it, and Python peers.

Scopes: one namespace and one Chromium per test module (launching takes about a
second), a fresh page per test (`Chromium.new_page`, a few tens of ms). Test modules
here must therefore run on the module's event loop:

    pytestmark = [pytest.mark.browser, pytest.mark.netns,
                  pytest.mark.asyncio(loop_scope="module")]

Prerequisites (root, `ip`, Chromium) skip the tests outside CI and fail them under
CI=true, so a CI machine without Chromium cannot pass by skipping everything.

The Python side of every test comes from the `python_peer` factory fixture,
parametrized by implementation name ("aiortc" and "unbroken"):
add an entry to peers.PYTHON_PEERS.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Generator, Iterator

import pytest
import pytest_asyncio

from .browser import BrowserPage, Chromium, chromium_missing, launch_chromium
from .netns import NetNs, netns_available
from .peers import PYTHON_PEER_ADDRESS, PYTHON_PEERS, PythonPeer

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

PAGE_KEY = pytest.StashKey[BrowserPage]()


def require(reason: str | None) -> None:
    """Skip (or, under CI=true, fail) the test when a prerequisite is missing."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"interop prerequisite missing (CI=true, so this fails): {reason}", False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def interop_netns() -> Iterator[NetNs]:
    """A namespace with only `lo` up (127.0.0.1 and 127.0.0.2), deleted afterwards."""
    require(netns_available())
    ns = NetNs.create(prefix="ubt", extra_addresses=(f"{PYTHON_PEER_ADDRESS}/8",))
    try:
        yield ns
    finally:
        ns.delete()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium(interop_netns: NetNs) -> AsyncIterator[Chromium]:
    """Headless Chromium running in the module's namespace."""
    require(chromium_missing())
    async with launch_chromium(interop_netns) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def page(chromium: Chromium, request: pytest.FixtureRequest) -> AsyncIterator[BrowserPage]:
    """A fresh harness page; its console and Chromium's stderr are shown if the test fails.

    Uncaught errors in the page fail the test at teardown (clear `page.errors` if a test
    provokes them on purpose).
    """
    fresh = await chromium.new_page()
    request.node.stash[PAGE_KEY] = fresh
    yield fresh
    if fresh.errors:
        text = "\n".join(e.text for e in fresh.errors)
        pytest.fail(f"uncaught errors in the harness page:\n{text}", False)


@pytest.fixture
def in_netns(interop_netns: NetNs) -> Iterator[NetNs]:
    """Run the test's thread (and so its event loop) inside the namespace.

    Every socket the test creates (the Python peer's UDP sockets) is then in the
    namespace. pytest-asyncio runs the event loop in this same (main) thread.
    """
    with interop_netns.entered():
        yield interop_netns


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the page's console and Chromium's stderr to a failing test's report."""
    report = yield
    browser_page = item.stash.get(PAGE_KEY, None)
    if browser_page is not None and report.failed:
        report.sections.append((f"chromium page ({call.when})", browser_page.diagnostics(100)))
    return report


@pytest_asyncio.fixture(loop_scope="module", params=sorted(PYTHON_PEERS))
async def python_peer(
    request: pytest.FixtureRequest, in_netns: NetNs
) -> AsyncIterator[Callable[[], PythonPeer]]:
    """A factory of Python peers of one implementation, created inside the namespace."""
    make = PYTHON_PEERS[request.param]
    made: list[PythonPeer] = []

    def factory() -> PythonPeer:
        peer = make()
        made.append(peer)
        return peer

    yield factory
    for peer in made:
        await peer.close()
