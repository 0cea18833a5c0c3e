"""aiortc's example programs in their own idioms, run on aiortc or on unbroken.

Our own code, written the way aiortc's `datachannel-cli`, `datachannel-filexfer` and
`videostream-cli` examples are (they are not in aiortc's wheel): `aiortc.contrib.signaling`
(tcp-socket or copy-and-paste), a `consume_signaling` loop that tests received objects
with `isinstance(obj, RTCSessionDescription)` / `isinstance(obj, RTCIceCandidate)`,
`await pc.setLocalDescription(...)` then `signaling.send(pc.localDescription)` (no
trickle), `@pc.on("track")` feeding a `MediaRecorder` started right after
setRemoteDescription, tracks added after the offer is applied (the answer then sends
too).

The only difference between `--impl aiortc` and `--impl unbroken` is the import in
`import_stack()`. Used by tests/test_aiortc_examples.py, which runs two of these in a
network namespace with only `lo` (so every candidate is on loopback), and by nothing
else. What each program saw is written as JSON to `--result`.

    python tests/aiortc_style_peer.py --impl unbroken --role offer --mode chat \
        --signaling tcp-socket --signaling-port 9999 --result out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from fractions import Fraction
from typing import Any

from aiortc.contrib.media import MediaRecorder
from aiortc.contrib.signaling import BYE, BaseSignaling, add_signaling_arguments, create_signaling

# Filled in by import_stack(): the application's view of "the WebRTC library".
RTCConfiguration: Any = None
RTCIceCandidate: Any = None
RTCPeerConnection: Any = None
RTCSessionDescription: Any = None
VideoStreamTrack: Any = None
MediaStreamError: Any = None

CHUNK = 16384  # datachannel-filexfer's read size


def import_stack(impl: str) -> None:
    """The one line an application changes: where the WebRTC classes come from."""
    global RTCConfiguration, RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
    global VideoStreamTrack, MediaStreamError
    if impl == "unbroken":
        from unbroken import (
            MediaStreamError,
            RTCConfiguration,
            RTCIceCandidate,
            RTCPeerConnection,
            RTCSessionDescription,
            VideoStreamTrack,
        )
    else:
        # mypy types these globals by the import above; aiortc's classes stand in here.
        from aiortc import (  # type: ignore[assignment]
            MediaStreamError,
            RTCConfiguration,
            RTCIceCandidate,
            RTCPeerConnection,
            RTCSessionDescription,
            VideoStreamTrack,
        )


def log(*args: Any) -> None:
    """The examples print; stdout may be the copy-and-paste channel, so stderr here."""
    print(*args, file=sys.stderr, flush=True)


class Report:
    """What the program saw, written to --result at the end."""

    def __init__(self, pc: Any) -> None:
        self.data: dict[str, Any] = {"connectionStates": [], "messages": []}

        @pc.on("connectionstatechange")
        def on_state() -> None:
            self.data["connectionStates"].append(pc.connectionState)


class WaitForOfferer:
    """tcp-socket signaling for a program started together with its offerer.

    aiortc's TcpSocketSignaling makes the first sender the server: the answerer's first
    receive() connects to it, and is refused until the offerer has sent its offer. The
    examples say "start the offerer first"; started together, the answerer tries again
    (every 50 ms, for at most 10 s) instead.
    """

    def __init__(self, signaling: Any) -> None:
        self.signaling = signaling

    def __getattr__(self, name: str) -> Any:
        return getattr(self.signaling, name)

    async def receive(self) -> Any:
        for _ in range(200):
            try:
                return await self.signaling.receive()
            except ConnectionRefusedError:
                await asyncio.sleep(0.05)
        return await self.signaling.receive()


async def consume_signaling(pc: Any, signaling: Any, recorder: Any = None) -> None:
    """datachannel-cli's loop (with videostream-cli's recorder and echo of tracks)."""
    while True:
        obj = await signaling.receive()
        if isinstance(obj, RTCSessionDescription):
            await pc.setRemoteDescription(obj)
            if recorder is not None:
                await recorder.start()
            if obj.type == "offer":
                if recorder is not None:
                    add_tracks(pc)
                await pc.setLocalDescription(await pc.createAnswer())
                await signaling.send(pc.localDescription)
        elif isinstance(obj, RTCIceCandidate):
            await pc.addIceCandidate(obj)
        elif obj is BYE or obj is None:
            log("Exiting")
            break


# ---------------------------------------------------------------- datachannel-cli


def channel_send(channel: Any, message: str) -> None:
    log(f"channel({channel.label}) > {message}")
    channel.send(message)


async def chat_answer(pc: Any, signaling: Any, report: Report) -> None:
    await signaling.connect()

    @pc.on("datachannel")
    def on_datachannel(channel: Any) -> None:
        log(f"channel({channel.label}) - created by remote party")

        @channel.on("message")
        def on_message(message: Any) -> None:
            report.data["messages"].append(message)
            if isinstance(message, str) and message.startswith("ping"):
                channel_send(channel, "pong" + message[4:])

    await consume_signaling(pc, signaling)


async def chat_offer(pc: Any, signaling: Any, report: Report, count: int) -> None:
    await signaling.connect()
    channel = pc.createDataChannel("chat")
    done = asyncio.Event()

    def send_ping() -> None:
        channel_send(channel, f"ping {len(report.data['messages'])} {time.time()}")

    @channel.on("open")
    def on_open() -> None:
        send_ping()

    @channel.on("message")
    def on_message(message: Any) -> None:
        report.data["messages"].append(message)
        if len(report.data["messages"]) == count:
            done.set()
        else:
            send_ping()

    await pc.setLocalDescription(await pc.createOffer())
    report.data["offer"] = pc.localDescription.sdp
    await signaling.send(pc.localDescription)
    consume = asyncio.ensure_future(consume_signaling(pc, signaling))
    await done.wait()
    consume.cancel()


# ---------------------------------------------------------------- datachannel-filexfer


async def filexfer_answer(pc: Any, signaling: Any, report: Report, path: str) -> None:
    await signaling.connect()
    fp = open(path, "wb")  # noqa: SIM115 - closed at the end of the transfer, as in the example

    @pc.on("datachannel")
    def on_datachannel(channel: Any) -> None:
        start = time.time()
        octets = 0

        @channel.on("message")
        async def on_message(message: Any) -> None:
            nonlocal octets
            if message:
                octets += len(message)
                fp.write(message)
            else:
                elapsed = time.time() - start
                log(f"received {octets} bytes in {elapsed:.1f} s")
                fp.close()
                report.data["octets"] = octets
                await signaling.send(BYE)  # say goodbye

    await consume_signaling(pc, signaling)


async def filexfer_offer(pc: Any, signaling: Any, report: Report, path: str) -> None:
    await signaling.connect()
    fp = open(path, "rb")  # noqa: SIM115
    done_reading = False
    channel = pc.createDataChannel("filexfer")

    def send_data() -> None:
        nonlocal done_reading
        while channel.bufferedAmount <= channel.bufferedAmountLowThreshold and not done_reading:
            data = fp.read(CHUNK)
            channel.send(data)
            if not data:
                done_reading = True
                fp.close()

    channel.on("bufferedamountlow", send_data)
    channel.on("open", send_data)

    await pc.setLocalDescription(await pc.createOffer())
    await signaling.send(pc.localDescription)
    await consume_signaling(pc, signaling)


# ---------------------------------------------------------------- videostream-cli


class CountedVideoTrack:
    """A synthetic video track (videostream-cli's FlagVideoStreamTrack, smaller) of N frames.

    Built on the stack's VideoStreamTrack (its 30 fps pacing); a frame's first pixels
    carry its number. After `frames` frames it ends, and `finished` is set.
    """

    @staticmethod
    def make(frames: int | None) -> Any:
        from av import VideoFrame

        class Track(VideoStreamTrack):  # type: ignore[misc, valid-type]
            def __init__(self) -> None:
                super().__init__()
                self.left = frames
                self.finished = asyncio.Event()

            async def recv(self) -> Any:
                if self.left == 0:
                    self.finished.set()
                    self.stop()
                    raise MediaStreamError
                if self.left is not None:
                    self.left -= 1
                pts, time_base = await self.next_timestamp()
                frame = VideoFrame(width=160, height=120, format="yuv420p")
                for plane in frame.planes:
                    plane.update(bytes([int(pts // 3000) % 256]) * plane.buffer_size)
                frame.pts = pts
                frame.time_base = time_base or Fraction(1, 90000)
                return frame

        return Track()


TRACKS: list[Any] = []


def add_tracks(pc: Any) -> None:
    """videostream-cli's add_tracks(): our video track (the offerer's has an end)."""
    pc.addTrack(TRACKS[0])


def count_frames(path: str) -> int:
    """Frames in a recording, decoded with PyAV."""
    import av

    with av.open(path) as container:
        if not container.streams.video:
            return 0
        return sum(1 for _ in container.decode(video=0))


async def video(
    pc: Any, signaling: Any, report: Report, role: str, record: str, frames: int
) -> None:
    recorder = MediaRecorder(record)
    TRACKS.append(CountedVideoTrack.make(frames if role == "offer" else None))

    @pc.on("track")
    def on_track(track: Any) -> None:
        log(f"Receiving {track.kind}")
        report.data["track"] = {"kind": track.kind, "id": track.id}
        recorder.addTrack(track)

    await signaling.connect()
    if role == "offer":
        add_tracks(pc)
        await pc.setLocalDescription(await pc.createOffer())
        await signaling.send(pc.localDescription)
        consume = asyncio.ensure_future(consume_signaling(pc, signaling, recorder))
        await TRACKS[0].finished.wait()  # every frame of ours was sent
        consume.cancel()
    else:
        await consume_signaling(pc, signaling, recorder)
    report.data["localDescription"] = pc.localDescription.sdp
    report.data["remoteDescription"] = pc.remoteDescription.sdp
    await recorder.stop()
    report.data["recordedFrames"] = count_frames(record)


# ---------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    # iceServers=[]: aiortc's default configuration names a public STUN server.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    signaling: BaseSignaling | WaitForOfferer = create_signaling(args)
    if args.signaling == "tcp-socket" and args.role == "answer":
        signaling = WaitForOfferer(signaling)
    report = Report(pc)
    report.data.update(impl=args.impl, role=args.role, mode=args.mode)
    try:
        if args.mode == "chat":
            if args.role == "offer":
                await chat_offer(pc, signaling, report, args.count)
            else:
                await chat_answer(pc, signaling, report)
        elif args.mode == "filexfer":
            if args.role == "offer":
                await filexfer_offer(pc, signaling, report, args.file)
            else:
                await filexfer_answer(pc, signaling, report, args.file)
        else:
            await video(pc, signaling, report, args.role, args.record, args.frames)
    finally:
        report.data["final"] = pc.connectionState
        await pc.close()
        await signaling.close()
    return report.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--impl", choices=["aiortc", "unbroken"], required=True)
    parser.add_argument("--role", choices=["offer", "answer"], required=True)
    parser.add_argument("--mode", choices=["chat", "filexfer", "video"], required=True)
    parser.add_argument("--file", help="filexfer: the file to send or to write")
    parser.add_argument("--record", help="video: where to record the received track")
    parser.add_argument("--count", type=int, default=5, help="chat: ping-pong rounds")
    parser.add_argument("--frames", type=int, default=45, help="video: the offerer's frames")
    parser.add_argument("--result", required=True, help="write what was seen here (JSON)")
    parser.add_argument("--verbose", "-v", action="count")
    add_signaling_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    import_stack(args.impl)
    data = asyncio.run(run(args))
    with open(args.result, "w") as out:
        json.dump(data, out)


if __name__ == "__main__":
    main()
