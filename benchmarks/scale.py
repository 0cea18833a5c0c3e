"""Idle connections at scale: CPU and memory of 1,000 connected IceConnection pairs.

All pairs live in one process on 127.0.0.1, both ends of each pair in this process, with
consent checks running (one check per end every `keepalive` seconds, randomized 0.8-1.2;
default keepalive = disconnected_timeout / 2.5 = 1 s). Measured:

* CPU: process CPU time (user + system) over a `--window` of wall time, as % of one core;
  per connection end (one IceConnection), and per 1,000 ends, which is what one side of
  1,000 peer connections costs (each end sends and answers its own checks, so the cost of
  an end does not depend on where its peer runs);
* memory: resident set size growth per end (RSS, everything: Python objects, sockets,
  allocator slack), and Python heap per end from a tracemalloc snapshot diff over a
  separate batch of pairs (tracemalloc is off during the CPU window: it slows everything).

`--profile` adds a cProfile of the idle process for a few seconds (top functions).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import os
import pstats
import resource
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import close_all, parse_args, table, write_results

from unbroken.ice import IceConfig, IceTransportState
from unbroken.runtime import IceConnection
from unbroken.runtime.loopback import connected_pair

NAME = "scale"
BATCH = 50


def raise_fd_limit() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard limit (each end holds one UDP socket)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def rss_bytes() -> int:
    """The current resident set size of this process."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


async def connect_many(n: int, config: IceConfig) -> list[tuple[IceConnection, IceConnection]]:
    """Connect `n` pairs, BATCH at a time."""
    pairs: list[tuple[IceConnection, IceConnection]] = []
    while len(pairs) < n:
        batch = min(BATCH, n - len(pairs))
        pairs += await asyncio.gather(*(connected_pair(config, timeout=30.0) for _ in range(batch)))
    return pairs


def consent_sent(pairs: list[tuple[IceConnection, IceConnection]]) -> int:
    """Consent requests sent so far by every end."""
    total = 0
    for a, b in pairs:
        for conn in (a, b):
            total += sum(p.consent_requests_sent for p in conn.agent.pairs())
    return total


async def measure(
    n: int, window: float, heap_pairs: int, profile: float, config: IceConfig
) -> dict[str, Any]:
    """Connect, measure CPU over the window, then the heap per end; close everything."""
    loop = asyncio.get_running_loop()
    limit = raise_fd_limit()
    if limit[0] != resource.RLIM_INFINITY and limit[0] < 2 * (n + heap_pairs) + 100:
        raise SystemExit(f"RLIMIT_NOFILE {limit} is too low for {n + heap_pairs} pairs")
    gc.collect()
    rss0 = rss_bytes()
    t0 = loop.time()
    pairs = await connect_many(n, config)
    connect_s = loop.time() - t0
    gc.collect()
    rss1 = rss_bytes()
    lost_state: list[IceTransportState] = []
    for a, b in pairs:
        for conn in (a, b):
            conn.on(
                "statechange",
                lambda s: (
                    lost_state.append(s)
                    if s in (IceTransportState.DISCONNECTED, IceTransportState.FAILED)
                    else None
                ),
            )
    ends = 2 * n
    # Let every end's consent timer reach its steady rhythm before timing.
    await asyncio.sleep(2.0)
    checks0 = consent_sent(pairs)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(window)
    cpu1, wall1 = time.process_time(), time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    checks1 = consent_sent(pairs)
    wall = wall1 - wall0
    cpu_pct = (cpu1 - cpu0) / wall * 100
    profile_text = None
    if profile > 0:
        prof = cProfile.Profile()
        prof.enable()
        await asyncio.sleep(profile)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        profile_text = buf.getvalue()
    up = sum(
        1
        for a, b in pairs
        for conn in (a, b)
        if conn.state in (IceTransportState.CONNECTED, IceTransportState.COMPLETED)
    )
    lost_events = len(lost_state)
    for a, b in pairs:
        await close_all(a, b)
    del pairs
    await asyncio.sleep(0.1)
    # The Python heap per end, on a separate batch in a quiet process (the big population
    # is closed, so its transient objects do not pollute the diff); tracemalloc counts
    # traced blocks only, so memory freed above and reused here does not skew it.
    gc.collect()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    extra = await connect_many(heap_pairs, config)
    await asyncio.sleep(2.5)  # past the first consent exchanges: steady-state objects
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snap1.compare_to(snap0, "filename")
    heap_total = sum(s.size_diff for s in stats)
    top = [
        {"file": str(s.traceback[0].filename), "bytes_per_end": s.size_diff / (2 * heap_pairs)}
        for s in stats[:12]
    ]
    for a, b in extra:
        await close_all(a, b)
    return {
        "pairs": n,
        "ends": ends,
        "keepalive_s": config.keepalive,
        "disconnected_timeout_s": config.disconnected_timeout,
        "window_s": wall,
        "connect_all_s": connect_s,
        "all_connected_after_window": up == ends,
        "ends_connected_after_window": up,
        "disconnected_or_failed_events": lost_events,
        "consent_checks_per_s": (checks1 - checks0) / wall,
        "consent_checks_per_end_per_s": (checks1 - checks0) / wall / ends,
        "cpu_percent_of_one_core_total": cpu_pct,
        "cpu_percent_user": (ru1.ru_utime - ru0.ru_utime) / wall * 100,
        "cpu_percent_system": (ru1.ru_stime - ru0.ru_stime) / wall * 100,
        "cpu_percent_per_1000_ends": cpu_pct / ends * 1000,
        "cpu_us_per_end_per_s": (cpu1 - cpu0) / wall / ends * 1e6,
        "rss_growth_bytes": rss1 - rss0,
        "rss_per_end_bytes": (rss1 - rss0) / ends,
        "heap_pairs": heap_pairs,
        "heap_per_end_bytes": heap_total / (2 * heap_pairs),
        "heap_top_files": top,
        "rlimit_nofile": list(limit),
        "profile": profile_text,
    }


