"""unbroken: a WebRTC peer connection whose connections survive network changes.

`from unbroken import RTCPeerConnection` gives the W3C API (as in browsers and aiortc)
with ICE restarts done right: make before break, trickle, and the W3C states.

Everything `from aiortc import ...` offers is here too, so aiortc code moves over by
changing the import: the session description, ICE candidate, ICE server,
configuration, data channel and error classes are ours, subclassing aiortc's (objects
pass `isinstance` checks both ways); the rest (tracks, RTP senders and receivers,
parameters, stats) are aiortc's own.

These names load on first use (PEP 562), so that `import unbroken.jsep` loads the sans-IO
JSEP layer alone, without aiortc or asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"  # keep in step with pyproject.toml

if TYPE_CHECKING:
    from aiortc import (
        AudioStreamTrack,
        MediaStreamError,
        MediaStreamTrack,
        RTCBundlePolicy,
        RTCCertificate,
        RTCDataChannelParameters,
        RTCDtlsFingerprint,
        RTCDtlsParameters,
        RTCDtlsTransport,
        RTCIceGatherer,
        RTCIceParameters,
        RTCIceTransport,
        RTCIceTransportPolicy,
        RTCInboundRtpStreamStats,
        RTCOutboundRtpStreamStats,
        RTCRemoteInboundRtpStreamStats,
        RTCRemoteOutboundRtpStreamStats,
        RTCRtcpParameters,
        RTCRtpCapabilities,
        RTCRtpCodecCapability,
        RTCRtpCodecParameters,
        RTCRtpContributingSource,
        RTCRtpHeaderExtensionCapability,
        RTCRtpHeaderExtensionParameters,
        RTCRtpParameters,
        RTCRtpReceiver,
        RTCRtpSender,
        RTCRtpSynchronizationSource,
        RTCRtpTransceiver,
        RTCSctpCapabilities,
        RTCSctpTransport,
        RTCStatsReport,
        RTCTransportStats,
        VideoStreamTrack,
    )

    from .errors import (
        InvalidAccessError,
        InvalidStateError,
        NotSupportedError,
        OperationError,
        TypeError_,
        UnbrokenError,
    )
    from .peerconnection import (
        RTCConfiguration,
        RTCDataChannel,
        RTCIceCandidate,
        RTCIceServer,
        RTCPeerConnection,
        RTCPeerConnectionIceErrorEvent,
        RTCSessionDescription,
        RTCStats,
    )

_AIORTC_NAMES = frozenset(
    (
        "AudioStreamTrack",
        "MediaStreamError",
        "MediaStreamTrack",
        "RTCBundlePolicy",
        "RTCCertificate",
        "RTCDataChannelParameters",
        "RTCDtlsFingerprint",
        "RTCDtlsParameters",
        "RTCDtlsTransport",
        "RTCIceGatherer",
        "RTCIceParameters",
        "RTCIceTransport",
        "RTCIceTransportPolicy",
        "RTCInboundRtpStreamStats",
        "RTCOutboundRtpStreamStats",
        "RTCRemoteInboundRtpStreamStats",
        "RTCRemoteOutboundRtpStreamStats",
        "RTCRtcpParameters",
        "RTCRtpCapabilities",
        "RTCRtpCodecCapability",
        "RTCRtpCodecParameters",
        "RTCRtpContributingSource",
        "RTCRtpHeaderExtensionCapability",
        "RTCRtpHeaderExtensionParameters",
        "RTCRtpParameters",
        "RTCRtpReceiver",
        "RTCRtpSender",
        "RTCRtpSynchronizationSource",
        "RTCRtpTransceiver",
        "RTCSctpCapabilities",
        "RTCSctpTransport",
        "RTCStatsReport",
        "RTCTransportStats",
        "VideoStreamTrack",
    )
)
_MODULE_OF = {
    "InvalidAccessError": "unbroken.errors",
    "InvalidStateError": "unbroken.errors",
    "NotSupportedError": "unbroken.errors",
    "OperationError": "unbroken.errors",
    "TypeError_": "unbroken.errors",
    "UnbrokenError": "unbroken.errors",
    "RTCConfiguration": "unbroken.peerconnection",
    "RTCDataChannel": "unbroken.peerconnection",
    "RTCIceCandidate": "unbroken.peerconnection",
    "RTCIceServer": "unbroken.peerconnection",
    "RTCPeerConnection": "unbroken.peerconnection",
    "RTCPeerConnectionIceErrorEvent": "unbroken.peerconnection",
    "RTCSessionDescription": "unbroken.peerconnection",
    "RTCStats": "unbroken.peerconnection",
}


def __getattr__(name: str) -> Any:
    """The public names, imported when first asked for (PEP 562), then kept."""
    if name in _AIORTC_NAMES:
        module = "aiortc"
    elif name in _MODULE_OF:
        module = _MODULE_OF[name]
    else:
        try:
            return importlib.import_module(f"{__name__}.{name}")  # a subpackage, as before
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the subpackage exists but needs something missing
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    "AudioStreamTrack",
    "InvalidAccessError",
    "InvalidStateError",
    "MediaStreamError",
    "MediaStreamTrack",
    "NotSupportedError",
    "OperationError",
    "RTCBundlePolicy",
    "RTCCertificate",
    "RTCConfiguration",
    "RTCDataChannel",
    "RTCDataChannelParameters",
    "RTCDtlsFingerprint",
    "RTCDtlsParameters",
    "RTCDtlsTransport",
    "RTCIceCandidate",
    "RTCIceGatherer",
    "RTCIceParameters",
    "RTCIceServer",
    "RTCIceTransport",
    "RTCIceTransportPolicy",
    "RTCInboundRtpStreamStats",
    "RTCOutboundRtpStreamStats",
    "RTCPeerConnection",
    "RTCPeerConnectionIceErrorEvent",
    "RTCRemoteInboundRtpStreamStats",
    "RTCRemoteOutboundRtpStreamStats",
    "RTCRtcpParameters",
    "RTCRtpCapabilities",
    "RTCRtpCodecCapability",
    "RTCRtpCodecParameters",
    "RTCRtpContributingSource",
    "RTCRtpHeaderExtensionCapability",
    "RTCRtpHeaderExtensionParameters",
    "RTCRtpParameters",
    "RTCRtpReceiver",
    "RTCRtpSender",
    "RTCRtpSynchronizationSource",
    "RTCRtpTransceiver",
    "RTCSctpCapabilities",
    "RTCSctpTransport",
    "RTCSessionDescription",
    "RTCStats",
    "RTCStatsReport",
    "RTCTransportStats",
    "TypeError_",
    "UnbrokenError",
    "VideoStreamTrack",
]
