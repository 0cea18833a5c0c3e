"""aiortc-style programs whose only difference is the import, with each other and with aiortc.

Each test runs two processes of tests/aiortc_style_peer.py (our own code in the idioms
of aiortc's datachannel-cli, datachannel-filexfer and videostream-cli examples) over
`aiortc.contrib.signaling`, unchanged: tcp-socket, or copy-and-paste with this test
pasting each JSON line from one program's stdout into the other's stdin. Pairings: ours
with ours, ours offering to aiortc, aiortc offering to ours.

Isolation: both processes run in a network namespace with only `lo` (127.0.0.1 and
127.0.0.2): every candidate either stack gathers is on loopback, and no packet can
leave. No ICE server is configured (`RTCConfiguration(iceServers=[])` in the program:
aiortc's default would name a public STUN server). Needs root; under CI=true a missing
prerequisite fails the tests instead of skipping them.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop.netns import NetNs, netns_available
from prereq import require

pytestmark = [pytest.mark.netns]

PEER = Path(__file__).parent / "aiortc_style_peer.py"
PAIRINGS = [("unbroken", "unbroken"), ("unbroken", "aiortc"), ("aiortc", "unbroken")]
IDS = [f"{o}-offers-to-{a}" for o, a in PAIRINGS]
RUN_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def lo_ns() -> Iterator[NetNs]:
    require(netns_available())
    ns = NetNs.create(prefix="ubex", extra_addresses=("127.0.0.2/8",))
    try:
        yield ns
    finally:
        ns.delete()


def free_port(ns: NetNs) -> int:
    """A TCP port free in the namespace (its own port space; bound and released there)."""
    with ns.entered(), socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def spawn(ns: NetNs, impl: str, role: str, args: list[str], **pipes: Any) -> Any:
    return await asyncio.create_subprocess_exec(
        *ns.exec_prefix(),
        sys.executable,
        str(PEER),
        "--impl",
        impl,
        "--role",
        role,
        *args,
        stderr=asyncio.subprocess.PIPE,
        **pipes,
    )


async def finish(procs: dict[str, Any], results: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Wait for both programs; their results, or a failure with their stderr."""

    async def one(proc: Any) -> bytes:
        err = await proc.stderr.read()  # stdout, if piped, is the paster's
        await proc.wait()
        return bytes(err)

    tasks = {role: asyncio.ensure_future(one(p)) for role, p in procs.items()}
    done, _ = await asyncio.wait(tasks.values(), timeout=RUN_TIMEOUT)
    if len(done) < len(tasks):
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
        await asyncio.wait(tasks.values(), timeout=5)
    errors = {
        role: t.result().decode(errors="replace")[-3000:] for role, t in tasks.items() if t.done()
    }
    for role, proc in procs.items():
        if proc.returncode != 0:
            pytest.fail(f"the {role} program exited with {proc.returncode}:\n{errors.get(role)}")
    return {role: json.loads(path.read_text()) for role, path in results.items()}


