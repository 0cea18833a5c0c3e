"""Consent freshness (RFC 7675) and liveness of the pair in use: keepalives, silence, following.

Theory of operation
-------------------
On the pair in use the agent sends a consent check at least every
`IceConfig.consent_every` (5 s, randomized 0.8-1.2, RFC 7675 §5.1); each authenticated
answer refreshes consent, and `consent_timeout` without one (or a 403) revokes it:
nothing more goes to that 5-tuple with these credentials.

The same checks are the keepalives (RFC 8445 §11), sent only when needed: what is heard
on the pair is proof of life (`Selector.heard`: data and answers to our checks; for the
controlled side the peer's checks too). A check goes out once nothing was heard, and no
check of ours sent, for a delay drawn per check from the role's `Selector.keepalive_span`
of `IceConfig.keepalive`: 0.8-1.2 (RFC 7675 §5.1), except that a controlled agent whose
peer probes it defers to those checks, 1.3-1.5. So
on an idle pair the controlling side probes about once a second and the controlled side,
hearing those checks, only at its consent pace; when the controlling side's probes stop
arriving (one lost, or its path died) the controlled side probes within 1.5 keepalives,
well within `disconnected_timeout`. One probe per pair per interval, not two: at idle
these wakeups are the whole cost of a connection (issue 9). A side that sends data and
hears nothing for OUTAGE_SILENCE probes at once (at most at its usual pace): after a NAT
rebinding that check is what heals the path.

Silence is watched separately: the pair in use that has heard nothing for
`switch_silence` is reported (`PathSilent`) and, when something valid arrives on another
pair of its generation meanwhile, abandoned for that one (`maybe_follow`: the peer's
path moved). When it hears again after an outage, `PathResumed` is reported.

The pacing of consent and keepalives (what an idle connection costs) is decided here:
`begin` and `send` schedule (`schedule`), `keepalive_due` says when the next check is due.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .checklist import CandidatePair, PairState
from .events import PathResumed, PathSilent
from .nomination import KEEPALIVE_SPAN
from .transactions import TxKind

if TYPE_CHECKING:
    from .agent import IceAgent

logger = logging.getLogger(__name__)

# Nothing heard on the pair given up for this long means packets were being lost on it
# (a data channel sending every 10-50 ms hears acknowledgements far more often).
OUTAGE_SILENCE = 0.2
# The longest silence, in keepalive intervals, an idle healthy pair hears between
# keepalives (plus a round trip): the controlling side's probes, which both sides hear.
IDLE_SILENCE = KEEPALIVE_SPAN[1]


class Consent:
    """Consent checks, their expiry, and silence of the pair in use."""

    __slots__ = ("_agent", "silence_reported")

    def __init__(self, agent: IceAgent) -> None:
        self._agent = agent
        self.silence_reported = False  # PathSilent reported for the current silence

    def begin(self, pair: CandidatePair, now: float) -> None:
        """`pair` is now in use: consent runs from here (data on it counts as heard)."""
        self.silence_reported = False
        if pair.last_received is None:
            pair.last_received = now
        pair.last_consent = pair.last_consent if pair.last_consent is not None else now
        # The nominating check that put the pair in use says nothing yet about whether
        # the peer goes on probing it (ControlledSelector.keepalive_span).
        pair.last_check_received = None
        self.schedule(pair, now)

    def jitter(self, interval: float) -> float:
        """RFC 7675 §5.1: randomize to 0.8-1.2 of the interval."""
        return interval * (0.8 + 0.4 * self._agent._rng.random())

    def schedule(self, pair: CandidatePair, now: float) -> None:
        """Draw the next intervals from `now`: keepalive's (within the role's span) and consent's."""
        agent = self._agent
        pair.last_check_sent = now
        pair.keepalive_draw = agent._rng.random()
        pair.next_keepalive = now + self.jitter(agent.config.consent_every)

    def keepalive_due(self, pair: CandidatePair) -> float | None:
        """When our next check on `pair` is due: after the role's keepalive delay from the
        later of the last thing heard and our last check, or at consent's own deadline."""
        if pair.next_keepalive is None:
            return None
        selector = self._agent._selector
        heard = selector.heard(pair)
        since = pair.last_check_sent if heard is None or heard < pair.last_check_sent else heard
        keepalive = self._agent.config.keepalive
        low, high = selector.keepalive_span(pair)
        due = since + keepalive * (low + (high - low) * pair.keepalive_draw)
        last, sent = pair.last_received, pair.last_sent
        if sent is not None and last is not None and sent > last:
            # We send and hear nothing back: probe after OUTAGE_SILENCE (a NAT that rebound
            # our mapping heals with this check, docs/ice.md), but not sooner after our
            # last check than the usual keepalive pace (a one-way stream hears little).
            pace = KEEPALIVE_SPAN[0] + (KEEPALIVE_SPAN[1] - KEEPALIVE_SPAN[0]) * pair.keepalive_draw
            quick = max(last + OUTAGE_SILENCE, pair.last_check_sent + keepalive * pace)
            due = quick if quick < due else due
        return due if due < pair.next_keepalive else pair.next_keepalive

    def send(self, pair: CandidatePair, now: float) -> None:
        """One consent check on `pair`, and the next one scheduled."""
        agent = self._agent
        gen = pair.owner
        self.schedule(pair, now)
        if gen is None or not gen.has_remote or pair.consent_revoked:
            return
        transactions = agent._transactions
        tid = transactions.new_tid()
        nominate = agent._selector.nominates_consent(pair)
        data = agent._check_request(gen, pair, tid, nominate=nominate)
        pair.consent_requests_sent += 1
        # RFC 7675 §5.1: consent checks are not retransmitted; the next one is due anyway.
        tx = transactions.start(
            tid=tid, kind=TxKind.CONSENT, data=data, local=pair.base, remote=pair.remote.address,
            generation=gen, now=now, rto=0.0, max_attempts=1,
            timeout=agent.config.consent_timeout, pair=pair,
        )  # fmt: skip
        agent._transmits.append(tx.transmit())

    def revoke(self, pair: CandidatePair, now: float, why: str) -> None:
        """RFC 7675 §5.1: consent lost; nothing more goes to that 5-tuple with these credentials."""
        agent = self._agent
        pair.consent_revoked = True
        pair.state = PairState.FAILED
        agent._transactions.remove_where(lambda tx: tx.pair is pair)
        logger.info("consent lost on %s: %s", pair.id, why)
        if pair is agent._selected:
            agent._lose_selected(now, why)
        agent._update_state(now)

    def silent(self, pair: CandidatePair, now: float) -> bool:
        """True when nothing arrived on `pair` for switch_silence (a dead path, not an idle one)."""
        last = pair.last_received
        return last is None or now - last >= self._agent.config.switch_silence

    def maybe_follow(self, pair: CandidatePair, now: float) -> None:
        """Move off a dead selected pair onto a live valid one of the same generation.

        Called when something valid arrives on a pair other than the one in use. When
        the pair in use has gone silent, the peer's path has moved (its NAT rebound, or
        its address changed): a controlling agent nominates the live pair, a controlled
        one moves to it (as libwebrtc's controlled side does), so a controlling peer that
        never re-nominates (Firefox) still gets a working path back without a restart.
        """
        agent = self._agent
        current = agent._selected
        if (
            current is None
            or pair is current
            or pair.generation != current.generation
            or pair.state is not PairState.SUCCEEDED
            or pair.consent_revoked
            or not self.silent(current, now)
        ):
            return
        gen = pair.owner
        if gen is None or gen.draining or gen.nominating is pair:
            return
        agent.counters["path_followed"] += 1
        logger.info("%s is silent while %s is alive: moving", current.id, pair.id)
        agent._selector.follow(gen, pair, now)

    def note_resumed(self, pair: CandidatePair, now: float) -> None:
        """The pair in use hears again after an outage: what was sent meanwhile is lost.

        An idle pair hears only keepalives, up to 1.2 keepalive intervals apart (the
        controlling side's probes): a silence that long is no outage unless we sent data
        meanwhile (which may be lost and wants resending).
        """
        self.silence_reported = False
        last = pair.last_received
        if last is None or now - last <= OUTAGE_SILENCE:
            return
        if now - last > IDLE_SILENCE * self._agent.config.keepalive or (
            pair.last_sent is not None and pair.last_sent > last
        ):
            self._agent._events.append(PathResumed(pair.generation, now - last))

    def silence_due(self) -> float | None:
        """When the pair in use will have been silent for switch_silence (PathSilent)."""
        pair = self._agent._selected
        if pair is None or self.silence_reported or pair.last_received is None:
            return None
        return pair.last_received + self._agent.config.switch_silence

    def mark_received(self, pair: CandidatePair, now: float, *, check: bool = False) -> None:
        """Something authenticated arrived on `pair` (`check`: the peer's check)."""
        agent = self._agent
        if pair is agent._selected:
            self.note_resumed(pair, now)
        pair.last_received = now
        if check:
            pair.last_check_received = now
        else:
            pair.last_answer_or_data = now
        if pair is agent._selected and not agent._receiving:
            agent._update_state(now)

    def handle_timer(self, now: float) -> None:
        """Report silence, expire consent, or send the next consent check, as due."""
        agent = self._agent
        config = agent.config
        silent_at = self.silence_due()
        if silent_at is not None and now >= silent_at and agent._selected is not None:
            self.silence_reported = True
            silent_for = now - (silent_at - config.switch_silence)
            agent._events.append(PathSilent(agent._selected.generation, silent_for))
        pair = agent._selected
        if pair is None:
            return
        if pair.last_consent is not None and now >= pair.last_consent + config.consent_timeout:
            self.revoke(pair, now, f"no consent response for {config.consent_timeout:g} s")
        else:
            due = self.keepalive_due(pair)
            if due is not None and now >= due:
                self.send(pair, now)
