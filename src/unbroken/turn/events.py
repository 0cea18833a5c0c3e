"""What a TURN allocation reports: small frozen dataclasses pulled with TurnClient.next_event()."""

from __future__ import annotations

from dataclasses import dataclass

from unbroken.addresses import Address

ERROR_UNREACHABLE = 701
"""The errorCode webrtc-pc gives an icecandidateerror when no STUN error code applies
(server unreachable, no response, a response that makes no sense)."""


@dataclass(frozen=True)
class TurnEvent:
    """Base class of TURN client events."""


@dataclass(frozen=True)
class AllocationSucceeded(TurnEvent):
    """The server allocated `relayed` (the relay candidate's address) for `lifetime` s."""

    relayed: Address
    mapped: Address | None
    lifetime: int


@dataclass(frozen=True)
class AllocationFailed(TurnEvent):
    """No allocation (or no longer one): becomes an icecandidateerror (code 300-699, or
    701 for no usable response). Terminal: the client does nothing more."""

    error_code: int
    error_text: str


@dataclass(frozen=True)
class AllocationLost(TurnEvent):
    """An allocation that existed is gone (refresh failed until expiry, 437 on refresh):
    the relay candidate is dead; the agent should drop its pairs. Terminal."""

    reason: str


@dataclass(frozen=True)
class NewLocalPortNeeded(TurnEvent):
    """437 Allocation Mismatch on Allocate (RFC 8656 §7.4): the server still has an
    allocation on this 5-tuple. The runtime moves to a new local port (new socket or
    connection) and calls `TurnClient.retry_from_new_port()`."""


@dataclass(frozen=True)
class Redirected(TurnEvent):
    """300 ALTERNATE-SERVER, followed (once): send to `server` from now on; over TCP/TLS
    the runtime opens a new connection to it first."""

    server: Address


@dataclass(frozen=True)
class Refreshed(TurnEvent):
    """The allocation was refreshed; it now expires `lifetime` s after the response."""

    lifetime: int


@dataclass(frozen=True)
class PermissionInstalled(TurnEvent):
    """CreatePermission for `peer_ip` succeeded: data to and from it passes the relay."""

    peer_ip: str


@dataclass(frozen=True)
class PermissionFailed(TurnEvent):
    """CreatePermission for `peer_ip` failed (403 forbidden peer, timeout, ...)."""

    peer_ip: str
    error_code: int
    error_text: str


@dataclass(frozen=True)
class ChannelBound(TurnEvent):
    """Data to `peer` now goes as ChannelData on `channel` (4 bytes of overhead, not 36)."""

    peer: Address
    channel: int


@dataclass(frozen=True)
class ChannelBindFailed(TurnEvent):
    """ChannelBind for `peer` failed: data keeps going in Send indications."""

    peer: Address
    error_code: int
    error_text: str


@dataclass(frozen=True)
class Deallocated(TurnEvent):
    """close() finished: the server released the allocation (or never answered). Terminal."""

    confirmed: bool


__all__ = [
    "ERROR_UNREACHABLE",
    "AllocationFailed",
    "AllocationLost",
    "AllocationSucceeded",
    "ChannelBindFailed",
    "ChannelBound",
    "Deallocated",
    "NewLocalPortNeeded",
    "PermissionFailed",
    "PermissionInstalled",
    "Redirected",
    "Refreshed",
    "TurnEvent",
]
