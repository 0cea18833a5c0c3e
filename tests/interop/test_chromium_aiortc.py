"""Chromium against the Python peer (aiortc today), each way round, in a namespace.

These prove the harness: a data channel opens and messages flow both ways whichever
side offers, trickled Chromium candidates reach the Python peer, media from Python
shows up in Chromium's inbound-rtp stats, and a Chromium-to-Chromium ICE restart
driven step by step from Python gets new credentials and keeps the channel working.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

import pytest

from unbroken.sdp import ice_ufrags

from .browser import BrowserPage, BrowserPeerConnection, poll_until
from .netns import NetNs
from .peers import PYTHON_PEER_ADDRESS, PythonPeer

pytestmark = [
    pytest.mark.browser,
    pytest.mark.netns,
    pytest.mark.asyncio(loop_scope="module"),
]

MESSAGES = 5
SIOCGSKNS = 0x894C  # linux/sockios.h: get a socket's network namespace as an fd


def ufrag_set(sdp: str) -> set[str]:
    """The a=ice-ufrag values in an SDP, as a set."""
    return set(ice_ufrags(sdp))


def candidate_addresses(sdp: str) -> set[str]:
    """The connection addresses of the a=candidate lines in an SDP."""
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def socket_netns_inode(sock: socket.socket) -> int:
    """The inode of the network namespace a socket belongs to (ioctl SIOCGSKNS)."""
    fd = fcntl.ioctl(sock.fileno(), SIOCGSKNS)
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


async def forward_candidates(pc: BrowserPeerConnection, peer: PythonPeer) -> int:
    """Hand Chromium's trickled candidates to the Python peer up to end-of-candidates."""
    count = 0
    while True:
        candidate = await pc.next_candidate()
        await peer.add_ice_candidate(candidate)
        if candidate is None:
            return count
        count += 1


async def exchange(pc: BrowserPeerConnection, peer: PythonPeer) -> None:
    """Open the "chat" channel on both sides and pass messages both ways, in order."""
    browser_chat = await pc.wait_channel("chat")
    python_chat = await peer.wait_channel("chat")
    for i in range(MESSAGES):
        await browser_chat.send(f"from chromium {i}")
        python_chat.send(f"from python {i}")
    python_chat.send(b"\x00\x01binary")
    got_python = await python_chat.wait_messages(MESSAGES)
    got_browser = await browser_chat.wait_messages(MESSAGES + 1)
    assert got_python == [f"from chromium {i}" for i in range(MESSAGES)]
    assert got_browser == [f"from python {i}" for i in range(MESSAGES)] + [b"\x00\x01binary"]
    await pc.wait_for_state("connectionState", "connected")
    assert pc.state_history("iceConnectionState")[:2] == ["checking", "connected"]


async def test_sockets_made_inside_stay_inside(interop_netns: NetNs) -> None:
    """While the thread is inside, asyncio sockets are made there and stay after leaving."""
    outside = os.stat("/proc/thread-self/ns/net").st_ino
    inside = os.stat(interop_netns.path).st_ino
    assert inside != outside
    loop = asyncio.get_running_loop()
    with interop_netns.entered():
        assert os.stat("/proc/thread-self/ns/net").st_ino == inside
        with interop_netns.entered():  # nesting restores what it found
            pass
        assert os.stat("/proc/thread-self/ns/net").st_ino == inside
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(PYTHON_PEER_ADDRESS, 0)
        )
    try:
        assert os.stat("/proc/thread-self/ns/net").st_ino == outside
        assert socket_netns_inode(transport.get_extra_info("socket")) == inside
    finally:
        transport.close()


async def test_chromium_offers_python_answers(
    page: BrowserPage, python_peer: Callable[[], PythonPeer]
) -> None:
    """Chromium offers without candidates and trickles them; the Python peer answers."""
    peer = python_peer()
    pc = await page.create_pc()
    await pc.create_data_channel("chat")
    offer = await pc.set_local_description(await pc.create_offer())
    assert "a=candidate" not in offer["sdp"]  # everything else arrives by trickle

    answer = await peer.answer(offer)
    assert candidate_addresses(answer["sdp"]) == {PYTHON_PEER_ADDRESS}  # lo only, in the netns
    await pc.set_remote_description(answer)
    assert await forward_candidates(pc, peer) >= 1
    trickled = [c["candidate"].split()[4] for c in pc.gathered if c]
    assert all(map(is_loopback, trickled)), trickled  # Chromium is in the netns too

    await exchange(pc, peer)
    pair = await pc.selected_pair()
    assert pair is not None and pair["remote"]["address"] == PYTHON_PEER_ADDRESS


