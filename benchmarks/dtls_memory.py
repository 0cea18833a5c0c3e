"""Memory of one DTLS connection after its handshake: what OpenSSL keeps (issue 9).

The floor under pc_idle's memory per connection end. `--connections` pairs of
pyOpenSSL DTLS connections, made from contexts as aiortc's RTCDtlsTransport makes them,
each pair handshaking over memory BIOs and exchanging one record each way, as an idle
data channel's DTLS has. Per connection end, three ways to get the context:

* `aiortc`: aiortc's own, one context per connection (RTCCertificate._create_ssl_context);
* `lean, own context`: the same with SSL_MODE_RELEASE_BUFFERS (the previous
  LeanCertificate);
* `lean, shared context`: unbroken's LeanCertificate, one context for the thread and each
  connection's certificate loaded at its handshake start.

Measured: C heap in use (glibc mallinfo2: OpenSSL allocates there, Python's small
objects do not) and resident set growth, per connection end, each way in a fresh
process so that one does not reuse another's freed memory. Linux and glibc only.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from _common import parse_args, table, write_results

NAME = "dtls_memory"
WAYS = ("aiortc", "lean, own context", "lean, shared context")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def _c_heap_in_use() -> int:
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _pump(a: Any, b: Any) -> None:
    """Move datagrams between two memory-BIO connections until the handshake is done."""
    from OpenSSL import SSL

    for _ in range(50):
        moved = False
        for src, dst in ((a, b), (b, a)):
            while True:
                try:
                    dst.bio_write(src.bio_read(1500))
                    moved = True
                except SSL.WantReadError:
                    break
        for conn in (a, b):
            try:
                conn.do_handshake()
            except SSL.WantReadError:
                pass
        if not moved:
            return


def measure(way: str, pairs: int) -> dict[str, float]:
    """Run in a child: per connection end, C heap and RSS growth for `pairs` pairs."""
    from aiortc import RTCCertificate
    from aiortc.rtcdtlstransport import SRTP_PROFILES
    from OpenSSL import SSL

    from unbroken.peerconnection.aiortc_seam import LeanCertificate

    cls = RTCCertificate if way == "aiortc" else LeanCertificate
    certificates = [cls.generateCertificate() for _ in range(2 * pairs)]

    def context(cert: Any) -> Any:
        if way == "lean, own context":  # LeanCertificate before contexts were shared
            ctx = RTCCertificate._create_ssl_context(cert, SRTP_PROFILES)
            ctx.set_mode(SSL.MODE_RELEASE_BUFFERS)
            return ctx
        return cert._create_ssl_context(SRTP_PROFILES)

    gc.collect()
    heap0, rss0 = _c_heap_in_use(), _rss()
    kept = []
    for i in range(pairs):
        # As RTCDtlsTransport.start(): the context, the connection, the handshake.
        client = SSL.Connection(context(certificates[2 * i]))
        client.set_connect_state()
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        server = SSL.Connection(context(certificates[2 * i + 1]))
        server.set_accept_state()
        try:
            server.do_handshake()
        except SSL.WantReadError:
            pass
        _pump(client, server)
        assert client.get_peer_certificate() is not None, "handshake failed"
        for src, dst in ((client, server), (server, client)):
            src.send(b"x" * 100)
            dst.bio_write(src.bio_read(1500))
            assert dst.recv(1500) == b"x" * 100
        kept.append((client, server))
    gc.collect()
    ends = 2 * pairs
    return {
        "c_heap_per_end_kib": round((_c_heap_in_use() - heap0) / ends / 1024, 1),
        "rss_per_end_kib": round((_rss() - rss0) / ends / 1024, 1),
    }


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--connections", type=int, default=None, help="pairs (300)"),
    )
    pairs = args.connections or (50 if args.quick else 300)
    results: dict[str, Any] = {"pairs": pairs}
    for way in WAYS:
        out = subprocess.run(
            [sys.executable, __file__],
            input=json.dumps({"way": way, "pairs": pairs}),
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "DTLS_MEMORY_CHILD": "1"},
        ).stdout
        results[way] = json.loads(out)
    rows = [
        [way, f"{results[way]['c_heap_per_end_kib']}", f"{results[way]['rss_per_end_kib']}"]
        for way in WAYS
    ]
    print(table(["context", "C heap KiB / end", "RSS KiB / end"], rows))
    print(f"wrote {write_results(NAME, args.quick, results)}")


if __name__ == "__main__":
    if os.environ.get("DTLS_MEMORY_CHILD"):
        job = json.loads(sys.stdin.read())
        print(json.dumps(measure(job["way"], job["pairs"])))
    else:
        main()
