"""A stranger flooding STUN ports from its own process: junk and bad-integrity Binding requests.

Run as a script (the flood test and benchmarks/stun_hostile.py start it with
subprocess): ``python tests/flood_sender.py --target 127.0.0.1:PORT[:UFRAG] ...
--duration 30 [--rate PPS]``. It prints one line ``ready`` once its packets are built,
sends until the duration is over, as fast as one process can (or at `--rate` packets per
second in total), then prints one JSON line: ``{"sent": N, "seconds": S, "rate": R}``.

The mix, per target (pre-built, cycled through): random bytes in the STUN range (most
fail the header), Binding requests without FINGERPRINT, with a valid FINGERPRINT and an
unknown ufrag, with the target's own ufrag (when given) and a wrong MESSAGE-INTEGRITY
(the most work a stranger can cause), responses to no transaction, and now and then the
issue's 64 KB request of 16,371 distinct unknown comprehension-required attributes. Only
loopback targets are accepted: this never sends anywhere else.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time
import zlib

from unbroken import stun

FINGERPRINT_XOR = 0x5354554E
KINDS = ("junk", "no_fingerprint", "unknown_ufrag", "bad_integrity", "response")


def _binding(
    rng: random.Random, cls: stun.MessageClass, username: str | None, key: bytes | None, fp: bool
) -> bytes:
    msg = stun.Message(
        stun.Method.BINDING,
        cls,
        rng.randbytes(12),
        username=username,
        priority=rng.getrandbits(31) | 1 if cls is stun.MessageClass.REQUEST else None,
        ice_controlling=rng.getrandbits(64) if cls is stun.MessageClass.REQUEST else None,
    )
    return stun.encode(msg, integrity_key=key, fingerprint=fp)


def worst_packet(count: int = 16371, fingerprint: bool = False) -> bytes:
    """The issue's 64 KB Binding request: `count` distinct unknown comprehension-required
    attributes with empty values (16,371 fill the largest IPv4 UDP payload), optionally
    closed by a valid FINGERPRINT (then at most 16,369 fit)."""
    known = {int(t) for t in stun.AttributeType}
    types = [t for t in range(0x0001, 0x8000) if t not in known][:count]
    body = b"".join(struct.pack(">HH", t, 0) for t in types)
    extra = 8 if fingerprint else 0
    head = struct.pack(">HHI", 0x0001, len(body) + extra, stun.MAGIC_COOKIE) + bytes(12)
    if not fingerprint:
        return head + body
    crc = zlib.crc32(head + body) ^ FINGERPRINT_XOR
    return head + body + struct.pack(">HHI", 0x8028, 4, crc)


def packets(rng: random.Random, ufrag: str | None, per_kind: int = 64) -> list[bytes]:
    """A shuffled pool of hostile datagrams for one target."""
    pool: list[bytes] = []
    for _ in range(per_kind):
        pool.append(bytes([rng.randrange(4)]) + rng.randbytes(rng.randrange(19, 120)))
        pool.append(
            _binding(rng, stun.MessageClass.REQUEST, f"x{rng.getrandbits(32):08x}:y", b"k", False)
        )
        pool.append(
            _binding(rng, stun.MessageClass.REQUEST, f"u{rng.getrandbits(32):08x}:y", b"k", True)
        )
        bad_key = rng.randbytes(16)
        if ufrag is not None:
            pool.append(_binding(rng, stun.MessageClass.REQUEST, f"{ufrag}:evil", bad_key, True))
        pool.append(_binding(rng, stun.MessageClass.SUCCESS, None, bad_key, True))
    rng.shuffle(pool)
    return pool


def parse_target(text: str) -> tuple[tuple[str, int], str | None]:
    """host:port[:ufrag] with a loopback host (anything else is refused)."""
    host, port, *rest = text.split(":")
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing non-loopback target {host}")
    return (host, int(port)), (rest[0] if rest else None)


def flood(
    targets: list[tuple[tuple[str, int], str | None]],
    duration: float,
    rate: float = 0.0,
    seed: int = 1,
    worst_every: int = 4096,
) -> dict[str, float]:
    """Send the mix round-robin to the targets; returns what was sent."""
    rng = random.Random(seed)
    pools = [packets(rng, ufrag) for _, ufrag in targets]
    worst = worst_packet()
    # One flat schedule: (datagram, destination) pairs, cycled.
    schedule: list[tuple[bytes, tuple[str, int]]] = []
    for i in range(max(len(p) for p in pools)):
        for (address, _), pool in zip(targets, pools):
            schedule.append((pool[i % len(pool)], address))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sendto = sock.sendto
    print("ready", flush=True)
    sent = errors = 0
    size = len(schedule)
    start = time.perf_counter()
    end = start + duration
    batch = 256
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        if rate > 0:
            due = int((now - start) * rate)
            if sent >= due:
                time.sleep(min(0.001, end - now))
                continue
            count = min(batch, due - sent)
        else:
            count = batch
        for i in range(sent, sent + count):
            data, address = schedule[i % size]
            if i % worst_every == worst_every - 1:
                data = worst
            try:
                sendto(data, address)
            except (BlockingIOError, ConnectionRefusedError):
                errors += 1
        sent += count
    seconds = time.perf_counter() - start
    sock.close()
    return {"sent": sent, "errors": errors, "seconds": seconds, "rate": sent / seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", required=True, help="host:port[:ufrag]")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=0.0, help="packets/s in total; 0: max")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    result = flood([parse_target(t) for t in args.target], args.duration, args.rate, args.seed)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
