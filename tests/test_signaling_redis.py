"""The Redis backend: two signaling server nodes (processes) sharing a real redis-server.

One peer on each node: an offer/answer and ICE restarts negotiated across them; then
one node killed (SIGKILL) and its peer reconnecting to the other node, resuming with
nothing lost, while a restart was negotiated in the meantime. redis-server (Debian
package `redis-server`) is started privately on a free loopback port, no persistence.
Without it these tests skip, or fail under CI=true.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from prereq import require
from signaling_helpers import Call
from unbroken.signaling import SignalingClient

MARGIN = 20


def require_redis() -> str:
    path = shutil.which("redis-server")
    require(
        None if path else "redis-server not installed (scripts/install-test-deps.sh installs it)"
    )
    assert path is not None
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private redis-server on 127.0.0.1 (temp dir, no persistence), stopped afterwards."""
    import subprocess

    binary = require_redis()
    directory = tmp_path_factory.mktemp("redis")
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:  # wait for its own word that it is ready
        lines.append(line)
        if "Ready to accept connections" in line:
            break
    else:
        raise AssertionError("redis-server exited:\n" + "".join(lines))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Node:
    """`unbroken signaling --redis URL` in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, url: str) -> None:
        self.proc = proc
        self.url = url

    @classmethod
    async def start(cls, redis_url: str, log: Path, away_for: float = 20.0) -> Node:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "unbroken.cli",
            "signaling",
            "--port",
            "0",
            "--redis",
            redis_url,
            "--away-for",
            str(away_for),
            stdout=asyncio.subprocess.PIPE,
            stderr=log.open("w"),
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on" in line, f"node did not start: {line!r} {log.read_text()}"
        return cls(proc, line.rsplit(" ", 1)[1].strip())

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)


@pytest.fixture
async def nodes(redis_url: str, tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    one = await Node.start(redis_url, tmp_path / "node1.log")
    two = await Node.start(redis_url, tmp_path / "node2.log")
    yield one, two
    for node in (one, two):
        await node.stop()


async def test_offer_answer_and_restarts_across_two_nodes(nodes: tuple[Node, Node]) -> None:
    one, two = nodes
    call = Call(one.url, room="across", url_b=two.url)
    await call.connect()
    call.start_traffic()
    await call.received_more(MARGIN)
    for who in ("alice", "bob", "both"):
        before = call.snapshot()
        if who in ("alice", "both"):
            call.a.pc.restartIce()
        if who in ("bob", "both"):
            call.b.pc.restartIce()
        await call.wait_for(lambda before=before: call.restarted_since(before))
        await call.received_more(MARGIN)
    await call.drain()
    call.check_exactly_once_in_order()
    for side in (call.a, call.b):
        assert side.negotiator is not None and side.negotiator.errors == 0
    await call.close()


async def test_node_killed_peer_resumes_on_the_other(nodes: tuple[Node, Node]) -> None:
    one, two = nodes
    # Alice knows both nodes and starts on node 1; bob is on node 2.
    call = Call([one.url, two.url], room="failover", url_b=two.url)
    await call.connect()
    call.start_traffic()
    await call.received_more(MARGIN)
    for i in range(5):
        call.b.client.sendMessage(f"before-{i}")
    await one.kill()
    await call.a.client.wait_until(lambda: call.a.client.state == "reconnecting")
    before = call.snapshot()
    call.b.pc.restartIce()  # negotiated while alice has no signaling at all
    for i in range(5):
        call.b.client.sendMessage(f"during-{i}")
    await call.wait_for(lambda: call.restarted_since(before), timeout=30)
    await call.received_more(MARGIN)
    await call.drain()
    call.check_exactly_once_in_order()
    assert call.a.client.url == two.url and call.a.client.connects == 2
    got: list[object] = []
    while len(got) < 10:
        msg = await call.a.client.receive(timeout=10)
        if msg["type"] == "message":
            got.append(msg["data"])
    assert got == [f"before-{i}" for i in range(5)] + [f"during-{i}" for i in range(5)]
    assert call.a.client.lost == 0
    await call.close()


async def test_third_peer_refused_across_nodes(nodes: tuple[Node, Node]) -> None:
    one, two = nodes
    a = SignalingClient(one.url, "full", peer="a")
    b = SignalingClient(two.url, "full", peer="b")
    await a.connect()
    await b.connect()
    c = SignalingClient(one.url, "full", peer="c")
    from unbroken.signaling import SignalingError

    with pytest.raises(SignalingError) as info:
        await c.connect()
    assert info.value.code == "room-full"
    a.sendMessage("still here")
    msg = await b.receive(timeout=5)
    while msg["type"] != "message":
        msg = await b.receive(timeout=5)
    assert msg["data"] == "still here" and msg["from"] == "a"
    await a.close()
    await b.close()


async def test_peer_of_a_dead_node_is_removed_after_its_window(
    redis_url: str, tmp_path: Path
) -> None:
    """Nobody runs the dead node's timers: the surviving node sees the presence expire."""
    one = await Node.start(redis_url, tmp_path / "a.log", away_for=1.0)
    two = await Node.start(redis_url, tmp_path / "b.log", away_for=1.0)
    try:
        a = SignalingClient(one.url, "orphan", peer="a", reconnect=False)
        b = SignalingClient(two.url, "orphan", peer="b")
        await a.connect()
        await b.connect()
        await one.kill()
        while True:
            msg = await b.receive(timeout=15)
            if msg["type"] == "peer-left":
                break
        assert msg["peer"] == "a" and msg["reason"] == "timeout" and b.peers == []
        await b.close()
        await a.close()
    finally:
        await one.kill()
        await two.stop()
