"""Candidate priorities, foundations and pair priorities (RFC 8445 §5.1), and the grammar.

Priorities are checked against values worked out by hand from the RFC formulas, so a
slip in a shift or a preference table shows up as a wrong number, not a wrong order.
"""

from __future__ import annotations

import pytest

from unbroken.ice import (
    Candidate,
    CandidateError,
    CandidatePair,
    candidate_priority,
    foundation_for,
)
from unbroken.ice.candidate import (
    MAX_PRIORITY,
    TYPE_PREFERENCE,
    local_preference,
    pair_priority,
    parse_candidate,
)

# ---------------------------------------------------------------- priority (§5.1.2)


def test_type_preferences_are_the_rfc_recommendations() -> None:
    # RFC 8445 §5.1.2.2: host 126, peer-reflexive 110, server-reflexive 100, relayed 0.
    assert TYPE_PREFERENCE == {"host": 126, "prflx": 110, "srflx": 100, "relay": 0}


@pytest.mark.parametrize(
    ("ctype", "local_pref", "component", "expected"),
    [
        # (2^24)*type-pref + (2^8)*local-pref + (256 - component-id)
        ("host", 65535, 1, 126 * 2**24 + 65535 * 2**8 + 255),
        ("host", 65535, 1, 2130706431),  # the value every browser puts on its first host
        ("host", 65535, 2, 2130706430),
        ("srflx", 65535, 1, 1694498815),
        ("prflx", 65535, 1, 1862270975),
        ("relay", 65535, 1, 16777215),
        ("relay", 0, 256, 0),
        ("host", 32767, 1, 2122317823),
        ("srflx", 32766, 1, 1686109951),
    ],
)
def test_candidate_priority_formula(
    ctype: str, local_pref: int, component: int, expected: int
) -> None:
    assert candidate_priority(ctype, local_pref, component) == expected


def test_highest_priority_is_within_31_bits() -> None:
    assert candidate_priority("host", 65535, 1) <= MAX_PRIORITY
    assert candidate_priority("prflx", 65535, 1) > candidate_priority("srflx", 65535, 1)


def test_local_preference_prefers_ipv6_then_earlier_interfaces() -> None:
    # RFC 8421 / RFC 8445 §5.1.2.2: distinct per interface, IPv6 above IPv4.
    assert local_preference("2001:db8::1", 0) == 0xFFFF
    assert local_preference("2001:db8::1", 1) == 0xFFFE
    assert local_preference("192.0.2.1", 0) == 0x7FFF
    assert local_preference("192.0.2.1", 1) == 0x7FFE
    assert local_preference("192.0.2.1", 10**6) == 0  # clamped, never negative
    assert local_preference("2001:db8::1", 5) > local_preference("192.0.2.1", 0)


# ---------------------------------------------------------------- foundation (§5.1.1.3)


def test_foundation_equal_for_same_type_base_server_transport() -> None:
    a = foundation_for("srflx", "10.0.0.2", server="198.51.100.200")
    assert a == foundation_for("srflx", "10.0.0.2", server="198.51.100.200")
    others = {
        foundation_for("host", "10.0.0.2"),
        foundation_for("srflx", "10.0.0.3", server="198.51.100.200"),
        foundation_for("srflx", "10.0.0.2", server="198.51.100.201"),
        foundation_for("srflx", "10.0.0.2", "tcp", server="198.51.100.200"),
    }
    assert a not in others and len(others) == 4


def test_foundation_is_valid_grammar() -> None:
    f = foundation_for("host", "2001:db8::1")
    cand = Candidate.from_sdp(f"candidate:{f} 1 udp 1 2001:db8::1 9 typ host")
    assert cand.foundation == f and 1 <= len(f) <= 32


# ---------------------------------------------------------------- pair priority (§6.1.2.3)


def test_pair_priority_formula() -> None:
    g, d = 2130706431, 1694498815
    assert pair_priority(g, d) == 2**32 * d + 2 * g + 1
    assert pair_priority(d, g) == 2**32 * d + 2 * g  # G > D adds 1 only for the controlling
    assert pair_priority(g, d) == 7277816997797167103
    assert pair_priority(5, 5) == 2**32 * 5 + 10


