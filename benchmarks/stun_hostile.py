"""Hostile STUN input: worst-packet decode, junk cost per datagram, and the flood consent survives.

Three measurements, each of the code as it is next to the code before the fix (issue 7),
measured in the same run:

1. Decode time of the worst 64 KB STUN packets (the issue's 16,371 distinct unknown
   comprehension-required attributes; 16k identical ones; the costliest packet within
   the attribute cap) next to a normal Binding request. "Before" is the codec of the
   baseline revision, loaded from git into a temporary module of this process.
2. CPU per junk datagram through the sans-IO agent (receive, then the driver's drain:
   datagrams, events, timer), per kind of junk, next to a genuine consent check. "Before"
   runs in a subprocess on the baseline revision's tree (git archive into a temp dir).
3. A flood ramp on real sockets: two IceConnections on 127.0.0.1, a numbered datagram
   every 10 ms each way, and tests/flood_sender.py in its own process sending the junk
   mix to both ports at each rate (0 = as fast as it can). Per step: the rate reached,
   the datagrams the loop processed and its CPU per datagram (the loop's share per
   packet), consent responses and the longest interval without one, states seen,
   stream loss and latency. Consent "holds" at a rate when both sides stayed
   connected/completed, nothing was lost, and no interval without a consent response
   exceeded 5 s (consent expires at 30 s; 5 s is five keepalive intervals).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import random
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

from _common import Stream, clean, close_all, percentile, pump, summarize, table, write_results

from unbroken import stun
from unbroken.ice import IceAgent, IceTransportState
from unbroken.runtime.loopback import connected_pair

NAME = "stun_hostile"
BEFORE = "4b88022"  # the last commit before the fix (issue 7, items 1 and 2)
ROOT = Path(__file__).resolve().parent.parent
SENDER = ROOT / "tests" / "flood_sender.py"
TID = bytes(range(1, 13))
A = ("127.0.0.1", 10000)
B = ("127.0.0.1", 20000)
STRANGER = ("127.0.0.1", 40000)
INTERVAL = 0.010
FP_XOR = 0x5354554E

sys.path.insert(0, str(ROOT / "tests"))
from flood_sender import worst_packet  # type: ignore[import-not-found]  # noqa: E402

# ------------------------------------------------------------------ packets


def raw(attrs: list[tuple[int, bytes]], fingerprint: bool = False) -> bytes:
    body = b"".join(struct.pack(">HH", t, len(v)) + v + bytes(-len(v) % 4) for t, v in attrs)
    extra = 8 if fingerprint else 0
    data = struct.pack(">HHI", 0x0001, len(body) + extra, stun.MAGIC_COOKIE) + TID + body
    if fingerprint:
        data += struct.pack(">HHI", 0x8028, 4, zlib.crc32(data) ^ FP_XOR)
    return data


def decode_packets() -> dict[str, bytes]:
    """The packets of part 1: a normal request, then the worst ones."""
    normal = stun.encode(
        stun.Message(
            stun.Method.BINDING,
            stun.MessageClass.REQUEST,
            TID,
            username="abcdefgh:ijklmnop",
            priority=0x6E0001FF,
            ice_controlling=0x0123456789ABCDEF,
            use_candidate=True,
        ),
        integrity_key=b"p" * 24,
        fingerprint=True,
    )
    xor6 = stun.encode_xor_address(("2001:db8::1", 9), TID)
    return {
        "normal Binding request (96 B)": normal,
        "16,371 distinct unknown required (64 KB)": worst_packet(),
        "16,380 identical unknown (64 KB)": raw([(0x7F01, b"")] * 16380),
        "32 x 2 KB unknown + FINGERPRINT (64 KB)": raw(
            [(0x7E00 + i, b"b" * 2036) for i in range(31)] + [(0x7F00, b"b" * 2000)], True
        ),
        "32 x XOR-MAPPED-ADDRESS IPv6": raw([(0x0020, xor6)] * 32),
        "32 x REALM 700 B": raw([(0x0014, b"r" * 700)] * 32),
    }


# ------------------------------------------------------------------ part 1: decode


def load_codec(tree: Path) -> ModuleType:
    """The baseline's stun/message.py as a module of its own (attributes.py is unchanged)."""
    path = tree / "src" / "unbroken" / "stun" / "message.py"
    spec = importlib.util.spec_from_file_location("unbroken_before_stun_message", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def time_decode(decode: Any, data: bytes, calls: int) -> float:
    """Seconds per decode over `calls` calls."""
    t0 = time.perf_counter()
    for _ in range(calls):
        try:
            decode(data)
        except stun.StunError:
            pass
    return (time.perf_counter() - t0) / calls


def measure_decode(before: ModuleType, quick: bool) -> dict[str, Any]:
    """Per packet, after and before interleaved batch by batch (the machine is noisy)."""
    out: dict[str, Any] = {}
    rounds = 5 if quick else 21
    for name, data in decode_packets().items():
        samples: dict[str, list[float]] = {"after": [], "before": []}
        calls: dict[str, int] = {}
        for label, decode in (("after", stun.decode), ("before", before.decode)):
            once = time_decode(decode, data, 1)  # batches of about 5 ms
            calls[label] = max(1, min(20000, int(0.005 / max(once, 1e-9))))
        for _ in range(rounds if len(data) < 60000 else max(3, rounds // 4)):
            for label, decode in (("after", stun.decode), ("before", before.decode)):
                samples[label].append(time_decode(decode, data, calls[label]))
        out[name] = {"bytes": len(data), **{k: summarize(v) for k, v in samples.items()}}
    normal = out["normal Binding request (96 B)"]
    for row in out.values():
        for label in ("after", "before"):
            row[label]["ratio_to_normal"] = row[label]["median"] / normal[label]["median"]
    return out


# ------------------------------------------------------------------ part 2: the agent


def connected_agents() -> tuple[IceAgent, IceAgent, float]:
    """Two agents connected in memory (the API is the same before and after)."""
    a = IceAgent(controlling=True, rng=random.Random(1))
    b = IceAgent(controlling=False, rng=random.Random(2))
    now = 0.0
    a.add_base(A, now)
    b.add_base(B, now)
    a.set_remote_credentials(*b.local_credentials, now)
    b.set_remote_credentials(*a.local_credentials, now)
    a.gather(now)
    b.gather(now)
    for x, y in ((a, b), (b, a)):
        for c in x.local_candidates():
            y.add_remote_candidate(c.with_ufrag(x.local_credentials[0]), now)
    for _ in range(200):
        now += 0.01
        for agent in (a, b):
            agent.handle_timer(now)
        moved = True
        while moved:
            moved = False
            for x, y in ((a, b), (b, a)):
                for tx in x.datagrams_to_send():
                    y.receive(tx.data, tx.remote, tx.local, now)
                    moved = True
        while a.next_event() or b.next_event():
            pass
    assert a.state is IceTransportState.CONNECTED and b.state is IceTransportState.CONNECTED
    return a, b, now


def junk(a: IceAgent, b: IceAgent) -> dict[str, tuple[bytes, tuple[str, int]]]:
    """Datagrams for b, and their source: the genuine reference first, then junk."""
    ufrag, pwd = b.local_credentials
    wrong = b"0123456789abcdef01234567"

    def req(user: str | None, key: bytes | None, fp: bool = True, **kw: Any) -> bytes:
        msg = stun.Message(
            stun.Method.BINDING, stun.MessageClass.REQUEST, TID, username=user, priority=1, **kw
        )
        return stun.encode(msg, integrity_key=key, fingerprint=fp)

    genuine = req(
        f"{ufrag}:{a.local_credentials[0]}",
        stun.short_term_key(pwd),
        ice_controlling=a.tie_breaker,
    )
    response = stun.encode(
        stun.Message(stun.Method.BINDING, stun.MessageClass.SUCCESS, bytes(12)), integrity_key=wrong
    )
    return {
        "genuine consent check (reference)": (genuine, A),
        "random bytes (bad header)": (b"\x00\x01\x00\x04" + bytes(20), STRANGER),
        "request without FINGERPRINT": (req("stranger:x", wrong, fp=False), STRANGER),
        "request, unknown ufrag": (req("stranger:x", wrong), STRANGER),
        "request, our ufrag, wrong integrity": (req(f"{ufrag}:x", wrong), STRANGER),
        "response to no transaction": (response, STRANGER),
        "the issue's 64 KB packet": (worst_packet(), STRANGER),
    }


def measure_agent(quick: bool) -> dict[str, Any]:
    """Seconds per datagram through b.receive and the driver's drain, per kind."""
    a, b, now = connected_agents()
    out: dict[str, Any] = {}
    for name, (data, source) in junk(a, b).items():
        slow = len(data) > 10000
        n = (2 if quick else 5) if slow else (2000 if quick else 20000)
        samples = []
        for _ in range(3 if quick else 7):
            t0 = time.perf_counter()
            for _ in range(n):
                b.receive(data, B, source, now)
                b.datagrams_to_send()
                while b.next_event() is not None:
                    pass
                b.get_timer()
            samples.append((time.perf_counter() - t0) / n)
        out[name] = summarize(samples)
    return out


# ------------------------------------------------------------------ part 3: the flood ramp


async def flood_step(rate: float, seconds: float) -> dict[str, Any]:
    """One step of the ramp on a fresh connected pair; see the module docstring."""
    loop = asyncio.get_running_loop()
    a, b = await connected_pair()
    processed = [0]
    for conn in (a, b):
        original = conn._datagram

        def counting(data: bytes, local: Any, remote: Any, _orig: Any = original) -> None:
            processed[0] += 1
            _orig(data, local, remote)

        conn._datagram = counting  # type: ignore[method-assign]
    arrivals: dict[str, list[tuple[int, float]]] = {"a": [], "b": []}
    streams = {"a": Stream(a.send, INTERVAL), "b": Stream(b.send, INTERVAL)}
    pumps = [
        asyncio.ensure_future(pump(b._recv, arrivals["a"])),
        asyncio.ensure_future(pump(a._recv, arrivals["b"])),
    ]
    targets: list[str] = []
    for conn in (a, b):
        base = conn.agent.bases[0]
        targets += ["--target", f"{base[0]}:{base[1]}:{conn.local_credentials[0]}"]
    states: set[str] = set()
    consent_times: dict[str, list[float]] = {"a": [], "b": []}

    def watch() -> None:
        for name, conn in (("a", a), ("b", b)):
            states.add(conn.state.value)
            pair = conn.agent.selected_pair
            last = pair.last_consent if pair is not None else None
            times = consent_times[name]
            if last is not None and (not times or last != times[-1]):
                times.append(last)

    recording = [True]  # states seen until the flood ends (close() is not one of them)

    def on_state(state: IceTransportState) -> None:
        if recording[0]:
            states.add(state.value)

    for conn in (a, b):
        conn.on("statechange", on_state)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SENDER), *targets, "--duration", str(seconds), "--rate", str(rate),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 60)).strip() == b"ready"
    for stream in streams.values():
        stream.start()
    started = loop.time()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    processed0 = processed[0]
    done = asyncio.ensure_future(proc.stdout.readline())
    while not done.done():
        watch()
        await asyncio.wait([done], timeout=0.05)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    ended = loop.time()
    watch()
    recording[0] = False
    sender = json.loads(done.result())
    await proc.wait()
    for stream in streams.values():
        stream.stop()
    await asyncio.sleep(0.5)  # datagrams in flight (a benchmark may wait; tests may not)
    junk_processed = processed[0] - processed0
    cpu = (usage1.ru_utime + usage1.ru_stime) - (usage0.ru_utime + usage0.ru_stime)
    await close_all(a, b)
    for task in pumps:
        task.cancel()
    result: dict[str, Any] = {
        "rate_asked": rate,
        "rate_sent": sender["rate"],
        "seconds": ended - started,
        "processed_per_s": junk_processed / (ended - started),
        "processed_fraction": junk_processed / max(1, sender["sent"]),
        "cpu_share": cpu / (ended - started),
        "cpu_per_datagram_us": cpu / max(1, junk_processed) * 1e6,
        "states": sorted(states),
    }
    worst_gap = 0.0
    for name in ("a", "b"):
        times = [started] + [t for t in consent_times[name] if t >= started] + [ended]
        gap = max(t1 - t0 for t0, t1 in zip(times, times[1:]))
        worst_gap = max(worst_gap, gap)
        result[f"consent_responses_{name}"] = len(times) - 2
    result["longest_without_consent_s"] = worst_gap
    lost = 0
    latencies: list[float] = []
    for name, stream in streams.items():
        seqs = {s for s, _ in arrivals[name]}
        lost += len(set(range(stream.sent)) - seqs)
        latencies += [t - stream.sent_at[s] for s, t in arrivals[name]]
    result["stream_lost"] = lost
    result["stream_sent"] = sum(s.sent for s in streams.values())
    result["latency_median_ms"] = statistics.median(latencies) * 1000 if latencies else None
    result["latency_p95_ms"] = percentile(latencies, 95) * 1000 if latencies else None
    result["latency_max_ms"] = max(latencies) * 1000 if latencies else None
    up = set(result["states"]) <= {"connected", "completed"}
    result["consent_holds"] = up and lost == 0 and worst_gap <= 5.0
    return result


