"""Dead-path detection on 127.0.0.1: from traffic stopping to the `disconnected` state.

A connected pair exchanges a datagram every 10 ms each way (or stays idle, consent only).
Then the remote side closes its sockets without telling the local side (no signaling,
nothing on the wire: to the local side its peer simply went silent). Measured on the local
side: from the stop to `disconnected`, and from the last datagram it received to
`disconnected`. With the default config (disconnected_timeout 2.5 s) and with
disconnected_timeout=1.0.

Baseline: aioice (aiortc's ICE) with the same stop. It has no `disconnected`: the first
thing it reports is closing the connection after 6 failed consent checks (one every
~5 s). Measured once, with the wait capped; skipped under --quick.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from _common import (
    AioiceLoopback,
    Stream,
    aioice_connect_pair,
    close_all,
    ms,
    parse_args,
    pump,
    summarize,
    table,
    write_results,
)

from unbroken.ice import IceConfig, IceTransportState
from unbroken.runtime.loopback import connected_pair

NAME = "detection"
INTERVAL = 0.010
AIOICE_CAP = 40.0


async def ours_once(config: IceConfig, traffic: bool, settle: float) -> tuple[float, float]:
    """One run: (stop -> disconnected, last datagram received -> disconnected), seconds."""
    loop = asyncio.get_running_loop()
    a, b = await connected_pair(config)
    arrivals: list[tuple[int, float]] = []
    receiver = asyncio.create_task(pump(a._recv, arrivals))
    last_stun = [math.nan]
    streams = [Stream(a.send, INTERVAL), Stream(b.send, INTERVAL)] if traffic else []
    disconnected = asyncio.Event()
    at = [math.nan]

    def on_state(state: IceTransportState) -> None:
        if state is IceTransportState.DISCONNECTED and not disconnected.is_set():
            at[0] = loop.time()
            disconnected.set()

    a.on("statechange", on_state)
    try:
        for s in streams:
            s.start()
        await asyncio.sleep(settle)
        assert a.state in (IceTransportState.CONNECTED, IceTransportState.COMPLETED), a.state
        pair = a.agent.selected_pair
        assert pair is not None
        stop = loop.time()
        for s in streams:
            s.stop()
        if streams:
            streams[0].start()  # the local side keeps sending into the void, as an app would
        await b.close()  # sockets gone: nothing more arrives; a is not told
        last_stun[0] = pair.last_received if pair.last_received is not None else math.nan
        await asyncio.wait_for(disconnected.wait(), config.disconnected_timeout + 5.0)
        last = max([t for _, t in arrivals] + [last_stun[0]])
        return at[0] - stop, at[0] - last
    finally:
        for s in streams:
            s.stop()
        await close_all(a, b)
        await receiver


async def aioice_once(cap: float, settle: float) -> dict[str, Any]:
    """aioice with the same stop: how long until the local side reports anything."""
    loop = asyncio.get_running_loop()
    with AioiceLoopback():
        a, b = await aioice_connect_pair()
    arrivals: list[tuple[int, float]] = []
    events: list[tuple[float, str]] = []

    async def watch() -> None:
        while True:
            event = await a.get_event()
            if event is None:
                return
            events.append((loop.time(), type(event).__name__))

    def sender(conn: Any) -> Any:
        def send(data: bytes) -> None:
            async def go() -> None:
                try:
                    await conn.send(data)
                except ConnectionError:
                    pass

            asyncio.ensure_future(go())

        return send

    receiver = asyncio.create_task(pump(a.recv, arrivals))
    watcher = asyncio.create_task(watch())
    streams = [Stream(sender(a), INTERVAL), Stream(sender(b), INTERVAL)]
    try:
        for s in streams:
            s.start()
        await asyncio.sleep(settle)
        stop = loop.time()
        streams[1].stop()
        await b.close()
        try:
            await asyncio.wait_for(asyncio.shield(watcher), cap)
        except TimeoutError:
            pass
        noticed = events[0][0] - stop if events else math.nan
        return {
            "noticed_after_s": noticed,
            "first_event": events[0][1] if events else None,
            "capped_at_s": cap,
            "noticed_within_cap": bool(events),
        }
    finally:
        for s in streams:
            s.stop()
        await a.close()
        await b.close()
        watcher.cancel()
        receiver.cancel()
        await asyncio.gather(watcher, receiver, return_exceptions=True)


async def measure(runs: int, with_aioice: bool, settle: float) -> dict[str, Any]:
    """Every (config, traffic) variant `runs` times, then the aioice baseline once."""
    variants = [
        ("default (2.5 s), traffic every 10 ms", IceConfig(), True),
        (
            "disconnected_timeout=1.0, traffic every 10 ms",
            IceConfig(disconnected_timeout=1.0),
            True,
        ),
        ("default (2.5 s), idle (consent only)", IceConfig(), False),
        (
            "disconnected_timeout=1.0, idle (consent only)",
            IceConfig(disconnected_timeout=1.0),
            False,
        ),
    ]
    out: dict[str, Any] = {"runs": runs, "variants": []}
    for label, config, traffic in variants:
        from_stop: list[float] = []
        from_last: list[float] = []
        for _ in range(runs):
            s, last = await ours_once(config, traffic, settle)
            from_stop.append(s)
            from_last.append(last)
        out["variants"].append(
            {
                "label": label,
                "disconnected_timeout_s": config.disconnected_timeout,
                "keepalive_s": config.keepalive,
                "traffic": traffic,
                "from_stop": summarize(from_stop),
                "from_last_received": summarize(from_last),
                "samples_from_stop_s": from_stop,
                "samples_from_last_received_s": from_last,
            }
        )
    out["aioice"] = await aioice_once(AIOICE_CAP, settle) if with_aioice else None
    return out


def main() -> None:
    """Run, print the table, write the JSON."""
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: (
            p.add_argument("--runs", type=int, default=None, help="default 10 (2 quick)"),
            p.add_argument("--no-aioice", action="store_true", help="skip the ~30 s baseline"),
        ),
    )
    runs = args.runs or (2 if args.quick else 10)
    with_aioice = not (args.quick or args.no_aioice)
    settle = 0.3 if args.quick else 1.0
    started = time.monotonic()
    res = asyncio.run(measure(runs, with_aioice, settle))
    rows = []
    for v in res["variants"]:
        s, last = v["from_stop"], v["from_last_received"]
        rows.append(
            [
                f"unbroken, {v['label']}",
                s["n"],
                ms(s["median"]),
                ms(s["p95"]),
                ms(s["max"]),
                ms(last["median"]),
            ]
        )
    aio = res["aioice"]
    if aio is not None:
        noticed = (
            ms(aio["noticed_after_s"])
            if aio["noticed_within_cap"]
            else f"> {AIOICE_CAP * 1000:.0f}"
        )
        rows.append(
            [
                f"aioice {aio['first_event'] or 'nothing'}, traffic every 10 ms",
                1,
                noticed,
                "-",
                "-",
                "-",
            ]
        )
    print(f"Dead path noticed on 127.0.0.1 (peer went silent -> disconnected), {runs} runs (ms)")
    print(table(["measured", "n", "median", "p95", "max", "median from last rx"], rows))
    print(
        "DESIGN target: 2.5 s by default, configurable down to 1 s (Chromium 5.1 s, aiortc never)"
    )
    res["wall_s"] = time.monotonic() - started
    print(f"results: {write_results(NAME, args.quick, res)}")


if __name__ == "__main__":
    main()
