"""The W3C RTCIceTransportState and RTCIceGatheringState, and the transitions between them.

The agent derives its state from facts (a usable selected pair, receiving or not, a
restart under way, checks exhausted) in `derive_state`; `ALLOWED` is the table of
transitions webrtc-pc permits, which the tests hold every run against.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class IceTransportState(str, enum.Enum):
    """webrtc-pc §5.6 RTCIceTransportState (values are the W3C strings)."""

    NEW = "new"
    CHECKING = "checking"
    CONNECTED = "connected"
    COMPLETED = "completed"
    DISCONNECTED = "disconnected"
    FAILED = "failed"
    CLOSED = "closed"


class IceGatheringState(str, enum.Enum):
    """webrtc-pc §5.6 RTCIceGathererState."""

    NEW = "new"
    GATHERING = "gathering"
    COMPLETE = "complete"


S = IceTransportState

# webrtc-pc RTCIceTransportState transitions, including those of an ICE restart
# ("completed" -> "connected"; "disconnected"/"failed" -> "checking"), and "closed" from any.
ALLOWED: dict[IceTransportState, frozenset[IceTransportState]] = {
    S.NEW: frozenset({S.CHECKING, S.CLOSED, S.FAILED}),
    S.CHECKING: frozenset({S.CONNECTED, S.COMPLETED, S.FAILED, S.DISCONNECTED, S.NEW, S.CLOSED}),
    S.CONNECTED: frozenset({S.COMPLETED, S.DISCONNECTED, S.FAILED, S.CHECKING, S.CLOSED}),
    S.COMPLETED: frozenset({S.CONNECTED, S.DISCONNECTED, S.FAILED, S.CHECKING, S.CLOSED}),
    S.DISCONNECTED: frozenset({S.CONNECTED, S.COMPLETED, S.FAILED, S.CHECKING, S.CLOSED}),
    S.FAILED: frozenset({S.CHECKING, S.CONNECTED, S.CLOSED}),
    S.CLOSED: frozenset(),
}


class StateFacts(NamedTuple):
    """What the state depends on, gathered by the agent.

    A NamedTuple, not a frozen dataclass: the agent builds one per input, and a frozen
    dataclass's __init__ (object.__setattr__ per field) costs four times as much.
    """

    closed: bool
    has_selected: bool  # a selected pair whose consent holds
    receiving: bool  # something arrived on it within disconnected_timeout
    restarting: bool  # a newer generation than the selected pair's is running
    newest_checking: bool  # the newest generation has pairs or remote candidates to check
    newest_failed: bool  # the newest generation gave up
    completed: bool  # nomination done, checks over, both sides' candidates complete
    ever_connected: bool


def derive_state(f: StateFacts) -> IceTransportState:
    """The RTCIceTransportState those facts mean."""
    if f.closed:
        return S.CLOSED
    if f.has_selected:
        if f.receiving:
            return S.COMPLETED if f.completed and not f.restarting else S.CONNECTED
        return S.CHECKING if f.restarting and not f.newest_failed else S.DISCONNECTED
    if f.newest_failed:
        return S.FAILED
    if f.restarting or f.newest_checking:
        return S.CHECKING
    return S.FAILED if f.ever_connected else S.NEW