def test_pair_priority_ordering_and_range() -> None:
    # The lower of the two priorities dominates; the result fits in 64 bits.
    assert pair_priority(100, 2**31 - 1) < pair_priority(101, 101)
    top = pair_priority(MAX_PRIORITY, MAX_PRIORITY)
    assert top < 2**64 and top == (MAX_PRIORITY << 32) + 2 * MAX_PRIORITY
    assert pair_priority(1, 1) == 2**32 + 2


def test_both_sides_compute_the_same_pair_priority() -> None:
    # Controlling computes (mine, theirs); controlled computes (theirs, mine): equal.
    g = Candidate.from_sdp("candidate:1 1 udp 2122317823 192.0.2.1 9 typ host")
    d = Candidate.from_sdp("candidate:2 1 udp 1862270975 198.51.100.1 9 typ prflx")
    on_g = CandidatePair("g", local=g, remote=d, priority=0, generation=0)
    on_d = CandidatePair("d", local=d, remote=g, priority=0, generation=0)
    on_g.set_priority(controlling=True)
    on_d.set_priority(controlling=False)
    assert on_g.priority == on_d.priority == pair_priority(2122317823, 1862270975)
    on_g.set_priority(controlling=False)  # after a role switch (RFC 8445 §7.3.1.1)
    assert on_g.priority == pair_priority(1862270975, 2122317823) == on_d.priority - 1


# ---------------------------------------------------------------- grammar (RFC 8839 §5.1)

CHROME_SRFLX = (
    "candidate:842163049 1 udp 1677729535 203.0.113.5 46154 typ srflx raddr 10.0.0.2 "
    "rport 46154 generation 0 ufrag EsAw network-id 1 network-cost 10"
)


def test_parse_browser_line_and_round_trip() -> None:
    c = Candidate.from_sdp(CHROME_SRFLX)
    assert (c.foundation, c.component, c.transport, c.priority) == (
        "842163049",
        1,
        "udp",
        1677729535,
    )
    assert c.address == ("203.0.113.5", 46154) and c.type == "srflx"
    assert (c.related_address, c.related_port) == ("10.0.0.2", 46154)
    assert (c.generation, c.ufrag, c.network_id, c.network_cost) == (0, "EsAw", 1, 10)
    assert c.to_sdp() == CHROME_SRFLX
    assert Candidate.from_sdp("a=" + CHROME_SRFLX) == c
    assert Candidate.from_sdp(CHROME_SRFLX[len("candidate:") :]) == c


def test_parse_normalizes_transport_and_ipv6() -> None:
    c = Candidate.from_sdp("candidate:1 1 UDP 2130706431 2001:DB8:0::1 9 typ host")
    assert c.transport == "udp" and c.host == "2001:db8::1"
    assert Candidate.from_sdp(c.to_sdp()) == c


def test_unknown_extensions_are_kept_in_order() -> None:
    line = "candidate:1 1 udp 1 192.0.2.1 9 typ host x-b 2 x-a 1"
    c = Candidate.from_sdp(line)
    assert c.extensions == (("x-b", "2"), ("x-a", "1"))
    assert c.to_sdp() == line


def test_tcp_candidate_parses() -> None:
    c = Candidate.from_sdp("candidate:1 1 tcp 1 192.0.2.1 9 typ host tcptype passive")
    assert (c.transport, c.tcptype) == ("tcp", "passive")


def test_related_address_without_port_round_trips() -> None:
    # RFC 8839 §5.1: rel-addr and rel-port are each optional.
    c = Candidate.from_sdp("candidate:1 1 udp 1 192.0.2.1 9 typ srflx raddr 10.0.0.1")
    assert (c.related_address, c.related_port) == ("10.0.0.1", None)
    assert Candidate.from_sdp(c.to_sdp()) == c
    d = Candidate.from_sdp("candidate:1 1 udp 1 192.0.2.1 9 typ srflx rport 0")
    assert Candidate.from_sdp(d.to_sdp()) == d


