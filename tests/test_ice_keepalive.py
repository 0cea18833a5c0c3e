"""Keepalives and consent on the pair in use, at exact virtual times (issue 9, docs/ice.md).

The controlling agent probes an idle pair on its keepalive pace (0.8-1.2 s, RFC 7675
§5.1); the controlled agent, hearing those checks, probes only at its own consent pace
(5 s ±20%) and takes over as the backstop (1.3-1.5 s after the last thing heard) when
they stop. Anything heard is proof of life, so with data both ways only consent checks
go out. Detection stays at disconnected_timeout after the last datagram.
"""

from __future__ import annotations

from test_ice_agent import A_ADDR, B_ADDR, Duo
from unbroken import stun
from unbroken.ice import IceTransportState, PathResumed, StateChanged

S = IceTransportState
DATA = b"\x17\xfe\xfd" + bytes(20)  # a DTLS application-data record


def requests_from(duo: Duo, source: tuple[str, int], after: float) -> list[float]:
    """When `source` sent a STUN request (a check) after `after`, dropped ones included."""
    times = []
    for t, tx in duo.wire:
        if t > after and tx.local == source and tx.data[0] < 4:
            if stun.decode(tx.data).message_class is stun.MessageClass.REQUEST:
                times.append(t)
    return times


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def idle_duo(seconds: float = 30.0) -> tuple[Duo, float]:
    """Two connected agents (a controlling) left idle for `seconds`; returns the start."""
    duo = Duo()
    duo.connect()
    duo.run(1.0)  # nomination and its checks are over
    start = duo.now
    duo.run(seconds)
    return duo, start


def test_the_controlling_agent_probes_an_idle_pair_on_its_keepalive_pace() -> None:
    duo, start = idle_duo()
    probes = requests_from(duo, A_ADDR, start)
    # Its own answers are all it hears: each check 0.8-1.2 s after the previous one.
    assert len(probes) >= 25
    assert all(0.8 <= g <= 1.2 for g in gaps(probes)), gaps(probes)
    assert max(gaps(probes)) - min(gaps(probes)) > 0.1  # randomized (RFC 7675 §5.1)


def test_the_controlled_agent_hearing_checks_sends_only_consent_checks() -> None:
    duo, start = idle_duo()
    checks = requests_from(duo, B_ADDR, start)
    # RFC 7675 §5.1: its own consent check every 5 s ±20%, and nothing more.
    assert 5 <= len(checks) <= 8
    assert all(4.0 <= g <= 6.0 for g in gaps(checks)), gaps(checks)
    # One probe per pair per keepalive interval, not two.
    assert len(checks) < len(requests_from(duo, A_ADDR, start)) / 3
    for name in ("a", "b"):
        assert not duo.of(name, PathResumed)  # an idle pair's keepalive gaps are no outage
        assert duo.usable(duo.a) and duo.usable(duo.b)


def test_the_controlled_agent_probes_when_the_controlling_probes_stop() -> None:
    duo, _ = idle_duo(5.0)
    duo.blocked.add((A_ADDR, B_ADDR))  # a's checks (and answers) no longer reach b
    heard = duo.b.selected_pair.last_received  # type: ignore[union-attr]
    assert heard is not None
    blocked_at = duo.now
    duo.run(10.0)
    probes = requests_from(duo, B_ADDR, blocked_at)
    # The backstop: 1.3-1.5 keepalives after the last check heard, once more while that
    # check is recent, ...
    assert 1.3 <= probes[0] - heard <= 1.5
    assert 1.3 <= gaps(probes)[0] <= 1.5
    # ... then the usual pace, as nothing answers.
    assert all(0.8 <= g <= 1.2 for g in gaps(probes)[1:]), gaps(probes)


