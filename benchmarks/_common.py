"""Shared helpers of the ICE-layer benchmarks: wiring, statistics, tables, JSON results.

Every benchmark runs two ends in one process on 127.0.0.1 only. Signaling is simulated
as an in-order channel that delivers each message on a later loop turn (loop.call_soon),
as real signaling is asynchronous: a description (credentials) always reaches the peer
before the candidates gathered after it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from unbroken.ice import IceTransportState, SelectedPairChanged
from unbroken.runtime import AddressFilter, IceConnection

LOOPBACK_IP = "127.0.0.1"
LOOPBACK = AddressFilter(addresses=(LOOPBACK_IP,))
UP = (IceTransportState.CONNECTED, IceTransportState.COMPLETED)
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------ command line


def parse_args(
    description: str, extra: Callable[[argparse.ArgumentParser], object] | None = None
) -> argparse.Namespace:
    """The common `--quick` flag (a fast smoke run) plus any benchmark-specific options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (fewer samples)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


# ------------------------------------------------------------------ statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): always one of the samples."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """n, min, median, p95, max and mean of the samples (NaN when empty)."""
    if not samples:
        return {
            "n": 0,
            "min": math.nan,
            "median": math.nan,
            "p95": math.nan,
            "max": math.nan,
            "mean": math.nan,
        }
    return {
        "n": len(samples),
        "min": min(samples),
        "median": statistics.median(samples),
        "p95": percentile(samples, 95),
        "max": max(samples),
        "mean": statistics.fmean(samples),
    }


def ms(seconds: float) -> str:
    """Seconds as milliseconds text."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns (first column left-aligned)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))
        )

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


# ------------------------------------------------------------------ results


def _pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = "unknown"
    try:
        for raw in Path("/proc/cpuinfo").read_text().splitlines():
            if raw.startswith("model name"):
                cpu = raw.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for raw in Path("/proc/meminfo").read_text().splitlines():
            if raw.startswith("MemTotal:"):
                mem_kb = int(raw.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "aiortc": _pkg_version("aiortc"),
        "aioice": _pkg_version("aioice"),
        "unbroken": _pkg_version("unbroken"),
        "loadavg": list(os.getloadavg()),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, quick: bool, results: dict[str, Any]) -> Path:
    """Write benchmarks/results/<name>.json (with the machine and the command) and return it.

    A --quick run writes <name>.quick.json instead, so a smoke run never replaces the
    results of a full one.
    """
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / (f"{name}.quick.json" if quick else f"{name}.json")
    doc = {
        "benchmark": name,
        "command": " ".join(["python", f"benchmarks/{Path(sys.argv[0]).name}", *sys.argv[1:]]),
        "quick": quick,
        "machine": machine_info(),
        "results": results,
    }
    path.write_text(json.dumps(doc, indent=2, sort_keys=False, default=_json_default) + "\n")
    return path


def _json_default(value: object) -> object:
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


def clean(value: Any) -> Any:
    """NaN to None, recursively, so the JSON is valid everywhere."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


# ------------------------------------------------------------------ our connections


class Restart:
    """One ICE restart the JSEP way over the simulated signaling channel, timed.

    `a` offers: new credentials at setLocalDescription (`restart`), the offer reaches `b`
    on a later loop turn, `b` restarts with new credentials of its own and applies the
    offer, the answer reaches `a` on a later turn. Candidates follow their description.
    Times are loop.time(): `called` (a's restart call), `held` (both sides hold both new
    credentials), `switched_a`/`switched_b` (a pair of the new generation is selected).
    """

    def __init__(self, a: IceConnection, b: IceConnection) -> None:
        self.a, self.b = a, b
        self.loop = asyncio.get_running_loop()
        self.target = a.agent.generation + 1
        self.called = math.nan
        self.held = math.nan
        self.switched: dict[str, float] = {}
        self.done = asyncio.Event()

    def _on_selected(self, who: str) -> Callable[[SelectedPairChanged], None]:
        def handler(event: SelectedPairChanged) -> None:
            if event.generation == self.target and who not in self.switched:
                self.switched[who] = self.loop.time()
                if len(self.switched) == 2:
                    self.done.set()

        return handler

    async def run(self, timeout: float = 10.0) -> None:
        """Restart and wait until both sides selected a pair of the new generation."""
        handlers = {"a": self._on_selected("a"), "b": self._on_selected("b")}
        self.a.on("selectedpairchange", handlers["a"])
        self.b.on("selectedpairchange", handlers["b"])
        try:
            self.called = self.loop.time()
            offer = self.a.agent.generate_credentials()
            self.loop.call_soon(self._on_offer, offer)
            self.a.restart(offer)
            await asyncio.wait_for(self.done.wait(), timeout)
        finally:
            self.a.remove_listener("selectedpairchange", handlers["a"])
            self.b.remove_listener("selectedpairchange", handlers["b"])

    def _on_offer(self, offer: tuple[str, str]) -> None:
        answer = self.b.agent.generate_credentials()
        self.loop.call_soon(self._on_answer, answer)
        self.b.restart(answer)
        self.b.set_remote_credentials(*offer)

    def _on_answer(self, answer: tuple[str, str]) -> None:
        self.a.set_remote_credentials(*answer)
        self.held = self.loop.time()

    @property
    def from_call(self) -> float:
        """From a's restart call until both sides use the new generation."""
        return max(self.switched.values()) - self.called

    @property
    def from_held(self) -> float:
        """From both sides holding the new credentials until both use the new generation."""
        return max(self.switched.values()) - self.held