def main() -> None:
    """Run, print the table, write the JSON."""
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: (
            p.add_argument(
                "--pairs", type=int, default=1000, help="connected pairs (default 1000)"
            ),
            p.add_argument(
                "--window", type=float, default=None, help="CPU window, s (30; 10 quick)"
            ),
            p.add_argument(
                "--heap-pairs", type=int, default=None, help="tracemalloc batch (100; 20 quick)"
            ),
            p.add_argument("--profile", type=float, default=0.0, help="cProfile this many seconds"),
            p.add_argument(
                "--keepalive", type=float, default=None, help="IceConfig.keepalive_interval, s"
            ),
            p.add_argument(
                "--disconnected-timeout",
                type=float,
                default=None,
                help="IceConfig.disconnected_timeout, s (keepalive follows: timeout / 2.5)",
            ),
            p.add_argument("--name", default=NAME, help="results file name (results/<name>.json)"),
        ),
    )
    window = args.window or (10.0 if args.quick else 30.0)
    heap_pairs = args.heap_pairs or (20 if args.quick else 100)
    started = time.monotonic()
    config = IceConfig(keepalive_interval=args.keepalive)
    if args.disconnected_timeout is not None:
        config = IceConfig(
            keepalive_interval=args.keepalive, disconnected_timeout=args.disconnected_timeout
        )
    res = asyncio.run(measure(args.pairs, window, heap_pairs, args.profile, config))
    n, ends = res["pairs"], res["ends"]
    print(
        f"{n} idle connected pairs ({ends} IceConnections) on 127.0.0.1, consent running; "
        f"keepalive {res['keepalive_s']:g} s, disconnected_timeout "
        f"{res['disconnected_timeout_s']:g} s; CPU over {res['window_s']:.1f} s"
    )
    rows = [
        ["connect all pairs (batches of 50)", f"{res['connect_all_s']:.2f} s"],
        ["consent checks sent per second (all ends)", f"{res['consent_checks_per_s']:.0f}"],
        [
            "CPU, whole process (2 ends per pair)",
            f"{res['cpu_percent_of_one_core_total']:.1f} % of a core",
        ],
        [
            "  of which user / system",
            f"{res['cpu_percent_user']:.1f} / {res['cpu_percent_system']:.1f} %",
        ],
        [
            "CPU per 1,000 ends (DESIGN: 1,000 connections)",
            f"{res['cpu_percent_per_1000_ends']:.1f} % of a core",
        ],
        ["CPU per end", f"{res['cpu_us_per_end_per_s']:.0f} us/s"],
        ["RSS growth per end", f"{res['rss_per_end_bytes'] / 1024:.1f} KiB"],
        [
            f"Python heap per end (tracemalloc, {res['heap_pairs']} pairs)",
            f"{res['heap_per_end_bytes'] / 1024:.1f} KiB",
        ],
        ["ends still connected after the window", f"{res['ends_connected_after_window']} / {ends}"],
        ["disconnected/failed events during the run", str(res["disconnected_or_failed_events"])],
    ]
    print(table(["measured", "value"], rows))
    print("Python heap per end, by file (top):")
    for item in res["heap_top_files"][:8]:
        print(f"  {item['bytes_per_end'] / 1024:7.2f} KiB  {item['file']}")
    print("DESIGN target: 1,000 connections under 5% of a core and under 50 KB each")
    if res["profile"]:
        print(res["profile"])
    res["wall_s"] = time.monotonic() - started
    print(f"results: {write_results(args.name, args.quick, res)}")


if __name__ == "__main__":
    main()
