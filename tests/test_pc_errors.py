"""Bad input and API misuse: W3C error types with clear messages; the connection stays usable."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pc_helpers import make_pc, negotiate, trickle
from unbroken import (
    InvalidAccessError,
    InvalidStateError,
    OperationError,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCSessionDescription,
)

FIXTURES = Path(__file__).parent / "data" / "sdp"


class Connected:
    def __init__(self) -> None:
        self.a, self.b = make_pc(), make_pc()
        self.got: list[str] = []
        self._got = asyncio.Event()

    async def start(self) -> None:
        trickle(self.a, self.b)
        self.channel = self.a.createDataChannel("chat")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)

        def on_channel(channel: object) -> None:
            channel.on("message", self._record)  # type: ignore[attr-defined]

        self.b.on("datachannel", on_channel)
        await negotiate(self.a, self.b)
        await asyncio.wait_for(opened.wait(), 5)

    def _record(self, message: str) -> None:
        self.got.append(message)
        self._got.set()

    async def still_works(self) -> None:
        """A message still goes a -> b."""
        expected = f"ping{len(self.got)}"
        self.channel.send(expected)

        async def wait() -> None:
            while expected not in self.got:
                self._got.clear()
                await self._got.wait()

        await asyncio.wait_for(wait(), 5)


@pytest.fixture
async def conn() -> AsyncIterator[Connected]:
    c = Connected()
    await c.start()
    yield c
    await c.a.close()
    await c.b.close()


def without_lines(sdp: str, prefix: str) -> str:
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith(prefix)) + "\r\n"


async def offer_from(pc: RTCPeerConnection) -> str:
    return (await pc.createOffer(iceRestart=True)).sdp


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda s: without_lines(s, "a=ice-ufrag"), InvalidAccessError, "ice-ufrag"),
        (lambda s: without_lines(s, "a=fingerprint"), InvalidAccessError, "fingerprint"),
        (lambda s: "garbage\r\n" + s, OperationError, "parse"),
        (lambda s: s.replace("m=application 9", "m=application port"), OperationError, "parse"),
        (lambda s: re.sub(r"a=ice-pwd:\S+", "a=ice-pwd:short", s), OperationError, "ice-pwd"),
        (lambda s: s.replace("a=ice-ufrag:", "a=ice-ufrag:ü"), OperationError, "ice-ufrag"),
        (lambda s: s.replace("a=setup:actpass", "a=setup:sideways"), OperationError, "setup"),
        (
            lambda s: s.replace("a=sctp-port:5000", "a=sctp-port:99999999999"),
            OperationError,
            "sctp-port",
        ),
        (lambda s: "", OperationError, "parse"),
    ],
)
async def test_malformed_remote_offer_is_rejected_and_changes_nothing(
    conn: Connected, mutate: object, error: type[Exception], message: str
) -> None:
    sdp = await offer_from(conn.a)
    before = conn.b.remoteDescription
    with pytest.raises(error, match=message):
        await conn.b.setRemoteDescription(RTCSessionDescription(mutate(sdp), "offer"))  # type: ignore[operator]
    assert conn.b.signalingState == "stable"
    assert conn.b.remoteDescription is not None and before is not None
    assert conn.b.remoteDescription.sdp == before.sdp
    await conn.still_works()


async def test_answer_in_stable_is_invalid_state(conn: Connected) -> None:
    answer = conn.b.currentLocalDescription
    assert answer is not None
    with pytest.raises(InvalidStateError, match="stable"):
        await conn.a.setRemoteDescription(answer)
    with pytest.raises(InvalidStateError):
        await conn.a.createAnswer()
    await conn.still_works()


async def test_add_ice_candidate_before_remote_description() -> None:
    pc = make_pc()
    with pytest.raises(InvalidStateError, match="remote description"):
        await pc.addIceCandidate(
            {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}
        )
    await pc.close()


async def test_add_ice_candidate_errors(conn: Connected) -> None:
    line = "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host"
    with pytest.raises(OperationError, match="mid"):
        await conn.a.addIceCandidate({"candidate": line, "sdpMid": "nope"})
    with pytest.raises(OperationError, match="sdpMLineIndex"):
        await conn.a.addIceCandidate({"candidate": line, "sdpMLineIndex": 7})
    with pytest.raises(TypeError):
        await conn.a.addIceCandidate({"candidate": line})
    with pytest.raises(TypeError):
        await conn.a.addIceCandidate({"candidate": line, "sdpMid": "0", "bogus": 1})
    with pytest.raises(OperationError, match="malformed"):
        await conn.a.addIceCandidate(
            {"candidate": "candidate:1 1 udp x 127.0.0.1 9 typ host", "sdpMid": "0"}
        )
    for bad in ("256.1.1.1 9", "127.0.0.1 0", "127.0.0.1 70000"):
        with pytest.raises(OperationError):
            await conn.a.addIceCandidate(
                {"candidate": f"candidate:1 1 udp 1 {bad} typ host", "sdpMid": "0"}
            )
    with pytest.raises(TypeError):
        await conn.a.addIceCandidate(42)
    await conn.a.addIceCandidate(RTCIceCandidate(line, "0", 0))  # a valid one is accepted
    await conn.a.addIceCandidate(None)  # end-of-candidates
    await conn.still_works()


async def test_use_after_close() -> None:
    pc = make_pc()
    await pc.close()
    await pc.close()  # idempotent
    assert pc.signalingState == "closed" and pc.connectionState == "closed"
    with pytest.raises(InvalidStateError, match="closed"):
        await pc.createOffer()
    with pytest.raises(InvalidStateError):
        await pc.setLocalDescription()
    with pytest.raises(InvalidStateError):
        pc.createDataChannel("x")
    with pytest.raises(InvalidStateError):
        await pc.addIceCandidate(None)
    pc.restartIce()  # a no-op after close, as in browsers


async def test_bad_arguments_are_type_errors() -> None:
    pc = make_pc()
    with pytest.raises(TypeError):
        RTCSessionDescription("v=0", "bogus")
    with pytest.raises(TypeError):
        pc.createDataChannel("x", maxRetransmits=1, maxPacketLifeTime=1)
    with pytest.raises(TypeError):
        pc.createDataChannel("x", negotiated=True)
    with pytest.raises(TypeError):
        pc.addTransceiver("smell")
    with pytest.raises(TypeError):
        await pc.setRemoteDescription({"sdp": "v=0"})
    await pc.close()


async def test_ice_candidate_pool_size_is_not_silently_ignored() -> None:
    # No pre-gathered pool: a size above 0 warns; webrtc-pc fixes it once SLD was called.
    with pytest.warns(RuntimeWarning, match="iceCandidatePoolSize is not honoured"):
        pc = make_pc(iceCandidatePoolSize=2)
    pc.createDataChannel("x")
    await pc.setLocalDescription(await pc.createOffer())
    config = pc.getConfiguration()
    config.iceCandidatePoolSize = 0
    with pytest.raises(InvalidAccessError, match="InvalidModificationError"):
        pc.setConfiguration(config)
    assert pc.getConfiguration().iceCandidatePoolSize == 2
    await pc.close()


async def test_relay_policy_without_a_turn_server_warns() -> None:
    with pytest.warns(RuntimeWarning, match="without a turn: or turns: server"):
        pc = make_pc(iceTransportPolicy="relay")
    await pc.close()


async def test_rollback_in_stable_is_invalid_state(conn: Connected) -> None:
    with pytest.raises(InvalidStateError, match="rollback"):
        await conn.a.setLocalDescription(RTCSessionDescription("", "rollback"))
    await conn.still_works()


def _fixture_sdps() -> list[str]:
    return [p.read_text() for p in sorted(FIXTURES.glob("*.sdp"))]


@st.composite
def mutated_sdp(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(_fixture_sdps())).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "garble", "swap", "truncate"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "garble":
            head, _, _ = lines[i].partition(":")
            lines[i] = head + ":" + draw(st.text(max_size=40))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\r\n".join(lines) + "\r\n"


async def test_mutated_browser_sdp_gives_only_w3c_errors(conn: Connected) -> None:
    """Property: any mutation of real browser SDP is applied or rejected with a W3C error.

    The connection (a second one, connected) keeps working afterwards.
    """
    loop_errors: list[BaseException] = []

    @settings(
        max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(sdp=mutated_sdp())
    def run(sdp: str) -> None:
        async def attempt() -> None:
            pc = make_pc()
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
                await pc.setLocalDescription()
            except (InvalidAccessError, InvalidStateError, OperationError, TypeError):
                pass
            finally:
                await pc.close()

        future = asyncio.run_coroutine_threadsafe(attempt(), loop)
        try:
            future.result(10)
        except BaseException as exc:  # noqa: BLE001 - reported below with the SDP
            loop_errors.append(exc)
            raise

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(run)
    assert not loop_errors
    await conn.still_works()


async def test_real_chromium_offer_is_answered() -> None:
    """SDP captured from Chromium 156 (tests/data/sdp/chromium_real_*.sdp) is accepted."""
    pc = make_pc()
    offer = (FIXTURES / "chromium_real_offer.sdp").read_text()
    await pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await pc.setLocalDescription()
    answer = pc.localDescription
    assert answer is not None and answer.type == "answer"

    def kinds(sdp: str) -> list[str]:
        return [line.split()[0] for line in sdp.splitlines() if line.startswith("m=")]

    assert kinds(answer.sdp) == kinds(offer) and len(kinds(offer)) == 3  # mirrors the offer
    assert pc.signalingState == "stable" and pc.canTrickleIceCandidates is True
    await pc.close()