async def close_all(*conns: IceConnection) -> None:
    """Close connections (idempotent)."""
    for conn in conns:
        await conn.close()


# ------------------------------------------------------------------ the aioice baseline


class AioiceLoopback:
    """Make aioice gather host candidates on 127.0.0.1 only, for the `with` block.

    aioice (which aiortc uses) gathers on every interface except 127.0.0.1 and offers no
    address filter, so the baseline replaces its module-level `get_host_addresses` with
    one that returns 127.0.0.1, the only address these benchmarks may use. No STUN or
    TURN server is ever configured.
    """

    def __enter__(self) -> AioiceLoopback:
        import aioice.ice

        self._module = aioice.ice
        self._saved = aioice.ice.get_host_addresses
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [LOOPBACK_IP]
        return self

    def __exit__(self, *exc: object) -> None:
        self._module.get_host_addresses = self._saved


def aioice_connection(controlling: bool) -> Any:
    """An aioice Connection with one component, IPv4 only, and no STUN/TURN server."""
    import aioice

    return aioice.Connection(
        ice_controlling=controlling, components=1, use_ipv6=False, stun_server=None
    )


def aioice_loopback_candidates(conn: Any) -> list[Any]:
    """The connection's local candidates on 127.0.0.1 (anything else is never given out)."""
    return [c for c in conn.local_candidates if c.host == LOOPBACK_IP]


async def aioice_exchange(a: Any, b: Any) -> None:
    """Give each side the other's credentials, 127.0.0.1 candidates and end-of-candidates."""
    a.remote_username, a.remote_password = b.local_username, b.local_password
    b.remote_username, b.remote_password = a.local_username, a.local_password
    for src, dst in ((a, b), (b, a)):
        cands = aioice_loopback_candidates(src)
        if not cands:
            raise RuntimeError("aioice gathered no candidate on 127.0.0.1")
        for cand in cands:
            await dst.add_remote_candidate(cand)
        await dst.add_remote_candidate(None)


async def aioice_connect_pair(timeout: float = 10.0) -> tuple[Any, Any]:
    """Two aioice connections on 127.0.0.1, connected (gather, exchange, connect)."""
    a, b = aioice_connection(True), aioice_connection(False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    await aioice_exchange(a, b)
    await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), timeout)
    return a, b


# ------------------------------------------------------------------ application traffic


def payload(seq: int, size: int = 40) -> bytes:
    """A datagram in the RTP range of RFC 7983 (first byte 0x80) carrying a sequence number."""
    return b"\x80" + seq.to_bytes(8, "big") + bytes(max(0, size - 9))


def seq_of(data: bytes) -> int:
    """The sequence number `payload` put in."""
    return int.from_bytes(data[1:9], "big")


class Stream:
    """Sends a numbered datagram every `interval` on a fixed schedule (no drift, no bursts)."""

    def __init__(self, send: Callable[[bytes], object], interval: float) -> None:
        self.send = send
        self.interval = interval
        self.loop = asyncio.get_running_loop()
        self.sent = 0
        self.sent_at: list[float] = []
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def start(self) -> None:
        """Send the first datagram now, then one every interval."""
        self._next = self.loop.time()
        self._tick()

    def stop(self) -> None:
        """Send no more."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self.loop.time()
        self.sent_at.append(now)
        self.send(payload(self.sent))
        self.sent += 1
        # The next slot on the fixed grid; when the loop ran late, the next future one.
        self._next += self.interval
        if self._next < now:
            self._next = now + self.interval
        self._handle = self.loop.call_at(self._next, self._tick)


async def pump(recv: Callable[[], Any], arrivals: list[tuple[int, float]]) -> None:
    """Record (sequence number, arrival time) of every datagram until the receiver closes."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data = await recv()
        except (ConnectionError, asyncio.CancelledError):
            return
        if data is None:
            return
        arrivals.append((seq_of(data), loop.time()))


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest interval between consecutive deliveries that overlaps [start, end]."""
    best = 0.0
    for t0, t1 in zip(times, times[1:]):
        if t1 >= start and t0 <= end:
            best = max(best, t1 - t0)
    return best


def steady_gaps(
    times: list[float], windows: list[tuple[float, float]], lo: float, hi: float
) -> list[float]:
    """Intervals between deliveries in [lo, hi] that touch no restart window."""
    out = []
    for t0, t1 in zip(times, times[1:]):
        if t0 < lo or t1 > hi:
            continue
        if any(t1 >= s and t0 <= e for s, e in windows):
            continue
        out.append(t1 - t0)
    return out
