"""Our RTCPeerConnection in a child process, driven over its stdin/stdout like the harness page.

Theory of operation. Run as a script (`python ours_process.py --address A`), this file
is the child: one `unbroken.RTCPeerConnection` with host candidates on address A, driven
by JSON lines on stdin, {id, cmd, args}, each answered on stdout with {type: "reply", id,
ok, result | error}. What happens on its own (trickled candidates, state changes,
negotiationneeded, data channel messages, tracks, the selected pair) is reported as
{type: "event", event, t, ...} with t = time.monotonic() (CLOCK_MONOTONIC: the same
clock in every process of the machine). The command set mirrors page/harness.js, so a
test drives a browser's peer connection and this one the same way.

Imported, it gives the parent side: `OursProcess` starts the child inside a network
namespace (`ip netns exec`, under reaper.py), sends commands and records events, as
`BrowserPeerConnection` does for a page. Each of ours then really is in its own process,
as the issue's measurements were taken, and a soak between two of ours crosses real
process boundaries. The child's log (DEBUG for unbroken.ice with `debug=True`) goes to a
file the test shows on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unbroken.sdp import ice_ufrags

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REAPER = HERE / "reaper.py"
DEFAULT_TIMEOUT = 10.0

# ============================================================================ the child


def _ufrag(description: Any) -> str | None:
    found = [] if description is None else ice_ufrags(description.sdp)
    return found[0] if found else None


def _desc(description: Any) -> dict[str, str] | None:
    return None if description is None else {"type": description.type, "sdp": description.sdp}


class Child:
    """The child's side: one peer connection, its commands and its events."""

    STATES = (
        ("iceconnectionstatechange", "iceConnectionState"),
        ("connectionstatechange", "connectionState"),
        ("signalingstatechange", "signalingState"),
        ("icegatheringstatechange", "iceGatheringState"),
    )

    def __init__(self, address: str) -> None:
        from unbroken import RTCConfiguration, RTCPeerConnection

        self.pc = RTCPeerConnection(RTCConfiguration(hostAddresses=[address]))
        self.loop = asyncio.get_running_loop()
        self.channels: dict[str, Any] = {}
        self.pumps: dict[str, dict[str, Any]] = {}
        self._poke = asyncio.Event()
        self._watched: Any = None
        self._tasks: list[asyncio.Task[Any]] = [asyncio.ensure_future(self._watch())]
        pc = self.pc
        pc.on("icecandidate", self._on_candidate)
        pc.on("negotiationneeded", lambda: self.emit("negotiationneeded"))
        pc.on("datachannel", lambda ch: self._adopt(ch, "remote"))
        pc.on("track", lambda track: self.emit("track", kind=track.kind))
        for event, prop in self.STATES:
            pc.on(event, self._recorder(prop))

    # -- output ------------------------------------------------------------------
    def send(self, msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    def emit(self, event: str, **fields: Any) -> None:
        self.send({"type": "event", "event": event, "t": time.monotonic(), **fields})

    def _recorder(self, prop: str) -> Callable[[], None]:
        def record() -> None:
            self.emit("statechange", property=prop, state=getattr(self.pc, prop))
            self._poke.set()

        return record

    def _on_candidate(self, candidate: Any) -> None:
        self.emit("icecandidate", candidate=None if candidate is None else candidate.toJSON())

    def _adopt(self, channel: Any, origin: str) -> None:
        label = channel.label
        self.channels[label] = channel
        self.emit("datachannel", label=label, origin=origin, state=channel.readyState)

        def state() -> None:
            self.emit("channelstate", label=label, state=channel.readyState)

        channel.on("open", state)
        channel.on("close", state)
        channel.on(
            "message",
            lambda data: self.emit(
                "message", label=label, data=data if isinstance(data, str) else ""
            ),
        )

    # -- the selected pair ------------------------------------------------------------
    async def selected(self) -> dict[str, Any]:
        """The same keys as harness.js selectedInfo(), from our getStats."""
        report = await self.pc.getStats()
        info: dict[str, Any] = {
            "currentLocalUfrag": _ufrag(self.pc.currentLocalDescription),
            "currentRemoteUfrag": _ufrag(self.pc.currentRemoteDescription),
            "localUfrag": None,
            "remoteUfrag": None,
            "local": None,
            "remote": None,
            "role": None,
        }
        for stats in report.values():
            if stats["type"] != "transport":
                continue
            info["role"] = stats["iceRole"]
            pair = report.get(stats.get("selectedCandidatePairId") or "")
            if pair is None:
                continue
            local = report.get(pair["localCandidateId"])
            remote = report.get(pair["remoteCandidateId"])
            if local is not None:
                info["localUfrag"] = local["usernameFragment"]
                info["local"] = f"{local['candidateType']} {local['address']}:{local['port']}"
            if remote is not None:
                info["remoteUfrag"] = remote["usernameFragment"]
                info["remote"] = f"{remote['candidateType']} {remote['address']}:{remote['port']}"
        return info

    def _attach(self) -> None:
        """Listen to the ICE transport's selectedpairchange once it exists."""
        ice = self.pc.iceTransport
        if ice is not None and ice is not self._watched:
            self._watched = ice
            ice.on("selectedpairchange", lambda _event: self._poke.set())

    async def _watch(self) -> None:
        last: dict[str, Any] | None = None
        while True:
            await self._poke.wait()
            self._poke.clear()
            if self.pc.signalingState == "closed":
                return
            info = await self.selected()
            if info != last:
                last = info
                self.emit("selected", info=info)

    # -- data ------------------------------------------------------------------------
    def _start_pump(self, label: str, prefix: str, interval: float) -> None:
        channel = self.channels[label]
        pump: dict[str, Any] = {"sent": 0, "errors": [], "handle": None}
        start = self.loop.time()

        def tick() -> None:
            if channel.readyState == "open":
                channel.send(f"{prefix}{pump['sent']}")
                pump["sent"] += 1
            else:
                pump["errors"].append(f"channel {channel.readyState} at send {pump['sent']}")
            # A fixed schedule: no drift, no bursts after a late tick.
            ticks = int((self.loop.time() - start) / interval) + 1
            pump["handle"] = self.loop.call_at(start + ticks * interval, tick)

        self.pumps[label] = pump
        tick()

    def _stop_pump(self, label: str) -> dict[str, Any]:
        pump = self.pumps.pop(label)
        if pump["handle"] is not None:
            pump["handle"].cancel()
        return {"sent": pump["sent"], "errors": pump["errors"]}

    async def _inbound_packets(self, kind: str) -> int:
        report = await self.pc.getStats()
        return sum(
            int(s.get("packetsReceived", 0))
            for s in report.values()
            if s["type"] == "inbound-rtp" and s.get("kind") == kind
        )

    # -- commands ----------------------------------------------------------------------
    async def run(self, cmd: str, args: dict[str, Any]) -> Any:
        pc = self.pc
        if cmd == "createDataChannel":
            channel = pc.createDataChannel(args["label"])
            self._adopt(channel, "local")
            return None
        if cmd == "addAudioTrack":
            from aiortc.mediastreams import AudioStreamTrack

            pc.addTrack(AudioStreamTrack())  # 20 ms frames of silence, sent as Opus
            return None
        if cmd == "setLocalDescription":
            await pc.setLocalDescription(args.get("description"))
            self._attach()
            self._poke.set()
            return _desc(pc.localDescription)
        if cmd == "setRemoteDescription":
            await pc.setRemoteDescription(args["description"])
            self._attach()
            self._poke.set()
            return None
        if cmd == "addIceCandidate":
            await pc.addIceCandidate(args.get("candidate"))
            return None
        if cmd == "restartIce":
            pc.restartIce()
            return None
        if cmd == "states":
            return {prop: getattr(pc, prop) for _, prop in self.STATES}
        if cmd == "descriptions":
            return {
                name: _desc(getattr(pc, name))
                for name in (
                    "localDescription",
                    "currentLocalDescription",
                    "pendingLocalDescription",
                    "remoteDescription",
                    "currentRemoteDescription",
                    "pendingRemoteDescription",
                )
            }
        if cmd == "selected":
            return await self.selected()
        if cmd == "getStats":
            report = await pc.getStats()
            return [
                {k: v for k, v in s.items() if isinstance(v, str | int | float | bool | None)}
                for s in report.values()
            ]
        if cmd == "startPump":
            self._start_pump(args["label"], args["prefix"], args["interval"])
            return None
        if cmd == "stopPump":
            return self._stop_pump(args["label"])
        if cmd == "inboundPackets":
            return await self._inbound_packets(args["kind"])
        if cmd == "close":
            await pc.close()
            return None
        raise ValueError(f"unknown command {cmd!r}")

    async def handle(self, msg: dict[str, Any]) -> None:
        try:
            result = await self.run(msg["cmd"], msg.get("args") or {})
            self.send({"type": "reply", "id": msg["id"], "ok": True, "result": result})
        except Exception as exc:  # the parent gets it as a PageError-like failure
            log.exception("command %s failed", msg.get("cmd"))
            error = {"name": type(exc).__name__, "message": str(exc)}
            self.send({"type": "reply", "id": msg["id"], "ok": False, "error": error})


async def _child_main(address: str) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    child = Child(address)
    child.emit("ready", pid=os.getpid())
    while line := await reader.readline():
        # One command at a time, in the order sent: a candidate sent after a description
        # is applied after it, whichever task of the parent sent each.
        await child.handle(json.loads(line))
    with contextlib.suppress(Exception):
        await child.pc.close()


def _child() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True, help="the only host address to gather")
    parser.add_argument("--log", help="write the log here")
    parser.add_argument("--debug", action="store_true", help="DEBUG for unbroken.ice")
    args = parser.parse_args()
    handler: logging.Handler = (
        logging.FileHandler(args.log) if args.log else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(
        logging.Formatter("%(relativeCreated)9.1f %(name)s %(levelname)s %(message)s")
    )
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    if args.debug:
        logging.getLogger("unbroken.ice").setLevel(logging.DEBUG)
        logging.getLogger("unbroken.runtime").setLevel(logging.DEBUG)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    asyncio.run(_child_main(args.address))


# ============================================================================ the parent


class ChildError(Exception):
    """A command failed in the child; `name` is the Python exception's class name."""

    def __init__(self, cmd: str, name: str, message: str) -> None:
        super().__init__(f"{cmd}: {name}: {message}")
        self.cmd = cmd
        self.name = name


class OursProcess:
    """The parent's handle on one child: commands, and the events it reported.

    Attributes mirror `BrowserPeerConnection`: `candidates` (queue, None ends a round),
    `history` of (property, state, t), `negotiation_needed`, `messages`/`arrivals` per
    channel label, `selected_history` of (info, t), `tracks`.
    """

    def __init__(self, name: str, log_path: Path) -> None:
        from .browser import Changes

        self.name = name
        self.log_path = log_path
        self.candidates: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.history: list[tuple[str, str, float]] = []
        self.negotiation_needed = 0
        self.messages: dict[str, list[str]] = {}
        self.arrivals: dict[str, list[float]] = {}
        self.channel_states: dict[str, str] = {}
        self.selected_history: list[tuple[dict[str, Any], float]] = []
        self.tracks: list[str] = []
        self.changed = Changes()
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._next_id = 1
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._exit: str | None = None

    def __repr__(self) -> str:
        return f"<OursProcess {self.name} pid={self.pid}>"

    async def start(
        self, exec_prefix: list[str], address: str, debug: bool = True, timeout: float = 20.0
    ) -> None:
        """Start the child (inside the namespace `exec_prefix` enters) and wait until ready."""
        argv = [
            *exec_prefix,
            sys.executable,
            str(REAPER),
            sys.executable,
            str(Path(__file__).resolve()),
            "--address",
            address,
            "--log",
            str(self.log_path),
            *(["--debug"] if debug else []),
        ]
        self._ready = asyncio.get_running_loop().create_future()
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
            start_new_session=True,
            limit=16 * 1024 * 1024,
        )
        self.pid = self._proc.pid
        self._reader = asyncio.ensure_future(self._read())
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: child not ready within {timeout}s\n{self.log_tail()}"
            ) from None

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the child's log file."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"--- {self.name} log: none"
        return "\n".join(
            [f"--- {self.name} log {self.log_path} (last {lines} lines)", *text[-lines:]]
        )

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            msg = json.loads(raw)
            if msg["type"] == "reply":
                entry = self._pending.get(msg["id"])
                if entry is not None and not entry[1].done():
                    cmd, future = entry
                    if msg["ok"]:
                        future.set_result(msg.get("result"))
                    else:
                        err = msg["error"]
                        future.set_exception(ChildError(cmd, err["name"], err["message"]))
            else:
                self._on_event(msg, time.monotonic())
            self.changed.notify()
        self._exit = f"child exited ({await self._proc.wait()})"
        for cmd, future in self._pending.values():
            if not future.done():
                future.set_exception(AssertionError(f"{self.name}: {cmd}: {self._exit}"))
        self.changed.notify()

    def _on_event(self, msg: dict[str, Any], now: float) -> None:
        name = msg["event"]
        if name == "ready":
            assert self._ready is not None
            self._ready.set_result(None)
        elif name == "icecandidate":
            self.candidates.put_nowait(msg["candidate"])
        elif name == "negotiationneeded":
            self.negotiation_needed += 1
        elif name == "statechange":
            self.history.append((msg["property"], msg["state"], now))
        elif name == "datachannel":
            self.messages.setdefault(msg["label"], [])
            self.arrivals.setdefault(msg["label"], [])
            self.channel_states[msg["label"]] = msg["state"]
        elif name == "channelstate":
            self.channel_states[msg["label"]] = msg["state"]
        elif name == "message":
            self.messages[msg["label"]].append(msg["data"])
            self.arrivals[msg["label"]].append(msg["t"])
        elif name == "track":
            self.tracks.append(msg["kind"])
        elif name == "selected":
            self.selected_history.append((msg["info"], now))

    async def call(self, cmd: str, timeout: float = DEFAULT_TIMEOUT, **args: Any) -> Any:
        """Run one command in the child and return its result."""
        if self._proc is None or self._proc.stdin is None or self._exit is not None:
            raise AssertionError(f"{self.name}: {cmd}: the child is gone ({self._exit})")
        msg_id = self._next_id
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (cmd, future)
        try:
            self._proc.stdin.write(
                (json.dumps({"id": msg_id, "cmd": cmd, "args": args}) + "\n").encode()
            )
            await self._proc.stdin.drain()
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: {cmd}: no reply within {timeout}s\n{self.log_tail()}"
            ) from None
        finally:
            self._pending.pop(msg_id, None)

    async def wait_until(
        self, predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str]
    ) -> None:
        """Wait until `predicate()` holds, re-checked at every message from the child."""

        def check() -> bool:
            if predicate():
                return True
            if self._exit is not None:
                raise AssertionError(f"{self.name}: {self._exit}")
            return False

        try:
            await self.changed.wait_for(check, timeout)
        except TimeoutError:
            text = what() if callable(what) else what
            raise AssertionError(
                f"{self.name}: timed out after {timeout}s waiting for {text}"
            ) from None

    async def close(self) -> None:
        """Close the peer connection, end the child (stdin EOF, then SIGTERM) and reap it."""
        if self._proc is None:
            return
        if self._exit is None:
            with contextlib.suppress(Exception):
                await self.call("close", timeout=5.0)
        if self._proc.stdin is not None:
            with contextlib.suppress(Exception):
                self._proc.stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                await self._proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5.0)


if __name__ == "__main__":
    _child()
