"""The error bases of the sans-IO core (stun, ice, sdp, jsep): plain Python, no aiortc.

`unbroken.errors` re-exports these and adds the W3C errors, which also derive from
aiortc's; the core stays importable without aiortc (tests/test_jsep_session.py checks).
"""

from __future__ import annotations


class UnbrokenError(Exception):
    """Base class of every error this library raises on purpose."""


class SyntaxError_(UnbrokenError, ValueError):  # noqa: N801
    """Malformed text where a grammar is defined (SDP, candidate lines, ICE server URLs);
    also a ValueError, which is what aiortc raises for the same input."""


__all__ = ["SyntaxError_", "UnbrokenError"]
