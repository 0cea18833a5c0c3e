"""Timers and limits of the ICE agent, with the reason for each default."""

from __future__ import annotations

from dataclasses import dataclass

from ..addresses import Address


@dataclass(frozen=True)
class IceConfig:
    """Every knob of the agent. Times are seconds."""

    # RFC 8445 §14.2 makes Ta configurable (default 50 ms there). One interface pair on a
    # LAN or loopback needs few checks, and the triggered check that completes a restart
    # waits for the pacing slot, so 20 ms halves restart time at little cost.
    ta: float = 0.020
    # First retransmission timeout of a connectivity check; doubled per retry (RFC 5389
    # §7.2.1, with RFC 8445 §14.3 allowing a smaller RTO for checks). 100 ms recovers a
    # lost check quickly on a LAN; max_check_attempts bounds the total.
    check_rto: float = 0.100
    max_check_rto: float = 1.6
    max_check_attempts: int = 7
    # Server-reflexive gathering: RFC 5389 §7.2.1 defaults (500 ms, 7 tries) would hold
    # end-of-candidates for ~40 s; browsers give up far sooner. 4 tries from 250 ms.
    stun_rto: float = 0.250
    stun_attempts: int = 4
    # With nothing received on the selected pair for this long the state is
    # `disconnected` (W3C leaves it to us: libwebrtc ~5 s, Pion 5 s; our target 2.5 s).
    disconnected_timeout: float = 2.5
    # Checks on the selected pair are sent every keepalive_interval (randomized 0.8-1.2,
    # RFC 7675 §5.1) so that an idle but healthy pair always receives something well
    # within disconnected_timeout. Defaults to disconnected_timeout / 2.5.
    keepalive_interval: float | None = None
    # RFC 7675 §5.1: consent expires 30 s after the last authenticated response.
    consent_timeout: float = 30.0
    # After a restart has switched to the new generation, the old one keeps accepting
    # (but no longer sends) for this long, so packets in flight and a peer that switches
    # a little later lose nothing (make before break, RFC 8445 §9).
    release_delay: float = 3.0
    # The controlling agent nominates the best valid pair once no better pair is pending,
    # or this long after the first valid pair, whichever comes first (RFC 8445 §8.1.1).
    nomination_delay: float = 0.050
    # A generation whose checks are all done without success, and whose peer has not
    # signalled end-of-candidates, is declared failed after this long (trickle makes
    # "all pairs failed" provisional; libwebrtc waits similarly).
    failed_timeout: float = 5.0
    # Limits that keep a hostile peer from growing state without bound.
    max_remote_candidates: int = 100
    max_pairs: int = 100  # RFC 8445 §6.1.2.5 suggests a limit of 100
    max_generations: int = 8
    stun_servers: tuple[Address, ...] = ()

    @property
    def keepalive(self) -> float:
        """The interval between checks on the selected pair."""
        if self.keepalive_interval is not None:
            return self.keepalive_interval
        return self.disconnected_timeout / 2.5

    def validate(self) -> None:
        """Raise ValueError for timers or limits that would make the agent misbehave."""
        positive = (
            "ta",
            "check_rto",
            "max_check_rto",
            "stun_rto",
            "disconnected_timeout",
            "consent_timeout",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"IceConfig.{name} must be > 0")
        if self.keepalive <= 0 or self.keepalive >= self.consent_timeout:
            raise ValueError("IceConfig.keepalive_interval must be > 0 and < consent_timeout")
        if self.max_check_attempts < 1 or self.stun_attempts < 1:
            raise ValueError("attempt counts must be >= 1")
