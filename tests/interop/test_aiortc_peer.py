"""Our RTCPeerConnection against aiortc's, both in the test namespace (loopback only).

aiortc gathers every interface but never offers 127.0.0.1, so inside the namespace it
offers 127.0.0.2 and we use 127.0.0.1: only loopback traffic, and the two peers never share
an address. aiortc never trickles: its descriptions carry all its candidates, and ours
carry every candidate gathered by the time setLocalDescription returns (host candidates
are gathered at once), so no candidate needs forwarding.

aiortc cannot restart ICE: it answers a restart offer with its old credentials (its ICE
transport starts once and ignores new remote credentials). RFC 8829 §5.10 makes that
answer an error ("If the current local description indicates an ICE restart, and either
the ICE ufrag or password has not changed from the previous remote description ...
generate an error"); webrtc-pc rejects invalid content with InvalidAccessError, and a
rejected description is not applied, so we stay in have-local-offer. Because we make
before we break, the old generation keeps carrying everything meanwhile; the
application rolls back and carries on. The tests pin exactly that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from unbroken import InvalidAccessError
from unbroken.sdp import ice_ufrags

from .netns import NetNs
from .peers import AiortcPeer, PeerChannel, UnbrokenPeer

pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

OUR_ADDRESS = "127.0.0.1"  # aiortc takes 127.0.0.2 (peers.PYTHON_PEER_ADDRESS)
TIMEOUT = 10.0
MESSAGES = 5
#: iceConnectionState values that would mean the restart attempt broke the connection.
BROKEN = {"checking", "disconnected", "failed", "closed"}


def ice_ufrag(sdp: str) -> str:
    """The one a=ice-ufrag of a bundled description."""
    found = ice_ufrags(sdp)
    assert len(found) == 1, f"expected one ufrag, got {found}"
    return found[0]


def candidate_addresses(sdp: str) -> set[str]:
    """The connection addresses of the a=candidate lines in an SDP."""
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}


@pytest_asyncio.fixture(loop_scope="module")
async def ours(in_netns: NetNs) -> AsyncIterator[UnbrokenPeer]:
    """Our RTCPeerConnection on 127.0.0.1, made inside the namespace."""
    peer = UnbrokenPeer(address=OUR_ADDRESS)
    try:
        yield peer
    finally:
        await peer.close()


@pytest_asyncio.fixture(loop_scope="module")
async def theirs(in_netns: NetNs) -> AsyncIterator[AiortcPeer]:
    """aiortc's RTCPeerConnection (iceServers=[]), made inside the namespace."""
    peer = AiortcPeer()
    try:
        yield peer
    finally:
        await peer.close()


async def connect(
    ours: UnbrokenPeer, theirs: AiortcPeer, offerer: str
) -> tuple[PeerChannel, PeerChannel]:
    """Negotiate a "chat" data channel; returns (our channel, aiortc's), both open."""
    if offerer == "unbroken":
        ours.create_data_channel("chat")
        offer = await ours.offer()
        assert candidate_addresses(offer["sdp"]) == {OUR_ADDRESS}
        answer = await theirs.answer(offer)
        assert candidate_addresses(answer["sdp"]) == {"127.0.0.2"}
        await ours.accept(answer)
    else:
        theirs.create_data_channel("chat")
        offer = await theirs.offer()
        assert candidate_addresses(offer["sdp"]) == {"127.0.0.2"}
        answer = await ours.answer(offer)
        assert candidate_addresses(answer["sdp"]) == {OUR_ADDRESS}
        await theirs.accept(answer)
    ours_chat = await ours.wait_channel("chat")
    theirs_chat = await theirs.wait_channel("chat")
    await ours.wait_until(
        lambda: ours.pc.connectionState == "connected", "connectionState connected"
    )
    return ours_chat, theirs_chat


