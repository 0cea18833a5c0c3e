"""The single error type of the SDP layer.

`parse()` raises `SdpError` for every malformed input, whatever went wrong, so callers
need one `except`. It is a `ValueError` (bad text is a bad value) and the library's
`SyntaxError_` (webrtc-pc maps unparseable SDP to an "sdp-syntax-error"), and it carries
the 1-based line number when the problem has one.
"""

from __future__ import annotations

from unbroken.core_errors import SyntaxError_


class SdpError(SyntaxError_, ValueError):
    """Malformed SDP, or SDP that breaks a WebRTC rule; the message says where and why."""

    line: int | None

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)


def show(value: str, limit: int = 40) -> str:
    """Quote a piece of untrusted text for an error message, cut to `limit` characters."""
    if len(value) > limit:
        return repr(value[:limit]) + "..."
    return repr(value)
