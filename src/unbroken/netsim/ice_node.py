"""An IceAgent on a simulated host, a signaling channel between two of them, and an app.

`IceNode` is the netsim driver of the same sans-IO `IceAgent` the asyncio runtime
drives: it binds a port per host address, feeds datagrams and timers, and records what
happens (states, selected pairs, application datagrams delivered) with virtual times.
`Signaling` carries credentials and trickled candidates between two nodes with a delay,
the way an application's signaling server would, and performs restarts the JSEP way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..addresses import Address, Transmit
from ..ice import (
    Candidate,
    Deadline,
    Event,
    GatheringComplete,
    IceAgent,
    IceConfig,
    IceTransportState,
    LocalCandidateGathered,
    SelectedPairChanged,
    StateChanged,
)
from .host import Host
from .network import Network


@dataclass
class AppStats:
    """What the application on a node sent and received."""

    sent: int = 0
    dropped_no_pair: int = 0
    received: list[tuple[float, int]] = field(default_factory=list)  # (time, sequence number)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest interval in [start, end] without a delivered datagram."""
        times = [start] + [t for t, _ in self.received if start <= t <= end] + [end]
        return max(b - a for a, b in zip(times, times[1:]))

    def lost(self, sent_seqs: range) -> list[int]:
        """Sequence numbers in `sent_seqs` that never arrived."""
        got = {s for _, s in self.received}
        return [s for s in sent_seqs if s not in got]