async def ramp(rates: list[float], seconds: float) -> list[dict[str, Any]]:
    return [await flood_step(rate, seconds) for rate in rates]


# ------------------------------------------------------------------ before: the baseline tree


def extract(revision: str, into: Path) -> Path:
    """The baseline's src/ tree (git archive), for the subprocess and the codec module."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "src"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run_before(tree: Path, worker: str, args: list[str]) -> Any:
    """This script in worker mode with the baseline's `unbroken` first on the path."""
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    out = subprocess.run(
        [sys.executable, __file__, "--worker", worker, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ main


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--before", default=BEFORE, help="git revision of the baseline")
    parser.add_argument("--rates", help="comma-separated flood rates, 0 = as fast as possible")
    parser.add_argument("--seconds", type=float, help="seconds per ramp step")
    parser.add_argument("--worker", choices=["agent", "ramp"], help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = options()
    quick = args.quick
    rates = [float(r) for r in args.rates.split(",")] if args.rates else (
        [20000.0, 0.0] if quick else [10000.0, 20000.0, 40000.0, 80000.0, 0.0]
    )  # fmt: skip
    seconds = args.seconds or (3.0 if quick else 10.0)
    if args.worker == "agent":
        print(json.dumps(clean(measure_agent(quick))))
        return
    if args.worker == "ramp":
        print(json.dumps(clean(asyncio.run(ramp(rates, seconds)))))
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tree = extract(args.before, Path(tmp))
        decode = measure_decode(load_codec(tree), quick)
        agent_after = measure_agent(quick)
        passthrough = ["--quick"] if quick else []
        agent_before = run_before(tree, "agent", passthrough)
        ramp_args = [*passthrough, "--rates", ",".join(str(r) for r in rates)]
        ramp_args += ["--seconds", str(seconds)]
        ramp_after = asyncio.run(ramp(rates, seconds))
        ramp_before = run_before(tree, "ramp", ramp_args)

    print(f"1. Decode, microseconds per packet (median; before = {args.before})")
    rows = []
    for name, row in decode.items():
        rows.append(
            [
                name,
                f"{row['after']['median'] * 1e6:.1f}",
                f"{row['after']['ratio_to_normal']:.1f}x",
                f"{row['before']['median'] * 1e6:.1f}",
                f"{row['before']['ratio_to_normal']:.0f}x",
            ]
        )
    print(table(["packet", "after", "vs normal", "before", "vs normal"], rows))
    print()
    print("2. Through the sans-IO agent (receive + drain), microseconds per datagram (median)")
    rows = [
        [
            name,
            f"{agent_after[name]['median'] * 1e6:.1f}",
            f"{agent_before[name]['median'] * 1e6:.1f}",
        ]
        for name in agent_after
    ]
    print(table(["datagram", "after", "before"], rows))
    print()
    print(f"3. Flood ramp, {seconds:.0f} s per step, two IceConnections on 127.0.0.1")
    rows = []
    for label, steps in (("after", ramp_after), ("before", ramp_before)):
        for step in steps:
            rows.append(
                [
                    label,
                    "max" if step["rate_asked"] == 0 else f"{step['rate_asked']:.0f}",
                    f"{step['rate_sent']:.0f}",
                    f"{step['processed_per_s']:.0f}",
                    f"{step['cpu_per_datagram_us']:.1f}",
                    f"{step['cpu_share']:.2f}",
                    f"{step['consent_responses_a']}/{step['consent_responses_b']}",
                    f"{step['longest_without_consent_s']:.1f}",
                    f"{step['stream_lost']}/{step['stream_sent']}",
                    "-" if step["latency_p95_ms"] is None else f"{step['latency_p95_ms']:.1f}",
                    ",".join(step["states"]),
                    "yes" if step["consent_holds"] else "NO",
                ]
            )
    print(
        table(
            [
                "code", "asked/s", "sent/s", "read/s", "us/dgram", "cpu", "consent a/b",
                "max no-consent s", "lost", "p95 ms", "states", "holds",
            ],
            rows,
        )
    )  # fmt: skip
    for label, steps in (("after", ramp_after), ("before", ramp_before)):
        held = [s["rate_sent"] for s in steps if s["consent_holds"]]
        print(f"{label}: consent held up to {max(held):.0f} pkt/s" if held else f"{label}: never")
    results = {
        "before_revision": args.before,
        "decode": decode,
        "agent_after": agent_after,
        "agent_before": agent_before,
        "ramp_seconds": seconds,
        "ramp_after": ramp_after,
        "ramp_before": ramp_before,
        "wall_s": time.monotonic() - started,
    }
    print(f"results: {write_results(NAME, quick, clean(results))}")


if __name__ == "__main__":
    main()
