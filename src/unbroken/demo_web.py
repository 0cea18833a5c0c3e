"""The demo with a browser: `unbroken demo` serves a page; break the path, watch it heal.

Theory of operation
-------------------
One aiohttp server on 127.0.0.1 (the signaling server's app, with the demo's routes
added) serves the page (`/`, demo_static/index.html), the signaling WebSocket (`/ws`)
and the browser client (`/client.js`). When a page opens it asks for a session
(`POST /api/session`): the demo makes a Python peer for it, our RTCPeerConnection with
`recovery.attach()` and a `PerfectNegotiator` on a `SignalingClient`, in a fresh room;
the page joins the room with the served client and opens a data channel. Each side
sends a numbered message every 100 ms and checks what arrives. Every 300 ms the page
reports its state (`POST /api/report`: states, selected pair, round-trip time,
counters, its own state changes) and gets the whole picture back (`/api/state`, also
for tests and anyone curious): both sides, the breaks, and one merged timeline.

Breaking the Python side's path (`POST /api/break`):
- as root (fault "netns"), the Python peer lives in a network namespace of the demo's
  own (demo_faults.py), reachable from the browser over a veth pair (198.18.213.1 on
  this side, 198.18.213.2 in the namespace: RFC 2544's benchmarking range, which no
  real network uses); "handover" moves its address (.2 <-> .3), "outage" drops every
  UDP packet arriving in the namespace for 5 s (nftables). The Python peer's signaling
  reaches the server over the namespace's own loopback (a second listening socket made
  in the namespace), so only the media path breaks. Everything goes with the namespace
  when the demo exits.
- otherwise (fault "process"), "drop" makes the selected pair's local port deaf for 5 s
  inside the process (demo_faults.drop_path).
Recovery heals it by itself; the page shows the recovery events and the healing time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from .demo_faults import DemoNetns, FaultError, drop_path, netns_missing, selected_local_address
from .peerconnection import RTCConfiguration, RTCPeerConnection
from .recovery import Recovery, RecoveryEvent, attach
from .signaling import PerfectNegotiator, ServerConfig, SignalingClient, SignalingServer

logger = logging.getLogger(__name__)

SEND_INTERVAL = 0.1
BREAK_FOR = 5.0  # seconds an outage or a dropped path lasts
SUBNET = "198.18.213"  # RFC 2544 benchmarking range: inside the demo's veth pair only
HOST_ADDRESS, PEER_ADDRESS, PEER_MOVED = f"{SUBNET}.1", f"{SUBNET}.2", f"{SUBNET}.3"
TIMELINE_KEEP = 200

Out = Callable[[str], None]


def _epoch_ms() -> float:
    return time.time() * 1000.0


class PythonPeer:
    """The Python side of one page's session."""

    def __init__(self, demo: BrowserDemo, room: str) -> None:
        self.demo = demo
        self.room = room
        self.pc = RTCPeerConnection(demo.peer_config())
        self.client = SignalingClient(demo.peer_signaling_url, room, peer="python")
        self.negotiator: PerfectNegotiator | None = None
        self.recovery: Recovery | None = None
        self.channel: Any = None
        self.sent = 0
        self.received = 0
        self.next_expected = 0
        self.out_of_order = 0
        self.last_rx_sent_ms: float = 0.0  # send time (page clock, epoch ms) of the last arrival
        self.pair = ""
        self.rtt: float | None = None
        self._tasks: list[asyncio.Task[Any]] = []

    async def start(self) -> None:
        await self.client.connect()
        self.negotiator = PerfectNegotiator(self.pc, self.client, recovery=False)
        self.recovery = await attach(self.pc)
        pc = self.pc
        pc.on("iceconnectionstatechange", lambda: self.event(f"ice {pc.iceConnectionState}"))
        pc.on("connectionstatechange", lambda: self.event(f"connection {pc.connectionState}"))
        pc.on("datachannel", self._adopt)
        self.recovery.on("recovery", self._on_recovery)
        self._tasks.append(asyncio.create_task(self._send_loop()))
        self._tasks.append(asyncio.create_task(self._stats_loop()))

    def event(self, what: str) -> None:
        self.demo.add_event("python", what)

    def _on_recovery(self, event: RecoveryEvent) -> None:
        if event.action == "restart":
            self.event(f"recovery: restart ICE (attempt {event.attempt}, {event.trigger})")
        else:
            self.event(f"recovery: healed after {(event.healed_after or 0) * 1000:.0f} ms")
            self.demo.on_healed(event)

    def _adopt(self, channel: Any) -> None:
        self.channel = channel
        self.event(f"data channel {channel.label!r} from the browser")
        channel.on("message", self._on_message)

    def _on_message(self, data: Any) -> None:
        text = data if isinstance(data, str) else bytes(data).decode(errors="replace")
        try:
            seq_text, sent_text = text.split(" ", 1)
            seq, sent = int(seq_text), float(sent_text)
        except ValueError:
            self.out_of_order += 1  # not ours: counted, never a crash
            return
        self.received += 1
        if seq != self.next_expected:
            self.out_of_order += 1
        self.next_expected = seq + 1
        self.last_rx_sent_ms = sent
        self.demo.on_python_received(sent)

    async def _send_loop(self) -> None:
        while True:
            if self.channel is not None and self.channel.readyState == "open":
                self.channel.send(f"{self.sent} {_epoch_ms():.1f}")
                self.sent += 1
            await asyncio.sleep(SEND_INTERVAL)  # the send schedule, not synchronisation

    async def _stats_loop(self) -> None:
        """Selected pair and round-trip time for the page, every 300 ms."""
        while True:
            await asyncio.sleep(0.3)
            with contextlib.suppress(Exception):
                stats = await self.pc.getStats()
                transport: dict[str, Any] = next(
                    (s for s in stats.values() if s.get("type") == "transport"), {}
                )
                pair = stats.get(transport.get("selectedCandidatePairId") or "")
                if pair is None:
                    self.pair, self.rtt = "", None
                    continue
                local = stats.get(pair.get("localCandidateId"), {})
                remote = stats.get(pair.get("remoteCandidateId"), {})
                text = (
                    f"{local.get('address')}:{local.get('port')} -> "
                    f"{remote.get('address')}:{remote.get('port')} ({remote.get('candidateType')})"
                )
                if text != self.pair and self.pair:
                    self.event(f"selected pair {text}")
                self.pair = text
                self.rtt = pair.get("currentRoundTripTime")

    def state(self) -> dict[str, Any]:
        r = self.recovery
        return {
            "iceConnectionState": self.pc.iceConnectionState,
            "connectionState": self.pc.connectionState,
            "channel": self.channel.readyState if self.channel is not None else "none",
            "pair": self.pair,
            "rtt": self.rtt,
            "sent": self.sent,
            "received": self.received,
            "outOfOrder": self.out_of_order,
            "restarts": r.restarts if r else 0,
            "healed": r.healed if r else 0,
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.recovery is not None:
            await self.recovery.stop()
        if self.negotiator is not None:
            await self.negotiator.close()
        await self.client.close()
        await self.pc.close()


class BrowserDemo:
    """The server, the Python peer of the current page, and the faults."""

    def __init__(self, fault: str, out: Out, ns: DemoNetns | None, veth: str) -> None:
        self.fault = fault
        self.out = out
        self.ns = ns
        self.veth = veth  # the Python peer's interface in the namespace
        self.peer_address = PEER_ADDRESS
        self.server: SignalingServer | None = None
        self.peer_signaling_url = ""
        self.peer: PythonPeer | None = None
        self.page: dict[str, Any] = {}
        self.timeline: list[dict[str, Any]] = []
        self.breaks: list[dict[str, Any]] = []
        self.origins: frozenset[str] = frozenset()
        self.started_at = _epoch_ms()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------ state

    def peer_config(self) -> RTCConfiguration:
        if self.fault == "netns":
            return RTCConfiguration(hostInterfaces=[self.veth])
        return RTCConfiguration()

    def add_event(self, who: str, what: str, at: float | None = None) -> None:
        at = _epoch_ms() if at is None else at
        self.timeline.append({"t": at, "who": who, "what": what})
        del self.timeline[:-TIMELINE_KEEP]
        if who != "browser":
            self.out(f"{time.strftime('%H:%M:%S')}  {who:<7} {what}")

    def on_healed(self, event: RecoveryEvent) -> None:
        for brk in self.breaks:
            if brk["recoveryHealedMs"] is None:
                brk["recoveryHealedMs"] = round((event.healed_after or 0) * 1000)

    def on_python_received(self, sent_ms: float) -> None:
        for brk in self.breaks:
            if brk["pythonRxAfter"] is None and sent_ms >= brk["at"]:
                brk["pythonRxAfter"] = _epoch_ms()
                self._maybe_healed(brk)

    def _maybe_healed(self, brk: dict[str, Any]) -> None:
        if (
            brk["healedMs"] is not None
            or brk["pythonRxAfter"] is None
            or brk["pageRxAfter"] is None
        ):
            return
        ref = brk["restoredAt"] if brk["kind"] == "outage" else brk["at"]
        if ref is None:
            return
        brk["healedMs"] = round(max(brk["pythonRxAfter"], brk["pageRxAfter"]) - ref)
        since = "the network came back" if brk["kind"] == "outage" else "the break"
        self.add_event(
            "demo", f"{brk['kind']}: data flows both ways again, {brk['healedMs']} ms after {since}"
        )

    def state(self) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "room": self.peer.room if self.peer else None,
            "breakKinds": ["handover", "outage"] if self.fault == "netns" else ["drop"],
            "python": self.peer.state() if self.peer else None,
            "browser": self.page,
            "breaks": self.breaks,
            "timeline": sorted(self.timeline, key=lambda e: e["t"])[-60:],
            "startedAt": self.started_at,
            "peerAddress": self.peer_address if self.fault == "netns" else None,
        }

    # ------------------------------------------------------------ HTTP

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin in self.origins

    async def _index(self, _request: web.Request) -> web.StreamResponse:
        text = resources.files(__package__).joinpath("demo_static/index.html").read_text()
        return web.Response(
            text=text, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    async def _session(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        if self.peer is not None:
            old, self.peer = self.peer, None
            await old.close()
        self.page, self.breaks = {}, []
        self.timeline.clear()
        self.started_at = _epoch_ms()
        room = f"demo-{secrets.token_hex(4)}"
        self.peer = PythonPeer(self, room)
        await self.peer.start()
        self.add_event("demo", f"new page: Python peer waiting in room {room}")
        return web.json_response({"room": room, "fault": self.fault})

    async def _report(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        try:
            report = await request.json()
            if not isinstance(report, dict) or report.get("room") != (self.peer and self.peer.room):
                return web.json_response(self.state())  # a stale page: show, do not record
            for event in report.pop("events", [])[:100]:
                self.add_event("browser", str(event["what"])[:200], float(event["t"]))
            for key, at in (report.get("rxAfter") or {}).items():
                for brk in self.breaks:
                    if str(brk["id"]) == key and brk["pageRxAfter"] is None:
                        brk["pageRxAfter"] = float(at)
                        self._maybe_healed(brk)
            self.page = {
                k: report.get(k)
                for k in (
                    "iceConnectionState",
                    "connectionState",
                    "channel",
                    "pair",
                    "rtt",
                    "sent",
                    "received",
                    "outOfOrder",
                )
            }
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad report: {exc}"}, status=400)
        return web.json_response(self.state())

    async def _state(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state())

    async def _break(self, request: web.Request) -> web.StreamResponse:
        if not self._origin_ok(request):
            return web.json_response({"error": "origin not allowed"}, status=403)
        try:
            kind = str((await request.json()).get("kind"))
        except (ValueError, AttributeError):
            return web.json_response({"error": 'body must be {"kind": ...}'}, status=400)
        if kind not in self.state()["breakKinds"] or self.peer is None:
            return web.json_response({"error": f"unknown break {kind!r}"}, status=400)
        brk: dict[str, Any] = {
            "id": len(self.breaks) + 1,
            "kind": kind,
            "at": _epoch_ms(),
            "restoredAt": None,
            "recoveryHealedMs": None,
            "pythonRxAfter": None,
            "pageRxAfter": None,
            "healedMs": None,
        }
        try:
            what = await self._do_break(kind, brk)
        except (FaultError, OSError) as exc:
            return web.json_response({"error": str(exc)}, status=500)
        self.breaks.append(brk)
        self.add_event("demo", f"BREAK: {what}", brk["at"])
        return web.json_response({"ok": True, "break": brk})

    async def _do_break(self, kind: str, brk: dict[str, Any]) -> str:
        assert self.peer is not None
        if kind == "handover":
            assert self.ns is not None
            old = self.peer_address
            new = PEER_MOVED if old == PEER_ADDRESS else PEER_ADDRESS
            await asyncio.to_thread(self._move, old, new)
            brk["restoredAt"] = brk["at"]
            return f"handover: the Python peer's address {old} replaced by {new}"
        if kind == "outage":
            assert self.ns is not None
            await asyncio.to_thread(self.ns.outage, True)
            self._later(self._restore_outage(brk))
            return f"outage: every UDP packet to the Python peer dropped for {BREAK_FOR:.0f} s (nftables)"
        local = await selected_local_address(self.peer.pc)
        if local is None:
            raise FaultError("the Python peer has no selected pair yet")
        drop_path(local)
        brk["restoredAt"] = brk["at"]
        self._later(self._restore_drop(local))
        return (
            f"the Python peer's port {local[0]}:{local[1]} receives nothing for {BREAK_FOR:.0f} s"
        )

    def _move(self, old: str, new: str) -> None:
        assert self.ns is not None
        self.ns.move_address(self.veth, old, new, 29)
        self.ns.ip("route", "replace", "default", "via", HOST_ADDRESS)
        self.peer_address = new

    async def _restore_outage(self, brk: dict[str, Any]) -> None:
        await asyncio.sleep(BREAK_FOR)  # the fault's length
        assert self.ns is not None
        await asyncio.to_thread(self.ns.outage, False)
        brk["restoredAt"] = _epoch_ms()
        self.add_event("demo", "outage over: the network is back")
        self._maybe_healed(brk)

    async def _restore_drop(self, local: tuple[str, int]) -> None:
        await asyncio.sleep(BREAK_FOR)  # the fault's length
        drop_path(local, drop=False)

    def _later(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------ lifecycle

    async def run(self, page_sock: socket.socket, peer_sock: socket.socket | None) -> None:
        host, port = page_sock.getsockname()[:2]
        self.origins = frozenset({f"http://{host}:{port}", f"http://localhost:{port}"})
        self.server = SignalingServer(ServerConfig(allowed_origins=self.origins))
        app = self.server.app
        app.router.add_get("/", self._index)
        app.router.add_post("/api/session", self._session)
        app.router.add_post("/api/report", self._report)
        app.router.add_get("/api/state", self._state)
        app.router.add_post("/api/break", self._break)
        await self.server.start(sock=page_sock)
        self.peer_signaling_url = self.server.url
        if peer_sock is not None:
            # The Python peer's signaling goes over its namespace's own loopback: a second
            # listening socket, made in the namespace, on the same server.
            runner = self.server._runner
            assert runner is not None
            await web.SockSite(runner, peer_sock).start()
            self.peer_signaling_url = f"ws://127.0.0.1:{peer_sock.getsockname()[1]}/ws"
        self.out(f"open http://{host}:{port}/ in a browser (Ctrl-C to stop)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self.peer is not None:
                await self.peer.close()
            await self.server.close()
        self.out("stopped")


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def run_browser_demo(host: str, port: int, fault: str, out: Out) -> int:
    """Serve the demo page until SIGINT/SIGTERM; returns the exit code."""
    if fault == "auto":
        fault = "process" if netns_missing() is not None else "netns"
    page_sock = _listen(host, port)
    if fault == "process":
        out("unbroken demo: the Python peer runs in this process; its path is broken inside it")
        asyncio.run(BrowserDemo("process", out, None, "").run(page_sock, None))
        return 0
    try:
        ns = DemoNetns.create()
    except FaultError as exc:
        out(f"cannot make a network namespace ({exc})")
        return 2
    suffix = str(os.getpid() % 100000)
    outside, inside = f"ubd{suffix}h", f"ubd{suffix}p"
    try:
        ns_cmd = ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside]
        for argv in (
            [*ns_cmd, "netns", ns.name],
            ["ip", "addr", "add", f"{HOST_ADDRESS}/29", "dev", outside],
            ["ip", "link", "set", outside, "up"],
        ):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            if proc.returncode != 0:
                raise FaultError(f"`{' '.join(argv)}`: {proc.stderr.strip()}")
        ns.ip("addr", "add", f"{PEER_ADDRESS}/29", "dev", inside)
        ns.ip("link", "set", inside, "up")
        ns.ip("route", "add", "default", "via", HOST_ADDRESS)
        out(
            f"unbroken demo: the Python peer runs in network namespace {ns.name} on {inside} "
            f"({PEER_ADDRESS}), reachable over veth {outside} ({HOST_ADDRESS}); "
            "both go away when the demo stops"
        )
        with ns.entered():
            peer_sock = _listen("127.0.0.1", 0)  # made inside: the namespace's loopback
            demo = BrowserDemo("netns", out, ns, inside)
            asyncio.run(demo.run(page_sock, peer_sock))
        return 0
    except FaultError as exc:
        out(f"cannot set up the namespace: {exc}")
        return 2
    finally:
        ns.delete()
        with contextlib.suppress(Exception):  # normally gone with the namespace already
            subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=10)
