"""ICE connect latency on 127.0.0.1: unbroken's IceConnection against aioice (aiortc's ICE).

Each run builds two fresh connections and measures two figures, for both stacks, runs
interleaved (ours, aioice, ours, ...) so machine noise hits both alike:

* from candidates held: both sides have gathered; the clock starts when each is given
  the other's credentials, candidates and end-of-candidates, and stops when both are
  connected (ours: state connected/completed; aioice: both `connect()` returned);
* from gathering start: the clock starts before the sockets are bound; ours trickles
  candidates as they come (one loop turn per signaling hop), aioice gathers, exchanges,
  then connects (its API needs all candidates before `connect()` checks them).

aioice gathers on 127.0.0.1 only (see _common.AioiceLoopback) and has no STUN server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _common import (
    LOOPBACK,
    UP,
    AioiceLoopback,
    aioice_connection,
    aioice_exchange,
    close_all,
    ms,
    parse_args,
    summarize,
    table,
    write_results,
)

from unbroken.ice.candidate import Candidate
from unbroken.runtime import IceConnection
from unbroken.runtime.loopback import linked_pair

NAME = "connect_latency"
TIMEOUT = 10.0


async def ours_held() -> float:
    """Gather both first, then time credentials + candidates -> connected on both."""
    loop = asyncio.get_running_loop()
    a = IceConnection(controlling=True, address_filter=LOOPBACK)
    b = IceConnection(controlling=False, address_filter=LOOPBACK)
    cands: dict[IceConnection, list[Candidate]] = {a: [], b: []}
    done: dict[IceConnection, asyncio.Event] = {a: asyncio.Event(), b: asyncio.Event()}
    for conn in (a, b):
        conn.on("candidate", lambda c, ufrag, conn=conn: cands[conn].append(c.with_ufrag(ufrag)))
        conn.on("gatheringcomplete", lambda ufrag, conn=conn: done[conn].set())
    try:
        await asyncio.gather(a.gather(), b.gather())
        await asyncio.wait_for(asyncio.gather(done[a].wait(), done[b].wait()), TIMEOUT)
        start = loop.time()
        for conn, peer in ((a, b), (b, a)):
            conn.set_remote_credentials(*peer.local_credentials)
            for cand in cands[peer]:
                conn.add_remote_candidate(cand)
            conn.add_remote_candidate(None, peer.local_credentials[0])
        await asyncio.wait_for(
            asyncio.gather(
                a.wait_for_state(lambda s: s in UP), b.wait_for_state(lambda s: s in UP)
            ),
            TIMEOUT,
        )
        return loop.time() - start
    finally:
        await close_all(a, b)


async def ours_from_gather() -> float:
    """Time from gathering start (sockets bound) with trickle -> connected on both."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    a, b = linked_pair()
    try:
        a.set_remote_credentials(*b.local_credentials)
        b.set_remote_credentials(*a.local_credentials)
        await asyncio.gather(a.gather(), b.gather())
        await asyncio.wait_for(
            asyncio.gather(
                a.wait_for_state(lambda s: s in UP), b.wait_for_state(lambda s: s in UP)
            ),
            TIMEOUT,
        )
        return loop.time() - start
    finally:
        await close_all(a, b)


async def aioice_held() -> float:
    """aioice: gather both, then time credentials + candidates + connect() on both."""
    loop = asyncio.get_running_loop()
    a, b = aioice_connection(True), aioice_connection(False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        start = loop.time()
        await aioice_exchange(a, b)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), TIMEOUT)
        return loop.time() - start
    finally:
        await asyncio.gather(a.close(), b.close())


async def aioice_from_gather() -> float:
    """aioice: time gather + exchange + connect() on both."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    a, b = aioice_connection(True), aioice_connection(False)
    try:
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
        await aioice_exchange(a, b)
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), TIMEOUT)
        return loop.time() - start
    finally:
        await asyncio.gather(a.close(), b.close())


async def measure(runs: int) -> dict[str, Any]:
    """Interleave the four measurements `runs` times."""
    samples: dict[str, list[float]] = {
        "unbroken_from_candidates_held": [],
        "aioice_from_candidates_held": [],
        "unbroken_from_gathering_start": [],
        "aioice_from_gathering_start": [],
    }
    with AioiceLoopback():
        for _ in range(runs):
            samples["unbroken_from_candidates_held"].append(await ours_held())
            samples["aioice_from_candidates_held"].append(await aioice_held())
            samples["unbroken_from_gathering_start"].append(await ours_from_gather())
            samples["aioice_from_gathering_start"].append(await aioice_from_gather())
    out: dict[str, Any] = {"runs": runs}
    for key, values in samples.items():
        out[key] = summarize(values)
    out["ratio_median_from_candidates_held"] = (
        out["unbroken_from_candidates_held"]["median"]
        / out["aioice_from_candidates_held"]["median"]
    )
    out["ratio_median_from_gathering_start"] = (
        out["unbroken_from_gathering_start"]["median"]
        / out["aioice_from_gathering_start"]["median"]
    )
    out["samples_s"] = samples
    return out


def main() -> None:
    """Run, print the table, write the JSON."""
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--runs", type=int, default=None, help="default 50 (5 quick)"),
    )
    runs = args.runs or (5 if args.quick else 50)
    started = time.monotonic()
    res = asyncio.run(measure(runs))
    rows = []
    for label, key in (
        ("unbroken, from candidates held", "unbroken_from_candidates_held"),
        ("aioice, from candidates held", "aioice_from_candidates_held"),
        ("unbroken, from gathering start", "unbroken_from_gathering_start"),
        ("aioice, from gathering start", "aioice_from_gathering_start"),
    ):
        s = res[key]
        rows.append([label, s["n"], ms(s["median"]), ms(s["p95"]), ms(s["max"])])
    print(f"ICE connect latency on 127.0.0.1, {runs} runs each, interleaved (ms)")
    print(table(["measured", "n", "median", "p95", "max"], rows))
    print(
        "median ratio unbroken/aioice: "
        f"{res['ratio_median_from_candidates_held']:.2f} (candidates held), "
        f"{res['ratio_median_from_gathering_start']:.2f} (gathering start)"
    )
    print("DESIGN target: no slower than Chromium (0.04 s offer -> data channel open)")
    res["wall_s"] = time.monotonic() - started
    print(f"results: {write_results(NAME, args.quick, res)}")


if __name__ == "__main__":
    main()
