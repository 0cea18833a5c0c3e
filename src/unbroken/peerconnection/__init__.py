"""RTCPeerConnection and its W3C companions."""

from .pc import RTCPeerConnection
from .stats import RTCStats
from .types import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCSessionDescription,
)

__all__ = [
    "RTCConfiguration",
    "RTCIceCandidate",
    "RTCIceServer",
    "RTCPeerConnection",
    "RTCSessionDescription",
    "RTCStats",
]
