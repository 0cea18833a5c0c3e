"""The W3C error types (webrtc-pc §4.4, WebIDL DOMException names) raised by the public API.

Every error raised on purpose derives from `UnbrokenError`, so one `except` catches them
all. Where aiortc has a class for the same error, ours derives from it too, so code
written for aiortc (`except aiortc.exceptions.InvalidStateError`) catches ours unchanged.
aiortc raises `ValueError` where webrtc-pc names a TypeError or an InvalidAccessError (a
bad argument, a description it refuses): ours are ValueErrors as well, for the same
reason. W3C TypeError is `TypeError_`, a subclass of Python's own `TypeError`.
"""

from __future__ import annotations

from aiortc import exceptions as _aiortc

from .core_errors import SyntaxError_, UnbrokenError


class InvalidStateError(UnbrokenError, _aiortc.InvalidStateError):
    """The object is in a state where the call makes no sense (e.g. closed)."""


class InvalidAccessError(UnbrokenError, _aiortc.InvalidAccessError, ValueError):
    """The call's argument cannot be applied (e.g. an SDP that breaks JSEP rules)."""


class OperationError(UnbrokenError, _aiortc.OperationError):
    """The operation failed for a reason specific to it (e.g. an unknown ufrag)."""


class TypeError_(UnbrokenError, TypeError, ValueError):  # noqa: N801 - W3C name, like SyntaxError_
    """W3C TypeError: an argument of the wrong type or outside an enum (e.g. a bad policy)."""


class NotSupportedError(UnbrokenError, ValueError):
    """A valid request this implementation does not support (e.g. bundlePolicy "balanced"
    with media that would need a second transport)."""


__all__ = [
    "UnbrokenError",
    "InvalidStateError",
    "InvalidAccessError",
    "OperationError",
    "NotSupportedError",
    "SyntaxError_",
    "TypeError_",
]
