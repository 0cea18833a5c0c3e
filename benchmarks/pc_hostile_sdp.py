"""How long hostile signaling holds the event loop: setRemoteDescription and addIceCandidate.

Issue 7 item 8: a 1 MiB description with 15,000 candidate lines stalled the loop for
1.1 s, and 100,000 addIceCandidate calls grew remoteDescription to 5.5 MB. Each case is
one `setRemoteDescription(offer)` on a fresh RTCPeerConnection (gathering on 127.0.0.1
only), timed from the call until it returns or raises; nothing else runs meanwhile, so
that is the time the loop was held. The baseline, in the same run, is Chromium's real
offer (tests/data/sdp/chromium_real_offer.sdp). Cases:

- `chromium_offer`: the baseline.
- `candidates_8000`: 8,000 candidate lines, under the size limits: all but the first
  `max_candidate_lines` are ignored and counted (jsep/limits.py).
- `candidates_15000_1mib`: the issue's description (about 880 KB): over the byte limit,
  refused before parsing.
- `short_lines_at_limit`: as many one-attribute lines as the line limit allows, the
  costliest SDP to parse per byte.
- `add_ice_candidate`: the time of one addIceCandidate call while 20,000 distinct
  candidates are trickled to a connected peer connection, and the size of
  remoteDescription afterwards.

Run with `python benchmarks/pc_hostile_sdp.py [--quick]`; medians and p95 over the runs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from _common import ms, parse_args, summarize, table, write_results

from unbroken import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from unbroken.errors import UnbrokenError

NAME = "pc_hostile_sdp"
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "data" / "sdp"


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(hostAddresses=["127.0.0.1"]))


def candidate_lines(count: int) -> list[str]:
    """Distinct host candidates on loopback addresses, port 9 (discard): nobody listens."""
    return [
        f"candidate:{i} 1 udp {2122260223 - i} 127.0.{1 + (i >> 8) % 200}.{i & 255} 9 typ host"
        for i in range(count)
    ]


def with_lines(sdp: str, extra: list[str]) -> str:
    lines = sdp.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("a=mid"))
    return "\r\n".join(lines[: at + 1] + extra + lines[at + 1 :]) + "\r\n"


async def time_offer(sdp: str) -> tuple[float, str]:
    """Seconds one setRemoteDescription(offer) held the loop, and how it ended."""
    pc = new_pc()
    try:
        start = time.perf_counter()
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp, "offer"))
            outcome = "applied"
        except UnbrokenError as exc:
            outcome = type(exc).__name__
        return time.perf_counter() - start, outcome
    finally:
        await pc.close()


async def trickle_flood(count: int) -> tuple[list[float], int]:
    """Per-call times of `count` addIceCandidate calls, and remoteDescription's size after."""
    a, b = new_pc(), new_pc()
    a.createDataChannel("x")
    await a.setLocalDescription()
    assert a.localDescription is not None
    # Without end-of-candidates, so that the agent takes candidates until it is full.
    offer = a.localDescription.sdp.replace("a=end-of-candidates\r\n", "")
    await b.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await b.setLocalDescription()
    samples: list[float] = []
    for line in candidate_lines(count):
        start = time.perf_counter()
        await b.addIceCandidate({"candidate": line, "sdpMid": "0"})
        samples.append(time.perf_counter() - start)
    remote = b.remoteDescription
    size = len(remote.sdp) if remote is not None else 0
    await a.close()
    await b.close()
    return samples, size


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    runs = 3 if args.quick else 15
    from unbroken.jsep import limits

    chromium = (FIXTURE / "chromium_real_offer.sdp").read_text()
    cases: dict[str, str] = {
        "chromium_offer": chromium,
        "candidates_8000": with_lines(chromium, ["a=" + c for c in candidate_lines(8000)]),
        "candidates_15000_1mib": with_lines(chromium, ["a=" + c for c in candidate_lines(15000)]),
        "short_lines_at_limit": with_lines(
            chromium, ["a=x"] * (limits.MAX_DESCRIPTION_LINES - chromium.count("\n") - 2)
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    outcomes: dict[str, str] = {}
    for _ in range(runs):  # interleaved, so load changes hit every case alike
        for name, sdp in cases.items():
            seconds, outcomes[name] = await time_offer(sdp)
            samples[name].append(seconds)
    base = summarize(samples["chromium_offer"])["median"]
    rows: list[list[Any]] = []
    results: dict[str, Any] = {"runs": runs, "cases": {}}
    for name, sdp in cases.items():
        stats = summarize(samples[name])
        rows.append(
            [
                name,
                len(sdp.encode()),
                outcomes[name],
                ms(stats["median"]),
                ms(stats["p95"]),
                f"{stats['median'] / base:.1f}",
            ]
        )
        results["cases"][name] = {
            "bytes": len(sdp.encode()),
            "outcome": outcomes[name],
            "seconds": stats,
            "ratio_to_chromium_offer": stats["median"] / base,
            "samples": samples[name],
        }
    print(
        table(["setRemoteDescription", "bytes", "outcome", "median ms", "p95 ms", "x base"], rows)
    )
    count = 2000 if args.quick else 20000
    calls, size = await trickle_flood(count)
    stats = summarize(calls)
    print(
        f"\naddIceCandidate x {count}: median {stats['median'] * 1e6:.0f} us, "
        f"p95 {stats['p95'] * 1e6:.0f} us, max {ms(stats['max'])} ms; "
        f"remoteDescription afterwards {size} bytes"
    )
    results["add_ice_candidate"] = {"calls": count, "seconds": stats, "remote_bytes": size}
    print(f"\n{write_results(NAME, args.quick, results)}")


if __name__ == "__main__":
    asyncio.run(main())
