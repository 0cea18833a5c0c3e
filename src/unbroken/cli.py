"""The `unbroken` command: `unbroken demo [--headless]` and `unbroken signaling`."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `unbroken` command."""
    parser = argparse.ArgumentParser(
        prog="unbroken", description="unbroken: WebRTC that survives network changes"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="watch a connection heal: in a browser, or --headless in the terminal"
    )
    demo.add_argument(
        "--headless",
        action="store_true",
        help="no browser: two Python peers, a real fault, the timeline and the healing time",
    )
    demo.add_argument(
        "--fault",
        choices=("auto", "netns", "process"),
        default="auto",
        help="netns: in a network namespace of the demo's own (root); process: the path "
        "is dropped inside the process; auto: netns when run as root",
    )
    demo.add_argument("--host", default="127.0.0.1", help="browser demo: the page's address")
    demo.add_argument("--port", type=int, default=8080, help="browser demo: the page's port")
    demo.add_argument("-v", "--verbose", action="store_true")
    # `unbroken signaling`: the WebSocket signaling server (src/unbroken/signaling/command.py).
    from .signaling.command import add_signaling_command, run_signaling

    add_signaling_command(sub)
    args = parser.parse_args(argv)
    if args.command == "signaling":
        return run_signaling(args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.command == "demo":
        if not args.verbose:  # the demo's servers listen on loopback only: no open-rooms warning
            logging.getLogger("unbroken.signaling.server").setLevel(logging.ERROR)

        def out(line: str) -> None:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

        if args.headless:
            from .demo import run_headless

            return run_headless(args.fault, out)
        from .demo_web import run_browser_demo

        return run_browser_demo(args.host, args.port, args.fault, out)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
