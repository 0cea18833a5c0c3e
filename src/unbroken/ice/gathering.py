"""Candidate gathering (RFC 8445 §5.1.1), per generation and base, one gatherer per type.

Theory of operation
-------------------
Each generation gathers on its bases (the sockets the driver gave the agent) once
`IceAgent.gather` starts it, and on every base added while it gathers. For each base
every gatherer in `Gathering.gatherers` runs in turn:

- `HostGatherer`: the base itself (RFC 8445 §5.1.1.1);
- `ServerReflexiveGatherer`: a Binding request to each STUN server of the base's address
  family (RFC 8445 §5.1.1.2); the mapped address of the answer is the candidate.

Relay candidates (TURN, RFC 8656) plug in as one more gatherer: it starts its queries in
`gather` (counting each in `Generation.gathering_pending`), and gets their answers and
timeouts through `on_response` and `on_timeout` by the transaction kind it owns.
Gathering of a generation is complete once no query is pending; the W3C gathering state
follows the newest generation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import stun
from ..addresses import Address, Transmit
from .candidate import (
    PAIRED_TYPES,
    Candidate,
    candidate_priority,
    foundation_for,
    local_preference,
)
from .checklist import Generation
from .config import IceConfig
from .events import (
    CandidateErrorEvent,
    GatheringComplete,
    GatheringStateChanged,
    LocalCandidateGathered,
)
from .states import IceGatheringState
from .transactions import Transaction, Transactions, TxKind

if TYPE_CHECKING:
    from .agent import IceAgent
    from .relay import AgentRelays


def family(host: str) -> int:
    """The IP version of an address literal."""
    return 6 if ":" in host else 4


class Gatherer:
    """Gathers one type of candidate on a base; answers to its own server queries."""

    # The transaction kind of its server queries (None: it asks no server).
    kind: TxKind | None = None

    def gather(
        self, gathering: Gathering, gen: Generation, base: Address, index: int, now: float
    ) -> None:
        """Gather on `base` (the `index`-th of the agent's bases) for `gen`."""

    def on_response(
        self, gathering: Gathering, tx: Transaction, msg: stun.Message, now: float
    ) -> None:
        """A server answered one of this gatherer's queries (already out of the table)."""

    def on_timeout(self, gathering: Gathering, tx: Transaction, now: float) -> None:
        """One of this gatherer's queries ran out of attempts."""


class HostGatherer(Gatherer):
    """RFC 8445 §5.1.1.1: the base itself."""

    def gather(
        self, gathering: Gathering, gen: Generation, base: Address, index: int, now: float
    ) -> None:
        """One host candidate for the base (none under iceTransportPolicy "relay")."""
        if gathering.config.relay_only:
            return
        host, port = base
        cand = Candidate(
            foundation=foundation_for("host", host),
            component=1,
            transport="udp",
            priority=candidate_priority("host", local_preference(host, index)),
            host=host,
            port=port,
            type="host",
            generation=gen.index,
            ufrag=gen.ufrag,
            base=base,
        )
        gathering.add_candidate(gen, cand, now)


class ServerReflexiveGatherer(Gatherer):
    """RFC 8445 §5.1.1.2: the address a STUN server sees the base at."""

    kind = TxKind.SRFLX

    def gather(
        self, gathering: Gathering, gen: Generation, base: Address, index: int, now: float
    ) -> None:
        """A Binding request to each configured STUN server of the base's family."""
        config = gathering.config
        if config.relay_only:
            return
        for server in config.stun_servers:
            if family(server[0]) != family(base[0]):
                continue
            gen.gathering_pending += 1
            transactions = gathering.transactions
            tid = transactions.new_tid()
            msg = stun.Message(
                method=stun.Method.BINDING,
                message_class=stun.MessageClass.REQUEST,
                transaction_id=tid,
            )
            data = stun.encode(msg, fingerprint=True)
            tx = transactions.start(
                tid=tid, kind=TxKind.SRFLX, data=data, local=base, remote=server,
                generation=gen, now=now, rto=config.stun_rto, max_attempts=config.stun_attempts,
            )  # fmt: skip
            gathering.send(tx.transmit())

    def on_response(
        self, gathering: Gathering, tx: Transaction, msg: stun.Message, now: float
    ) -> None:
        """The mapped address is a candidate, unless it is the base itself (no NAT)."""
        gen = tx.generation
        mapped = msg.xor_mapped_address or msg.mapped_address
        host, port = tx.local
        if msg.message_class is stun.MessageClass.ERROR or mapped is None:
            code = msg.error_code[0] if msg.error_code else 700
            reason = msg.error_code[1] if msg.error_code else "no mapped address"
            gathering.error(tx, code, reason)
        elif mapped != tx.local and gathering.is_live(gen):
            preference = local_preference(host, gathering.index_of(tx.local))
            cand = Candidate(
                foundation=foundation_for("srflx", host, server=tx.remote[0]),
                component=1,
                transport="udp",
                priority=candidate_priority("srflx", preference),
                host=mapped[0],
                port=mapped[1],
                type="srflx",
                related_address=host,
                related_port=port,
                generation=gen.index,
                ufrag=gen.ufrag,
                base=tx.local,
            )
            gathering.add_candidate(gen, cand, now)
        gathering.query_done(gen)

    def on_timeout(self, gathering: Gathering, tx: Transaction, now: float) -> None:
        """No answer: reported (W3C icecandidateerror, 701) and gathering goes on."""
        gathering.error(tx, 701, "STUN server did not answer")
        gathering.query_done(tx.generation)


class RelayCandidateGatherer(Gatherer):
    """RFC 8445 §5.1.1.2: relayed addresses from TURN allocations (relay.py does the work)."""

    def gather(
        self, gathering: Gathering, gen: Generation, base: Address, index: int, now: float
    ) -> None:
        """One allocation per TURN server of the base's family, each pending until settled."""
        gathering.relays.gather(gen, base, index, now)


# One gatherer per candidate type, in order; the TURN relay gatherer goes last. They keep
# no state of their own (it lives in the Generation), so every agent shares them.
GATHERERS: tuple[Gatherer, ...] = (
    HostGatherer(),
    ServerReflexiveGatherer(),
    RelayCandidateGatherer(),
)


class Gathering:
    """The agent's gathering: runs the gatherers, tracks completion and the W3C state."""

    __slots__ = ("_agent", "state", "gatherers")

    def __init__(self, agent: IceAgent, gatherers: tuple[Gatherer, ...] = GATHERERS) -> None:
        self._agent = agent
        self.state = IceGatheringState.NEW
        self.gatherers = gatherers

    # ------------------------------------------------------------ for the agent

    def start(self, gen: Generation, bases: list[Address], now: float) -> None:
        """Gather for `gen` on every one of its bases (`bases` unless it has its own)."""
        gen.gathering_started = True
        self.update_state()  # webrtc-pc: "gathering" is reported even when it is instant
        if gen.bases is None:
            gen.bases = list(bases)
        for index, base in enumerate(gen.bases):
            self.gather_base(gen, base, index, now)
        self.check_complete(gen)
        self.update_state()

    def gather_base(self, gen: Generation, base: Address, index: int, now: float) -> None:
        """Run every gatherer on one base."""
        for gatherer in self.gatherers:
            gatherer.gather(self, gen, base, index, now)

    def on_response(self, tx: Transaction, msg: stun.Message, now: float) -> None:
        """A server's answer to a gathering query (`tx` already out of the table)."""
        self._owner(tx).on_response(self, tx, msg, now)

    def on_timeout(self, tx: Transaction, now: float) -> None:
        """A gathering query ran out of attempts."""
        self._owner(tx).on_timeout(self, tx, now)

    def on_abandoned(self, tx: Transaction) -> None:
        """A gathering query dropped unanswered (its base went away): gathering goes on."""
        self.query_done(tx.generation)

    def check_complete(self, gen: Generation) -> None:
        """Report the end of gathering once nothing is pending any more."""
        if gen.gathering_started and not gen.gathering_complete and gen.gathering_pending <= 0:
            gen.gathering_complete = True
            self._agent._events.append(GatheringComplete(gen.ufrag, gen.index))
            self.update_state()

    def update_state(self) -> None:
        """The W3C gathering state, from the newest generation."""
        gen = self._agent._generations[-1]
        if gen.gathering_complete:
            state = IceGatheringState.COMPLETE
        elif gen.gathering_started:
            state = IceGatheringState.GATHERING
        else:
            state = (
                self.state if self.state is IceGatheringState.NEW else IceGatheringState.GATHERING
            )
        if state is not self.state:
            self.state = state
            self._agent._events.append(GatheringStateChanged(state))

    # ------------------------------------------------------------ for the gatherers

    @property
    def config(self) -> IceConfig:
        """The agent's configuration (the driver may replace it)."""
        return self._agent.config

    @property
    def relays(self) -> AgentRelays:
        """The agent's TURN allocations (relay.py)."""
        return self._agent._relays

    @property
    def transactions(self) -> Transactions:
        """The agent's table of outstanding requests."""
        return self._agent._transactions

    def send(self, transmit: Transmit) -> None:
        """Queue a datagram for the driver."""
        self._agent._transmits.append(transmit)

    def add_candidate(self, gen: Generation, cand: Candidate, now: float) -> None:
        """A new local candidate: reported, and paired if it is a host candidate."""
        gen.local_candidates.append(cand)
        self._agent._events.append(LocalCandidateGathered(cand, gen.ufrag, gen.index))
        if cand.type not in PAIRED_TYPES:
            return  # RFC 8445 §6.1.2.4: srflx pairs are pruned to their host base
        for remote in gen.remote_candidates:
            self._agent._add_pair(gen, cand, remote, now)

    def error(self, tx: Transaction, code: int, reason: str) -> None:
        """A failed server query, as the W3C icecandidateerror reports it."""
        host, port = tx.local
        url = f"stun:{tx.remote[0]}:{tx.remote[1]}"
        self._agent._events.append(CandidateErrorEvent(host, port, url, code, reason))

    def query_done(self, gen: Generation) -> None:
        """One server query of `gen` is over (answered, failed or dropped)."""
        gen.gathering_pending -= 1
        self.check_complete(gen)
        self.update_state()

    def is_live(self, gen: Generation) -> bool:
        """False once the generation was released."""
        return gen in self._agent._generations

    def index_of(self, base: Address) -> int:
        """The base's position among the agent's bases (its local preference, RFC 8445 §5.1.2.1)."""
        bases = self._agent._bases
        return bases.index(base) if base in bases else 0

    def _owner(self, tx: Transaction) -> Gatherer:
        return next(g for g in self.gatherers if g.kind is tx.kind)
