"""What the ICE agent reports: small frozen dataclasses pulled with IceAgent.next_event()."""

from __future__ import annotations

from dataclasses import dataclass

from .candidate import Candidate
from .states import IceGatheringState, IceTransportState


@dataclass(frozen=True)
class Event:
    """Base class of agent events."""


@dataclass(frozen=True)
class LocalCandidateGathered(Event):
    """A local candidate to give to the peer (trickle, RFC 8838 §4)."""

    candidate: Candidate
    ufrag: str
    generation: int


@dataclass(frozen=True)
class GatheringComplete(Event):
    """Every local candidate of this generation has been given: send end-of-candidates."""

    ufrag: str
    generation: int


@dataclass(frozen=True)
class GatheringStateChanged(Event):
    """The newest generation's gathering state changed."""

    state: IceGatheringState


@dataclass(frozen=True)
class CandidateErrorEvent(Event):
    """A STUN server did not answer or refused (the icecandidateerror event)."""

    address: str
    port: int
    url: str
    error_code: int
    error_text: str


@dataclass(frozen=True)
class StateChanged(Event):
    """The RTCIceTransportState changed."""

    state: IceTransportState
    previous: IceTransportState


@dataclass(frozen=True)
class SelectedPairChanged(Event):
    """Data now flows on this pair (None: no pair is usable any more)."""

    local: Candidate | None
    remote: Candidate | None
    generation: int | None
    previous_generation: int | None
    # The pair given up had heard nothing for a while (or there was none): data sent
    # meanwhile was lost, so reliable transports should retransmit now, not at their timer.
    after_outage: bool = False


@dataclass(frozen=True)
class RoleChanged(Event):
    """A role conflict (RFC 8445 §7.3.1.1) switched our role."""

    controlling: bool


@dataclass(frozen=True)
class GenerationReleased(Event):
    """An older generation was dropped after a restart switched away from it."""

    generation: int
    ufrag: str


@dataclass(frozen=True)
class PathSilent(Event):
    """Nothing heard on the pair in use for `silence` seconds (IceConfig.switch_silence).

    Earlier than `disconnected`: the peer's path may have moved. A recovery policy can
    restart here, before the application sees any state change.
    """

    generation: int
    silence: float


@dataclass(frozen=True)
class PathResumed(Event):
    """The pair in use hears from the peer again after `silence` seconds of nothing.

    What was sent on it meanwhile was probably lost: reliable transports above should
    retransmit now rather than at their timers.
    """

    generation: int
    silence: float


@dataclass(frozen=True)
class BaseReleased(Event):
    """No live generation uses this local socket any more: the driver may close it."""

    address: tuple[str, int]


@dataclass(frozen=True)
class MappedAddressChanged(Event):
    """The peer sees the pair in use coming from a new address: a NAT rebound our mapping.

    `controlling` is our role then: a controlling agent heals the path by itself (its
    consent checks nominate); a controlled one relies on the peer following, and may ask
    the application for a restart.
    """

    old: tuple[str, int]
    new: tuple[str, int]
    generation: int
    controlling: bool
