"""Link conditions: the access link between a host (or a NAT) and the network.

A datagram crosses the sender's link and the receiver's link (plus the uplink of every
NAT on the way, zero latency by default). Each link adds its one-way latency, a uniform
random jitter in [0, jitter], and loses the datagram with probability `loss`, drawn
independently per datagram and per link. A link that is down drops what is sent on it,
and what was in flight on it when it went down, even if it comes back up before the
datagram would have arrived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class LinkConditions:
    """Mutable one-way conditions of a link; changes apply to datagrams sent afterwards.

    `latency` and `jitter` are seconds, `loss` a probability in [0.0, 1.0]. Setting `up`
    to False also drops every datagram in flight on this link.
    """

    latency: float = 0.005
    jitter: float = 0.0
    loss: float = 0.0
    up: bool = True
    # Incremented each time the link goes down: an in-flight datagram remembers the
    # value it saw at send time and is dropped on arrival if it changed.
    _downs: int = field(default=0, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        if name in ("latency", "jitter"):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
            value = float(value)
        elif name == "loss":
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0.0 <= value <= 1.0
            ):
                raise ValueError(f"loss must be a probability in [0.0, 1.0], got {value!r}")
            value = float(value)
        elif name == "up":
            if not isinstance(value, bool):
                raise ValueError(f"up must be a bool, got {value!r}")
            if not value and self.__dict__.get("up", True):
                object.__setattr__(self, "_downs", self.__dict__.get("_downs", 0) + 1)
        object.__setattr__(self, name, value)

    def update(
        self,
        *,
        latency: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        up: bool | None = None,
    ) -> None:
        """Change the given conditions and leave the others as they are."""
        if latency is not None:
            self.latency = latency
        if jitter is not None:
            self.jitter = jitter
        if loss is not None:
            self.loss = loss
        if up is not None:
            self.up = up
