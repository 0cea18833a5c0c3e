"""The agent's outstanding STUN requests: one table that starts, retransmits and cancels them.

Theory of operation
-------------------
Every request the agent sends (a connectivity check, a consent check, a server-reflexive
query) is a `Transaction` in one `Transactions` table, keyed by its transaction id so
that a response is matched before anything else is parsed (RFC 5389 §7.3). The table
knows the retransmission rules (RFC 8489 §6.2.1: the RTO doubles per attempt, capped) and
keeps its earliest deadline cached, so that `get_timer()` after every input costs nothing
when no transaction started, ended or retransmitted. What a response or a timeout *means*
is the agent's business (checks), or the gatherer's (server-reflexive queries).

Cancelling (RFC 8445 §7.2.5.4) stops the retransmissions but keeps the transaction: a
late response still counts.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..addresses import Address, Transmit
from .checklist import CandidatePair, Generation
from .config import IceConfig

# RFC 8489 §6.2.1 leaves the cap to the implementation; server-reflexive queries keep
# doubling up to this (their attempts run out long before it matters).
MAX_STUN_RTO = 8.0


class TxKind(enum.Enum):
    """What a request is for; the value names it in deadline reasons and logs."""

    CHECK = "check"  # RFC 8445 §7.2.4: a connectivity check (maybe nominating)
    CONSENT = "consent"  # RFC 7675 §5.1: a consent check on the pair in use
    SRFLX = "srflx"  # RFC 8445 §5.1.1.2: a Binding request to a STUN server


# The deadline reason of each kind's retransmission timer (get_timer runs after every input).
RETRANSMIT_REASON = {kind: f"{kind.value} retransmit" for kind in TxKind}


@dataclass(eq=False)
class Transaction:
    """An outstanding STUN request: a check, a consent check, or a server-reflexive query."""

    tid: bytes
    kind: TxKind
    data: bytes
    local: Address
    remote: Address
    generation: Generation
    pair: CandidatePair | None
    nominate: bool
    sent_at: float
    next_at: float
    rto: float
    attempts: int
    max_attempts: int
    seq: int  # start order: ties between equal deadlines go to the older transaction
    cancelled: bool = False  # RFC 8445 §7.2.5.4: no retransmits, a late response still counts

    def cancel(self) -> None:
        """Stop retransmitting; the transaction ends at its current timeout."""
        self.cancelled = True
        self.max_attempts = self.attempts

    def transmit(self) -> Transmit:
        """The request as a datagram to send (again)."""
        return Transmit(self.data, self.local, self.remote)


class Transactions:
    """Outstanding requests by transaction id, with the earliest deadline cached."""

    __slots__ = ("_rng", "_by_tid", "_seq", "_earliest", "_stale")

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._by_tid: dict[bytes, Transaction] = {}
        self._seq = 0
        self._earliest: Transaction | None = None
        self._stale = False  # _earliest must be recomputed before use

    def new_tid(self) -> bytes:
        """A fresh 96-bit transaction id (RFC 8489 §5) from the agent's random source."""
        return self._rng.randbytes(12)  # the runtime's: os.urandom, no int in between

    def start(
        self,
        *,
        tid: bytes,
        kind: TxKind,
        data: bytes,
        local: Address,
        remote: Address,
        generation: Generation,
        now: float,
        rto: float,
        max_attempts: int,
        timeout: float | None = None,
        pair: CandidatePair | None = None,
        nominate: bool = False,
    ) -> Transaction:
        """Record a request sent at `now`; its first timeout is `timeout` (default `rto`)."""
        self._seq += 1
        tx = Transaction(
            tid, kind, data, local, remote, generation, pair, nominate, now,
            now + (rto if timeout is None else timeout), rto, 1, max_attempts, self._seq,
        )  # fmt: skip
        self._by_tid[tid] = tx
        self._note_deadline(tx)
        return tx

    def get(self, tid: bytes) -> Transaction | None:
        """The outstanding transaction with that id, if any."""
        return self._by_tid.get(tid)

    def __contains__(self, tid: object) -> bool:
        return tid in self._by_tid

    def __len__(self) -> int:
        return len(self._by_tid)

    def __iter__(self) -> Iterator[Transaction]:
        return iter(self._by_tid.values())

    def remove(self, tx: Transaction) -> None:
        """Forget `tx` (answered, or no longer wanted)."""
        if self._by_tid.pop(tx.tid, None) is not None and tx is self._earliest:
            if self._by_tid:
                self._stale = True
            else:  # the usual case when idle: one consent check at a time
                self._earliest = None

    def remove_where(self, test: Callable[[Transaction], bool]) -> list[Transaction]:
        """Forget every transaction `test` accepts; returns them, oldest first."""
        gone = [tx for tx in self._by_tid.values() if test(tx)]
        for tx in gone:
            self.remove(tx)
        return gone

    def clear(self) -> None:
        """Forget everything (the agent closed)."""
        self._by_tid.clear()
        self._earliest, self._stale = None, False

    def live_checks(self, pair: CandidatePair | None = None) -> list[Transaction]:
        """Checks not cancelled yet, on `pair` or on every pair, oldest first."""
        return [
            tx
            for tx in self._by_tid.values()
            if tx.kind is TxKind.CHECK and not tx.cancelled and (pair is None or tx.pair is pair)
        ]

    def due(self, now: float) -> list[Transaction]:
        """Transactions whose timeout has come, oldest first."""
        first = self.earliest()
        if first is None or first.next_at > now:
            return []
        return [tx for tx in self._by_tid.values() if tx.next_at <= now]

    def retransmit(self, tx: Transaction, now: float, config: IceConfig) -> Transmit | None:
        """At `tx`'s timeout: the datagram to send again, or None when its attempts are spent.

        RFC 8489 §6.2.1: the RTO doubles each time, capped (checks at max_check_rto, RFC
        8445 §14.3). A spent transaction leaves the table; a consent check is never
        retransmitted (RFC 7675 §5.1: the next one is due anyway).
        """
        if tx.attempts < tx.max_attempts:
            tx.attempts += 1
            cap = config.max_check_rto if tx.kind is TxKind.CHECK else MAX_STUN_RTO
            tx.rto = min(tx.rto * 2, cap)
            tx.next_at = now + tx.rto
            tx.sent_at = now
            if tx is self._earliest:
                self._stale = True
            else:
                self._note_deadline(tx)
            return tx.transmit()
        self.remove(tx)
        return None

    def earliest(self) -> Transaction | None:
        """The transaction whose timeout comes first (the older one on a tie)."""
        if self._stale:
            self._stale = False
            self._earliest = min(
                self._by_tid.values(), key=lambda t: (t.next_at, t.seq), default=None
            )
        return self._earliest

    def _note_deadline(self, tx: Transaction) -> None:
        first = self._earliest
        if self._stale:
            return
        if first is None or (tx.next_at, tx.seq) < (first.next_at, first.seq):
            self._earliest = tx
