"""Delivery gap through ICE restarts on a healthy path (127.0.0.1), and datagrams lost.

A connected pair sends a numbered datagram every 10 ms each way on a fixed schedule.
The offerer restarts N times (the JSEP way, see _common.Restart), `--settle` seconds
apart. For each restart and direction, the longest interval between two consecutive
deliveries that overlaps the restart window (from the restart call until 100 ms after
both sides use the new generation) is that restart's gap. The same figure over windows
of the same length halfway between restarts (the control), and every interval outside
restart windows, show what the loop's own scheduling jitter gives. Every datagram sent
must arrive exactly once (make before break: nothing is dropped while the path changes).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import (
    Restart,
    Stream,
    close_all,
    longest_gap,
    ms,
    parse_args,
    pump,
    steady_gaps,
    summarize,
    table,
    write_results,
)

from unbroken.runtime.loopback import connected_pair

NAME = "gap"
INTERVAL = 0.010
AFTER = 0.100  # the window extends this far past the switch, for datagrams in flight


def max_delay(stream: Stream, arrivals: list[tuple[int, float]], start: float, end: float) -> float:
    """The longest one-way delay (arrival - send) of datagrams sent within [start, end]."""
    delays = [t - stream.sent_at[seq] for seq, t in arrivals if start <= stream.sent_at[seq] <= end]
    return max(delays, default=0.0)


def delivery(stream: Stream, arrivals: list[tuple[int, float]]) -> dict[str, int]:
    """Sent, delivered, lost, duplicated and reordered datagrams of one direction."""
    seqs = [s for s, _ in arrivals]
    unique = set(seqs)
    reordered = sum(1 for x, y in zip(seqs, seqs[1:]) if y < x)
    return {
        "sent": stream.sent,
        "delivered": len(seqs),
        "lost": len(set(range(stream.sent)) - unique),
        "duplicated": len(seqs) - len(unique),
        "reordered": reordered,
    }


async def measure(restarts: int, settle: float) -> dict[str, Any]:
    """Stream both ways through the restarts; return per-restart gaps and delivery counts."""
    loop = asyncio.get_running_loop()
    a, b = await connected_pair()
    to_b: list[tuple[int, float]] = []
    to_a: list[tuple[int, float]] = []
    pumps = [asyncio.create_task(pump(b._recv, to_b)), asyncio.create_task(pump(a._recv, to_a))]
    a_to_b, b_to_a = Stream(a.send, INTERVAL), Stream(b.send, INTERVAL)
    windows: list[tuple[float, float]] = []
    took: list[float] = []
    try:
        a_to_b.start()
        b_to_a.start()
        begin = loop.time()
        for _ in range(restarts):
            await asyncio.sleep(settle)
            r = Restart(a, b)
            await r.run()
            windows.append((r.called, max(r.switched.values()) + AFTER))
            took.append(r.from_call)
        await asyncio.sleep(settle)
        end = loop.time()
        a_to_b.stop()
        b_to_a.stop()
        await asyncio.sleep(0.2)  # let the last datagrams land
    finally:
        a_to_b.stop()
        b_to_a.stop()
        await close_all(a, b)
        await asyncio.gather(*pumps)
    gaps_ab = [longest_gap([t for _, t in to_b], s, e) for s, e in windows]
    gaps_ba = [longest_gap([t for _, t in to_a], s, e) for s, e in windows]
    per_restart = [max(x, y) for x, y in zip(gaps_ab, gaps_ba)]
    # Control: windows of the same length halfway between restarts, where nothing happens.
    controls = [(s - settle / 2, s - settle / 2 + (e - s)) for s, e in windows]
    control = [
        max(longest_gap([t for _, t in to_b], s, e), longest_gap([t for _, t in to_a], s, e))
        for s, e in controls
    ]
    delay = [max(max_delay(a_to_b, to_b, s, e), max_delay(b_to_a, to_a, s, e)) for s, e in windows]
    steady_delay = [t - a_to_b.sent_at[seq] for seq, t in to_b] + [
        t - b_to_a.sent_at[seq] for seq, t in to_a
    ]
    steady = steady_gaps([t for _, t in to_b], windows, begin, end) + steady_gaps(
        [t for _, t in to_a], windows, begin, end
    )
    return {
        "restarts": restarts,
        "interval_s": INTERVAL,
        "settle_s": settle,
        "gap_per_restart_both_directions": summarize(per_restart),
        "gap_per_restart_a_to_b": summarize(gaps_ab),
        "gap_per_restart_b_to_a": summarize(gaps_ba),
        "steady_interval_outside_restarts": summarize(steady),
        "control_same_length_windows_between_restarts": summarize(control),
        "max_one_way_delay_per_restart": summarize(delay),
        "one_way_delay_all_datagrams": summarize(steady_delay),
        "restart_from_call": summarize(took),
        "delivery_a_to_b": delivery(a_to_b, to_b),
        "delivery_b_to_a": delivery(b_to_a, to_a),
        "samples_gap_per_restart_s": per_restart,
    }


def main() -> None:
    """Run, print the table, write the JSON."""
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: (
            p.add_argument("--restarts", type=int, default=None, help="default 20 (5 quick)"),
            p.add_argument("--settle", type=float, default=0.5, help="seconds between restarts"),
        ),
    )
    restarts = args.restarts or (5 if args.quick else 20)
    started = time.monotonic()
    res = asyncio.run(measure(restarts, args.settle))
    rows = []
    for label, key in (
        ("longest gap per restart, both directions", "gap_per_restart_both_directions"),
        ("  a -> b (offerer to answerer)", "gap_per_restart_a_to_b"),
        ("  b -> a", "gap_per_restart_b_to_a"),
        (
            "control: same-length windows between restarts",
            "control_same_length_windows_between_restarts",
        ),
        ("steady state: any interval outside restarts", "steady_interval_outside_restarts"),
        ("longest one-way delay per restart", "max_one_way_delay_per_restart"),
        ("one-way delay, every datagram", "one_way_delay_all_datagrams"),
    ):
        s = res[key]
        rows.append([label, s["n"], ms(s["median"]), ms(s["p95"]), ms(s["max"])])
    print(f"Delivery gap through {restarts} ICE restarts, a datagram every 10 ms each way (ms)")
    print(table(["measured", "n", "median", "p95", "max"], rows))
    drows = []
    for label, key in (("a -> b", "delivery_a_to_b"), ("b -> a", "delivery_b_to_a")):
        d = res[key]
        drows.append([label, d["sent"], d["delivered"], d["lost"], d["duplicated"], d["reordered"]])
    print(table(["direction", "sent", "delivered", "lost", "duplicated", "reordered"], drows))
    print("DESIGN target: longest gap no more than the send interval (10 ms); nothing lost")
    res["wall_s"] = time.monotonic() - started
    print(f"results: {write_results(NAME, args.quick, res)}")
    lost = res["delivery_a_to_b"]["lost"] + res["delivery_b_to_a"]["lost"]
    if lost:
        raise SystemExit(f"{lost} datagrams lost through restarts")


if __name__ == "__main__":
    main()
