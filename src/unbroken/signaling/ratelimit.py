"""A token bucket: at most `rate` messages per second on average, bursts up to `burst`."""

from __future__ import annotations


class TokenBucket:
    """Refilled continuously at `rate` per second up to `burst`; the clock is an argument.

    `rate` 0 disables the limit (every `take` succeeds).
    """

    __slots__ = ("rate", "burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._last = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are that many; False (nothing spent) otherwise."""
        if self.rate <= 0:
            return True
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        if self._tokens >= cost:
            self._tokens -= cost
            return True
        return False
