"""Restart latency and delivery gap: ours with Chromium and Firefox, next to each browser with itself.

For each browser (headless Chromium, headless Firefox ESR), in one run:
- ours + browser: our RTCPeerConnection in its own process (tests/interop/ours_process.py)
  and one peer connection in the browser's harness page;
- browser + browser: two peer connections in the same page (the baseline);
and once, ours + ours (two child processes). Every pairing keeps a reliable ordered
data channel open with a numbered message every 10 ms each way, and restarts ICE with
restartIce() from each side in turn, the pairings interleaved restart by restart so
that machine noise falls on all of them alike. Signaling is the soak's perfect
negotiation (tests/interop/soak.py), in the test process.

Measured per restart: latency, from the restartIce() call until both sides' getStats()
show the selected pair on candidates of the new generation (browser pages are polled
every 10 ms, ours reports at each selectedpairchange: the browser-with-itself baseline
is polled on both sides, so it is, if anything, favoured by nothing), and the longest
delivery gap at either receiver over [call, done + 100 ms]. Median and p95 (nearest
rank) per pairing and direction. Messages lost, duplicated or reordered fail the run.

Needs root (network namespaces), Chromium and Firefox. Each browser runs in its own
namespace: Chromium with only `lo` (ours on 127.0.0.2), Firefox with a veth pair and a
default route inside the namespace (ours on 10.203.0.1). No traffic leaves them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import clean, ms, parse_args, steady_gaps, summarize, table, write_results

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from interop.browser import (  # noqa: E402
    add_default_route,
    browser_missing,
    launch_browser,
)
from interop.netns import NetNs, netns_available  # noqa: E402
from interop.ours_process import OursProcess  # noqa: E402
from interop.soak import LABEL, ChildEndpoint, PageEndpoint, RestartResult, Soak  # noqa: E402

BROWSERS = ("chromium", "firefox")
SETTLE_MESSAGES = 10  # messages each way between restarts
RESTART_TIMEOUT = 5.0  # a restart not done by then failed (the issue saw such)


class Pairing:
    """One connected pair of endpoints, its soak, and its restarts by direction."""

    def __init__(self, name: str, soak: Soak, directions: dict[str, str]) -> None:
        self.name = name
        self.soak = soak
        self.directions = directions  # direction label -> "ours" (side a) / "theirs" (side b)
        self.results: dict[str, list[RestartResult]] = {d: [] for d in directions}
        self.failures: dict[str, list[str]] = {d: [] for d in directions}
        self.broken: str | None = None

    async def restart(self, direction: str) -> None:
        """One timed restart; one that does not complete in RESTART_TIMEOUT is counted as
        failed (with the reason) and the pairing is dropped from the rest of the run."""
        if self.broken is not None:
            return
        try:
            index = len(self.soak.results)
            result = await self.soak.restart(self.directions[direction], index, RESTART_TIMEOUT)
            self.results[direction].append(result)
            await self.soak.flowing(SETTLE_MESSAGES)
        except AssertionError as exc:
            first = str(exc).splitlines()[0]
            self.failures[direction].append(first)
            self.broken = f"{direction}: {first}"
            print(f"{self.name}: {first}", file=sys.stderr)
            print("\n".join(str(exc).splitlines()[1:120]), file=sys.stderr)

    def summary(self) -> dict[str, Any]:
        self.soak.measure_gaps()
        out: dict[str, Any] = {}
        # The control: intervals between deliveries touching no restart window, over the
        # span of the restarts (the machine's own jitter, per receiver).
        windows = [(r.started, max(r.completed.values()) + 0.1) for r in self.soak.results]
        steady: dict[str, Any] = {}
        if windows:
            for name, side in self.soak.sides.items():
                times = side.arrival_times(LABEL)
                lo, hi = windows[0][0], windows[-1][1]
                steady[name] = summarize(steady_gaps(times, windows, lo, hi))
        for direction, results in self.results.items():
            latencies = [r.latency for r in results]
            gaps = [max(r.gaps.values()) for r in results]
            out[direction] = {
                "latency_s": summarize(latencies),
                "gap_s": summarize(gaps),
                "gap_by_receiver_s": {
                    name: summarize([r.gaps[name] for r in results]) for name in self.soak.sides
                },
                "samples": {"latency_s": latencies, "gap_s": gaps},
                "offers_per_restart": [r.offers for r in results],
                "failed": self.failures[direction],
                "steady_interval_by_receiver_s": steady,  # the same for every direction
            }
        return out


async def make_child(ns: NetNs, name: str, address: str, logs: Path) -> OursProcess:
    child = OursProcess(name, logs / f"{name}.log")
    await child.start(ns.exec_prefix(), address, debug=False)
    return child


async def run_browser(
    kind: str, restarts: int, logs: Path, children: list[OursProcess]
) -> dict[str, Any]:
    """ours + browser and browser + browser, interleaved, in one namespace and one browser."""
    ns = NetNs.create(prefix="ubbench", extra_addresses=("127.0.0.2/8",))
    try:
        address = add_default_route(ns) if kind == "firefox" else "127.0.0.2"
        flags = ("--use-fake-device-for-media-stream",) if kind == "chromium" else ()
        async with launch_browser(kind, ns, extra_flags=flags) as browser:
            page = browser.page
            assert page is not None
            child = await make_child(ns, f"ours-with-{kind}", address, logs)
            children.append(child)
            pc = await page.create_pc()
            mixed = Soak(ChildEndpoint("ours", child), PageEndpoint(kind, pc), polite="ours")
            first = await page.create_pc()
            second = await page.create_pc()
            alone = Soak(
                PageEndpoint(f"{kind}-1", first),
                PageEndpoint(f"{kind}-2", second),
                polite=f"{kind}-2",
            )
            pairings = [
                Pairing(
                    f"ours+{kind}", mixed, {"ours restarts": "ours", f"{kind} restarts": "theirs"}
                ),
                Pairing(f"{kind}+{kind}", alone, {f"{kind} restarts": "ours"}),
            ]
            try:
                for pairing in pairings:
                    await pairing.soak.connect(pairing.soak.a)
                    await pairing.soak.start_pumps()
                for _ in range(restarts):
                    for pairing in pairings:
                        for direction in pairing.directions:
                            await pairing.restart(direction)
                for pairing in pairings:
                    if pairing.broken is None:
                        await pairing.soak.stop_and_check()
                return {p.name: p.summary() for p in pairings}
            finally:
                for pairing in pairings:
                    await pairing.soak.close()
                await child.close()
    finally:
        ns.delete()


async def run_ours(restarts: int, logs: Path, children: list[OursProcess]) -> dict[str, Any]:
    """ours + ours, each in its own process, for reference."""
    ns = NetNs.create(prefix="ubbench", extra_addresses=("127.0.0.2/8",))
    try:
        a = await make_child(ns, "ours-A", "127.0.0.1", logs)
        b = await make_child(ns, "ours-B", "127.0.0.2", logs)
        children += [a, b]
        soak = Soak(ChildEndpoint("A", a), ChildEndpoint("B", b), polite="B")
        pairing = Pairing("ours+ours", soak, {"ours restarts": "ours"})
        try:
            await soak.connect(soak.a)
            await soak.start_pumps()
            for _ in range(restarts):
                await pairing.restart("ours restarts")
            if pairing.broken is None:
                await soak.stop_and_check()
            return {pairing.name: pairing.summary()}
        finally:
            await soak.close()
            await a.close()
            await b.close()
    finally:
        ns.delete()


def print_table(results: dict[str, Any]) -> None:
    rows = []
    for pairing, directions in results.items():
        for direction, summary in directions.items():
            lat, gap = summary["latency_s"], summary["gap_s"]
            rows.append(
                [
                    pairing,
                    direction,
                    lat["n"],
                    ms(lat["median"]),
                    ms(lat["p95"]),
                    ms(lat["max"]),
                    ms(gap["median"]),
                    ms(gap["p95"]),
                    ms(gap["max"]),
                ]
            )
    headers = ["pairing", "who restarts", "n", "latency med", "p95", "max", "gap med", "p95", "max"]
    print(table(headers, rows))


async def measure(restarts: int, browsers: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    children: list[OursProcess] = []
    with tempfile.TemporaryDirectory(prefix="browser-restart-") as tmp:
        logs = Path(tmp)
        try:
            for kind in browsers:
                results.update(await run_browser(kind, restarts, logs, children))
            results.update(await run_ours(restarts, logs, children))
        except BaseException:
            for child in children:
                print(child.log_tail(40), file=sys.stderr)
            raise
    return results


def main() -> None:
    def options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--restarts", type=int, default=20, help="per pairing and direction")
        parser.add_argument("--browsers", default=",".join(BROWSERS), help="comma-separated")

    args = parse_args(__doc__.splitlines()[0], options)
    reason = netns_available()
    browsers = [b for b in args.browsers.split(",") if b]
    for kind in browsers:
        reason = reason or browser_missing(kind)
    if reason is not None:
        print(f"browser_restart: cannot run: {reason}", file=sys.stderr)
        raise SystemExit(2)
    restarts = 3 if args.quick else args.restarts
    results = asyncio.run(measure(restarts, browsers))
    print_table(results)
    path = write_results(
        "browser_restart",
        args.quick,
        clean({"restarts_per_direction": restarts, "interval_ms": 10, "pairings": results}),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
