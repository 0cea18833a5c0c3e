"""Run every ICE-layer benchmark in turn, each in its own process (`--quick` is passed on).

Each writes its table to stdout and its JSON to benchmarks/results/<name>.json. The exit
status is non-zero when any benchmark failed or ran past its time limit.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS: tuple[str, ...] = (
    "connect_latency",
    "restart_latency",
    "gap",
    "detection",
    "scale",
    "consent_cost",
)
# The RTCPeerConnection benchmarks (ours against aiortc; need root for their namespace).
BENCHMARKS += ("pc_connect", "pc_restart", "pc_throughput", "pc_gap", "pc_idle", "dtls_memory")
# Healing after a NAT rebinding, through a real NAT in namespaces (needs root, coturn).
BENCHMARKS += ("nat_rebind",)
# Hostile STUN input: worst-packet decode, junk per datagram, the flood consent survives.
BENCHMARKS += ("stun_hostile",)
# The signaling server: joins, relay rate and latency, memory per room (issue 10).
BENCHMARKS += ("signaling",)
# TURN relays against a real coturn: relay connect/restart/throughput next to host, aiortc.
BENCHMARKS += ("turn_relay",)
LIMIT_S = 900.0  # the slowest full run (scale) takes about 2 minutes


def main() -> None:
    """Run the benchmarks named on the command line (default: all)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run of each")
    parser.add_argument("only", nargs="*", choices=[[], *BENCHMARKS], help="run only these")
    args = parser.parse_args()
    failed: list[str] = []
    started = time.monotonic()
    for name in args.only or BENCHMARKS:
        cmd = [sys.executable, str(HERE / f"{name}.py")] + (["--quick"] if args.quick else [])
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        try:
            rc = subprocess.run(cmd, timeout=LIMIT_S).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            print(f"{name}: over the {LIMIT_S:.0f} s limit", flush=True)
        print(f"=== {name}: exit {rc} in {time.monotonic() - t0:.1f} s\n", flush=True)
        if rc != 0:
            failed.append(name)
    print(f"all done in {time.monotonic() - started:.1f} s; failed: {', '.join(failed) or 'none'}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
