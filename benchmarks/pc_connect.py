"""RTCPeerConnection connect time on loopback: createOffer until the data channel is open on both sides.

Each run makes two fresh peer connections (certificates are generated in the
constructors, outside the timing) and a data channel on the offerer, then times from
createOffer through setLocalDescription, the in-process offer/answer exchange and
trickle (see _pc_common), until the channel is open on the offerer and the answerer
has it open too. Pairings: ours with ours, aiortc with aiortc (the baseline, in the
same run) and the two mixed ones; rounds interleave the pairings so that machine noise
falls on all of them alike. Also reported, as medians: signaling done (answer applied
at the offerer), ICE connected on both sides, connectionState connected on both
(DTLS up), all from createOffer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from _common import ms, parse_args, summarize, table, write_results
from _pc_common import AIORTC, OURS, connected, loopback_only

NAME = "pc_connect"
PAIRINGS = [(OURS, OURS), (AIORTC, AIORTC), (OURS, AIORTC), (AIORTC, OURS)]


def label(offerer: str, answerer: str) -> str:
    return f"{offerer} -> {answerer}"


async def measure(runs: int) -> dict[str, Any]:
    """`runs` connections per pairing; the samples, their summaries and the step medians."""
    samples: dict[str, list[float]] = {label(*p): [] for p in PAIRINGS}
    steps: dict[str, dict[str, list[float]]] = {label(*p): {} for p in PAIRINGS}
    for _ in range(runs):
        for offerer, answerer in PAIRINGS:
            link = await connected(offerer, answerer)
            try:
                name = label(offerer, answerer)
                samples[name].append(link.connect_time)
                m = link.marks
                derived = {
                    "signaling_done": m["answer_delivered"],
                    "ice_connected_both": max(m["ice_offerer"], m["ice_answerer"]),
                    "connected_both": max(m["connected_offerer"], m["connected_answerer"]),
                    "open_both": link.connect_time,
                }
                for key, value in derived.items():
                    steps[name].setdefault(key, []).append(value)
            finally:
                await link.close()
    return {
        name: {
            "connect": summarize(values),
            "step_medians_s": {k: statistics.median(v) for k, v in steps[name].items()},
            "samples_s": values,
        }
        for name, values in samples.items()
    }


def main() -> None:
    """Run, print the table, write the JSON."""

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--runs", type=int, default=None, help="per pairing; default 30 (5 quick)")

    args = parse_args(__doc__.splitlines()[0], options)
    runs = args.runs or (5 if args.quick else 30)
    started = time.monotonic()
    with loopback_only() as isolation:
        res = asyncio.run(measure(runs))
    rows = []
    for name, r in res.items():
        s, st = r["connect"], r["step_medians_s"]
        rows.append(
            [
                name,
                s["n"],
                ms(s["median"]),
                ms(s["p95"]),
                ms(s["max"]),
                ms(st["signaling_done"]),
                ms(st["ice_connected_both"]),
                ms(st["connected_both"]),
            ]
        )
    print(
        f"RTCPeerConnection connect, createOffer until the data channel is open on both sides ({isolation})"
    )
    print(
        table(
            [
                "offerer -> answerer",
                "n",
                "median ms",
                "p95 ms",
                "max ms",
                "signaled*",
                "ICE up*",
                "DTLS up*",
            ],
            rows,
        )
    )
    print(
        "* medians from createOffer: answer applied at the offerer, ICE connected on both, connectionState connected on both"
    )
    ours = res[label(OURS, OURS)]["connect"]["median"]
    theirs = res[label(AIORTC, AIORTC)]["connect"]["median"]
    print(
        f"ours/aiortc median ratio: {ours / theirs:.2f}; DESIGN target: no slower than Chromium (40 ms)"
    )
    elapsed = time.monotonic() - started
    path = write_results(
        NAME,
        args.quick,
        {"runs_per_pairing": runs, "isolation": isolation, "elapsed_s": elapsed, "pairings": res},
    )
    print(f"wrote {path} ({elapsed:.1f} s)")


if __name__ == "__main__":
    main()
