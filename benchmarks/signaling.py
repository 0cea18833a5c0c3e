"""The signaling server under load: joins per second, memory per room, relay rate, latency.

The server (`unbroken signaling`, memory backend, rate limit off) runs in its own process;
the clients run here, on raw aiohttp WebSockets speaking the protocol (join, relay, ack).
A baseline in the same run: a bare aiohttp relay (no schema, no mailbox, no acks) started
the same way (`--baseline-server`), measured with the same client loops.

- joins: rooms of one connected peer each, opened 100 at a time, up to 10,000 rooms;
  joins per second and the server's RSS growth per room at each rung.
- state: the memory backend alone (tracemalloc, this process): 10,000 rooms of two
  peers with 4 queued messages each, no sockets.
- relay: 100 rooms, one peer of each sending 2,000 messages to the other as fast as it
  can with at most 64 in flight; messages per second through the server.
- latency: one room, ping-pong 2,000 times; one-way latency, median and p95.
Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import summarize, table, write_results  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 64  # relayed messages in flight per room


# ------------------------------------------------------------------ the baseline server


async def baseline_server(port: int) -> None:
    """A bare relay: `/ws?room=R`, every text frame goes to the room's other sockets."""
    rooms: dict[str, set[web.WebSocketResponse]] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        room = rooms.setdefault(request.query["room"], set())
        room.add(ws)
        await ws.send_str('{"type":"joined"}')
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                for other in room:
                    if other is not ws:
                        await other.send_str(msg.data)
        room.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    print(f"baseline: listening on ws://127.0.0.1:{bound}/ws", flush=True)
    await asyncio.Event().wait()


# ------------------------------------------------------------------ server processes


class ServerProcess:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, kind: str) -> None:
        self.proc, self.url, self.kind = proc, url, kind

    @classmethod
    async def start(cls, kind: str) -> ServerProcess:
        if kind == "unbroken":
            argv = [
                sys.executable,
                "-m",
                "unbroken.cli",
                "signaling",
                "--port",
                "0",
                "--rate",
                "0",
                "--max-rooms",
                "20000",
            ]
        else:
            argv = [sys.executable, __file__, "--baseline-server"]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "listening on" in line, line
        return cls(proc, line.rsplit(" ", 1)[1].strip(), kind)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    async def stop(self) -> None:
        self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), 10)


class Peer:
    """One raw WebSocket client; `kind` says which protocol (ours, or the bare baseline)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse[bool], kind: str) -> None:
        self.ws, self.kind = ws, kind
        self.last = 0
        self.acked = 0

    @classmethod
    async def join(
        cls, session: aiohttp.ClientSession, server: ServerProcess, room: str, peer: str
    ) -> Peer:
        url = server.url if server.kind == "unbroken" else f"{server.url}?room={room}"
        ws = await session.ws_connect(url, max_msg_size=0)
        if server.kind == "unbroken":
            await ws.send_str(json.dumps({"type": "join", "room": room, "peer": peer}))
        msg = json.loads((await ws.receive(timeout=30)).data)
        assert msg["type"] == "joined", msg
        return cls(ws, server.kind)

    async def send(self, data: Any) -> None:
        await self.ws.send_str(json.dumps({"type": "message", "data": data}))

    async def recv(self) -> dict[str, Any]:
        """The next relayed message (acknowledging every 16, as clients do)."""
        while True:
            frame = await self.ws.receive(timeout=30)
            msg: dict[str, Any] = json.loads(frame.data)
            if msg.get("type") != "message":
                continue
            if self.kind == "unbroken":
                self.last = msg["seq"]
                if self.last - self.acked >= 16:
                    self.acked = self.last
                    await self.ws.send_str(json.dumps({"type": "ack", "seq": self.last}))
            return msg


async def pairs(
    session: aiohttp.ClientSession, server: ServerProcess, n: int, tag: str
) -> list[tuple[Peer, Peer]]:
    out = []
    for i in range(n):
        a = await Peer.join(session, server, f"{tag}{i}", "a")
        b = await Peer.join(session, server, f"{tag}{i}", "b")
        out.append((a, b))
    return out


# ------------------------------------------------------------------ measurements


async def measure_joins(server: ServerProcess, rungs: list[int]) -> list[dict[str, Any]]:
    rows = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        peers: list[Peer] = []
        base_rss = server.rss_kib()
        for target in rungs:
            rss0, count0 = server.rss_kib(), len(peers)
            t0 = time.perf_counter()
            while len(peers) < target:
                batch = range(len(peers), min(target, len(peers) + 100))
                peers += await asyncio.gather(
                    *(Peer.join(session, server, f"room{i}", "p") for i in batch)
                )
            elapsed = time.perf_counter() - t0
            await asyncio.sleep(0.5)  # let the server's allocator settle before reading RSS
            rss = server.rss_kib()
            added = len(peers) - count0
            rows.append(
                {
                    "rooms": len(peers),
                    "joins_per_s": added / elapsed,
                    "rss_mib": rss / 1024,
                    "kib_per_room_rung": (rss - rss0) / added,
                    "kib_per_room_total": (rss - base_rss) / len(peers),
                }
            )
        for p in peers:
            await p.ws.close()
    return rows


def measure_state(rooms: int) -> dict[str, float]:
    """Bytes per room of the memory backend's state alone (two peers, 4 messages each)."""
    sys.path.insert(0, str(ROOT / "src"))
    from unbroken.signaling.backend import MemoryBackend

    async def fill() -> MemoryBackend:
        backend = MemoryBackend()
        for i in range(rooms):
            room = f"room{i}"
            await backend.join(room, "a", f"tok{i}a", create=True, max_peers=2, max_rooms=0)
            await backend.join(room, "b", f"tok{i}b", create=True, max_peers=2, max_rooms=0)
            for _ in range(4):
                await backend.post(room, ["a", "b"], {"type": "message", "data": "x" * 32}, None)
        return backend

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    backend = asyncio.run(fill())
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    used = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert backend.stats()["rooms"] == rooms
    return {"rooms": rooms, "bytes_per_room": used / rooms}


