"""TURN client (RFC 8656), sans-IO: allocations, permissions, channels, and their framing.

`TurnClient` is one allocation's state machine; `framing` splits TCP/TLS streams into
STUN and ChannelData messages; `url` parses `turn:`/`turns:`/`stun:` URLs and builds TURN
REST credentials. No sockets, no asyncio, no clock: `unbroken.runtime.turn` drives it.
"""

from unbroken.turn.client import TurnClient, TurnState, refresh_lead
from unbroken.turn.events import (
    ERROR_UNREACHABLE,
    AllocationFailed,
    AllocationLost,
    AllocationSucceeded,
    ChannelBindFailed,
    ChannelBound,
    Deallocated,
    NewLocalPortNeeded,
    PermissionFailed,
    PermissionInstalled,
    Redirected,
    Refreshed,
    TurnEvent,
)
from unbroken.turn.framing import FramingError, StreamFramer
from unbroken.turn.url import (
    IceServerUrl,
    TurnServer,
    parse_ice_server,
    parse_ice_server_url,
    parse_ice_servers,
    rest_credentials,
)

__all__ = [
    "ERROR_UNREACHABLE",
    "AllocationFailed",
    "AllocationLost",
    "AllocationSucceeded",
    "ChannelBindFailed",
    "ChannelBound",
    "Deallocated",
    "FramingError",
    "IceServerUrl",
    "NewLocalPortNeeded",
    "PermissionFailed",
    "PermissionInstalled",
    "Redirected",
    "Refreshed",
    "StreamFramer",
    "TurnClient",
    "TurnEvent",
    "TurnServer",
    "TurnState",
    "parse_ice_server",
    "parse_ice_server_url",
    "parse_ice_servers",
    "refresh_lead",
    "rest_credentials",
]