def test_extremes_that_are_valid() -> None:
    c = Candidate.from_sdp(f"candidate:{'a' * 32} 256 udp {MAX_PRIORITY} 0.0.0.1 65535 typ relay")
    assert (c.component, c.priority, c.port) == (256, MAX_PRIORITY, 65535)
    assert Candidate.from_sdp("candidate:+/ 1 udp 1 ::1 1 typ prflx").priority == 1


BAD_LINES = {
    "too few fields": "candidate:1 1 udp 1 192.0.2.1 9 typ",
    "no typ keyword": "candidate:1 1 udp 1 192.0.2.1 9 type host",
    "port 0": "candidate:1 1 udp 1 192.0.2.1 0 typ host",
    "port 65536": "candidate:1 1 udp 1 192.0.2.1 65536 typ host",
    "priority 0": "candidate:1 1 udp 0 192.0.2.1 9 typ host",
    "priority 2^31": f"candidate:1 1 udp {2**31} 192.0.2.1 9 typ host",
    "absurd priority": "candidate:1 1 udp 99999999999999999999 192.0.2.1 9 typ host",
    "negative priority": "candidate:1 1 udp -5 192.0.2.1 9 typ host",
    "signed port": "candidate:1 1 udp 1 192.0.2.1 +9 typ host",
    "superscript digit": "candidate:1 1 udp \u00b2 192.0.2.1 9 typ host",
    "fullwidth digits": "candidate:1 1 udp 1 192.0.2.1 \uff19\uff19 typ host",
    "component 0": "candidate:1 0 udp 1 192.0.2.1 9 typ host",
    "component 257": "candidate:1 257 udp 1 192.0.2.1 9 typ host",
    "unknown type": "candidate:1 1 udp 1 192.0.2.1 9 typ foo",
    "unknown transport": "candidate:1 1 sctp 1 192.0.2.1 9 typ host",
    "hostname": "candidate:1 1 udp 1 example.com 9 typ host",
    "mdns name on a srflx": "candidate:1 1 udp 1 1f2e3d4c-aaaa.local 9 typ srflx",
    "two-label .local": "candidate:1 1 udp 1 a.b.local 9 typ host",
    "bad ipv4": "candidate:1 1 udp 1 192.0.2.256 9 typ host",
    "zone id": "candidate:1 1 udp 1 fe80::1%eth0 9 typ host",
    "foundation too long": f"candidate:{'a' * 33} 1 udp 1 192.0.2.1 9 typ host",
    "foundation bad char": "candidate:a-b 1 udp 1 192.0.2.1 9 typ host",
    "odd extensions": "candidate:1 1 udp 1 192.0.2.1 9 typ host generation",
    "ufrag bad chars": "candidate:1 1 udp 1 192.0.2.1 9 typ host ufrag ab:cd",
    "ufrag twice": "candidate:1 1 udp 1 192.0.2.1 9 typ host ufrag abcd ufrag efgh",
    "bad raddr": "candidate:1 1 udp 1 192.0.2.1 9 typ srflx raddr x rport 1",
    "overlong extension": "candidate:1 1 udp 1 192.0.2.1 9 typ host x " + "v" * 257,
    "bad extension name": "candidate:1 1 udp 1 192.0.2.1 9 typ host (x) 1",
    "overlong line": "candidate:1 1 udp 1 192.0.2.1 9 typ host" + " x-a 1" * 200,
    "generation too big": "candidate:1 1 udp 1 192.0.2.1 9 typ host generation 99999999999",
    "empty": "",
}


@pytest.mark.parametrize("line", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_lines_raise_candidate_error(line: str) -> None:
    with pytest.raises(CandidateError):
        Candidate.from_sdp(line)


def test_non_string_raises_candidate_error() -> None:
    with pytest.raises(CandidateError):
        parse_candidate(b"candidate:1 1 udp 1 192.0.2.1 9 typ host")  # type: ignore[arg-type]


def test_candidate_error_is_a_value_error() -> None:
    assert issubclass(CandidateError, ValueError)


def test_with_ufrag_tags_generation() -> None:
    c = Candidate.from_sdp("candidate:1 1 udp 1 192.0.2.1 9 typ host")
    tagged = c.with_ufrag("abcd", 3)
    assert (tagged.ufrag, tagged.generation) == ("abcd", 3)
    assert "generation 3 ufrag abcd" in tagged.to_sdp()
