"""`unbroken signaling`: run the signaling server from the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from .server import ServerConfig, SignalingServer

SECRET_ENV = "UNBROKEN_SIGNALING_SECRET"


def add_signaling_command(sub: Any) -> None:
    """Add the `signaling` subcommand to the `unbroken` argument parser."""
    p = sub.add_parser("signaling", help="run the WebSocket signaling server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0: any free port (printed)")
    p.add_argument(
        "--secret-file",
        help=f"file holding the token secret (or set ${SECRET_ENV}); none: open rooms",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=None,
        metavar="ORIGIN",
        help="allowed Origin of browser pages (repeat); default: any",
    )
    p.add_argument("--redis", metavar="URL", help="share rooms with other nodes through Redis")
    p.add_argument("--max-peers", type=int, default=2, help="peers per room")
    p.add_argument("--max-rooms", type=int, default=100_000)
    p.add_argument("--rate", type=float, default=50.0, help="messages/s per connection; 0: off")
    p.add_argument("--burst", type=float, default=200.0)
    p.add_argument("--max-message-bytes", type=int, default=64 * 1024)
    p.add_argument("--queue-limit", type=int, default=256, help="messages kept per peer")
    p.add_argument("--away-for", type=float, default=30.0, help="seconds kept for a resume")
    p.add_argument("-v", "--verbose", action="store_true")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The ServerConfig the command line asks for."""
    secret: str | None = os.environ.get(SECRET_ENV) or None
    if args.secret_file:
        with open(args.secret_file) as f:
            secret = f.read().strip() or None
    return ServerConfig(
        secret=secret,
        allowed_origins=frozenset(args.allow_origin) if args.allow_origin else None,
        max_message_bytes=args.max_message_bytes,
        rate=args.rate,
        burst=args.burst,
        max_peers_per_room=args.max_peers,
        max_rooms=args.max_rooms,
        queue_limit=args.queue_limit,
        away_for=args.away_for,
    )


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM."""
    config = config_from_args(args)
    backend = None
    if args.redis:
        from .redis_backend import RedisBackend

        backend = RedisBackend(args.redis, config.queue_limit)
    server = SignalingServer(config, backend)
    await server.start(args.host, args.port)
    sys.stdout.write(f"unbroken signaling: listening on {server.url}\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()


def run_signaling(args: argparse.Namespace) -> int:
    """Entry point of `unbroken signaling`."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    asyncio.run(serve(args))
    return 0
