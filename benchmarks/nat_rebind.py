"""Healing after a NAT rebinding, through a real NAT, with and without an application handler.

The test bed of tests/interop/nat.py (needs root): peer A behind a home router (nftables
masquerade, a firewall dropping NEW inbound packets), peer B and coturn (STUN) in the
"public" namespace, each peer one of our RTCPeerConnections in its own process
(tests/interop/nat_peer.py), A offering (controlling), a reliable ordered data channel
with a numbered message every 20 ms each way. Each run starts a fresh pair of peers on
a router reset to port-keeping masquerade, lets 25 messages each way through, then
rebinds: `masquerade random` and `conntrack -F`, so A's packets leave from a new
external port and packets to the old one are dropped (issue 12).

Variants, interleaved run by run so both see the same machine load:
- `none`: no application handler at all (the connection must heal by itself);
- `restart-on-disconnected`: B calls restartIce() when iceConnectionState becomes
  "disconnected" (the usual application workaround; the baseline).

Per run, from the fault (time.time() once `conntrack -F` returned; every process
stamps events with the same clock): "first message both ways", when each direction
has delivered a message sent after the fault, and "all data both ways", when each
direction has delivered a message sent after the fault within 100 ms of sending it
(the channel is ordered, so the whole backlog is in by then). After healing the run
goes on for another 25 messages each way, both streams stop, and every message must
have arrived exactly once and in order; otherwise the benchmark exits 1. A run that
does not heal within --limit seconds is recorded as such.

Target (issue 12): under 1 s to all data flowing both ways, nothing lost (Chromium with
Chromium: 2.8 s to the first message, 5.8 s to all).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from _common import clean, ms, parse_args, summarize, table, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from interop.nat import (  # noqa: E402
    PUBLIC_IP,
    NatBed,
    PeerProcess,
    connect,
    delivery_problem,
    finish,
    heal_times,
    lan_host,
    nat_missing,
    relay,
    wait_healed,
)

NAME = "nat_rebind"
VARIANTS = ("none", "restart-on-disconnected")
STEADY = 25  # messages each way before the fault and after healing


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=10, help="runs per variant (default 10)")
    parser.add_argument(
        "--limit", type=float, default=40.0, help="seconds to wait for healing (default 40)"
    )
    parser.add_argument(
        "--name", default=NAME, help=f"results file name (default {NAME}): keep other trees' runs"
    )


async def one_run(bed: NatBed, variant: str, limit: float) -> dict[str, Any]:
    """One fresh call, one rebinding; what it took to heal."""
    router = bed.router(1)
    router.set_random_ports(False)
    router.flush()
    a = PeerProcess("A", bed.lan(1), lan_host(1), offerer=True)
    b = PeerProcess("B", bed.public, PUBLIC_IP, polite=True, handler=variant)
    try:
        await asyncio.gather(a.start(), b.start())
        async with relay(a, b):
            await connect(a, b, messages=STEADY)
            before = router.external_ports(PUBLIC_IP)
            fault = router.rebind()
            first, done = await wait_healed(a, b, fault, limit)
            after = router.external_ports(PUBLIC_IP)
            result: dict[str, Any] = {
                "variant": variant,
                "first_both_ways": first,
                "all_both_ways": done,
                "a_to_b": heal_times(b.received, fault),
                "b_to_a": heal_times(a.received, fault),
                "ports_before": before,
                "ports_after": after,
                "handler_fired": b.count("handler", since=fault),
                "descriptions_after_fault": a.count("description", since=fault)
                + b.count("description", since=fault),
                "b_states_after_fault": [
                    e["value"]
                    for e in b.events
                    if e["ev"] == "state" and e["prop"] == "iceConnectionState" and e["t"] >= fault
                ],
                "errors": a.errors + b.errors,
            }
            if done is None:
                result["lost"] = None
                return result
            await a.wait_received(len(a.received) + STEADY, 15)
            await b.wait_received(len(b.received) + STEADY, 15)
            sent_a, sent_b = await finish(a, b, timeout=30)
            result["sent"] = [sent_a, sent_b]
            result["lost"] = [
                delivery_problem(b.received, sent_a),
                delivery_problem(a.received, sent_b),
            ]
            return result
    finally:
        await a.close()
        await b.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = 2 if args.quick else args.runs
    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    bed = NatBed.create(lans=1)
    try:
        for index in range(runs):
            for variant in VARIANTS:
                result = await one_run(bed, variant, args.limit)
                samples[variant].append(result)
                print(
                    f"run {index + 1}/{runs} {variant}: first {_s(result['first_both_ways'])}, "
                    f"all {_s(result['all_both_ways'])}, handler fired {result['handler_fired']}x, "
                    f"ports {result['ports_before']} -> {result['ports_after']}",
                    flush=True,
                )
    finally:
        bed.close()
    summary = {}
    for variant, results in samples.items():
        healed = [r for r in results if r["all_both_ways"] is not None]
        summary[variant] = {
            "runs": len(results),
            "healed": len(healed),
            "first_both_ways": summarize([r["first_both_ways"] for r in healed]),
            "all_both_ways": summarize([r["all_both_ways"] for r in healed]),
            "handler_fired_runs": sum(1 for r in results if r["handler_fired"]),
            "delivery_problems": [p for r in healed for p in r["lost"] if p is not None],
            "errors": [e for r in results for e in r["errors"]],
        }
    return {"limit_s": args.limit, "summary": summary, "samples": samples}


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.3f} s"


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], options)
    problem = nat_missing()
    if problem is not None:
        print(f"nat_rebind needs the namespace test bed: {problem}", file=sys.stderr)
        raise SystemExit(2)
    results = asyncio.run(run(args))
    rows = []
    for variant, s in results["summary"].items():
        first, done = s["first_both_ways"], s["all_both_ways"]
        rows.append(
            [
                variant,
                f"{s['healed']}/{s['runs']}",
                ms(first["median"]),
                ms(first["p95"]),
                ms(done["median"]),
                ms(done["p95"]),
                ms(done["max"]),
                s["handler_fired_runs"],
                len(s["delivery_problems"]),
            ]
        )
    print()
    print(
        table(
            [
                "handler on B",
                "healed",
                "first both ways median (ms)",
                "p95",
                "all data both ways median (ms)",
                "p95",
                "max",
                "runs handler fired",
                "runs with loss",
            ],
            rows,
        )
    )
    path = write_results(args.name, args.quick, clean(results))
    print(f"\nresults: {path}")
    bad = [
        v
        for v, s in results["summary"].items()
        if s["delivery_problems"] or s["errors"] or s["healed"] < s["runs"]
    ]
    if bad:
        print(f"problems in: {', '.join(bad)}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