async def exchange(ours_chat: PeerChannel, theirs_chat: PeerChannel, tag: str) -> None:
    """MESSAGES messages each way, which must all arrive in order."""
    ours_start, theirs_start = len(ours_chat.messages), len(theirs_chat.messages)
    for i in range(MESSAGES):
        ours_chat.send(f"{tag} unbroken {i}")
        theirs_chat.send(f"{tag} aiortc {i}")
    got_theirs = await theirs_chat.wait_messages(theirs_start + MESSAGES)
    got_ours = await ours_chat.wait_messages(ours_start + MESSAGES)
    assert got_theirs[theirs_start:] == [f"{tag} unbroken {i}" for i in range(MESSAGES)]
    assert got_ours[ours_start:] == [f"{tag} aiortc {i}" for i in range(MESSAGES)]


@pytest.mark.parametrize("offerer", ["unbroken", "aiortc"])
async def test_connect_and_exchange(ours: UnbrokenPeer, theirs: AiortcPeer, offerer: str) -> None:
    """Either side offers; the channel opens and messages flow both ways, in order."""
    ours_chat, theirs_chat = await connect(ours, theirs, offerer)
    await exchange(ours_chat, theirs_chat, "hello")
    assert ours.state_history("iceConnectionState")[:2] == ["checking", "connected"]
    assert ours.state_history("connectionState") == ["connecting", "connected"]
    assert theirs.pc.connectionState == "connected"
    assert ours_chat.channel.id == theirs_chat.channel.id


@pytest.mark.parametrize("offerer", ["unbroken", "aiortc"])
@pytest.mark.parametrize("how", ["restartIce", "iceRestart-offer"])
async def test_restart_against_aiortc_is_rejected_cleanly(
    ours: UnbrokenPeer, theirs: AiortcPeer, offerer: str, how: str
) -> None:
    """We restart; aiortc answers with its old credentials; we reject that answer at once
    (InvalidAccessError), keep the connection on the old generation, and roll back."""
    ours_chat, theirs_chat = await connect(ours, theirs, offerer)
    await exchange(ours_chat, theirs_chat, "before")
    old_local = ice_ufrag(ours.local()["sdp"])
    remote = ours.pc.currentRemoteDescription
    assert remote is not None
    old_remote = ice_ufrag(remote.sdp)
    mark = len(ours.history)
    needed = ours.negotiation_needed

    if how == "restartIce":
        ours.pc.restartIce()
        await ours.wait_negotiation_needed(needed + 1)
        offer = await ours.offer()
    else:
        offer = await ours.offer(ice_restart=True)
    assert ice_ufrag(offer["sdp"]) != old_local
    answer = await asyncio.wait_for(theirs.answer(offer), TIMEOUT)
    assert ice_ufrag(answer["sdp"]) == old_remote  # aiortc cannot restart

    with pytest.raises(InvalidAccessError, match="ICE restart offer must carry new ice-ufrag"):
        await asyncio.wait_for(ours.accept(answer), TIMEOUT)
    # Not applied: still waiting for an answer, the current descriptions unchanged.
    assert ours.pc.signalingState == "have-local-offer"
    current_local, current_remote = (
        ours.pc.currentLocalDescription,
        ours.pc.currentRemoteDescription,
    )
    assert current_local is not None and current_remote is not None
    assert (ice_ufrag(current_local.sdp), ice_ufrag(current_remote.sdp)) == (old_local, old_remote)
    # Make before break: the old generation carries on while the new one cannot connect.
    await exchange(ours_chat, theirs_chat, "rejected")

    await ours.pc.setLocalDescription({"type": "rollback"})
    assert ours.pc.signalingState == "stable"
    assert ice_ufrag(ours.local()["sdp"]) == old_local
    await exchange(ours_chat, theirs_chat, "rolled back")
    if how == "restartIce":
        # webrtc-pc: rollback keeps [[LocalIceCredentialsToReplace]], so the restart is
        # still wanted and negotiationneeded fires again.
        await ours.wait_negotiation_needed(needed + 2)
    else:
        assert ours.negotiation_needed == needed

    assert not BROKEN & set(ours.state_history("iceConnectionState")[mark:]), ours.history[mark:]
    assert ours.pc.iceConnectionState in ("connected", "completed")
    assert ours.pc.connectionState == "connected"
    assert theirs.pc.connectionState == "connected"
    assert [s for p, s in ours.history[mark:] if p == "signalingState"] == [
        "have-local-offer",
        "stable",
    ]
