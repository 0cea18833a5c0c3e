"""unbroken: a WebRTC peer connection whose connections survive network changes.

`from unbroken import RTCPeerConnection` gives the W3C API (as in browsers and aiortc)
with ICE restarts done right: make before break, trickle, and the W3C states.
"""

from aiortc import RTCDataChannel, RTCRtpTransceiver

from .errors import InvalidAccessError, InvalidStateError, OperationError, UnbrokenError
from .peerconnection import (
    RTCConfiguration,
    RTCIceCandidate,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    RTCStats,
)

__all__ = [
    "InvalidAccessError",
    "InvalidStateError",
    "OperationError",
    "RTCConfiguration",
    "RTCDataChannel",
    "RTCIceCandidate",
    "RTCIceServer",
    "RTCPeerConnection",
    "RTCRtpTransceiver",
    "RTCSessionDescription",
    "RTCStats",
    "UnbrokenError",
]