async def measure_relay(server: ServerProcess, rooms: int, per_room: int) -> dict[str, float]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        ps = await pairs(session, server, rooms, "relay")

        async def one(a: Peer, b: Peer) -> None:
            # At most WINDOW messages in flight per room: a sender faster than its
            # receiver would otherwise overflow the receiver's mailbox (queue_limit 256),
            # and the oldest would be dropped (and counted), as documented.
            received = 0
            progress = asyncio.Event()

            async def send() -> None:
                for i in range(per_room):
                    while i - received >= WINDOW:
                        progress.clear()
                        await progress.wait()
                    await a.send(i)

            async def recv() -> None:
                nonlocal received
                for i in range(per_room):
                    assert (await b.recv())["data"] == i
                    received += 1
                    progress.set()

            await asyncio.gather(send(), recv())

        t0 = time.perf_counter()
        await asyncio.gather(*(one(a, b) for a, b in ps))
        elapsed = time.perf_counter() - t0
        for a, b in ps:
            await a.ws.close()
            await b.ws.close()
    return {
        "rooms": rooms,
        "messages": rooms * per_room,
        "seconds": elapsed,
        "messages_per_s": rooms * per_room / elapsed,
    }


async def measure_latency(server: ServerProcess, samples: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        [(a, b)] = await pairs(session, server, 1, "latency")
        out = []
        for i in range(samples):
            src, dst = (a, b) if i % 2 == 0 else (b, a)
            t0 = time.perf_counter()
            await src.send(i)
            assert (await dst.recv())["data"] == i
            out.append(time.perf_counter() - t0)
        await a.ws.close()
        await b.ws.close()
    return out


async def run(quick: bool) -> dict[str, Any]:
    rungs = [100, 1000] if quick else [100, 1000, 10000]
    relay_rooms, per_room = (10, 300) if quick else (100, 2000)
    samples = 300 if quick else 2000
    results: dict[str, Any] = {"joins": {}, "relay": {}, "latency": {}}
    for kind in ("baseline", "unbroken"):
        server = await ServerProcess.start(kind)
        try:
            results["latency"][kind] = summarize(await measure_latency(server, samples))
            results["relay"][kind] = await measure_relay(server, relay_rooms, per_room)
            results["joins"][kind] = await measure_joins(server, rungs)
        finally:
            await server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_server:
        asyncio.run(baseline_server(0))
        return
    results = asyncio.run(run(args.quick))
    results["state"] = measure_state(1000 if args.quick else 10000)
    print(
        table(
            ["server", "latency median ms", "p95 ms", "relay msg/s"],
            [
                [
                    k,
                    f"{results['latency'][k]['median'] * 1000:.2f}",
                    f"{results['latency'][k]['p95'] * 1000:.2f}",
                    f"{results['relay'][k]['messages_per_s']:.0f}",
                ]
                for k in ("baseline", "unbroken")
            ],
        )
    )
    print(
        table(
            ["server", "rooms", "joins/s", "RSS MiB", "KiB/room (rung)", "KiB/room (all)"],
            [
                [
                    k,
                    r["rooms"],
                    f"{r['joins_per_s']:.0f}",
                    f"{r['rss_mib']:.1f}",
                    f"{r['kib_per_room_rung']:.1f}",
                    f"{r['kib_per_room_total']:.1f}",
                ]
                for k in ("baseline", "unbroken")
                for r in results["joins"][k]
            ],
        )
    )
    print(
        f"state only: {results['state']['bytes_per_room']:.0f} bytes per room "
        f"({results['state']['rooms']} rooms of two peers, 4 queued messages each)"
    )
    print(f"results: {write_results('signaling', args.quick, results)}")


if __name__ == "__main__":
    main()
