"""CPU cost of one consent check, sans-IO: what the agent and the STUN codec cost without asyncio.

Two IceAgents are connected in memory (no sockets, no loop, a virtual clock). Then each
round advances the clock past the controlling agent's keepalive, so it sends one consent
request, which the other agent answers and the first one reads: one consent transaction,
three agent inputs, each followed by `get_timer()` and an event drain, as the runtime
does. Also the STUN codec alone on the same request. Set against scale.py (the same
transaction on real sockets through asyncio), this splits the idle CPU between agent,
codec and the event loop. `--profile` prints where the agent's time goes.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import random
import time
from typing import Any

from _common import parse_args, summarize, table, write_results

from unbroken import stun
from unbroken.ice import IceAgent, IceTransportState

NAME = "consent_cost"
A = ("127.0.0.1", 10000)
B = ("127.0.0.1", 20000)


def connected_agents() -> tuple[IceAgent, IceAgent, float]:
    """Two agents connected in memory; returns them and the virtual time."""
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


def transactions(a: IceAgent, b: IceAgent, now: float, n: int) -> float:
    """Run `n` consent transactions a -> b -> a; returns seconds per transaction."""
    keepalive = a.config.keepalive * 1.2 + 0.001  # past the longest randomized interval
    start = time.perf_counter()
    for _ in range(n):
        now += keepalive
        a.handle_timer(now)
        a.get_timer()
        for tx in a.datagrams_to_send():
            b.receive(tx.data, tx.remote, tx.local, now)
            b.get_timer()
        for tx in b.datagrams_to_send():
            a.receive(tx.data, tx.remote, tx.local, now)
            a.get_timer()
        while a.next_event() or b.next_event():
            pass
    return (time.perf_counter() - start) / n


def codec(n: int) -> tuple[float, float]:
    """Seconds per encode, and per decode + MESSAGE-INTEGRITY check, of a consent request."""
    msg = stun.Message(
        method=stun.Method.BINDING,
        message_class=stun.MessageClass.REQUEST,
        transaction_id=bytes(range(12)),
        username="abcd:efgh",
        priority=1853824767,
        ice_controlling=0x0123456789ABCDEF,
    )
    key = stun.short_term_key("p" * 22)
    t0 = time.perf_counter()
    for _ in range(n):
        data = stun.encode(msg, integrity_key=key, fingerprint=True)
    t1 = time.perf_counter()
    for _ in range(n):
        stun.check_integrity(stun.decode(data), key)
    t2 = time.perf_counter()
    return (t1 - t0) / n, (t2 - t1) / n


def measure(rounds: int, n: int, profile: bool) -> dict[str, Any]:
    """`rounds` repetitions of `n` transactions and `n` codec calls each."""
    per_tx: list[float] = []
    enc: list[float] = []
    dec: list[float] = []
    for _ in range(rounds):
        a, b, now = connected_agents()
        sent0 = a.selected_pair.consent_requests_sent if a.selected_pair else 0
        per_tx.append(transactions(a, b, now, n))
        assert a.selected_pair is not None
        assert a.selected_pair.consent_requests_sent - sent0 == n, "one check per round"
        e, d = codec(n)
        enc.append(e)
        dec.append(d)
    text = None
    if profile:
        a, b, now = connected_agents()
        prof = cProfile.Profile()
        prof.enable()
        transactions(a, b, now, n)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
        text = buf.getvalue()
    return {
        "rounds": rounds,
        "transactions_per_round": n,
        "transaction_s": summarize(per_tx),
        "encode_s": summarize(enc),
        "decode_and_integrity_s": summarize(dec),
        "profile": text,
    }


def main() -> None:
    """Run, print the table, write the JSON."""
    args = parse_args(
        __doc__.splitlines()[0],
        lambda p: p.add_argument("--profile", action="store_true", help="cProfile the agent"),
    )
    rounds, n = (3, 2000) if args.quick else (7, 20000)
    started = time.monotonic()
    res = measure(rounds, n, args.profile)
    rows = []
    for label, key in (
        ("consent transaction, both agents (3 inputs)", "transaction_s"),
        ("  STUN encode (request, with MI + FP)", "encode_s"),
        ("  STUN decode + MESSAGE-INTEGRITY check", "decode_and_integrity_s"),
    ):
        s = res[key]
        rows.append([label, s["n"], f"{s['median'] * 1e6:.1f}", f"{s['max'] * 1e6:.1f}"])
    print(f"Sans-IO cost of a consent check, {rounds} rounds of {n} (microseconds)")
    print(table(["measured", "rounds", "median", "max"], rows))
    print("a transaction is 2 encodes + 2 decodes; the rest is agent logic")
    if res["profile"]:
        print(res["profile"])
    res["wall_s"] = time.monotonic() - started
    print(f"results: {write_results(NAME, args.quick, res)}")


if __name__ == "__main__":
    main()
