"""Timers and limits of the ICE agent, with the reason for each default."""

from __future__ import annotations

from dataclasses import dataclass

from ..addresses import Address
from .relay import RelayOptions, RelayServer


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
    # The pace of checks on the selected pair when nothing else is heard on it, so that
    # an idle but healthy pair always receives something well within
    # disconnected_timeout. The controlling agent probes after keepalive_interval
    # (randomized 0.8-1.2, RFC 7675 §5.1) without hearing anything; the controlled one is
    # the backstop, after 1.3-1.5 x keepalive_interval: of two such agents one probes
    # per interval, not both (consent.py, docs/ice.md). Defaults to
    # disconnected_timeout / 2.5.
    keepalive_interval: float | None = None
    # A selected pair that has heard nothing for this long, while a valid request or data
    # arrives on another pair of its generation, is dead: the agent moves to the live
    # pair (nominating it when controlling). Longer than a keepalive interval plus jitter
    # (1.2 s) so that an idle healthy pair never looks dead; shorter than
    # disconnected_timeout so that the path heals before the application sees a change.
    # Defaults to 0.6 x disconnected_timeout (1.5 s).
    switch_silence_interval: float | None = None
    # Answering a peer's restart, our ordinary checks wait this long for the peer's first
    # check (which triggers ours at once). Sent before the offerer has our answer, they
    # reach it as peer-reflexive candidates of no known generation, which libwebrtc
    # ranks below the old pair and prunes for good: the restart never completes.
    answer_check_hold: float = 0.5
    # RFC 7675 §5.1: consent expires 30 s after the last authenticated response.
    consent_timeout: float = 30.0
    # RFC 7675 §5.1: our own consent check at least this often (randomized 0.8-1.2), even
    # while the peer's checks or data keep the pair alive and make keepalives needless:
    # only answers to our own checks refresh consent. See consent_every.
    consent_interval: float = 5.0
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
    # Local candidates per generation: host and srflx per base, plus the peer-reflexive
    # ones learnt from mapped addresses (RFC 8445 §7.2.5.3.1); NAT rebindings add one each.
    max_local_candidates: int = 64
    max_pairs: int = 100  # RFC 8445 §6.1.2.5 suggests a limit of 100
    # Peer-reflexive remote candidates (and their pairs) have a budget of their own on top
    # of the two above: junk trickled through signaling must not crowd out the address the
    # peer really checks from (issue 7). Only authenticated checks can use it.
    max_prflx_candidates: int = 32
    max_generations: int = 8
    stun_servers: tuple[Address, ...] = ()
    # TURN servers (resolved), one allocation each per base and generation (relay.py).
    turn_servers: tuple[RelayServer, ...] = ()
    # iceTransportPolicy "relay": only relay candidates are signalled and paired; host
    # sockets are still the bases the allocations are made from (webrtc-pc §4.2.5).
    relay_only: bool = False
    # TURN client timers. An unreachable UDP server is given up after about 5.75 s
    # (0.25 s RTO, 4 sends, RFC 8489 §6.2.1's 16 x RTO wait), not 39.5 s: gathering
    # waits for every allocation to settle.
    relay_options: RelayOptions = RelayOptions()
    # Hostile input (strangers' floods). A request that fails authentication gets a
    # 400/401 (RFC 5389 §10.1.2), but that reply goes to an address nobody vouched for: a
    # 20-byte request with a spoofed source makes us reflect 48 bytes at its victim. So
    # these replies share one token bucket per agent (keyed on nothing, so no state grows
    # with the number of strangers): `error_reply_rate` per second on average, bursts of
    # `error_reply_burst`; the rest are dropped and counted. A genuine peer with stale
    # credentials needs one to notice. Authenticated errors (420, 487, a 400 after a good
    # MESSAGE-INTEGRITY) are never limited. 0 and 0 make the agent silent to strangers.
    error_reply_rate: float = 10.0
    error_reply_burst: int = 10
    # STUN datagrams longer than this are dropped before anything is parsed: checks and
    # their responses are about 100 bytes (a few hundred with vendor attributes, RFC 8445
    # §7.2.2), so an Ethernet MTU is generous and bounds the CRC a stranger can ask for.
    max_stun_size: int = 1500

    @property
    def switch_silence(self) -> float:
        """How long the selected pair must be silent before the agent moves off it."""
        if self.switch_silence_interval is not None:
            return self.switch_silence_interval
        return self.disconnected_timeout * 0.6

    @property
    def consent_every(self) -> float:
        """The interval between our own consent checks while the peer's traffic keeps the
        pair alive: never below keepalive, never above a third of consent_timeout (three
        tries before consent expires)."""
        return max(self.keepalive, min(self.consent_interval, self.consent_timeout / 3))

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
            "consent_interval",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"IceConfig.{name} must be > 0")
        if self.keepalive <= 0 or self.keepalive >= self.consent_timeout:
            raise ValueError("IceConfig.keepalive_interval must be > 0 and < consent_timeout")
        if self.max_check_attempts < 1 or self.stun_attempts < 1:
            raise ValueError("attempt counts must be >= 1")
        if self.error_reply_rate < 0 or self.error_reply_burst < 0 or self.max_stun_size < 20:
            raise ValueError("IceConfig: error_reply_* must be >= 0, max_stun_size >= 20")