class IceNode:
    """An IceAgent attached to a netsim Host (the netsim `Node` protocol)."""

    def __init__(
        self,
        net: Network,
        host: Host,
        *,
        controlling: bool,
        config: IceConfig | None = None,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        self.net = net
        self.host = host
        self.name = name or host.name
        self.agent = IceAgent(controlling=controlling, config=config, rng=random.Random(seed))
        self.states: list[tuple[float, IceTransportState]] = []
        self.selections: list[tuple[float, SelectedPairChanged]] = []
        self.events: list[tuple[float, Event]] = []  # every agent event, in order
        self.app = AppStats()
        self.peer_signaling: Signaling | None = None
        self._out: list[Transmit] = []  # drained from the agent, plus application data
        self._deadline: Deadline | None = None
        self._seq = 0
        host.attach(self)

    # ------------------------------------------------------------ Node protocol

    def handle_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        payload = self.agent.receive(data, local, remote, now)
        if payload is not None and payload[:1] == b"\x80" and len(payload) >= 9:
            self.app.received.append((now, int.from_bytes(payload[1:9], "big")))
        self._drain_events(now)

    def handle_timer(self, now: float) -> None:
        self.agent.handle_timer(now)
        self._drain_events(now)

    def next_deadline(self) -> float | None:
        return self._deadline.at if self._deadline is not None else None

    def pop_transmits(self) -> list[Transmit]:
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------ driving

    def bind_all(self) -> None:
        """One base per host address (the runtime's open_sockets)."""
        now = self.net.now
        for ip in self.host.addresses:
            if not any(b[0] == ip for b in self.agent.bases):
                self.agent.add_base(self.host.bind(ip), now)
        self._drain_events(now)

    def refresh_addresses(self) -> None:
        """Follow the host's address changes: drop vanished bases, bind new addresses."""
        now = self.net.now
        for base in self.agent.bases:
            if base[0] not in self.host.addresses:
                self.agent.remove_base(base, now)
                self.host.unbind(base)
        self.bind_all()

    def send_app(self) -> None:
        """Send one application datagram (RTP-like first byte, then a sequence number)."""
        now = self.net.now
        data = b"\x80" + self._seq.to_bytes(8, "big") + bytes(40)
        self._seq += 1
        self.app.sent += 1
        tx = self.agent.send(data, now)
        if tx is None:
            self.app.dropped_no_pair += 1
        else:
            self._out.append(tx)

    @property
    def state(self) -> IceTransportState:
        """The agent's RTCIceTransportState."""
        return self.agent.state

    def state_sequence(self) -> list[str]:
        """The states passed through, as W3C strings, starting at 'new'."""
        return ["new"] + [s.value for _, s in self.states]

    def _drain_events(self, now: float) -> None:
        """Drain the agent (IceAgent.drain, as the asyncio runtime does) and act on events."""
        out = self.agent.drain()
        self._out.extend(out.transmits)
        self._deadline = out.deadline
        for event in out.events:
            self.events.append((now, event))
            if isinstance(event, StateChanged):
                self.states.append((now, event.state))
            elif isinstance(event, SelectedPairChanged):
                self.selections.append((now, event))
            elif self.peer_signaling is not None and isinstance(
                event, (LocalCandidateGathered, GatheringComplete)
            ):
                self.peer_signaling.forward(self, event)


class Signaling:
    """A signaling channel between two IceNodes with a one-way delay."""

    def __init__(self, net: Network, a: IceNode, b: IceNode, *, delay: float = 0.010) -> None:
        self.net, self.a, self.b, self.delay = net, a, b, delay
        a.peer_signaling = self
        b.peer_signaling = self
        self.candidates_forwarded = 0

    def other(self, node: IceNode) -> IceNode:
        """The node at the other end."""
        return self.b if node is self.a else self.a

    def forward(self, sender: IceNode, event: LocalCandidateGathered | GatheringComplete) -> None:
        """Trickle a candidate or end-of-candidates to the other node after the delay."""
        receiver = self.other(sender)
        if isinstance(event, LocalCandidateGathered):
            cand: Candidate = event.candidate.with_ufrag(event.ufrag, event.generation)
            self.net.call_at(self.net.now + self.delay, lambda: self._add(receiver, cand))
        else:
            ufrag = event.ufrag
            self.net.call_at(self.net.now + self.delay, lambda: self._eoc(receiver, ufrag))

    def _add(self, node: IceNode, cand: Candidate) -> None:
        if node.agent.closed:
            return
        try:
            node.agent.add_remote_candidate(cand, self.net.now)
            self.candidates_forwarded += 1
        except ValueError:
            pass  # a candidate of a generation the peer has not heard of yet: dropped
        node._drain_events(self.net.now)

    def _eoc(self, node: IceNode, ufrag: str) -> None:
        try:
            node.agent.end_of_remote_candidates(self.net.now, ufrag)
        except ValueError:
            pass
        node._drain_events(self.net.now)

    def connect(self) -> None:
        """Exchange credentials now (offer/answer) and start gathering on both sides."""
        for node in (self.a, self.b):
            node.bind_all()
        a_creds = self.a.agent.local_credentials
        b_creds = self.b.agent.local_credentials
        self.a.agent.set_remote_credentials(*b_creds, self.net.now)
        self.b.agent.set_remote_credentials(*a_creds, self.net.now)
        for node in (self.a, self.b):
            node.agent.gather(self.net.now)
            node._drain_events(self.net.now)

    def restart(self, initiator: IceNode) -> None:
        """A JSEP restart: the initiator offers new credentials, the other answers with new ones.

        The offer reaches the answerer after `delay`, the answer the initiator after another.
        """
        answerer = self.other(initiator)
        offer_creds = initiator.agent.restart(self.net.now)
        offer_ufrag = offer_creds[0]

        def on_offer() -> None:
            answer_creds = answerer.agent.restart(self.net.now)
            answerer.agent.set_remote_credentials(*offer_creds, self.net.now)

            def on_answer() -> None:
                initiator.agent.set_remote_credentials(
                    *answer_creds, self.net.now, local_ufrag=offer_ufrag
                )
                initiator._drain_events(self.net.now)

            # The answer is scheduled before the answerer's candidates, which follow it.
            self.net.call_at(self.net.now + self.delay, on_answer)
            answerer._drain_events(self.net.now)

        self.net.call_at(self.net.now + self.delay, on_offer)
        initiator._drain_events(self.net.now)

    def restart_both(self) -> None:
        """Both sides restart at the same moment and swap their new credentials (glare-free)."""
        a_creds = self.a.agent.restart(self.net.now)
        b_creds = self.b.agent.restart(self.net.now)

        def deliver(node: IceNode, creds: tuple[str, str]) -> None:
            node.agent.set_remote_credentials(*creds, self.net.now)
            node._drain_events(self.net.now)

        self.net.call_at(self.net.now + self.delay, lambda: deliver(self.a, b_creds))
        self.net.call_at(self.net.now + self.delay, lambda: deliver(self.b, a_creds))
        for node in (self.a, self.b):
            node._drain_events(self.net.now)