async def run_pair(
    ns: NetNs,
    tmp: Path,
    offerer: str,
    answerer: str,
    mode: str,
    signaling: str,
    extra: dict[str, list[str]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run an offerer and an answerer program to the end; what each saw."""
    results = {role: tmp / f"{role}.json" for role in ("offer", "answer")}
    impls = {"offer": offerer, "answer": answerer}
    common = ["--mode", mode, "--signaling", signaling]
    if signaling == "tcp-socket":
        common += ["--signaling-host", "127.0.0.1", "--signaling-port", str(free_port(ns))]
    procs: dict[str, Any] = {}
    for role in ("offer", "answer"):
        args = [*common, "--result", str(results[role]), *(extra or {}).get(role, [])]
        if signaling == "copy-and-paste":
            pipes = {"stdin": asyncio.subprocess.PIPE, "stdout": asyncio.subprocess.PIPE}
            procs[role] = await spawn(ns, impls[role], role, args, **pipes)
        else:
            procs[role] = await spawn(ns, impls[role], role, args)
    if signaling == "copy-and-paste":
        # A person copies each message the program prints into the other one.
        pasting = [
            asyncio.ensure_future(paste(procs["offer"], procs["answer"])),
            asyncio.ensure_future(paste(procs["answer"], procs["offer"])),
        ]
        try:
            return await finish(procs, results)
        finally:
            for task in pasting:
                task.cancel()
    return await finish(procs, results)


async def paste(source: Any, target: Any) -> None:
    """Forward every JSON line `source` prints to `target`'s stdin (prompts are skipped)."""
    while True:
        line = await source.stdout.readline()
        if not line:
            return
        if line.startswith(b"{"):
            try:
                target.stdin.write(line)
                await target.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                return


# ---------------------------------------------------------------- datachannel-cli


@pytest.mark.parametrize(("offerer", "answerer"), PAIRINGS, ids=IDS)
@pytest.mark.parametrize("signaling", ["tcp-socket", "copy-and-paste"])
async def test_datachannel_cli(
    lo_ns: NetNs, tmp_path: Path, offerer: str, answerer: str, signaling: str
) -> None:
    seen = await run_pair(lo_ns, tmp_path, offerer, answerer, "chat", signaling)
    pings = [m for m in seen["answer"]["messages"] if m.startswith("ping")]
    pongs = [m for m in seen["offer"]["messages"] if m.startswith("pong")]
    assert len(pings) == 5 and len(pongs) == 5
    assert [p[4:] for p in pings] == [p[4:] for p in pongs]  # each pong echoes its ping
    for role in ("offer", "answer"):
        assert "connected" in seen[role]["connectionStates"]
    # Non-trickle: the offer that went out had its candidates and end-of-candidates.
    offer = seen["offer"]["offer"]
    assert "a=candidate:" in offer
    if offerer == "unbroken":
        assert "a=end-of-candidates" in offer
    # The offerer closed first: the answerer saw its connection end at once (closed, as
    # aiortc reports it), not "connecting" or "failed".
    assert "failed" not in seen["answer"]["connectionStates"]


# ---------------------------------------------------------------- datachannel-filexfer


@pytest.mark.parametrize(("offerer", "answerer"), PAIRINGS, ids=IDS)
async def test_datachannel_filexfer_is_byte_identical(
    lo_ns: NetNs, tmp_path: Path, offerer: str, answerer: str
) -> None:
    sent, received = tmp_path / "sent.bin", tmp_path / "received.bin"
    sent.write_bytes(secrets.token_bytes(2 * 1024 * 1024 + 12345))  # not a multiple of 16 KiB
    extra = {"offer": ["--file", str(sent)], "answer": ["--file", str(received)]}
    seen = await run_pair(lo_ns, tmp_path, offerer, answerer, "filexfer", "tcp-socket", extra)
    assert seen["answer"]["octets"] == sent.stat().st_size
    assert received.read_bytes() == sent.read_bytes()


# ---------------------------------------------------------------- videostream-cli


@pytest.mark.parametrize(("offerer", "answerer"), PAIRINGS, ids=IDS)
async def test_videostream_cli_records_frames(
    lo_ns: NetNs, tmp_path: Path, offerer: str, answerer: str
) -> None:
    frames = 45  # 1.5 s at the track's 30 fps
    extra = {
        role: ["--record", str(tmp_path / f"{role}.mp4"), "--frames", str(frames)]
        for role in ("offer", "answer")
    }
    seen = await run_pair(lo_ns, tmp_path, offerer, answerer, "video", "tcp-socket", extra)
    # The answerer added its track after applying the offer (in the track handler's
    # time), so its answer sends too, and each side recorded the other's video.
    assert "a=sendrecv" in seen["answer"]["localDescription"]
    for role in ("offer", "answer"):
        assert seen[role]["track"]["kind"] == "video"
    # The remote track's id is the sender's, from a=msid (aiortc and ours alike).
    offer_sdp = seen["answer"]["remoteDescription"]
    assert f" {seen['answer']['track']['id']}" in offer_sdp.split("a=msid:", 1)[1].split("\n")[0]
    # Every frame the offerer sent was sent while the answerer recorded: most arrive
    # (the last few may be in flight when the offerer says goodbye).
    assert seen["answer"]["recordedFrames"] >= frames // 2, seen["answer"]
    assert seen["offer"]["recordedFrames"] > 0, seen["offer"]
