"""The transaction table: its cached earliest deadline always equals a full scan's answer."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from unbroken.ice import Generation, IceConfig
from unbroken.ice.transactions import Transaction, Transactions, TxKind

CONFIG = IceConfig()
LOCAL = ("192.0.2.1", 5000)
REMOTE = ("198.51.100.1", 6000)


def start(table: Transactions, kind: TxKind, now: float, rto: float, attempts: int) -> Transaction:
    gen = Generation(index=0, ufrag="abcd", pwd="p" * 22)
    return table.start(
        tid=table.new_tid(), kind=kind, data=b"x", local=LOCAL, remote=REMOTE,
        generation=gen, now=now, rto=rto, max_attempts=attempts,
    )  # fmt: skip


def scan(table: Transactions) -> Transaction | None:
    """What the agent computed before the cache: the first of the smallest deadlines."""
    best: Transaction | None = None
    for tx in table:
        if best is None or tx.next_at < best.next_at:
            best = tx
    return best


OPS = st.lists(
    st.tuples(
        st.sampled_from(["start", "remove", "timer", "cancel"]),
        st.integers(0, 50),
        st.sampled_from([0.1, 0.25, 0.5]),  # equal deadlines happen: ties must match too
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_earliest_matches_a_scan_through_any_sequence(ops: list[tuple[str, int, float]]) -> None:
    table = Transactions(random.Random(1))
    now = 0.0
    for op, n, rto in ops:
        live = list(table)
        if op == "start":
            start(table, [TxKind.CHECK, TxKind.SRFLX, TxKind.CONSENT][n % 3], now, rto, 1 + n % 4)
        elif op == "remove" and live:
            table.remove(live[n % len(live)])
        elif op == "cancel" and live:
            live[n % len(live)].cancel()
        elif op == "timer":
            first = table.earliest()
            if first is not None:
                now = max(now, first.next_at)
            for tx in table.due(now):
                table.retransmit(tx, now, CONFIG)
        assert table.earliest() is scan(table)
        assert all(tx.next_at > now for tx in table) or op != "timer"


def test_retransmits_double_the_rto_up_to_the_cap_then_end() -> None:
    table = Transactions(random.Random(1))
    tx = start(table, TxKind.CHECK, 0.0, CONFIG.check_rto, CONFIG.max_check_attempts)
    now, gaps = 0.0, []
    while (first := table.earliest()) is not None:
        gaps.append(round(first.next_at - now, 6))
        now = first.next_at
        sent = table.retransmit(tx, now, CONFIG)
        assert (sent is None) == (tx not in list(table))
    assert gaps == [0.1, 0.2, 0.4, 0.8, 1.6, 1.6, 1.6]
    assert len(table) == 0 and table.due(now + 100) == []


def test_due_lists_transactions_in_start_order() -> None:
    table = Transactions(random.Random(1))
    late = start(table, TxKind.SRFLX, 0.0, 0.5, 2)
    early = start(table, TxKind.CHECK, 0.0, 0.1, 2)
    assert table.earliest() is early
    assert table.due(0.4) == [early]
    assert table.due(1.0) == [late, early]
