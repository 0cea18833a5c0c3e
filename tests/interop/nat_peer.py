"""One of our RTCPeerConnections in its own process, driven over stdin/stdout (JSON lines).

Usage (normally started by tests/interop/nat.py, inside a network namespace):

    ip netns exec NS .venv/bin/python tests/interop/nat_peer.py --address 10.77.1.2 \
        --stun 198.18.0.1:3478 --offerer [--polite] [--handler restart-on-disconnected]

Theory of operation. The process is a small WebRTC application: a peer connection with
one STUN server, one reliable ordered data channel ("data", created by the offerer), and
a numbered message every `--interval` seconds each way once the channel is open. The
test is its signaling server and its observer:

- stdin carries commands, one JSON object per line: {"cmd": "description", ...},
  {"cmd": "candidate", ...}, {"cmd": "restart"}, {"cmd": "stats", "id": N},
  {"cmd": "stop", "id": N}, {"cmd": "close", "id": N}. They run one at a time, in order,
  so a candidate is applied after the description it belongs to.
- stdout carries events, one JSON object per line, each with "t" (time.time(), a clock
  shared by every process on the machine): descriptions and candidates to pass on,
  state changes, selected-pair changes, every message received ("msg": sequence number
  and the sender's send time), replies to commands, and "error" for anything that
  escaped (an exception in a task or callback), which a test treats as a failure.

Negotiation is the W3C "perfect negotiation" pattern, as applications write it:
`negotiationneeded` makes an offer, an offer that collides is ignored by the impolite
side and rolled back by the polite one. That is not a restart handler. The only restart
handler is the optional `--handler restart-on-disconnected` (restartIce() when
iceConnectionState becomes "disconnected"), the usual application workaround.

The process exits when stdin closes (its test is gone) or after "close".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
import traceback
from typing import Any

from unbroken import RTCConfiguration, RTCIceServer, RTCPeerConnection
from unbroken.ice import IceConfig, SelectedPairChanged
from unbroken.sdp import ice_ufrags

log = logging.getLogger("nat_peer")

STATES = (
    ("iceconnectionstatechange", "iceConnectionState"),
    ("connectionstatechange", "connectionState"),
    ("signalingstatechange", "signalingState"),
    ("icegatheringstatechange", "iceGatheringState"),
)


def emit(event: str, **fields: Any) -> None:
    """Write one event line to stdout."""
    sys.stdout.write(json.dumps({"ev": event, "t": time.time(), **fields}) + "\n")
    sys.stdout.flush()


def ufrag_of(sdp: str) -> str | None:
    """The first a=ice-ufrag of an SDP."""
    found = ice_ufrags(sdp)
    return found[0] if found else None


class Peer:
    """The application: a peer connection, perfect negotiation, a numbered message stream."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        servers = [RTCIceServer(urls=f"stun:{args.stun}")] if args.stun else []
        ice = IceConfig(
            disconnected_timeout=args.disconnected_timeout, failed_timeout=args.failed_timeout
        )
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=servers, hostAddresses=[args.address], iceConfig=ice)
        )
        self.polite: bool = args.polite
        self.making_offer = False
        self.ignore_offer = False
        self.channel: Any = None
        self.sent = 0
        self.sender: asyncio.Task[None] | None = None
        self.watching_transport = False
        self.last_mid = "0"
        self.lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pc.on("icecandidate", self._on_candidate)
        self.pc.on("negotiationneeded", lambda: self._spawn(self._negotiate()))
        self.pc.on("datachannel", self._adopt)
        for event, prop in STATES:
            self.pc.on(event, self._state_reporter(prop))

    # ------------------------------------------------------------ events of the pc

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            assert exc is not None
            emit("error", text="".join(traceback.format_exception(exc)))

    def _state_reporter(self, prop: str) -> Any:
        def report() -> None:
            value = getattr(self.pc, prop)
            emit("state", prop=prop, value=value)
            if prop == "iceConnectionState":
                self._watch_transport()
                if value == "disconnected" and self.args.handler == "restart-on-disconnected":
                    emit("handler", action="restartIce")
                    self.pc.restartIce()

        return report

    def _watch_transport(self) -> None:
        """Report the ICE transport's selected-pair changes (once it exists)."""
        transport = self.pc.iceTransport
        if transport is None or self.watching_transport:
            return
        self.watching_transport = True

        def on_selected(event: SelectedPairChanged) -> None:
            emit(
                "selected",
                generation=event.generation,
                local=_cand(event.local),
                remote=_cand(event.remote),
            )

        transport.on("selectedpairchange", on_selected)

    def _on_candidate(self, candidate: Any) -> None:
        if candidate is not None:
            self.last_mid = candidate.sdpMid or self.last_mid
            emit("candidate", candidate=candidate.toJSON())
            return
        local = self.pc.localDescription
        ufrag = ufrag_of(local.sdp) if local is not None else None
        end = {
            "candidate": "",
            "sdpMid": self.last_mid,
            "sdpMLineIndex": 0,
            "usernameFragment": ufrag,
        }
        emit("candidate", candidate=end)

    async def _negotiate(self) -> None:
        async with self.lock:
            if self.pc.signalingState != "stable":
                return  # fires again once stable if still needed (webrtc-pc)
            self.making_offer = True
            try:
                await self.pc.setLocalDescription()
                self._watch_transport()
                self._send_local()
            finally:
                self.making_offer = False

    def _send_local(self) -> None:
        local = self.pc.localDescription
        assert local is not None
        emit("description", description={"type": local.type, "sdp": local.sdp})

    def _adopt(self, channel: Any) -> None:
        self.channel = channel
        channel.on("open", self._on_open)
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._on_open()

    def _on_open(self) -> None:
        emit("open", label=self.channel.label)
        if self.sender is None:
            self.sender = asyncio.ensure_future(self._send_loop())
            self.sender.add_done_callback(self._task_done)

    def _on_message(self, data: Any) -> None:
        text = data if isinstance(data, str) else bytes(data).decode()
        seq, sent = text.split(" ", 1)
        emit("msg", seq=int(seq), sent=float(sent))

    async def _send_loop(self) -> None:
        """A message every interval on a fixed schedule (k * interval from the start)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while self.channel.readyState == "open":  # the peer closing ends the stream
            self.channel.send(f"{self.sent} {time.time():.6f}")
            self.sent += 1
            # The application's send schedule, not synchronisation.
            await asyncio.sleep(max(0.0, start + self.sent * self.args.interval - loop.time()))

    # ------------------------------------------------------------ commands

    async def command(self, cmd: dict[str, Any]) -> bool:
        """Run one command; False when the process should exit."""
        name = cmd.get("cmd")
        if name == "start":
            if self.args.offerer:
                self._adopt(self.pc.createDataChannel("data"))
        elif name == "description":
            await self._on_description(cmd["description"])
        elif name == "candidate":
            try:
                await self.pc.addIceCandidate(cmd["candidate"])
            except Exception as exc:
                if not self.ignore_offer:  # candidates of an ignored offer are expected to fail
                    emit("error", text=f"addIceCandidate: {exc!r}")
        elif name == "restart":
            self.pc.restartIce()
        elif name == "stats":
            emit("reply", id=cmd["id"], result=await self._stats())
        elif name == "stop":
            if self.sender is not None:
                self.sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self.sender
            emit("reply", id=cmd["id"], result={"sent": self.sent})
        elif name == "close":
            await self.pc.close()
            emit("reply", id=cmd["id"], result={"closed": True})
            return False
        else:
            emit("error", text=f"unknown command {name!r}")
        return True

    async def _on_description(self, description: dict[str, str]) -> None:
        async with self.lock:
            collision = description["type"] == "offer" and (
                self.making_offer or self.pc.signalingState != "stable"
            )
            self.ignore_offer = not self.polite and collision
            if self.ignore_offer:
                emit("negotiation", action="ignored-offer")
                return
            if collision:
                await self.pc.setLocalDescription({"type": "rollback", "sdp": ""})
            await self.pc.setRemoteDescription(description)
            if description["type"] == "offer":
                await self.pc.setLocalDescription()
                self._watch_transport()
                self._send_local()

    async def _stats(self) -> dict[str, Any]:
        """The selected pair with its candidates, and the states."""
        report = await self.pc.getStats()
        selected: dict[str, Any] | None = None
        for stats in report.values():
            if stats.get("type") == "transport" and stats.get("selectedCandidatePairId"):
                pair = report.get(stats["selectedCandidatePairId"])
                if pair is not None:
                    local = report.get(pair["localCandidateId"], {})
                    remote = report.get(pair["remoteCandidateId"], {})
                    selected = {
                        "local": _stat_cand(local),
                        "remote": _stat_cand(remote),
                    }
        local_candidates = [
            _stat_cand(s) for s in report.values() if s.get("type") == "local-candidate"
        ]
        return {
            "selected": selected,
            "localCandidates": local_candidates,
            "iceConnectionState": self.pc.iceConnectionState,
            "connectionState": self.pc.connectionState,
            "bufferedAmount": self.channel.bufferedAmount if self.channel is not None else 0,
        }


def _cand(candidate: Any) -> dict[str, Any] | None:
    if candidate is None:
        return None
    return {"address": candidate.host, "port": candidate.port, "type": candidate.type}


def _stat_cand(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": stats.get("address"),
        "port": stats.get("port"),
        "type": stats.get("candidateType"),
    }


async def main(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()

    def on_loop_error(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        text = context.get("message", "")
        if exc is not None:
            text += "\n" + "".join(traceback.format_exception(exc))
        emit("error", text=text)

    loop.set_exception_handler(on_loop_error)
    reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    peer = Peer(args)
    emit("ready")
    running = True
    while running:
        line = await reader.readline()
        if not line:
            break  # the test went away
        try:
            running = await peer.command(json.loads(line))
        except Exception:
            emit("error", text=traceback.format_exc())
    if peer.pc.connectionState != "closed":
        await peer.pc.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--address", required=True, help="the only host address to gather")
    parser.add_argument("--stun", default="", help="STUN server as IP:PORT")
    parser.add_argument("--offerer", action="store_true", help="create the data channel")
    parser.add_argument("--polite", action="store_true", help="perfect negotiation's polite side")
    parser.add_argument("--interval", type=float, default=0.020, help="seconds between messages")
    parser.add_argument("--handler", choices=("none", "restart-on-disconnected"), default="none")
    parser.add_argument(
        "--disconnected-timeout", type=float, default=IceConfig.disconnected_timeout
    )
    parser.add_argument("--failed-timeout", type=float, default=IceConfig.failed_timeout)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(
        level=arguments.log_level,
        stream=sys.stderr,
        format="%(asctime)s.%(msecs)03d %(name)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    sys.exit(asyncio.run(main(arguments)))
