"""After an outage: how soon the first message sent during it arrives, with and without the nudge.

Issue 7 item 10: after ICE recovers from an outage, data sent meanwhile waits for SCTP's
retransmission timer. The peer connection nudges SCTP (`aiortc_seam.retransmit_now`)
when the path changes after silence. This measures what that buys, so that the test
(tests/test_pc_netns.py) can assert a correctness bound well below the timer's figure.

Two of our RTCPeerConnections on two veth interfaces in a network namespace
(tests/netns_pc.py), a reliable ordered data channel with a numbered message every 10 ms
each way. After 1 s of traffic, nftables drops every UDP packet on input for --outage
seconds (a dead path: sendto() still succeeds), then stops dropping. Measured per run,
from the moment the drop rule is removed ("back"), per direction: when the first
message sent during the outage arrives ("first lost"), and when every message sent
before "back" has arrived ("backlog"). Every run checks that every message arrived
exactly once and in order.

Scenarios:
- `same-pair`: no application handler; the selected pair comes back by itself (consent
  checks resume, `disconnected` -> `connected`, no new pair).
- `restart`: A calls restartIce() when it goes `disconnected` (a typical application
  handler, signaling in process and unaffected by the outage).
- `handover`: the outage ends on a new network: A's address is replaced (`ip addr del`
  + `add`) as the drop rule goes, and A's application calls restartIce() then (as on a
  network-change event); the new generation's pair takes over from a pair that has
  heard nothing for the whole outage (a path change after silence).

aiortc's T3 timer runs at a fixed RTO (1 s here: aiortc 1.16 does not double it on
expiry), restarted about when the outage began, so without a nudge the first lost
message waits for the next expiry: up to one RTO, depending on the outage's length
modulo the RTO. Each run's outage is therefore --outage plus a phase spread evenly over
[0, 1) s (the same phases for every scenario and variant), recorded in the JSON.

Variants, interleaved run by run: `nudge` (the tree as it is) and `no-nudge`
(`unbroken.peerconnection.aiortc_seam.retransmit_now` replaced by a no-op for the run:
SCTP's own T3 timer only). Needs root (network namespaces) and nftables.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from _common import clean, ms, parse_args, summarize, table, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import netns_pc  # noqa: E402
import unbroken.peerconnection.aiortc_seam as seam  # noqa: E402
from netns_pc import A_ADDRESS, FaultNs, PcPair, arrival_of, delivery_problem, first_sent_after  # noqa: E402
from pc_helpers import negotiate  # noqa: E402
from unbroken.ice import IceConfig  # noqa: E402

NAME = "outage_resume"
SCENARIOS = ("same-pair", "restart", "handover")
VARIANTS = ("nudge", "no-nudge")
REAL_NUDGE = seam.retransmit_now


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=5, help="runs per scenario and variant")
    parser.add_argument(
        "--outage", type=float, default=9.0, help="outage length in seconds, before the phase"
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")


def _no_nudge(sctp: Any) -> bool:
    return False


async def one_run(fault: FaultNs, scenario: str, variant: str, outage: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    inner = REAL_NUDGE if variant == "nudge" else _no_nudge
    nudges: list[float] = []

    def counting(sctp: Any) -> bool:
        nudges.append(loop.time())
        return inner(sctp)

    seam.retransmit_now = counting
    pair = PcPair(IceConfig())
    try:
        await pair.connect()
        if scenario == "restart":

            def on_state() -> None:
                if pair.a.pc.iceConnectionState == "disconnected":
                    pair.a.pc.restartIce()

            async def on_negotiation() -> None:
                await negotiate(pair.a.pc, pair.b.pc)

            pair.a.pc.on("iceconnectionstatechange", on_state)
            pair.a.pc.on("negotiationneeded", on_negotiation)
        await pair.until(
            lambda: len(pair.a.received) >= 100 and len(pair.b.received) >= 100, 10, "traffic"
        )
        fault.outage(True)  # blocks the loop until the rule is in: nothing is sent meanwhile
        began = loop.time()
        # The length of the fault, not synchronisation.
        await asyncio.sleep(outage)
        if scenario == "handover":
            fault.move_a()
        fault.outage(False)
        back = loop.time()
        lost_ab = first_sent_after(pair.a, began)
        lost_ba = first_sent_after(pair.b, began)
        last_ab = len(pair.a.sent_at) - 1  # the last messages sent during the outage
        last_ba = len(pair.b.sent_at) - 1
        if scenario == "handover":
            pair.a.pc.restartIce()
            await negotiate(pair.a.pc, pair.b.pc)
        await pair.until(
            lambda: (
                arrival_of(pair.b.received, last_ab) is not None
                and arrival_of(pair.a.received, last_ba) is not None
            ),
            60,
            "the backlog",
        )
        sent_a, sent_b = await pair.finish()
        problems = [
            p
            for p in (
                delivery_problem(pair.b.received, sent_a),
                delivery_problem(pair.a.received, sent_b),
            )
            if p is not None
        ]
        times = {
            "first_lost_ab_s": arrival_of(pair.b.received, lost_ab),
            "first_lost_ba_s": arrival_of(pair.a.received, lost_ba),
            "backlog_ab_s": arrival_of(pair.b.received, last_ab),
            "backlog_ba_s": arrival_of(pair.a.received, last_ba),
        }
        since_back = {k: v - back for k, v in times.items() if v is not None}
        assert len(since_back) == len(times), times  # the wait above saw them all
        out: dict[str, Any] = {
            **since_back,
            "first_lost_s": max(since_back["first_lost_ab_s"], since_back["first_lost_ba_s"]),
            "backlog_s": max(since_back["backlog_ab_s"], since_back["backlog_ba_s"]),
            "outage_s": back - began,
            "nudges_after_back_s": [t - back for t in nudges],
            "ice_a": pair.a.states("iceconnectionstatechange"),
            "ice_b": pair.b.states("iceconnectionstatechange"),
            "problems": problems,
        }
        return out
    finally:
        seam.retransmit_now = REAL_NUDGE
        await pair.close()


async def measure(runs: int, outage: float, scenarios: list[str]) -> dict[str, Any]:
    fault = FaultNs.create()
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {v: [] for v in VARIANTS} for s in scenarios
    }
    try:
        with fault.ns.entered():
            for index in range(runs):
                phase = (index + 0.5) / runs  # evenly over [0, 1) s, see the docstring
                for scenario in scenarios:
                    for variant in VARIANTS:
                        if fault.a_address != A_ADDRESS:
                            fault.move_a(A_ADDRESS)  # the handover moved it: restore
                        result = await one_run(fault, scenario, variant, outage + phase)
                        samples[scenario][variant].append(result)
                        print(
                            f"run {index + 1}/{runs} {scenario} {variant} outage "
                            f"{result['outage_s']:.2f} s: first lost "
                            f"{ms(result['first_lost_s'])} ms, backlog {ms(result['backlog_s'])}"
                            f" ms, nudges {len(result['nudges_after_back_s'])}, "
                            f"problems {result['problems']}",
                            flush=True,
                        )
    finally:
        fault.delete()
    summary: dict[str, Any] = {}
    for scenario, variants in samples.items():
        summary[scenario] = {}
        for variant, results in variants.items():
            summary[scenario][variant] = {
                "first_lost_s": summarize([r["first_lost_s"] for r in results]),
                "backlog_s": summarize([r["backlog_s"] for r in results]),
                "runs": results,
            }
    return summary


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], options)
    reason = netns_pc.fault_ns_missing()
    if reason is not None:
        print(f"outage_resume: cannot run: {reason}", file=sys.stderr)
        raise SystemExit(2)
    runs = 1 if args.quick else args.runs
    scenarios = [s for s in args.scenarios.split(",") if s]
    summary = asyncio.run(measure(runs, args.outage, scenarios))
    rows = []
    for scenario, variants in summary.items():
        for variant, s in variants.items():
            first, backlog = s["first_lost_s"], s["backlog_s"]
            rows.append(
                [
                    scenario,
                    variant,
                    first["n"],
                    ms(first["median"]),
                    ms(first["p95"]),
                    ms(first["max"]),
                    ms(backlog["median"]),
                    ms(backlog["p95"]),
                ]
            )
    headers = ["scenario", "variant", "n", "first lost med", "p95", "max", "backlog med", "p95"]
    print(table(headers, rows))
    problems = [
        p
        for variants in summary.values()
        for s in variants.values()
        for r in s["runs"]
        for p in r["problems"]
    ]
    path = write_results(
        NAME, args.quick, clean({"outage_s": args.outage, "interval_ms": 10, "results": summary})
    )
    print(f"wrote {path}")
    if problems:
        print("delivery problems:\n" + "\n".join(problems), file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