async def test_python_offers_chromium_answers(
    page: BrowserPage, python_peer: Callable[[], PythonPeer]
) -> None:
    """The Python peer offers a data channel; Chromium answers and trickles."""
    peer = python_peer()
    peer.create_data_channel("chat")
    offer = await peer.offer()
    assert candidate_addresses(offer["sdp"]) == {PYTHON_PEER_ADDRESS}  # lo only, in the netns

    pc = await page.create_pc()
    await pc.set_remote_description(offer)
    answer = await pc.set_local_description()  # implicit: createAnswer
    assert answer["type"] == "answer"
    await peer.accept(answer)
    await forward_candidates(pc, peer)

    await exchange(pc, peer)
    assert pc.channel("chat").origin == "remote"


async def test_python_audio_reaches_chromium(
    page: BrowserPage, python_peer: Callable[[], PythonPeer]
) -> None:
    """An audio track from Python fires ontrack and counts inbound-rtp packets in Chromium."""
    peer = python_peer()
    peer.add_audio_track()
    offer = await peer.offer()

    pc = await page.create_pc()
    await pc.set_remote_description(offer)
    await peer.accept(await pc.set_local_description())
    await forward_candidates(pc, peer)

    track = await pc.wait_track("audio")
    assert track["mid"] is not None
    assert await pc.wait_inbound_packets("audio", 10) >= 10


async def test_chromium_to_chromium_ice_restart(page: BrowserPage) -> None:
    """restartIce() step by step: negotiationneeded, new credentials, channel survives.

    Both ends are in the page and Python relays the signalling: this checks the restart
    half of the harness before there is a Python peer that can restart.
    """
    a = await page.create_pc()
    b = await page.create_pc()

    async def relay(src: BrowserPeerConnection, dst: BrowserPeerConnection) -> None:
        while (candidate := await src.next_candidate()) is not None:
            await dst.add_ice_candidate(candidate)
        await dst.add_ice_candidate(None)

    chat = await a.create_data_channel("chat")
    await a.wait_negotiation_needed(1)
    await b.set_remote_description(await a.set_local_description())
    await a.set_remote_description(await b.set_local_description())
    await asyncio.gather(relay(a, b), relay(b, a))
    await chat.wait_open()
    remote = await b.wait_channel("chat")
    first = await a.current_local_description()
    assert first is not None
    old_ufrags = ufrag_set(first["sdp"])

    await a.restart_ice()
    await a.wait_negotiation_needed(2)
    start = len(a.gathered)
    restart = await a.set_local_description()
    new_ufrags = ufrag_set(restart["sdp"])
    assert new_ufrags and new_ufrags.isdisjoint(old_ufrags)
    await b.set_remote_description(restart)
    await a.set_remote_description(await b.set_local_description())
    await asyncio.gather(relay(a, b), relay(b, a))

    trickled = [c for c in a.gathered[start:] if c is not None]
    assert trickled, "no candidate was trickled after the restart"
    for candidate in trickled:
        assert candidate["usernameFragment"] in new_ufrags
        assert " generation 1 " in candidate["candidate"]

    def on_new_generation(pair: dict[str, Any] | None) -> bool:
        return bool(pair and pair["local"]["usernameFragment"] in new_ufrags)

    await poll_until(a.selected_pair, on_new_generation, what="a pair of the new generation")
    await chat.send("after restart")
    assert await remote.wait_messages(1) == ["after restart"]
    assert a.last_state("iceConnectionState") in ("connected", "completed")
    assert "failed" not in a.state_history("iceConnectionState")
    current = await a.current_local_description()
    assert current is not None and ufrag_set(current["sdp"]) == new_ufrags
