"""Nomination and role behaviour (RFC 8445 §7.3.1.1, §8), one selector type per role.

Theory of operation
-------------------
What the agent does with a valid pair, with USE-CANDIDATE, with a role conflict, and
with a dead path depends on its role. Instead of `if controlling` branches, the agent
holds one selector (as Pion's controlling and controlled selectors): a role change
swaps the object (`IceAgent._set_role`).

- `ControllingSelector`: regular nomination of the best valid pair (RFC 8445 §8.1.1),
  ICE-CONTROLLING on our checks, USE-CANDIDATE on consent checks of the pair in use (as
  libwebrtc's semi-aggressive nomination: the peer follows a NAT rebinding at once),
  and the keepalive probes of an idle pair (`keepalive_span`).
- `ControlledSelector`: a pair is selected when the peer nominates it (§7.3.1.5, §8.1.1),
  the latest nomination winning (see `Selector.select`); it probes an idle pair only as
  the backstop, when the controlling side's probes stop arriving.

Lite: the agent is always a full agent; facing a lite peer it is controlling (§6.1.1,
`IceAgent.set_remote_credentials`), so no lite selector is needed. Renomination (the
draft's NOMINATION attribute) would be one more selector type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from .. import stun
from ..addresses import Address
from .checklist import PENDING_STATES, CandidatePair, Generation, PairState

if TYPE_CHECKING:
    from .agent import IceAgent

# Probe the pair in use after hearing nothing on it for this many keepalive intervals
# (drawn uniformly per check): RFC 7675 §5.1's 0.8-1.2, and the controlled side's
# backstop while the controlling side's probes arrive (ControlledSelector.keepalive_span).
KEEPALIVE_SPAN = (0.8, 1.2)
BACKSTOP_SPAN = (1.3, 1.5)


class Selector:
    """What a role does about nomination and conflicts; subclasses are the roles."""

    controlling: ClassVar[bool]
    __slots__ = ("_agent",)

    def __init__(self, agent: IceAgent) -> None:
        self._agent = agent

    def stamp(self, msg: stun.Message, tie_breaker: int) -> None:
        """Put our role attribute on an outgoing check (RFC 8445 §7.1.3)."""
        raise NotImplementedError

    def select(self, gen: Generation, pair: CandidatePair, now: float) -> None:
        """A nominated pair: data moves to it if its generation is the newest selected.

        The latest nomination wins, as in the renomination draft (§3) and as libwebrtc's
        controlled side does: a controlling peer nominates a pair other than the one in use
        only when that one is dead or worse (libwebrtc's semi-aggressive nomination, our
        own re-nomination after a NAT rebinding), and RFC 8445 §8.1.1's "highest priority
        wins" would keep us on a dead path.
        """
        pair.nominated = True
        gen.nominating = None
        if gen.selected is pair:
            return
        gen.selected = pair
        current = self._agent._selected
        if current is not None and current.generation > gen.index:
            return  # an older generation finished after a newer one took over
        self._agent._use(gen, pair, now)

    def selects_on_success(self, pair: CandidatePair, nominated: bool) -> bool:
        """True when a successful check on `pair` selects it (RFC 8445 §7.2.5.3.4)."""
        raise NotImplementedError

    def nomination_due(self, gen: Generation) -> float | None:
        """When regular nomination of `gen` is due at the latest (None: nothing to nominate)."""
        return None

    def maybe_nominate(self, gen: Generation, now: float) -> None:
        """Nominate a valid pair of `gen` if it is time to."""

    def on_use_candidate(self, gen: Generation, pair: CandidatePair, now: float) -> bool:
        """An authenticated check with USE-CANDIDATE on `pair`; True when that selected it."""
        return False

    def follow(self, gen: Generation, pair: CandidatePair, now: float) -> None:
        """Move off the silent pair in use onto the live `pair` (see Consent.maybe_follow)."""
        raise NotImplementedError

    def nominates_consent(self, pair: CandidatePair) -> bool:
        """True when our consent check on `pair` carries USE-CANDIDATE."""
        return False

    def keepalive_span(self, pair: CandidatePair) -> tuple[float, float]:
        """How long, in keepalive intervals, we hear nothing on `pair` before probing it.

        RFC 7675 §5.1's randomization, 0.8-1.2 (consent.py). The controlled role defers
        to the controlling side's probes while they arrive (ControlledSelector).
        """
        return KEEPALIVE_SPAN

    def heard(self, pair: CandidatePair) -> float | None:
        """The last proof of life on `pair` that puts our next probe off."""
        return pair.last_received

    def adopt_role(self, msg: stun.Message) -> None:
        """Until we checked on a restart's generation, the peer's first check sets roles.

        Browsers disagree on roles after a restart: libwebrtc makes the restart's offerer
        controlling, Firefox keeps the roles of the first negotiation (RFC 8445 §9). So
        until we have checked on a restart's generation ourselves, the peer's claim
        decides, and no role conflict (487) slows the restart down (docs/ice.md).
        """
        raise NotImplementedError

    def role_conflict(
        self, msg: stun.Message, local: Address, remote: Address, key: stun.IntegrityKey
    ) -> bool:
        """RFC 8445 §7.3.1.1. Returns True when the request was answered with 487."""
        raise NotImplementedError

    def _answer_487(
        self, msg: stun.Message, local: Address, remote: Address, key: stun.IntegrityKey
    ) -> None:
        agent = self._agent
        agent._respond(stun.error_response(msg, 487, "Role Conflict"), local, remote, key)
        agent.counters["stun_rejected_487"] += 1


class ControllingSelector(Selector):
    """The controlling role: we nominate (RFC 8445 §8.1.1)."""

    controlling = True
    __slots__ = ()

    def stamp(self, msg: stun.Message, tie_breaker: int) -> None:
        """ICE-CONTROLLING."""
        msg.ice_controlling = tie_breaker

    def selects_on_success(self, pair: CandidatePair, nominated: bool) -> bool:
        """Our nominating check succeeded."""
        return nominated

    def _wants_nomination(self, gen: Generation) -> bool:
        """True when we still have to nominate a valid pair of `gen`."""
        return (
            gen.first_valid_at is not None
            and gen.selected is None
            and gen.nominating is None
            and not gen.draining
            and not gen.failed
            and any(p.state is PairState.SUCCEEDED and not p.consent_revoked for p in gen.pairs)
        )

    def nomination_due(self, gen: Generation) -> float | None:
        """nomination_delay after the first valid pair, unless nominated already."""
        if not self._wants_nomination(gen) or gen.first_valid_at is None:
            return None
        return gen.first_valid_at + self._agent.config.nomination_delay

    def maybe_nominate(self, gen: Generation, now: float) -> None:
        """Regular nomination (RFC 8445 §8.1.1): the best valid pair, once no better one is
        pending or nomination_delay after the first valid pair."""
        if not self._wants_nomination(gen):
            return
        valid = [p for p in gen.pairs if p.state is PairState.SUCCEEDED and not p.consent_revoked]
        best = max(valid, key=lambda p: p.priority)
        better_pending = any(
            p.priority > best.priority and p.state in PENDING_STATES for p in gen.pairs
        )
        waited = (
            gen.first_valid_at is not None
            and now >= gen.first_valid_at + self._agent.config.nomination_delay
        )
        if better_pending and not waited:
            return
        gen.nominating = best
        self._agent._send_check(gen, best, now, nominate=True)

    def follow(self, gen: Generation, pair: CandidatePair, now: float) -> None:
        """Nominate the live pair: its success selects it (IceAgent._check_succeeded)."""
        gen.nominating = pair
        self._agent._send_check(gen, pair, now, nominate=True)

    def heard(self, pair: CandidatePair) -> float | None:
        """Data and answers to our checks, not the peer's checks: the controlling side
        keeps its own keepalive pace (the peer's checks are the backstop's business), so
        an idle pair hears one probe per interval whatever the peer does."""
        return pair.last_answer_or_data

    def nominates_consent(self, pair: CandidatePair) -> bool:
        """On the pair in use, as libwebrtc's default (semi-aggressive) nomination does:
        when a NAT rebinds our mapping, the check reaches the peer from a new address and
        the peer moves to it at once (docs/ice.md). Harmless otherwise: it is nominated."""
        return pair is self._agent._selected

    def adopt_role(self, msg: stun.Message) -> None:
        """The peer claims controlling: we take controlled."""
        if msg.ice_controlling is not None:
            self._agent.counters["role_adopted"] += 1
            self._agent._set_role(False)

    def role_conflict(
        self, msg: stun.Message, local: Address, remote: Address, key: stun.IntegrityKey
    ) -> bool:
        """Both controlling: the larger tie-breaker keeps the role."""
        if msg.ice_controlling is None:
            return False
        if self._agent.tie_breaker >= msg.ice_controlling:
            self._answer_487(msg, local, remote, key)
            return True
        self._agent._set_role(False)
        return False


class ControlledSelector(Selector):
    """The controlled role: the peer nominates (RFC 8445 §7.3.1.5)."""

    controlling = False
    __slots__ = ()

    def stamp(self, msg: stun.Message, tie_breaker: int) -> None:
        """ICE-CONTROLLED."""
        msg.ice_controlled = tie_breaker

    def selects_on_success(self, pair: CandidatePair, nominated: bool) -> bool:
        """The peer nominated the pair before our check on it succeeded (or our own
        nominating check, sent while we were controlling, came back)."""
        return nominated or pair.use_candidate_received

    def on_use_candidate(self, gen: Generation, pair: CandidatePair, now: float) -> bool:
        """RFC 8445 §7.3.1.5: nominated; selected at once if the pair is valid already."""
        pair.use_candidate_received = True
        if pair.state is PairState.SUCCEEDED and not pair.consent_revoked:
            self.select(gen, pair, now)
            return True
        return False

    def follow(self, gen: Generation, pair: CandidatePair, now: float) -> None:
        """Move to the live pair at once, as libwebrtc's controlled side does."""
        gen.selected = pair
        self._agent._use(gen, pair, now)

    def keepalive_span(self, pair: CandidatePair) -> tuple[float, float]:
        """The backstop while the peer's checks arrive; the usual span otherwise.

        Both sides would probe an idle pair every interval (RFC 8445 §11), but each
        side's checks prove life to the other. While the peer probes us (a check of its
        within the backstop's longest interval before our last check) we probe only after
        1.3-1.5 intervals of silence, later than its next check (at most 1.2 intervals
        plus a round trip), so only the controlling side probes. When its checks stop (one
        lost, its path died) we probe within 1.5 intervals; a peer that never probes gets
        the usual pace. Detection is unchanged (docs/ice.md, Timers).
        """
        checked = pair.last_check_received
        window = BACKSTOP_SPAN[1] * self._agent.config.keepalive
        if checked is not None and checked > pair.last_check_sent - window:
            return BACKSTOP_SPAN
        return KEEPALIVE_SPAN

    def adopt_role(self, msg: stun.Message) -> None:
        """The peer claims controlled: we take controlling."""
        if msg.ice_controlled is not None:
            self._agent.counters["role_adopted"] += 1
            self._agent._set_role(True)

    def role_conflict(
        self, msg: stun.Message, local: Address, remote: Address, key: stun.IntegrityKey
    ) -> bool:
        """Both controlled: the larger tie-breaker takes controlling."""
        if msg.ice_controlled is None:
            return False
        if self._agent.tie_breaker >= msg.ice_controlled:
            self._agent._set_role(True)
            return False
        self._answer_487(msg, local, remote, key)
        return True


def selector_for(controlling: bool, agent: IceAgent) -> Selector:
    """The selector of a role."""
    return ControllingSelector(agent) if controlling else ControlledSelector(agent)