def test_one_lost_probe_is_covered_by_the_controlled_backstop() -> None:
    duo, _ = idle_duo(3.0)
    b_heard = duo.b.selected_pair.last_received  # type: ignore[union-attr]
    assert b_heard is not None
    lost_after = duo.now
    duo.blocked.add((A_ADDR, B_ADDR))  # exactly a's next check is lost
    assert duo.run_while(lambda: requests_from(duo, A_ADDR, lost_after) == [], 2.0)
    duo.blocked.clear()
    duo.run(10.0)
    # b probes 1.3-1.5 keepalives after the last check it heard, before a's next one
    # (0.8-1.2 after the lost one): neither side goes 2.5 s without hearing.
    backstop = requests_from(duo, B_ADDR, lost_after)[0]
    assert 1.3 <= backstop - b_heard <= 1.5
    assert backstop < requests_from(duo, A_ADDR, lost_after)[1]
    for name in ("a", "b"):
        assert not [e for _, e in duo.of(name, StateChanged) if e.state is S.DISCONNECTED]


def test_with_data_both_ways_each_side_sends_only_consent_checks() -> None:
    duo = Duo()
    duo.connect()
    duo.run(1.0)
    start = duo.now
    while duo.now < start + 30.0:
        duo.send_app(duo.a, DATA)
        duo.send_app(duo.b, DATA)
        duo.run(0.1)
    for source in (A_ADDR, B_ADDR):
        checks = requests_from(duo, source, start)
        # Data is proof of life; consent still needs our own checks (RFC 7675 §5.1).
        assert 5 <= len(checks) <= 8, checks
        assert all(4.0 <= g <= 6.0 for g in gaps(checks)), gaps(checks)
    assert len(duo.app["a"]) >= 290 and len(duo.app["b"]) >= 290


def test_detection_is_disconnected_timeout_after_the_last_datagram() -> None:
    duo, _ = idle_duo(7.0)
    duo.blocked.update({(A_ADDR, B_ADDR), (B_ADDR, A_ADDR)})  # the path dies
    a_heard = duo.a.selected_pair.last_received  # type: ignore[union-attr]
    b_heard = duo.b.selected_pair.last_received  # type: ignore[union-attr]
    assert a_heard is not None and b_heard is not None
    duo.run(5.0)
    for name, heard in (("a", a_heard), ("b", b_heard)):
        down = [t for t, e in duo.of(name, StateChanged) if e.state is S.DISCONNECTED]
        assert down == [heard + 2.5], (name, down, heard)


def test_sending_and_hearing_nothing_probes_after_outage_silence() -> None:
    duo, _ = idle_duo(6.0)
    for _ in range(5):  # data both ways: nothing but consent checks
        duo.send_app(duo.a, DATA)
        duo.send_app(duo.b, DATA)
        duo.run(0.1)
    duo.blocked.add((B_ADDR, A_ADDR))  # a hears nothing any more (its NAT rebound, say)
    heard = duo.a.selected_pair.last_received  # type: ignore[union-attr]
    assert heard is not None
    cut = duo.now
    while duo.now < cut + 2.0:
        duo.send_app(duo.a, DATA)
        duo.run(0.05)
    probes = requests_from(duo, A_ADDR, cut)
    # The first check 0.2 s after the last thing heard (OUTAGE_SILENCE), then the
    # keepalive pace (0.8-1.2 intervals) while the silence lasts.
    assert probes[0] == heard + 0.2
    assert all(0.8 - 1e-9 <= g <= 1.2 for g in gaps(probes)), gaps(probes)


def test_a_one_way_stream_probes_no_faster_than_the_keepalive_pace() -> None:
    duo, _ = idle_duo(6.0)
    start = duo.now
    while duo.now < start + 20.0:  # a sends; b answers only checks
        duo.send_app(duo.a, DATA)
        duo.run(0.02)
    probes = requests_from(duo, A_ADDR, start)
    # The usual pace, as before this rule: 0.8-1.2 intervals (RFC 7675 §5.1).
    assert all(0.8 - 1e-9 <= g <= 1.2 + 1e-9 for g in gaps(probes)), gaps(probes)
    assert len(probes) >= 15
