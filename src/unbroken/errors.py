"""The W3C error types (webrtc-pc §4.4, WebIDL DOMException names) raised by the public API.

TypeError is Python's own; the others are DOMException names that browsers and aiortc use.
"""

from __future__ import annotations


class UnbrokenError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidStateError(UnbrokenError):
    """The object is in a state where the call makes no sense (e.g. closed)."""


class InvalidAccessError(UnbrokenError):
    """The call's argument cannot be applied (e.g. an SDP that breaks JSEP rules)."""


class OperationError(UnbrokenError):
    """The operation failed for a reason specific to it (e.g. an unknown ufrag)."""


class SyntaxError_(UnbrokenError):
    """Malformed text where a grammar is defined (SDP, candidate lines)."""


__all__ = [
    "UnbrokenError",
    "InvalidStateError",
    "InvalidAccessError",
    "OperationError",
    "SyntaxError_",
]
