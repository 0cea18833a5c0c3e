"""A token bucket: at most `rate` events per second on average, in bursts of `burst`.

The agent uses one to cap the error replies it sends to requests nobody authenticated
(RFC 5389 §10.1.2 asks for 400/401, but each one goes to an address that may be a
spoofed victim: a reflection of 48 bytes for 20). Sans-IO: the time comes in as `now`;
rate and burst come with each call, so a changed configuration applies at once.
"""

from __future__ import annotations


class TokenBucket:
    """Tokens refill at `rate` per second up to `burst`; an event spends one."""

    __slots__ = ("_tokens", "_at")

    def __init__(self) -> None:
        self._tokens: float | None = None  # None: full (the first call sees `burst`)
        self._at = 0.0

    def take(self, now: float, rate: float, burst: int) -> bool:
        """Spend one token if there is one; False (and nothing spent) when empty."""
        if self._tokens is None:
            tokens = float(burst)
        else:
            # A clock that steps back refills nothing.
            tokens = min(float(burst), self._tokens + max(0.0, now - self._at) * rate)
        self._at = max(self._at, now)
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        return False
