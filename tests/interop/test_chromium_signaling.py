"""Headless Chromium and our peer connection through the signaling server, both sides
using perfect negotiation (the browser with the served /client.js, ours with
PerfectNegotiator). A data channel carries numbered messages that the page echoes back;
a restart from each side renegotiates by itself and every echo arrives once, in order.
The server only admits the harness page's origin (a real browser's Origin header)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiortc import RTCDataChannel

from unbroken import RTCConfiguration, RTCPeerConnection
from unbroken.sdp import ice_ufrags
from unbroken.signaling import PerfectNegotiator, ServerConfig, SignalingClient, SignalingServer

from .browser import BrowserPage, Changes, Chromium
from .netns import NetNs
from .peers import PYTHON_PEER_ADDRESS

pytestmark = [pytest.mark.browser, pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

TIMEOUT = 15.0
MARGIN = 20

PAGE_SETUP = """
await new Promise((resolve, reject) => {
  const script = document.createElement("script");
  script.src = arg.base + "/client.js";
  script.onload = resolve;
  script.onerror = () => reject(new Error("client.js did not load"));
  document.head.appendChild(script);
});
const { SignalingClient, PerfectNegotiator } = UnbrokenSignaling;
const client = new SignalingClient(arg.ws, "browser", { peer: "chromium" });
await client.connect();
const pc = new RTCPeerConnection({ iceServers: [] });
const negotiator = new PerfectNegotiator(pc, client);
window.sig = { client, pc, negotiator, echoed: 0 };
pc.ondatachannel = (event) => {
  const channel = event.channel;
  channel.onmessage = (m) => { channel.send("echo:" + m.data); window.sig.echoed++; };
};
return client.peerId;
"""


def ufrag(sdp: str) -> str:
    return ice_ufrags(sdp)[0]


@pytest_asyncio.fixture(loop_scope="module")
async def server(chromium: Chromium, in_netns: NetNs) -> AsyncIterator[SignalingServer]:
    """The signaling server, listening inside the namespace, admitting the harness origin."""
    origin = f"http://{chromium.host}:{chromium.port}"
    s = SignalingServer(ServerConfig(allowed_origins=frozenset({origin})))
    await s.start("127.0.0.1", 0)
    yield s
    await s.close()


async def test_chromium_perfect_negotiation_and_restarts(
    page: BrowserPage, server: SignalingServer
) -> None:
    base = server.url.replace("ws://", "http://").removesuffix("/ws")
    assert await page.evaluate(PAGE_SETUP, {"base": base, "ws": server.url}) == "chromium"

    pc = RTCPeerConnection(RTCConfiguration(hostAddresses=[PYTHON_PEER_ADDRESS]))
    client = SignalingClient(server.url, "browser", peer="python")
    await client.connect()
    negotiator = PerfectNegotiator(pc, client)
    assert negotiator.polite  # "python" sorts after "chromium"
    changes = Changes()
    echoes: list[str] = []
    for event in ("signalingstatechange", "iceconnectionstatechange"):
        pc.on(event, changes.notify)
    channel: RTCDataChannel = pc.createDataChannel("echo")
    channel.on("open", changes.notify)

    @channel.on("message")
    def on_message(message: str) -> None:
        echoes.append(message)
        changes.notify()

    await changes.wait_for(lambda: channel.readyState == "open", TIMEOUT)
    sent = 0

    async def traffic() -> None:
        nonlocal sent
        while True:
            channel.send(str(sent))
            sent += 1
            await asyncio.sleep(0.01)  # pacing, not synchronisation

    async def more(count: int) -> None:
        want = len(echoes) + count
        await changes.wait_for(lambda: len(echoes) >= want, TIMEOUT)

    def ufrags() -> tuple[str, str]:
        assert pc.currentLocalDescription is not None and pc.currentRemoteDescription is not None
        return ufrag(pc.currentLocalDescription.sdp), ufrag(pc.currentRemoteDescription.sdp)

    sender = asyncio.create_task(traffic())
    try:
        await more(MARGIN)
        for side in ("python", "chromium", "python", "chromium"):
            before = ufrags()
            if side == "python":
                pc.restartIce()
            else:
                await page.evaluate("window.sig.pc.restartIce();")
            await changes.wait_for(
                lambda before=before: (
                    pc.signalingState == "stable"
                    and all(now != old for now, old in zip(ufrags(), before))
                ),
                TIMEOUT,
            )
            await more(MARGIN)
    finally:
        sender.cancel()
    await changes.wait_for(lambda: len(echoes) >= sent, TIMEOUT)
    assert echoes == [f"echo:{i}" for i in range(sent)]
    counters = await page.evaluate(
        "const n = window.sig.negotiator; return [n.offers, n.answers, n.errors, window.sig.pc.signalingState];"
    )
    assert counters[0] == 2 and counters[1] == 3 and counters[2] == 0 and counters[3] == "stable"
    assert negotiator.errors == 0 and negotiator.offers == 3 and negotiator.answers == 2
    await negotiator.close()
    await client.close()
    await pc.close()
    await page.evaluate("window.sig.client.close(); window.sig.pc.close();")


async def test_origin_not_on_the_list_is_refused(page: BrowserPage, in_netns: NetNs) -> None:
    """Chromium's real Origin header (the harness page's) is not on this server's list."""
    strict = SignalingServer(ServerConfig(allowed_origins=frozenset({"https://app.example"})))
    await strict.start("127.0.0.1", 0)
    try:
        result = await page.evaluate(
            """
            const ws = new WebSocket(arg);
            return await new Promise((resolve) => {
              ws.onopen = () => resolve("open");
              ws.onerror = () => resolve("refused");
            });
            """,
            strict.url,
        )
        assert result == "refused"
        assert strict.counters["refused-origin"] == 1
    finally:
        await strict.close()
