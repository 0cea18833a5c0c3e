"""Data channel throughput on loopback: 20 MiB in 16 KiB messages, ours against aiortc in the same run.

Each run connects a fresh pair (ours with ours, or aiortc with aiortc) with a reliable,
ordered data channel, then the offerer sends 1280 messages of 16 KiB (20 MiB) as fast
as flow control allows: it sends while `bufferedAmount` is at most `--high`, and
otherwise waits for `bufferedamountlow` (`bufferedAmountLowThreshold` = `--low`), as a
browser application does; no sleeps. The time runs from the first send() until the
answerer has received the last byte; every message is checked for order and size.
Runs alternate between the stacks. Both stacks use aiortc's DTLS and SCTP (ours runs
them over our ICE transport), so the difference is the ICE transport underneath.
MB/s is 10^6 bytes per second.

Two layouts, both measured by default: both peers in this process (one event loop,
one core: the ratio is the figure to read), and the answerer in a child process of
its own (`--child`, started from the loop thread, so inside the same namespace), as
DESIGN.md's figures for other stacks were measured. In the two-process layout the
descriptions are exchanged once gathering is complete (no trickle) over the child's
stdin/stdout, and the time runs until the child reports the last message received.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from typing import Any

from _common import AioiceLoopback, parse_args, table, write_results
from _pc_common import (
    AIORTC,
    OURS,
    assert_loopback,
    connected,
    description_for,
    is_loopback,
    kind_of,
    loopback_only,
    new_pc,
)

NAME = "pc_throughput"
MESSAGE = 16 * 1024
TOTAL = 20 * 1024 * 1024


async def transfer(kind: str, total: int, high: int, low: int) -> tuple[float, float]:
    """One fresh connection of `kind` with itself; (seconds, CPU seconds) to move `total` bytes."""
    link = await connected(kind, kind)
    try:
        sender, receiver = link.channel_offerer, link.channel_answerer
        count = total // MESSAGE
        received = asyncio.Event()
        state = {"next": 0, "bytes": 0}

        def on_message(data: Any) -> None:
            seq = int.from_bytes(data[:4], "big")
            if seq != state["next"] or len(data) != MESSAGE:
                raise AssertionError(f"message {seq} ({len(data)} bytes), expected {state['next']}")
            state["next"] += 1
            state["bytes"] += len(data)
            if state["next"] == count:
                received.set()

        receiver.on("message", on_message)
        loop = asyncio.get_running_loop()
        cpu = time.process_time()
        started = await send_all(sender, count, high, low)
        await asyncio.wait_for(received.wait(), 60)
        elapsed = loop.time() - started
        assert state["bytes"] == count * MESSAGE
        return elapsed, time.process_time() - cpu
    finally:
        await link.close()


async def measure(
    runs: int, total: int, high: int, low: int, layouts: list[str], child_isolation: str
) -> dict[str, Any]:
    """`runs` transfers per stack and layout, alternating stacks; MB/s per run and medians."""
    seconds: dict[str, dict[str, list[float]]] = {lay: {OURS: [], AIORTC: []} for lay in layouts}
    cpu: dict[str, dict[str, list[float]]] = {lay: {OURS: [], AIORTC: []} for lay in layouts}
    for _ in range(runs):
        for layout in layouts:
            for kind in (OURS, AIORTC):
                if layout == "one process":
                    took, used = await transfer(kind, total, high, low)
                else:
                    took, used = await transfer_to_child(kind, total, high, low, child_isolation)
                seconds[layout][kind].append(took)
                cpu[layout][kind].append(used)
    out: dict[str, Any] = {}
    for layout, per_kind in seconds.items():
        rates = {k: [total / s / 1e6 for s in v] for k, v in per_kind.items()}
        out[layout] = {
            "mb_per_s": {
                k: {"median": statistics.median(v), "min": min(v), "max": max(v), "samples": v}
                for k, v in rates.items()
            },
            "seconds": per_kind,
            "ratio_ours_to_aiortc": statistics.median(rates[OURS])
            / statistics.median(rates[AIORTC]),
            # CPU seconds of both peers (both processes) per transfer: far less sensitive
            # to other jobs on the machine than the wall-clock rate.
            "cpu_s": {
                k: {"median": statistics.median(v), "samples": v} for k, v in cpu[layout].items()
            },
            "cpu_ratio_ours_to_aiortc": statistics.median(cpu[layout][OURS])
            / statistics.median(cpu[layout][AIORTC]),
        }
    return {
        "bytes": total,
        "message_bytes": MESSAGE,
        "high_watermark": high,
        "low_threshold": low,
        "runs": runs,
        "layouts": out,
    }


# ------------------------------------------------------------------ two processes


async def gathered_description(pc: Any) -> Any:
    """The local description once gathering is complete (all candidates in it)."""
    if kind_of(pc) == OURS and pc.iceGatheringState != "complete":
        done = asyncio.Event()

        def on_change() -> None:
            if pc.iceGatheringState == "complete":
                done.set()

        pc.on("icegatheringstatechange", on_change)
        await asyncio.wait_for(done.wait(), 10)
    return pc.localDescription  # aiortc gathers everything inside setLocalDescription


async def read_message(reader: asyncio.StreamReader) -> dict[str, Any]:
    line = await asyncio.wait_for(reader.readline(), 60)
    if not line:
        raise ConnectionError("the child process ended early")
    message: dict[str, Any] = json.loads(line)
    return message


async def transfer_to_child(
    kind: str, total: int, high: int, low: int, isolation: str
) -> tuple[float, float]:
    """One transfer to an answerer in a child process; (seconds, CPU seconds of both)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", kind, "--child-isolation", isolation,
        "--child-count", str(total // MESSAGE),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    pc = new_pc(kind)
    try:
        sender = pc.createDataChannel("bench")
        opened = asyncio.Event()
        sender.on("open", opened.set)
        await pc.setLocalDescription(await pc.createOffer())
        offer = await gathered_description(pc)
        child.stdin.write(json.dumps({"type": "offer", "sdp": offer.sdp}).encode() + b"\n")
        answer = await read_message(child.stdout)
        await pc.setRemoteDescription(description_for(pc, _Description(answer["sdp"], "answer")))
        await asyncio.wait_for(opened.wait(), 10)
        assert_loopback(pc)
        opened_there = await read_message(child.stdout)  # the child has its channel open too
        if opened_there["non_loopback_addresses"] and isolation == "netns":
            raise AssertionError(f"the child is outside the namespace: {opened_there}")
        cpu = time.process_time()
        started = await send_all(sender, total // MESSAGE, high, low)
        report = await read_message(child.stdout)
        elapsed = asyncio.get_running_loop().time() - started
        if report.get("error"):
            raise AssertionError(f"child: {report['error']}")
        return elapsed, time.process_time() - cpu + report["cpu_s"]
    finally:
        await pc.close()
        child.stdin.close()
        await asyncio.wait_for(child.wait(), 10)


class _Description:
    def __init__(self, sdp: str, type: str) -> None:  # noqa: A002 - W3C name
        self.sdp, self.type = sdp, type


async def send_all(sender: Any, count: int, high: int, low: int) -> float:
    """Send `count` numbered messages with bufferedAmount flow control; the first send's loop time."""
    loop = asyncio.get_running_loop()
    body = bytes(MESSAGE - 4)
    drained = asyncio.Event()
    sender.bufferedAmountLowThreshold = low
    sender.on("bufferedamountlow", drained.set)
    first = loop.time()
    for seq in range(count):
        drained.clear()
        if sender.bufferedAmount > high:
            await asyncio.wait_for(drained.wait(), 30)
        sender.send(seq.to_bytes(4, "big") + body)
    return first


async def child_main(kind: str, count: int) -> None:
    """The answerer side in its own process: answer, receive `count` messages, report."""
    import ifaddr

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer

    def report(message: dict[str, Any]) -> None:
        out.write(json.dumps(message).encode() + b"\n")
        out.flush()

    pc = new_pc(kind)
    try:
        received = asyncio.Event()
        channel_open = asyncio.Event()
        state: dict[str, Any] = {"next": 0, "error": None}

        def on_message(data: Any) -> None:
            seq = int.from_bytes(data[:4], "big")
            if (seq != state["next"] or len(data) != MESSAGE) and state["error"] is None:
                state["error"] = f"message {seq} ({len(data)} bytes), expected {state['next']}"
            state["next"] += 1
            if state["next"] == count:
                received.set()

        def on_channel(channel: Any) -> None:
            channel.on("message", on_message)
            channel_open.set()

        pc.on("datachannel", on_channel)
        offer = await read_message(reader)
        await pc.setRemoteDescription(description_for(pc, _Description(offer["sdp"], "offer")))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = await gathered_description(pc)
        report({"type": "answer", "sdp": answer.sdp})
        await asyncio.wait_for(channel_open.wait(), 10)
        assert_loopback(pc)
        stray = [
            ip.ip
            for a in ifaddr.get_adapters()
            for ip in a.ips
            if isinstance(ip.ip, str) and not is_loopback(ip.ip)
        ]
        cpu = time.process_time()
        report({"type": "open", "non_loopback_addresses": stray})
        await asyncio.wait_for(received.wait(), 60)
        report({"type": "done", "error": state["error"], "cpu_s": time.process_time() - cpu})
        await reader.read()  # until the parent closes our stdin
    finally:
        await pc.close()


async def profile(kind: str, total: int, high: int, low: int, top: int) -> str:
    """One transfer under cProfile: the functions that dominate, by own time."""
    prof = cProfile.Profile()
    prof.enable()
    try:
        await transfer(kind, total, high, low)
    finally:
        prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> None:
    """Run, print the table, write the JSON (or, with --child, be the answerer process)."""

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--runs", type=int, default=None, help="per stack and layout; default 3 (1 quick)"
        )
        p.add_argument(
            "--high", type=int, default=1024 * 1024, help="send while bufferedAmount <= this"
        )
        p.add_argument("--low", type=int, default=256 * 1024, help="bufferedAmountLowThreshold")
        p.add_argument("--layout", choices=["one", "two", "both"], default="both", help="processes")
        p.add_argument("--profile", choices=[OURS, AIORTC], help="instead: profile one transfer")
        # The answerer process of the two-process layout (started by this script).
        p.add_argument("--child", choices=[OURS, AIORTC], help=argparse.SUPPRESS)
        p.add_argument("--child-isolation", default="netns", help=argparse.SUPPRESS)
        p.add_argument("--child-count", type=int, default=0, help=argparse.SUPPRESS)

    args = parse_args(__doc__.splitlines()[0], options)
    if args.child:
        if args.child_isolation == "netns":
            asyncio.run(child_main(args.child, args.child_count))
        else:
            with AioiceLoopback():
                asyncio.run(child_main(args.child, args.child_count))
        return
    runs = args.runs or (1 if args.quick else 3)
    total = TOTAL // 4 if args.quick else TOTAL
    if args.profile:
        with loopback_only():
            print(asyncio.run(profile(args.profile, total, args.high, args.low, 30)))
        return
    layouts = {"one": ["one process"], "two": ["two processes"]}.get(
        args.layout, ["one process", "two processes"]
    )
    started = time.monotonic()
    with loopback_only() as isolation:
        child_isolation = "netns" if isolation.startswith("network namespace") else "patch"
        res = asyncio.run(measure(runs, total, args.high, args.low, layouts, child_isolation))
    rows = []
    for layout, per_layout in res["layouts"].items():
        for kind in (OURS, AIORTC):
            r = per_layout["mb_per_s"][kind]
            c = per_layout["cpu_s"][kind]["median"]
            rows.append(
                [
                    layout,
                    kind,
                    len(r["samples"]),
                    f"{r['median']:.1f}",
                    f"{r['min']:.1f}",
                    f"{r['max']:.1f}",
                    f"{c:.2f}",
                ]
            )
        ratio, cpu_ratio = (
            per_layout["ratio_ours_to_aiortc"],
            per_layout["cpu_ratio_ours_to_aiortc"],
        )
        rows.append([layout, "ours/aiortc", "", f"{ratio:.2f}", "", "", f"{cpu_ratio:.2f}"])
    print(
        f"Data channel throughput, {total / 2**20:.0f} MiB in 16 KiB messages, reliable ordered, "
        f"flow control {args.high // 1024}/{args.low // 1024} KiB ({isolation})"
    )
    headers = ["layout", "stack (with itself)", "runs", "median MB/s", "min", "max", "CPU s*"]
    print(table(headers, rows))
    print("* median CPU time of both peers (both processes) per transfer")
    print(
        "DESIGN target: at least aiortc's, measured in the same run (aiortc 17.5 MB/s, two processes)"
    )
    elapsed = time.monotonic() - started
    path = write_results(NAME, args.quick, {"isolation": isolation, "elapsed_s": elapsed, **res})
    print(f"wrote {path} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
