"""The error of the JSEP media layer."""

from __future__ import annotations

from unbroken.errors import UnbrokenError


class MediaNegotiationError(UnbrokenError, ValueError):
    """A remote m-section we cannot use: no codec in common, a malformed rtpmap, ...

    It is a ValueError (a bad remote value) so that callers that only know the SDP layer's
    errors still catch it; the peer connection maps it to InvalidAccessError or rejects
    the m-section (RFC 8829 §5.3.1).
    """
