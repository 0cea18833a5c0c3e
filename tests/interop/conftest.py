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

Restart soaks (test_*_soak.py) use their own module-scoped fixtures, parametrized by
browser kind: `soak_env` (a namespace per browser: lo only for Chromium, plus a veth
pair with a default route for Firefox), `soak_browser`, `soak_page`, and `ours_child`, a
factory of our peer connections each in its own process (ours_process.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from prereq import require as require  # re-exported: the interop tests import it from here

from .browser import (
    Browser,
    BrowserPage,
    Chromium,
    add_default_route,
    browser_missing,
    chromium_missing,
    launch_browser,
    launch_chromium,
)
from .netns import NetNs, netns_available
from .ours_process import OursProcess
from .peers import PYTHON_PEER_ADDRESS, PYTHON_PEERS, PythonPeer

PAGE_KEY = pytest.StashKey[BrowserPage]()


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
        kind = browser_page.browser.kind
        report.sections.append((f"{kind} page ({call.when})", browser_page.diagnostics(100)))
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


# ----------------------------------------------------------------- restart soaks

#: Browsers the soaks run against, one namespace and one browser process each.
SOAK_BROWSERS = ("chromium", "firefox")

#: Chromium's fake capture devices, for getUserMedia in the audio soak (Firefox's come
#: from its media.navigator.streams.fake pref).
SOAK_CHROMIUM_FLAGS = ("--use-fake-device-for-media-stream",)


@pytest.fixture(scope="module", params=SOAK_BROWSERS)
def soak_env(request: pytest.FixtureRequest) -> Iterator[tuple[str, NetNs, str]]:
    """(browser kind, its namespace, the address our peers use there).

    Chromium gathers 127.0.0.1 in a namespace with only `lo`; ours uses 127.0.0.2.
    Firefox gathers only on an interface with a default route: the namespace gets a veth
    pair (10.203.0.1 and .2, default route via .2, all inside it) and ours uses 10.203.0.1.
    """
    kind: str = request.param
    require(netns_available())
    require(browser_missing(kind))
    ns = NetNs.create(prefix="ubt", extra_addresses=(f"{PYTHON_PEER_ADDRESS}/8",))
    try:
        address = add_default_route(ns) if kind == "firefox" else PYTHON_PEER_ADDRESS
        yield kind, ns, address
    finally:
        ns.delete()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def soak_browser(soak_env: tuple[str, NetNs, str]) -> AsyncIterator[Browser]:
    """The soak's browser, in its namespace, for the whole module."""
    kind, ns, _ = soak_env
    flags = SOAK_CHROMIUM_FLAGS if kind == "chromium" else ()
    async with launch_browser(kind, ns, extra_flags=flags) as browser:
        yield browser


@pytest_asyncio.fixture(loop_scope="module")
async def soak_page(
    soak_browser: Browser, request: pytest.FixtureRequest
) -> AsyncIterator[BrowserPage]:
    """A fresh harness page in the soak's browser (diagnostics shown on failure)."""
    fresh = await soak_browser.new_page()
    request.node.stash[PAGE_KEY] = fresh
    yield fresh
    if fresh.errors:
        text = "\n".join(e.text for e in fresh.errors)
        pytest.fail(f"uncaught errors in the harness page:\n{text}", False)


@pytest_asyncio.fixture(loop_scope="module")
async def ours_child(
    tmp_path: Path,
) -> AsyncIterator[Callable[[NetNs, str, str], Awaitable[OursProcess]]]:
    """A factory of our peer connections, each in its own process in a namespace.

    `await ours_child(ns, name, address)`; each child's DEBUG log (unbroken.ice) is written
    to tmp_path/NAME.log, and its tail is part of every soak failure.
    """
    made: list[OursProcess] = []

    async def start(ns: NetNs, name: str, address: str) -> OursProcess:
        child = OursProcess(name, tmp_path / f"{name}.log")
        made.append(child)
        await child.start(ns.exec_prefix(), address)
        return child

    yield start
    for child in made:
        await child.close()


@contextlib.contextmanager
def capture(ns: NetNs, name: str) -> Iterator[Path | None]:
    """Capture UDP in `ns` to $UNBROKEN_CAPTURE_DIR/NAME.pcap when that variable is set.

    For diagnosing a failing soak (tcpdump must be installed); a no-op otherwise.
    """
    directory = os.environ.get("UNBROKEN_CAPTURE_DIR")
    if not directory or shutil.which("tcpdump") is None:
        yield None
        return
    path = Path(directory) / (re.sub(r"[^\w.-]+", "_", name) + ".pcap")
    path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [*ns.exec_prefix(), "tcpdump", "-i", "any", "-U", "-s", "0", "-w", str(path), "udp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def soak_capture(
    soak_env: tuple[str, NetNs, str], request: pytest.FixtureRequest
) -> Iterator[Path | None]:
    """A packet capture of the soak's namespace for the test (see `capture`)."""
    with capture(soak_env[1], request.node.name) as path:
        yield path
