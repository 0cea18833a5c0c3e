"""The errors of the JSEP layer: pure, so that jsep never loads aiortc.

The peer connection raises them as the W3C errors webrtc-pc names (`JsepStateError` as
InvalidStateError, `JsepAccessError` as InvalidAccessError), which derive from aiortc's
own error classes for code written against aiortc (unbroken/errors.py).
"""

from __future__ import annotations

from unbroken.core_errors import UnbrokenError


class JsepError(UnbrokenError):
    """A call that JSEP's rules refuse."""


class JsepStateError(JsepError):
    """Not possible in the current signaling state (W3C InvalidStateError)."""


class JsepAccessError(JsepError, ValueError):
    """A description that breaks JSEP's rules (W3C InvalidAccessError)."""


class MediaNegotiationError(UnbrokenError, ValueError):
    """A remote m-section we cannot use: no codec in common, a malformed rtpmap, ...

    It is a ValueError (a bad remote value) so that callers that only know the SDP layer's
    errors still catch it; the peer connection maps it to InvalidAccessError or rejects
    the m-section (RFC 8829 §5.3.1).
    """
