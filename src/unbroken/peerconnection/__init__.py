"""RTCPeerConnection and its W3C companions."""

from .pc import RTCPeerConnection
from .stats import RTCStats
from .types import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnectionIceErrorEvent,
    RTCSessionDescription,
)

__all__ = [
    "RTCConfiguration",
    "RTCDataChannel",
    "RTCIceCandidate",
    "RTCIceServer",
    "RTCPeerConnection",
    "RTCPeerConnectionIceErrorEvent",
    "RTCSessionDescription",
    "RTCStats",
]
