"""The `unbroken` command: `unbroken demo --headless`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `unbroken` command."""
    parser = argparse.ArgumentParser(
        prog="unbroken", description="unbroken: WebRTC that survives network changes"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="two agents on loopback restart ICE while sending")
    demo.add_argument("--headless", action="store_true", help="no browser; print the timeline")
    demo.add_argument("--restarts", type=int, default=3)
    demo.add_argument("--interval-ms", type=float, default=10.0)
    demo.add_argument("-v", "--verbose", action="store_true")
    # `unbroken signaling`: the WebSocket signaling server (src/unbroken/signaling/command.py).
    from .signaling.command import add_signaling_command, run_signaling

    add_signaling_command(sub)
    args = parser.parse_args(argv)
    if args.command == "signaling":
        return run_signaling(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "demo":
        from .demo import run_demo

        report = asyncio.run(run_demo(restarts=args.restarts, interval=args.interval_ms / 1000))
        sys.stdout.write(report + "\n")
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
