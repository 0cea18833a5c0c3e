"""Idle cost of full peer connections: what users run, not the agent alone (issue 9).

`--pairs` pairs of our RTCPeerConnection in one process on 127.0.0.1, each with an open
data channel and nothing to send, default timers (disconnected after 2.5 s). Measured
over `--window` seconds once all are connected:

* CPU: process CPU time (user + system) as % of one core, per 1,000 connection ends
  (an end is one RTCPeerConnection);
* memory: resident set growth per end while connecting them (everything: Python
  objects, sockets, aiortc's DTLS and SCTP state, allocator slack).

Also counted over the window, per end per second: STUN datagrams sent (checks and
answers, from the agents' pair counters) and event-loop wakeups (selector polls).

`--profile` adds a cProfile of the idle window (top functions by own time).
Target (DESIGN.md): at most 10% of a core per 1,000 ends, at most 50 KB per end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import resource
import time
from pathlib import Path
from typing import Any

from unbroken import RTCConfiguration, RTCPeerConnection

RESULTS = Path(__file__).resolve().parent / "results" / "pc_idle.json"


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit(need: int) -> None:
    """At least `need` descriptors if the process may (root may raise the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, hard, need)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def connected_pair() -> tuple[RTCPeerConnection, RTCPeerConnection]:
    """Two of ours joined in process (trickle in order), an open data channel between them."""
    config = RTCConfiguration(hostAddresses=["127.0.0.1"])
    a, b = RTCPeerConnection(config), RTCPeerConnection(config)
    loop = asyncio.get_running_loop()
    for src, dst in ((a, b), (b, a)):

        def forward(candidate: Any, dst: RTCPeerConnection = dst) -> None:
            if candidate is not None:
                loop.create_task(dst.addIceCandidate(candidate.toJSON()))

        src.on("icecandidate", forward)
    opened = asyncio.Event()
    a.createDataChannel("idle").on("open", opened.set)
    await a.setLocalDescription()
    await b.setRemoteDescription(a.localDescription)
    await b.setLocalDescription()
    await a.setRemoteDescription(b.localDescription)
    await asyncio.wait_for(opened.wait(), 30)
    return a, b


def stun_sent(made: list[tuple[RTCPeerConnection, RTCPeerConnection]]) -> int:
    """Checks and answers sent so far by every end (the agents' pair counters)."""
    total = 0
    for pair in made:
        for pc in pair:
            if pc.iceTransport is not None:
                pairs = pc.iceTransport.agent.pairs()
                total += sum(p.requests_sent + p.consent_requests_sent for p in pairs)
                total += sum(p.responses_sent for p in pairs)
    return total


class PollCounter:
    """Counts the event loop's selector polls (one per loop turn) while installed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.selector = loop._selector  # type: ignore[attr-defined]
        self.select = self.selector.select
        self.polls = 0

    def __enter__(self) -> PollCounter:
        def counted(timeout: float | None = None) -> Any:
            self.polls += 1
            return self.select(timeout)

        self.selector.select = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.selector.select = self.select


async def run(pairs: int, window: float, profile: bool) -> dict[str, Any]:
    raise_fd_limit(4 * 2 * pairs + 1024)  # a base and a pinned socket per end, and slack
    gc.collect()
    rss_before = rss_bytes()
    made: list[tuple[RTCPeerConnection, RTCPeerConnection]] = []
    while len(made) < pairs:
        batch = min(25, pairs - len(made))
        made += await asyncio.gather(*(connected_pair() for _ in range(batch)))
    await asyncio.sleep(3.0)  # let connection set-up work settle (benchmark, not a test)
    gc.collect()
    rss_after = rss_bytes()
    ends = 2 * pairs
    prof = cProfile.Profile() if profile else None
    sent0 = stun_sent(made)
    with PollCounter(asyncio.get_running_loop()) as polls:
        cpu0, wall0 = time.process_time(), time.monotonic()
        if prof is not None:
            prof.enable()
        await asyncio.sleep(window)
        if prof is not None:
            prof.disable()
        cpu = time.process_time() - cpu0
        wall = time.monotonic() - wall0
    sent = stun_sent(made) - sent0
    states = [pc.iceConnectionState for pair in made for pc in pair]
    connected = sum(s in ("connected", "completed") for s in states)
    for a, b in made:
        await a.close()
        await b.close()
    core = 100.0 * cpu / wall
    result: dict[str, Any] = {
        "pairs": pairs,
        "ends": ends,
        "window_s": round(wall, 2),
        "cpu_percent_of_core": round(core, 2),
        "cpu_percent_per_1000_ends": round(core * 1000 / ends, 2),
        "rss_per_end_kb": round((rss_after - rss_before) / ends / 1024, 1),
        "stun_sent_per_end_per_s": round(sent / ends / wall, 3),
        "loop_wakeups_per_end_per_s": round(polls.polls / ends / wall, 3),
        "ends_still_connected": connected,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_average": os.getloadavg(),
    }
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(45)
        result["profile"] = out.getvalue()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="pairs (200; 50 quick)")
    parser.add_argument("--window", type=float, default=None, help="idle window, s (10; 5 quick)")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--name", default="pc_idle")
    args = parser.parse_args()
    pairs = args.pairs or (50 if args.quick else 200)
    window = args.window or (5.0 if args.quick else 10.0)
    result = asyncio.run(run(pairs, window, args.profile))
    profile = result.pop("profile", None)
    print(json.dumps(result, indent=2))
    if profile:
        print(profile)
    path = RESULTS.with_name(f"{args.name}.json")
    path.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
