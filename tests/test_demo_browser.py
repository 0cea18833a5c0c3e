"""`unbroken demo` driven by headless Chromium: connect, break the Python side, heal.

The demo runs as a subprocess (`python -m unbroken.cli demo --port 0`) inside a network
namespace this test made, and Chromium opens its page in the same namespace. With
`--fault netns` the demo makes its own namespace for the Python peer, joined to the
test's by a veth pair (every address lives in a namespace the test or the demo made);
with `--fault process` the path is dropped inside the demo's process. The page reports
its state to the demo, and the test reads it from `/api/state`: the page connects,
a break is made through `/api/break`, both sides' counters keep rising, nothing is lost
or reordered, and the healing is recorded. A screenshot of the page after healing is
taken over the DevTools protocol and saved to .artifacts/demo/ (and the test's tmp dir).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from interop.browser import CHROMIUM_FLAGS, REAPER, chromium_executable, chromium_missing
from interop.netns import NetNs, netns_available
from prereq import require

pytestmark = [pytest.mark.browser, pytest.mark.netns]

ARTIFACTS = Path(__file__).resolve().parent.parent / ".artifacts" / "demo"
TIMEOUT = 20.0
BREAKS = {"netns": ("handover", "outage"), "process": ("drop",)}


async def wait_for(read: Callable[[], Awaitable[Any]], ok: Callable[..., bool], what: str) -> Any:
    """Read the demo's state until `ok` holds: a condition wait with a deadline."""
    deadline = time.monotonic() + TIMEOUT
    value = None
    while time.monotonic() < deadline:
        value = await read()
        if ok(value):
            return value
        await asyncio.sleep(0.1)  # polling interval of an HTTP endpoint with no push
    raise AssertionError(f"timed out waiting for {what}; last state: {value!r}")


async def read_until(stream: asyncio.StreamReader, pattern: str, lines: list[str]) -> re.Match[str]:
    """Read the demo's output until a line matches `pattern`."""

    async def loop() -> re.Match[str]:
        while True:
            raw = await stream.readline()
            if not raw:
                raise AssertionError("the demo exited:\n" + "\n".join(lines))
            lines.append(raw.decode().rstrip())
            found = re.search(pattern, lines[-1])
            if found:
                return found

    return await asyncio.wait_for(loop(), TIMEOUT)


async def screenshot(session: aiohttp.ClientSession, profile: str, path: Path) -> None:
    """Capture the page over the DevTools protocol (Page.captureScreenshot)."""
    port_file = Path(profile) / "DevToolsActivePort"

    async def port() -> str | None:
        return port_file.read_text().split()[0] if port_file.exists() else None

    devtools = await wait_for(port, lambda p: p is not None, "DevToolsActivePort")
    async with session.get(f"http://127.0.0.1:{devtools}/json/list") as res:
        targets = await res.json()
    target = next(t for t in targets if t["type"] == "page")
    async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
        await ws.send_json(
            {"id": 1, "method": "Page.captureScreenshot", "params": {"format": "png"}}
        )
        reply = await asyncio.wait_for(ws.receive_json(), TIMEOUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(reply["result"]["data"]))


@pytest.mark.parametrize("fault", ["netns", "process"])
async def test_browser_demo_heals(fault: str, tmp_path: Path) -> None:
    require(netns_available())
    require(chromium_missing())
    ns = NetNs.create(prefix="ubt")
    profile = tempfile.mkdtemp(prefix="unbroken-chromium-demo-")
    lines: list[str] = []
    demo = await asyncio.create_subprocess_exec(
        *ns.exec_prefix(), sys.executable, "-m", "unbroken.cli", "demo",
        "--port", "0", "--fault", fault,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    browser: asyncio.subprocess.Process | None = None
    demo_ns: str | None = None
    try:
        assert demo.stdout is not None
        if fault == "netns":
            demo_ns = (await read_until(demo.stdout, r"namespace (ubdemo-\S+)", lines)).group(1)
        url = (await read_until(demo.stdout, r"open (http://127\.0\.0\.1:\d+/)", lines)).group(1)
        drain = asyncio.create_task(read_until(demo.stdout, r"^\0never", lines))
        browser = await asyncio.create_subprocess_exec(
            *ns.exec_prefix(), sys.executable, str(REAPER), str(chromium_executable()),
            *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--window-size=1280,1300", url,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        with ns.entered():
            async with aiohttp.ClientSession() as session:

                async def state() -> dict[str, Any]:
                    async with session.get(url + "api/state") as res:
                        return dict(await res.json())

                def flowing(s: dict[str, Any], at_least: tuple[int, int]) -> bool:
                    py, page = s.get("python") or {}, s.get("browser") or {}
                    return cast(
                        bool,
                        py.get("received", 0) >= at_least[0]
                        and page.get("received", 0) >= at_least[1],
                    )

                s = await wait_for(state, lambda s: flowing(s, (10, 10)), "the page connected")
                assert s["browser"]["channel"] == "open"
                assert s["python"]["connectionState"] == "connected"
                for number, kind in enumerate(BREAKS[fault], 1):
                    async with session.post(url + "api/break", json={"kind": kind}) as res:
                        assert res.status == 200, await res.text()
                    s = await wait_for(
                        state,
                        lambda s, n=number: (
                            len(s["breaks"]) == n
                            and s["breaks"][-1]["healedMs"] is not None
                            # After an outage the old pair may carry data again before the
                            # restart's new generation is selected: wait for both.
                            and s["breaks"][-1]["recoveryHealedMs"] is not None
                        ),
                        f"healing after {kind}",
                    )
                    healed = s["breaks"][-1]
                    assert healed["recoveryHealedMs"] is not None, healed
                    # The counters keep rising after the healing, both ways.
                    counts = (s["python"]["received"] + 20, s["browser"]["received"] + 20)
                    s = await wait_for(
                        state, lambda s, c=counts: flowing(s, c), "traffic after healing"
                    )
                assert s["python"]["outOfOrder"] == 0 and s["browser"]["outOfOrder"] == 0, s
                assert s["python"]["restarts"] >= len(BREAKS[fault])
                whats = [e["what"] for e in s["timeline"]]
                assert any("recovery: healed" in w for w in whats), whats
                assert any(
                    w.startswith("ice ")
                    for e, w in zip(s["timeline"], whats)
                    if e["who"] == "browser"
                )
                # The page renders the state each report brings back: it shows the healing.
                png = tmp_path / f"demo-{fault}.png"
                await screenshot(session, profile, png)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shutil.copy(png, ARTIFACTS / png.name)
                assert png.stat().st_size > 10_000
        drain.cancel()
    finally:
        if browser is not None and browser.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(browser.pid, signal.SIGTERM)
            await asyncio.wait_for(browser.wait(), 15)
        if demo.returncode is None:
            demo.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(demo.wait(), 15)
        shutil.rmtree(profile, ignore_errors=True)
        ns.delete()
    assert code == 0, "\n".join(lines)
    if demo_ns is not None:  # the demo removed its namespace on exit
        names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert demo_ns not in names
