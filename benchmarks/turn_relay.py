"""TURN relay on loopback: relay connect and restart next to host ones, aiortc's relay connect, throughput.

A real coturn (tests/coturn.py) runs next to the peers, inside the same loopback-only
network namespace when root is available (see _pc_common). Every round, interleaved so
that machine noise falls on all alike:

* connect (createOffer until the data channel is open on both sides, as pc_connect):
  ours host <-> host; ours relay-only offerer <-> host answerer (`turn:` over UDP);
  aiortc relay-only offerer <-> aiortc answerer (aioice's TURN over UDP), the baseline;
* restart (createOffer(iceRestart) until both sides use a pair of the new generation):
  ours host, and ours relay-only offerer (each restart a new allocation, from a fresh
  port; the old one serves until the switch). aiortc has no ICE restart;
* throughput (`--mib` MiB in 16 KiB messages, bufferedAmount flow control, as
  pc_throughput's one-process layout): ours host and ours relay-only offerer.

Medians and p95 of connect and restart; MB/s (10^6 bytes/s) of the transfers.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ms, parse_args, summarize, table, write_results
from _pc_common import OUR_ADDRESS, Link, loopback_only
from pc_throughput import MESSAGE, send_all

from unbroken import RTCConfiguration as OurConfiguration
from unbroken import RTCPeerConnection as OurPeerConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from coturn import PASSWORD, USER, Coturn, start_coturn  # noqa: E402

NAME = "turn_relay"
HIGH, LOW = 1024 * 1024, 256 * 1024


def our_pc(relay: Coturn | None) -> Any:
    """Ours on 127.0.0.1; relay-only through `relay` when given."""
    if relay is None:
        return OurPeerConnection(OurConfiguration(hostAddresses=[OUR_ADDRESS]))
    server = {"urls": f"turn:127.0.0.1:{relay.port}", "username": USER, "credential": PASSWORD}
    return OurPeerConnection(
        OurConfiguration(
            hostAddresses=[OUR_ADDRESS], iceServers=[server], iceTransportPolicy="relay"
        )
    )


def aiortc_pc(relay: Coturn | None) -> Any:
    """aiortc (never its default public STUN server); relay-only through `relay` when given."""
    from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
    from aiortc.rtcconfiguration import RTCIceTransportPolicy

    if relay is None:
        return RTCPeerConnection(RTCConfiguration(iceServers=[]))
    server = RTCIceServer(f"turn:127.0.0.1:{relay.port}", username=USER, credential=PASSWORD)
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    )


async def connect(offerer: Any, answerer: Any) -> Link:
    link = Link(offerer, answerer)
    try:
        await link.connect()
    except BaseException:
        await link.close()
        raise
    return link


def relay_in_use(pc: Any) -> bool:
    """True when the pair in use has a relay candidate on our side."""
    if isinstance(pc, OurPeerConnection):
        pair = pc.iceTransport.agent.selected_pair if pc.iceTransport is not None else None
        return pair is not None and pair.local.type == "relay"
    transport = pc.sctp.transport.transport if pc.sctp is not None else None
    assert transport is not None
    nominated = transport.iceGatherer._connection._nominated  # aioice: no public accessor
    return any(p.local_candidate.type == "relay" for p in nominated.values())


async def restart_time(link: Link, offerer: Any) -> float:
    """createOffer(iceRestart) until both sides have switched to the new generation."""
    loop = asyncio.get_running_loop()
    pcs = (link.offerer, link.answerer)
    switched = asyncio.Event()

    def newest(pc: Any) -> bool:
        agent = pc.iceTransport.agent
        pair = agent.selected_pair
        return pair is not None and pair.generation == agent.generation

    def on_change(_event: Any) -> None:
        if all(newest(pc) for pc in pcs):
            switched.set()

    for pc in pcs:
        pc.iceTransport.on("selectedpairchange", on_change)
    started = loop.time()
    try:
        await link.signaling.exchange(offerer, iceRestart=True)
        if not all(newest(pc) for pc in pcs):
            await asyncio.wait_for(switched.wait(), 10)
        return loop.time() - started
    finally:
        for pc in pcs:
            pc.iceTransport.remove_listener("selectedpairchange", on_change)


async def throughput(link: Link, total: int) -> float:
    """MB/s moving `total` bytes offerer -> answerer, every message checked in order."""
    sender, receiver = link.channel_offerer, link.channel_answerer
    count = total // MESSAGE
    done = asyncio.Event()
    state = {"next": 0}

    def on_message(data: Any) -> None:
        seq = int.from_bytes(data[:4], "big")
        if seq != state["next"] or len(data) != MESSAGE:
            raise AssertionError(f"message {seq} ({len(data)} bytes), expected {state['next']}")
        state["next"] += 1
        if state["next"] == count:
            done.set()

    receiver.on("message", on_message)
    started = await send_all(sender, count, HIGH, LOW)  # pc_throughput's sender, same flow control
    await asyncio.wait_for(done.wait(), 120)
    return count * MESSAGE / (asyncio.get_running_loop().time() - started) / 1e6


async def measure(relay: Coturn, runs: int, restarts: int, mib: int) -> dict[str, Any]:
    """Interleaved rounds of every measurement; samples and summaries."""
    connects: dict[str, list[float]] = {"ours host": [], "ours relay": [], "aiortc relay": []}
    restart: dict[str, list[float]] = {"ours host": [], "ours relay": []}
    rates: dict[str, list[float]] = {"ours host": [], "ours relay": []}
    makers: dict[str, Callable[[], tuple[Any, Any]]] = {
        "ours host": lambda: (our_pc(None), our_pc(None)),
        "ours relay": lambda: (our_pc(relay), our_pc(None)),
        "aiortc relay": lambda: (aiortc_pc(relay), aiortc_pc(None)),
    }
    for round_ in range(runs):
        for name, make in makers.items():
            link = await connect(*make())
            try:
                connects[name].append(link.connect_time)
                relayed = relay_in_use(link.offerer)
                if relayed != (name != "ours host"):
                    raise AssertionError(f"{name}: relay in use is {relayed}")
                if name in restart:
                    for n in range(restarts):
                        side = link.offerer if n % 2 == 0 else link.answerer
                        restart[name].append(await restart_time(link, side))
                    if not relay_in_use(link.offerer) == (name == "ours relay"):
                        raise AssertionError(f"{name}: lost the relay through restarts")
                if name in rates and round_ < max(1, runs // 5):
                    rates[name].append(await throughput(link, mib * 1024 * 1024))
            finally:
                await link.close()
    return {
        "connect": {k: summarize(v) | {"samples_s": v} for k, v in connects.items()},
        "restart": {k: summarize(v) | {"samples_s": v} for k, v in restart.items()},
        "throughput_mb_per_s": {
            k: {"median": statistics.median(v), "samples": v} for k, v in rates.items()
        },
        "runs": runs,
        "restarts_per_connection": restarts,
        "transfer_mib": mib,
    }


def main() -> None:
    """Start coturn, run, print the tables, write the JSON."""

    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--runs", type=int, default=None, help="connections per kind (30; 4 quick)")
        p.add_argument("--restarts", type=int, default=None, help="per connection (5; 2 quick)")
        p.add_argument("--mib", type=int, default=None, help="per transfer (20; 4 quick)")

    args = parse_args(__doc__.splitlines()[0], options)
    runs = args.runs or (4 if args.quick else 30)
    restarts = args.restarts or (2 if args.quick else 5)
    mib = args.mib or (4 if args.quick else 20)
    began = time.monotonic()
    with loopback_only() as isolation, tempfile.TemporaryDirectory() as tmp:
        relay = start_coturn(Path(tmp))  # in the namespace too: the loop thread's
        try:
            res = asyncio.run(measure(relay, runs, restarts, mib))
        finally:
            relay.stop()
    rows = [
        [f"connect {k}", s["n"], ms(s["median"]), ms(s["p95"]), ms(s["min"]), ms(s["max"])]
        for k, s in res["connect"].items()
    ]
    rows += [
        [f"restart {k}", s["n"], ms(s["median"]), ms(s["p95"]), ms(s["min"]), ms(s["max"])]
        for k, s in res["restart"].items()
    ]
    print(table(["what", "n", "median ms", "p95 ms", "min ms", "max ms"], rows))
    print()
    print(
        table(
            ["throughput", "runs", "MB/s median"],
            [
                [k, len(v["samples"]), f"{v['median']:.1f}"]
                for k, v in res["throughput_mb_per_s"].items()
            ],
        )
    )
    res["isolation"] = isolation
    res["wall_s"] = time.monotonic() - began
    path = write_results(NAME, args.quick, res)
    print(f"\n{isolation}; {res['wall_s']:.0f} s; results in {path}")


if __name__ == "__main__":
    main()
